"""`additional_args`: the training-job arguments accelerate's SageMaker config passes through.

Each accepted key, where it lands in the CreateTrainingJob request, and its check; an unknown key
is an error that names the closest accepted one and lists them all.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...config.model import MAX_RUNTIME_SECONDS, TrainConfig
from ...container.runtime import DEFAULT_DIR as CHECKPOINT_LOCAL_PATH
from ..base import BackendError

CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


def _bool(key, v):
    if isinstance(v, bool):
        return v
    raise BackendError(f"additional_args {key}: expected true or false, got {v!r}")


def _int(minimum, maximum=None):
    def check(key, v):
        if isinstance(v, int) and not isinstance(v, bool) and v >= minimum and (maximum is None or v <= maximum):
            return v
        bound = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
        raise BackendError(f"additional_args {key}: expected a whole number {bound}, got {v!r}")
    return check


def _str(key, v):
    if isinstance(v, str) and v.strip():
        return v.strip()
    raise BackendError(f"additional_args {key}: expected a non-empty string, got {v!r}")


def _str_list(key, v):
    if isinstance(v, str):
        v = v.split(",")
    if isinstance(v, (list, tuple)) and v and all(isinstance(s, str) and s.strip() for s in v):
        return [s.strip() for s in v]
    raise BackendError(f"additional_args {key}: expected a list of IDs (strings), got {v!r}")


def _choice(*choices):
    def check(key, v):
        if v in choices:
            return v
        raise BackendError(f"additional_args {key}: expected one of {', '.join(choices)}, got {v!r}")
    return check


def _s3_uri(key, v):
    if isinstance(v, str) and re.match(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$", v):
        return v.rstrip("/")
    raise BackendError(f"additional_args {key}: expected an s3://bucket/prefix URI, got {v!r}")


def _tags(key, v):
    """Tags as a mapping {key: value} or a list of {Key, Value} (either case)."""
    pairs = None
    if isinstance(v, dict):
        pairs = list(v.items())
    elif isinstance(v, list) and all(isinstance(item, dict) for item in v):
        pairs = [(item.get("Key", item.get("key")), item.get("Value", item.get("value", ""))) for item in v]
    if pairs and all(isinstance(k, str) and k and isinstance(val, (str, int, float)) and not isinstance(val, bool)
                     for k, val in pairs):
        return [(k, str(val)) for k, val in pairs]
    raise BackendError(f"additional_args {key}: expected a mapping like {{team: nlp}} or a list like "
                       f"[{{Key: team, Value: nlp}}], got {v!r}")


def _environment(key, v):
    if not isinstance(v, dict):
        raise BackendError(f"additional_args {key}: expected a mapping of variable names to values")
    bad = [str(k) for k in v if not (isinstance(k, str) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k))]
    if bad:  # values are not echoed: they may be private
        raise BackendError(f"additional_args {key}: {', '.join(map(repr, bad))} not a variable name "
                           "(letters, digits and _, not starting with a digit)")
    creds = sorted(k for k in v if k.upper() in CREDENTIAL_ENV)
    if creds:
        raise BackendError(f"additional_args {key}: {', '.join(creds)} never go in a training job's "
                           "environment (anyone who can describe the job reads it); the job gets AWS access "
                           "from its IAM role (iam_role_name)")
    return {k: "" if val is None else str(val).lower() if isinstance(val, bool) else str(val) for k, val in v.items()}


def _only(expected, why):
    def check(key, v):
        if v is expected or v is None:
            return v
        raise BackendError(f"additional_args {key}: {why}")
    return check


@dataclass(frozen=True)
class _Arg:
    where: str                          # where it lands in the CreateTrainingJob request
    check: Callable[[str, Any], Any]    # validates and normalises the value


ADDITIONAL_ARGS: dict[str, _Arg] = {
    "volume_size": _Arg("ResourceConfig.VolumeSizeInGB", _int(1)),
    "volume_kms_key": _Arg("ResourceConfig.VolumeKmsKeyId", _str),
    "output_path": _Arg("OutputDataConfig.S3OutputPath; the bundle is uploaded under it too", _s3_uri),
    "output_kms_key": _Arg("OutputDataConfig.KmsKeyId", _str),
    "disable_output_compression": _Arg("OutputDataConfig.CompressionType NONE", _bool),
    "enable_network_isolation": _Arg("EnableNetworkIsolation", _bool),
    "encrypt_inter_container_traffic": _Arg("EnableInterContainerTrafficEncryption", _bool),
    "subnets": _Arg("VpcConfig.Subnets (with security_group_ids)", _str_list),
    "security_group_ids": _Arg("VpcConfig.SecurityGroupIds (with subnets)", _str_list),
    "tags": _Arg("Tags", _tags),
    "environment": _Arg("Environment, besides the ACCELERATE_* variables", _environment),
    "max_pending_time": _Arg("StoppingCondition.MaxPendingTimeInSeconds (the API takes 1800 to 2419200 s)",
                             _int(1800, MAX_RUNTIME_SECONDS)),
    "max_retry_attempts": _Arg("RetryStrategy.MaximumRetryAttempts", _int(1)),
    "input_mode": _Arg("AlgorithmSpecification.TrainingInputMode", _choice("File", "FastFile", "Pipe")),
    "training_repository_access_mode": _Arg(
        "AlgorithmSpecification.TrainingImageConfig.TrainingRepositoryAccessMode", _choice("Platform", "Vpc")),
    "training_repository_credentials_provider_arn": _Arg(
        "AlgorithmSpecification.TrainingImageConfig.TrainingRepositoryAuthConfig", _str),
    "enable_infra_check": _Arg("InfraCheckConfig.EnableInfraCheck", _bool),
    "enable_remote_debug": _Arg("RemoteDebugConfig.EnableRemoteDebug", _bool),
    "enable_session_tag_chaining": _Arg("SessionChainingConfig.EnableSessionTagChaining", _bool),
    # What accelerate itself passes to the v2 estimator; SDK v3 sends neither config.
    "debugger_hook_config": _Arg("nothing (SDK v3 sends no DebugHookConfig)",
                                 _only(False, "only false is accepted: SDK v3 attaches no debugger hook")),
    "disable_profiler": _Arg("nothing (SDK v3 sends no ProfilerConfig)",
                             _only(True, "only true is accepted: SDK v3 runs no profiler")),
}
# additional_args keys that TrainConfig lifts into typed fields (config.LIFTED_ARGS).
CONFIG_ARGS: dict[str, str] = {
    "use_spot_instances": "EnableManagedSpotTraining",
    "max_run": "StoppingCondition.MaxRuntimeInSeconds (default 86400, the API's)",
    "max_wait": "StoppingCondition.MaxWaitTimeInSeconds (spot only)",
    "checkpoint_s3_uri": "CheckpointConfig.S3Uri (default <output_path>/<job>/checkpoints)",
    "checkpoint_local_path": f"CheckpointConfig.LocalPath (default {CHECKPOINT_LOCAL_PATH})",
    "keep_alive_period_in_seconds": "ResourceConfig.KeepAlivePeriodInSeconds (0 to 21600: a warm pool)",
    "max_cost": "nothing in the request: sm_magic refuses a launch whose worst case costs more (USD)",
}


def accepted_additional_args() -> dict[str, str]:
    """Every additional_args key accepted, and where it goes in the request."""
    return {**{k: a.where for k, a in ADDITIONAL_ARGS.items()}, **CONFIG_ARGS}


def check_additional_args(config: TrainConfig) -> dict[str, Any]:
    """config.additional_args validated and normalised; an unknown key names the accepted ones."""
    options = {}
    for key, value in config.additional_args.items():
        arg = ADDITIONAL_ARGS.get(key)
        if key in CONFIG_ARGS:  # TrainConfig lifts these out of additional_args when it validates
            raise BackendError(f"additional_args {key}: set it through the config's `{key}` field")
        if arg is None:
            accepted = sorted(accepted_additional_args())
            close = difflib.get_close_matches(str(key), accepted, n=1, cutoff=0.6)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise BackendError(f"additional_args: unknown key `{key}`.{hint} Accepted keys: {', '.join(accepted)}")
        options[key] = arg.check(key, value)
    if ("subnets" in options) != ("security_group_ids" in options):
        raise BackendError("additional_args: subnets and security_group_ids go together (a job in a VPC "
                           "needs both); add the missing one or remove the other")
    return options
