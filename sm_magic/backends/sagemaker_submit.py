"""Submitting a bundle to Amazon SageMaker through SDK v3's ModelTrainer.

`submit(bundle, config)` turns the bundle and the config into a CreateTrainingJob request with
the SDK (`ModelTrainer._create_training_job_args`: it uploads the bundle as the `code` channel
and its container drivers as `sm_drivers`), renames the job to exactly `bundle.name`, and creates
it with sagemaker-core's `TrainingJob.create`. The request is recorded as botocore receives it
(an event handler on the boto3 session), so what `--dry-run` prints is what a real submit sends:
a dry run takes the same path, with uploads that only compute their S3 URIs and a handler that
stops the call before it leaves this machine.

What the SDK would otherwise do on its own is done here instead, so that a user's environment
needs nothing beyond the usual boto3 credential chain: the default bucket is resolved from STS
GetCallerIdentity on the boto3 client (which honours AWS_ENDPOINT_URL; the SDK's own lookup calls
a regional STS endpoint directly), the role name becomes an ARN through IAM GetRole, and the
SDK's telemetry is switched off through the Session's own config (no file, no environment
variable, nothing in the user's home). Credentials are never copied anywhere: the request is
checked for them before it is sent.

The SDK is imported only when a job is submitted (it takes seconds to import).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import json
import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Optional

from .. import requirements as reqs
from ..bundle import JOB_NAME_RE, SDK_CHANNELS, Bundle, check_channel
from ..config import LOCAL_INSTANCE_TYPES, TrainConfig
from . import s3_inputs
from .base import BackendError, progress
from .images import Image, choose as choose_image
from .sagemaker_args import CHECKPOINT_LOCAL_PATH, check_additional_args

DEFAULT_MAX_RUN = 24 * 60 * 60  # the API's own default (SDK v3 would send 3600: a job cut at one hour)
REQUIREMENTS_FILE = "requirements.txt"
ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/\S+$")
# The Session's SDK-defaults config: only the telemetry opt-out (sagemaker.core.config.config_schema
# TELEMETRY_OPT_OUT_PATH, read by the telemetry emitter from `session.sagemaker_config`).
SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
# SageMaker's limits on HyperParameters: 100 entries, keys and values up to 256 characters.
HP_MAX_ENTRIES, HP_MAX_LENGTH = 100, 256
_HP_WARNING = "Hyperparameters are set but are not passed"


@dataclass
class Submission:
    """A submitted (or, with dry_run, only prepared) training job."""

    name: str                 # the job name, exactly bundle.name
    arn: Optional[str]        # None for a dry run
    request: dict             # the CreateTrainingJob request, PascalCase, as passed to the boto3 client
    output_path: str          # OutputDataConfig.S3OutputPath: s3://bucket/<prefix>
    notes: list = field(default_factory=list)  # what a dry run could not look up

    @property
    def model_data(self) -> str:
        """Where SageMaker puts model.tar.gz when the job completes."""
        return f"{self.output_path}/{self.name}/output/model.tar.gz"


def dry_run_text(submission: Submission) -> str:
    """The request pretty-printed, as JSON in the API's PascalCase (what --dry-run shows), after
    what the dry run could not look up."""
    request = json.dumps(submission.request, indent=2, default=str)
    if not submission.notes:
        return request
    return "\n".join([*(f"Note: {n}" for n in submission.notes), "", "CreateTrainingJob request:", request])


# -- pieces shared with the local-container backend ---------------------------------------------

def job_environment(config: TrainConfig, extra: Optional[dict] = None) -> dict[str, str]:
    """The job's environment: what accelerate's own SageMaker launcher sets
    (accelerate/utils/launch.py prepare_sagemager_args_inputs), then additional_args environment."""
    dynamo = {k if k.startswith("dynamo_") else f"dynamo_{k}": v for k, v in (config.dynamo_config or {}).items()}
    env = {
        "ACCELERATE_USE_SAGEMAKER": "true",
        "ACCELERATE_MIXED_PRECISION": config.mixed_precision,
        "ACCELERATE_DYNAMO_BACKEND": str(dynamo.get("dynamo_backend") or "no").upper(),
        "ACCELERATE_DYNAMO_MODE": str(dynamo.get("dynamo_mode") or "default"),
        "ACCELERATE_DYNAMO_USE_FULLGRAPH": str(bool(dynamo.get("dynamo_use_fullgraph", False))),
        "ACCELERATE_DYNAMO_USE_DYNAMIC": str(bool(dynamo.get("dynamo_use_dynamic", False))),
        "ACCELERATE_DYNAMO_USE_REGIONAL_COMPILATION": str(bool(dynamo.get("dynamo_use_regional_compilation", False))),
        "ACCELERATE_SAGEMAKER_DISTRIBUTED_TYPE": config.distributed_type,
        "PYTHONUNBUFFERED": "1",  # log lines reach CloudWatch (and the progress widget) as printed
    }
    env.update(extra or {})
    return env


def api_hyperparameters(hyperparameters: dict[str, str]) -> dict[str, str]:
    """The bundle's hyperparameters (a record of the script arguments, which reach the script
    through sm_launch.json) in a form the job survives: the SDK's container driver writes each as
    `export SM_HP_<KEY>='<value>'` and sources the file, so a quote in a value or a key that is not
    an identifier would end the job before the script starts; and the API's length limits."""
    out: dict[str, str] = {}
    for key, value in hyperparameters.items():
        key = re.sub(r"[^A-Za-z0-9_-]", "_", str(key))[:HP_MAX_LENGTH] or "_"
        value = str(value).replace("'", "\u2019")
        if len(value) > HP_MAX_LENGTH:
            value = value[:HP_MAX_LENGTH - 1] + "\u2026"
        if key not in out and len(out) < HP_MAX_ENTRIES:
            out[key] = value
    return out


def image_for(bundle: Bundle, config: TrainConfig) -> Image:
    """The training image: the one the plan chose for the bundle, else chosen now (a bundle built
    without a plan), with its requirements checked against it either way."""
    if bundle.image is not None:
        return bundle.image
    return choose_image(config, lambda image: reqs.problems(bundle.requirements, image.python, image.versions))


def stopping_seconds(config: TrainConfig) -> tuple[int, Optional[int]]:
    """(MaxRuntimeInSeconds, MaxWaitTimeInSeconds) as the API accepts them: with spot, the
    default runtime never exceeds max_wait."""
    max_wait = config.max_wait if config.use_spot_instances else None
    max_run = config.max_run or (min(DEFAULT_MAX_RUN, max_wait) if max_wait else DEFAULT_MAX_RUN)
    if max_wait is not None and max_wait < max_run:
        raise BackendError(f"max_wait ({max_wait} s) must be at least max_run ({max_run} s): SageMaker refuses a "
                           "spot job that may wait less than it may run")
    return max_run, max_wait


def check_region(region: str) -> None:
    import boto3

    session = boto3.session.Session()
    known = set()
    for partition in session.get_available_partitions():
        known.update(session.get_available_regions("sagemaker", partition_name=partition))
    if region not in known:
        close = difflib.get_close_matches(region, sorted(known), n=3, cutoff=0.5)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise BackendError(f"unknown AWS region {region!r}{hint}: set `region` in the config to a region "
                           "where SageMaker runs, e.g. us-east-1")


def entry_command(bundle: Bundle) -> str:
    """The bundle's one command, for SourceCode.command. The SDK splits it on whitespace and runs
    it through `eval` in bash, so it must be plain words; the script's own arguments travel in
    sm_launch.json, never on this line."""
    command = " ".join(bundle.entry_command)
    if not all(re.match(r"^[A-Za-z0-9_./=-]+$", part) for part in bundle.entry_command):
        raise BackendError(f"the bundle's entry command {command!r} is not plain words; it cannot be "
                           "passed through the SDK's shell driver unchanged")
    return command


# -- submit ------------------------------------------------------------------------------------

class _DryRunStop(Exception):
    """Raised from the botocore handler to stop a dry run's CreateTrainingJob before it is sent."""


class _Recorder:
    """botocore handlers on CreateTrainingJob: keep the params as the client received them, refuse
    to send credentials, stop a dry run, keep the response. Disarmed after our call (the SDK caches
    clients per session, and may reuse the first as its process default)."""

    def __init__(self, dry_run: bool, secrets: list[str]):
        self.dry_run, self.secrets, self.armed = dry_run, secrets, True
        self.request: Optional[dict] = None
        self.response: Optional[dict] = None

    def register(self, boto_session) -> None:
        events = boto_session.events
        events.register("provide-client-params.sagemaker.CreateTrainingJob", self.on_params)
        events.register("before-call.sagemaker.CreateTrainingJob", self.on_before_call)
        events.register("after-call.sagemaker.CreateTrainingJob", self.on_after_call)

    def on_params(self, params, **kwargs):
        if self.armed:
            self.request = copy.deepcopy(params)

    def on_before_call(self, **kwargs):
        if not self.armed:
            return
        text = json.dumps(self.request, default=str)
        if any(secret in text for secret in self.secrets):
            raise BackendError("refusing to submit: the request contains this session's AWS credentials "
                               "(look at additional_args, the script arguments and the config); nothing was sent")
        if self.dry_run:
            raise _DryRunStop()

    def on_after_call(self, parsed=None, **kwargs):
        # Emitted for error responses too: only a response with the job's ARN means "created".
        if self.armed and isinstance(parsed, dict) and parsed.get("TrainingJobArn"):
            self.response = parsed


@lru_cache(maxsize=1)
def _session_class():
    from sagemaker.core.helper.session_helper import Session

    class BundleSession(Session):
        """A Session whose default bucket is the one sm_magic resolved (no STS call to a regional
        endpoint, no bucket creation), and whose uploads, in a dry run, only compute the URI."""

        dry_run = False

        def default_bucket(self):
            return self._default_bucket_name_override

        def upload_data(self, path, bucket=None, key_prefix="data", callback=None, extra_args=None):
            if not self.dry_run:
                return super().upload_data(path, bucket=bucket, key_prefix=key_prefix, callback=callback,
                                           extra_args=extra_args)
            bucket, key_prefix = self.determine_bucket_and_prefix(bucket=bucket, key_prefix=key_prefix,
                                                                  sagemaker_session=self)
            uri = f"s3://{bucket}/{key_prefix}"
            return uri if os.path.isdir(path) else f"{uri}/{os.path.basename(path)}"

    return BundleSession


class _QuietHyperparameterWarning(logging.Filter):
    """The SDK warns that hyperparameters are not passed as arguments in command mode: that is
    intended here (the arguments travel in sm_launch.json)."""

    def filter(self, record):
        return not str(record.msg).startswith(_HP_WARNING)


def _client_error(e) -> tuple[str, str]:
    err = getattr(e, "response", {}).get("Error", {})
    return str(err.get("Code", "")), str(err.get("Message", "")) or str(e)


def _aws_failure(what: str, e: Exception, fix: str = "") -> BackendError:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(e, NoCredentialsError):
        return BackendError(f"{what}: no AWS credentials found. {_CREDENTIALS_FIX}")
    if isinstance(e, EndpointConnectionError):
        return BackendError(f"{what}: cannot reach {getattr(e, 'kwargs', {}).get('endpoint_url', 'AWS')}; check "
                            "the network, or AWS_ENDPOINT_URL if you set one")
    if isinstance(e, ClientError):
        code, message = _client_error(e)
        return BackendError(f"{what}: {code}: {message}" + (f". {fix}" if fix else ""))
    return BackendError(f"{what}: {type(e).__name__}: {e}" + (f". {fix}" if fix else ""))


_CREDENTIALS_FIX = ("Configure credentials the usual boto3 way: `aws configure` or `aws sso login`, "
                    "AWS_PROFILE or `profile` in the config, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                    "in the environment (sm_magic never stores them)")


def _boto_session(config: TrainConfig):
    import boto3
    from botocore.exceptions import BotoCoreError, ProfileNotFound

    try:
        session = boto3.Session(profile_name=config.profile, region_name=config.region)
    except ProfileNotFound:
        raise BackendError(f"AWS profile {config.profile!r} (`profile` in the config) is not in ~/.aws/config or "
                           f"~/.aws/credentials: fix the name, or run `aws configure --profile {config.profile}`"
                           ) from None
    try:
        credentials = session.get_credentials()
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
    except BotoCoreError as e:
        raise BackendError(f"cannot load AWS credentials: {e}. {_CREDENTIALS_FIX}") from None
    if frozen is None or not frozen.access_key or not frozen.secret_key:
        raise BackendError(f"no AWS credentials found. {_CREDENTIALS_FIX}")
    # Strings that must never appear in the request (short test dummies would match anything).
    secrets = [s for s in (frozen.access_key, frozen.secret_key, frozen.token) if s and len(s) >= 16]
    return session, secrets


ACCOUNT_PLACEHOLDER = "<AWS-ACCOUNT-ID>"


class _Offline(Exception):
    """A call a placeholder dry run keeps from leaving this machine."""


def _anonymous_session(config: TrainConfig):
    """A boto3 session for a dry run without a usable AWS account: no request leaves this machine
    (the CreateTrainingJob request is stopped by the recorder before that; anything else the SDK
    tries fails here, and the SDK carries on without it)."""
    import boto3

    def offline(**kwargs):
        raise _Offline("a dry run without AWS credentials sends nothing")

    session = boto3.Session(region_name=config.region)
    session.events.register("before-send", offline)
    return session


@contextlib.contextmanager
def _role_check_skipped(skip: bool):
    """The SDK checks the role through IAM when ModelTrainer is made (unless SAGEMAKER_VALIDATE_ROLE
    is false): a placeholder role in a dry run has nothing to check."""
    if not skip:
        yield
        return
    before = os.environ.get("SAGEMAKER_VALIDATE_ROLE")
    os.environ["SAGEMAKER_VALIDATE_ROLE"] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("SAGEMAKER_VALIDATE_ROLE", None)
        else:
            os.environ["SAGEMAKER_VALIDATE_ROLE"] = before


def _placeholder_role(config: TrainConfig, account: str = ACCOUNT_PLACEHOLDER) -> str:
    name = config.iam_role_name
    if name and name.startswith("arn:"):
        return name
    return f"arn:aws:iam::{account}:role/{name or '<iam_role_name>'}"


def _caller(session) -> tuple[str, str, str]:
    """(account, partition, caller ARN) from STS GetCallerIdentity: this also proves the credentials."""
    try:
        identity = session.client("sts").get_caller_identity()
    except Exception as e:
        raise _aws_failure("AWS did not accept the credentials", e, "Refresh them (`aws sso login`, "
                           "`aws configure`) or choose another `profile`") from None
    arn = identity["Arn"]
    return identity["Account"], arn.split(":")[1], arn


def _role_arn(session, config: TrainConfig, account: str, partition: str, caller_arn: str) -> str:
    from botocore.exceptions import ClientError

    name = config.iam_role_name
    if name and name.startswith("arn:"):
        if not ROLE_ARN_RE.match(name):
            raise BackendError(f"iam_role_name {name!r} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)")
        return name
    if not name:
        match = re.match(r"^arn:[^:]+:sts::\d+:assumed-role/([^/]+)/", caller_arn)
        if not match:
            raise BackendError("set iam_role_name in the config: the IAM role SageMaker runs the job as "
                               "(a role that trusts sagemaker.amazonaws.com), by name or ARN")
        name = match.group(1)
    try:
        return session.client("iam").get_role(RoleName=name.rsplit("/", 1)[-1])["Role"]["Arn"]
    except ClientError as e:
        code, _ = _client_error(e)
        if code in ("NoSuchEntity", "NoSuchEntityException"):
            raise BackendError(f"IAM role {name!r} does not exist in account {account}: create it (trusted by "
                               "sagemaker.amazonaws.com), or set iam_role_name to an existing role's name or "
                               "ARN") from None
        if code in ("AccessDenied", "AccessDeniedException"):
            # May pass a role without reading IAM: the ARN of a role without a path.
            return f"arn:{partition}:iam::{account}:role/{name}"
        raise _aws_failure(f"cannot look up IAM role {name!r}", e) from None
    except Exception as e:
        raise _aws_failure(f"cannot look up IAM role {name!r}", e) from None


def _ensure_bucket(session, bucket: str, account: str, region: str, ours: bool) -> None:
    """Create the default bucket if missing (owned by this account); a bucket named in output_path
    must exist already."""
    from botocore.exceptions import ClientError

    s3 = session.client("s3")
    try:
        s3.head_bucket(Bucket=bucket, **({"ExpectedBucketOwner": account} if ours else {}))
        return
    except ClientError as e:
        code, message = _client_error(e)
        if code in ("403", "AccessDenied", "Forbidden"):
            raise BackendError(f"S3 bucket {bucket} exists but account {account} cannot use it (another "
                               "account owns it, or access is denied): set additional_args output_path to "
                               "an s3:// location you own") from None
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise _aws_failure(f"cannot check S3 bucket {bucket}", e) from None
    except Exception as e:
        raise _aws_failure(f"cannot check S3 bucket {bucket}", e) from None
    if not ours:
        raise BackendError(f"S3 bucket {bucket} (additional_args output_path) does not exist: create it, or "
                           "fix output_path")
    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    except ClientError as e:
        if _client_error(e)[0] not in ("BucketAlreadyOwnedByYou", "OperationAborted"):
            raise _aws_failure(f"cannot create S3 bucket {bucket}", e,
                               "set additional_args output_path to an s3:// location you can write") from None


def _check_name_free(session, name: str, region: str) -> None:
    from botocore.exceptions import ClientError

    try:
        session.client("sagemaker").describe_training_job(TrainingJobName=name)
    except ClientError:
        return  # not found (or not allowed to look): CreateTrainingJob decides
    except Exception:
        return
    raise BackendError(f"a training job named {name} already exists in {region}: choose another --name")


def _offline_checks(bundle: Bundle, config: TrainConfig) -> dict:
    """Everything that needs no AWS call, before any is made."""
    if not JOB_NAME_RE.match(bundle.name):
        raise BackendError(f"{bundle.name!r} is not a valid training job name: 1 to 63 letters, digits and "
                           "hyphens, starting with a letter or digit")
    if config.ec2_instance_type in LOCAL_INSTANCE_TYPES:
        local = "local-container" if config.ec2_instance_type == "local_container" else "local"
        raise BackendError(f"ec2_instance_type {config.ec2_instance_type} runs on this machine: set an ml.* "
                           "instance type (e.g. --instance-type ml.g5.xlarge) for SageMaker, or use "
                           f"--backend {local}")
    options = check_additional_args(config)
    if config.use_spot_instances and config.max_wait is None:
        raise BackendError(f"use_spot_instances needs max_wait: the seconds the job may take, waiting for spot "
                           f"capacity included (at least max_run, {config.max_run or DEFAULT_MAX_RUN} s); "
                           "add max_wait under additional_args")
    stopping_seconds(config)
    for channel, uri in bundle.inputs.items():
        check_channel(channel)
        if not str(uri).startswith("s3://") and not s3_inputs.local_path(uri).exists():
            raise BackendError(f"input channel {channel}: {uri} is neither an s3:// URI nor a local path that "
                               "exists (a local path is uploaded to S3 at launch)")
    check_region(config.region)
    entry_command(bundle)
    options["_image"] = image_for(bundle, config).uri
    return options


def import_sdk() -> None:
    """Import the SDK's trainer module once, without the DeprecationWarning it raises about its
    own `sagemaker.train.configs` shim (we import sagemaker.core.training.configs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import sagemaker.train.model_trainer  # noqa: F401
        except ImportError as e:
            raise BackendError(f"the SageMaker backend needs the SageMaker Python SDK v3, a dependency of "
                               f"sm_magic that is missing or broken here ({e}): pip install 'sagemaker>=3.27,<4'"
                               ) from None


def _trainer(bundle: Bundle, config: TrainConfig, options: dict, sm_session, role: str,
             output_path: str, key_prefix: str, inputs: dict[str, str]):
    import_sdk()
    from sagemaker.core import shapes
    from sagemaker.core.training.configs import (CheckpointConfig, Compute, InfraCheckConfig, InputData,
                                                 Networking, OutputDataConfig, RemoteDebugConfig,
                                                 RetryStrategy, SessionChainingConfig, SourceCode,
                                                 StoppingCondition, Tag, TrainingImageConfig)
    from sagemaker.train.model_trainer import ModelTrainer

    source = SourceCode(source_dir=str(bundle.path), command=entry_command(bundle),
                        requirements=REQUIREMENTS_FILE if (bundle.path / REQUIREMENTS_FILE).is_file() else None)
    compute = Compute(instance_type=config.ec2_instance_type, instance_count=config.num_machines,
                      volume_size_in_gb=options.get("volume_size", 30),
                      volume_kms_key_id=options.get("volume_kms_key"),
                      keep_alive_period_in_seconds=options.get("keep_alive_period_in_seconds"),
                      enable_managed_spot_training=True if config.use_spot_instances else None)
    max_run, max_wait = stopping_seconds(config)
    stopping = StoppingCondition(max_runtime_in_seconds=max_run, max_wait_time_in_seconds=max_wait,
                                 max_pending_time_in_seconds=options.get("max_pending_time"))
    networking = None
    net_keys = ("enable_network_isolation", "encrypt_inter_container_traffic", "subnets", "security_group_ids")
    if any(k in options for k in net_keys):
        networking = Networking(
            enable_network_isolation=options.get("enable_network_isolation"),
            enable_inter_container_traffic_encryption=options.get("encrypt_inter_container_traffic"),
            subnets=options.get("subnets"), security_group_ids=options.get("security_group_ids"))
    checkpoint = None
    if config.use_spot_instances or config.checkpoint_s3_uri or config.checkpoint_local_path:
        checkpoint = CheckpointConfig(
            s3_uri=config.checkpoint_s3_uri or f"{output_path}/{bundle.name}/checkpoints",
            local_path=config.checkpoint_local_path or CHECKPOINT_LOCAL_PATH)
    image_config = None
    if "training_repository_access_mode" in options or "training_repository_credentials_provider_arn" in options:
        auth = options.get("training_repository_credentials_provider_arn")
        image_config = TrainingImageConfig(
            training_repository_access_mode=options.get("training_repository_access_mode", "Vpc"),
            training_repository_auth_config=shapes.TrainingRepositoryAuthConfig(
                training_repository_credentials_provider_arn=auth) if auth else None)
    trainer = ModelTrainer(
        sagemaker_session=sm_session, role=role, base_job_name=config.base_job_name,
        input_s3_key_prefix=key_prefix, source_code=source, compute=compute, networking=networking,
        stopping_condition=stopping, training_image=options["_image"], training_image_config=image_config,
        output_data_config=OutputDataConfig(
            s3_output_path=output_path, kms_key_id=options.get("output_kms_key"),
            compression_type="NONE" if options.get("disable_output_compression") else "GZIP"),
        input_data_config=[InputData(channel_name=c, data_source=uri) for c, uri in inputs.items()] or None,
        checkpoint_config=checkpoint, training_input_mode=options.get("input_mode", "File"),
        environment=job_environment(config, options.get("environment")),
        hyperparameters=api_hyperparameters(bundle.hyperparameters),
        tags=[Tag(key=k, value=v) for k, v in options.get("tags", [])] or None,
    )
    if bundle.metric_definitions:
        trainer.with_metric_definitions([shapes.MetricDefinition(name=m.name, regex=m.regex)
                                         for m in bundle.metric_definitions])
    if "max_retry_attempts" in options:
        trainer.with_retry_strategy(RetryStrategy(maximum_retry_attempts=options["max_retry_attempts"]))
    if "enable_infra_check" in options:
        trainer.with_infra_check_config(InfraCheckConfig(enable_infra_check=options["enable_infra_check"]))
    if "enable_remote_debug" in options:
        trainer.with_remote_debug_config(RemoteDebugConfig(enable_remote_debug=options["enable_remote_debug"]))
    if "enable_session_tag_chaining" in options:
        trainer.with_session_chaining_config(
            SessionChainingConfig(enable_session_tag_chaining=options["enable_session_tag_chaining"]))
    return trainer


def _create_failure(name: str, e: Exception, config: TrainConfig) -> BackendError:
    from botocore.exceptions import ClientError, ParamValidationError

    if isinstance(e, ParamValidationError):
        return BackendError(f"the training job request for {name} is not valid: {e}")
    if not isinstance(e, ClientError):
        return _aws_failure(f"cannot create training job {name}", e)
    code, message = _client_error(e)
    fix = ""
    if "instancetype" in message.replace(" ", "").lower() or "instance type" in message.lower():
        fix = f"check ec2_instance_type ({config.ec2_instance_type})"
        close = difflib.get_close_matches(config.ec2_instance_type, _known_instance_types(), n=1, cutoff=0.8)
        if close and close[0] != config.ec2_instance_type:
            fix += f"; did you mean {close[0]}?"
    elif code == "ResourceLimitExceeded":
        fix = ("an account quota is too low for this request: ask for an increase in Service Quotas "
               "(SageMaker, '<instance type> for training job usage'), or use another instance type or count")
    elif code in ("AccessDenied", "AccessDeniedException"):
        fix = "your identity needs sagemaker:CreateTrainingJob and iam:PassRole on the job's role"
    elif code == "ResourceInUse":
        fix = "choose another --name"
    return BackendError(f"SageMaker refused training job {name}: {code}: {message}" + (f". Fix: {fix}" if fix else ""))


@lru_cache(maxsize=1)
def _known_instance_types() -> list[str]:
    try:
        import botocore.session

        model = botocore.session.get_session().get_service_model("sagemaker")
        return list(model.shape_for("TrainingInstanceType").enum)
    except Exception:
        return []


def _remove_uploads(session, request: Optional[dict]) -> None:
    """After a refused CreateTrainingJob, delete what this call uploaded (its SDK channels only)."""
    if not request:
        return
    try:
        s3 = session.client("s3")
        for channel in request.get("InputDataConfig") or []:
            if channel.get("ChannelName") not in SDK_CHANNELS:
                continue
            uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
            bucket, _, prefix = uri.removeprefix("s3://").partition("/")
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/"):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    except Exception:
        pass  # best effort: the job was refused either way


def submit(bundle: Bundle, config: TrainConfig, *, dry_run: bool = False) -> Submission:
    """Create training job `bundle.name` from the bundle; with dry_run, build the same request and
    stop before anything is uploaded or created. Raises BackendError naming what to fix."""
    options = _offline_checks(bundle, config)
    notes: list[str] = []  # what a dry run could not look up
    try:
        session, secrets = _boto_session(config)
        account, partition, caller_arn = _caller(session)
    except BackendError as e:
        if not dry_run:
            raise
        # A dry run shows the request before AWS is set up: placeholders where the account goes.
        session, secrets, caller_arn = _anonymous_session(config), [], None
        account, partition = ACCOUNT_PLACEHOLDER, "aws"
        notes += [f"not looked up in AWS ({str(e).split('. ')[0].split(': ')[-1]}): the request shows "
                  f"{ACCOUNT_PLACEHOLDER} where the account goes (the role ARN, the bucket).",
                  "a real launch also needs AWS credentials (`aws configure`, `aws sso login` or AWS_PROFILE)"
                  + ("" if config.iam_role_name else " and iam_role_name in the config (a role trusted by "
                                                     "sagemaker.amazonaws.com)") + "."]
    try:
        role = _role_arn(session, config, account, partition, caller_arn) if caller_arn else _placeholder_role(config)
    except BackendError as e:
        if not dry_run:
            raise
        role = _placeholder_role(config, account)
        notes.append(f"the role is a placeholder: {e}")
    if "output_path" in options:
        bucket, _, prefix = options["output_path"].removeprefix("s3://").partition("/")
        ours = False
    else:
        bucket, prefix, ours = f"sagemaker-{config.region}-{account}", config.base_job_name, True
    output_path = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    if caller_arn:
        _check_name_free(session, bundle.name, config.region)
    if not dry_run:
        _ensure_bucket(session, bucket, account, config.region, ours)
    inputs = {channel: uri if uri.startswith("s3://") else s3_inputs.upload(
        None if dry_run else session.client("s3"), channel, uri, bucket, dry_run=dry_run, log=progress)
              for channel, uri in bundle.inputs.items()}

    recorder = _Recorder(dry_run, secrets)
    recorder.register(session)  # before the SDK creates its clients: they copy the session's handlers
    sdk_logger = logging.getLogger("sagemaker.core.utils.utils")
    quiet = _QuietHyperparameterWarning()
    sdk_logger.addFilter(quiet)
    trainer = None
    try:
        from sagemaker.core.resources import TrainingJob

        sm_session = _session_class()(boto_session=session, default_bucket=bucket, sagemaker_config=SDK_CONFIG)
        sm_session.dry_run = dry_run
        key_prefix = f"{prefix}/{bundle.name}" if prefix else bundle.name
        try:
            with _role_check_skipped(bool(notes)):  # a placeholder role
                trainer = _trainer(bundle, config, options, sm_session, role, output_path, key_prefix, inputs)
            args = trainer._create_training_job_args()  # uploads the bundle (not in a dry run)
        except BackendError:
            raise
        except Exception as e:
            raise _aws_failure(f"cannot prepare training job {bundle.name}", e) from None
        args["training_job_name"] = bundle.name  # the SDK made its own timestamped name
        try:
            job = TrainingJob.create(session=session, region=config.region, **args)
        except _DryRunStop:
            return Submission(bundle.name, None, recorder.request, output_path, notes)
        except Exception as e:
            if recorder.response is None:  # not created: nothing of this call may stay behind
                if not dry_run:
                    _remove_uploads(session, recorder.request)
                raise e if isinstance(e, BackendError) else _create_failure(bundle.name, e, config) from None
            job = None  # created; only the DescribeTrainingJob that follows failed
        arn = getattr(job, "training_job_arn", None) if job is not None else None
        arn = arn or (recorder.response or {}).get("TrainingJobArn")
        return Submission(bundle.name, arn, recorder.request, output_path)
    finally:
        recorder.armed = False
        sdk_logger.removeFilter(quiet)
        temp = getattr(trainer, "_temp_code_dir", None) if trainer is not None else None
        if temp is not None:
            temp.cleanup()
