"""The training job itself, as the SDK's ModelTrainer describes it: environment, hyperparameters,
image, stopping condition, entry command, and the trainer built from the bundle and the config.

The job environment, the hyperparameters, the image and the entry command are also what the
local-container backend gives the SDK's local mode. The SDK's telemetry is switched off through the
Session's own config (SDK_CONFIG: no file, no environment variable, nothing in the user's home).
The SDK is imported only when a trainer is built (it takes seconds to import).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings

from ...bundle.build import Bundle
from ...config.model import TrainConfig
from ...container.entry import REQUIREMENTS_ENV
from ...software import requirements as reqs
from ...software.images import Image
from ...software.images import choose as choose_image
from ..base import BackendError
from .args import CHECKPOINT_LOCAL_PATH
from .limits import hyperparameter_limits
from .s3_tensorboard import LOCAL_PATH as TENSORBOARD_LOCAL_PATH

DEFAULT_MAX_RUN = 24 * 60 * 60  # the API's own default (SDK v3 would send 3600: a job cut at one hour)
REQUIREMENTS_FILE = "requirements.txt"
# The Session's SDK-defaults config: only the telemetry opt-out (sagemaker.core.config.config_schema
# TELEMETRY_OPT_OUT_PATH, read by the telemetry emitter from `session.sagemaker_config`).
SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
_HP_WARNING = "Hyperparameters are set but are not passed"


def job_environment(config: TrainConfig, extra: dict | None = None) -> dict[str, str]:
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
        # Unset: sm_entry.py decides on the host (data parallel where there are GPUs to share).
        "ACCELERATE_SAGEMAKER_DISTRIBUTED_TYPE": config.distributed_type or "NO",
        "PYTHONUNBUFFERED": "1",  # log lines reach CloudWatch (and the progress widget) as printed
    }
    env.update(extra or {})
    return env


def sagemaker_environment(config: TrainConfig, extra: dict | None = None) -> dict[str, str]:
    """job_environment, and for a job with a warm pool the variable that has the bundle's entry
    command install the requirements into the pool's cache, where the next job on the same instance
    finds them (sm_entry.install_requirements), instead of the SDK's driver."""
    env = job_environment(config, extra)
    if warm_pool(config):
        env[REQUIREMENTS_ENV] = REQUIREMENTS_FILE
    return env


def warm_pool(config: TrainConfig) -> bool:
    """Whether the job asks for a warm pool (ResourceConfig.KeepAlivePeriodInSeconds above 0)."""
    return bool(config.keep_alive_period_in_seconds)


def api_hyperparameters(hyperparameters: dict[str, str]) -> dict[str, str]:
    """The bundle's hyperparameters (a record of the script arguments, which reach the script
    through sm_launch.json) in a form the job survives: the SDK's container driver writes each as
    `export SM_HP_<KEY>='<value>'` and sources the file, so a quote in a value or a key that is not
    an identifier would end the job before the script starts; and the API's length limits
    (sagemaker_limits), a longer value cut with an ellipsis: the script gets its arguments whole."""
    entries, key_max, value_max = hyperparameter_limits()
    out: dict[str, str] = {}
    for key, value in hyperparameters.items():
        key = re.sub(r"[^A-Za-z0-9_-]", "_", str(key))[:key_max] or "_"
        value = str(value).replace("'", "\u2019")
        if len(value) > value_max:
            value = value[:value_max - 1] + "\u2026"
        if key not in out and len(out) < entries:
            out[key] = value
    return out


def image_for(bundle: Bundle, config: TrainConfig) -> Image:
    """The training image: the one the plan chose for the bundle, else chosen now (a bundle built
    without a plan), with its requirements checked against it either way."""
    if bundle.image is not None:
        return bundle.image
    return choose_image(config, lambda image: reqs.problems(bundle.requirements, image.python, image.versions))


def stopping_seconds(config: TrainConfig) -> tuple[int, int | None]:
    """(MaxRuntimeInSeconds, MaxWaitTimeInSeconds) as the API accepts them: with spot, the
    default runtime never exceeds max_wait."""
    max_wait = config.max_wait if config.use_spot_instances else None
    max_run = config.max_run or (min(DEFAULT_MAX_RUN, max_wait) if max_wait else DEFAULT_MAX_RUN)
    if max_wait is not None and max_wait < max_run:
        raise BackendError(f"max_wait ({max_wait} s) must be at least max_run ({max_run} s): SageMaker refuses a "
                           "spot job that may wait less than it may run")
    return max_run, max_wait


def entry_command(bundle: Bundle) -> str:
    """The bundle's one command, for SourceCode.command. The SDK splits it on whitespace and runs
    it through `eval` in bash, so it must be plain words; the script's own arguments travel in
    sm_launch.json, never on this line."""
    command = " ".join(bundle.entry_command)
    if not all(re.match(r"^[A-Za-z0-9_./=-]+$", part) for part in bundle.entry_command):
        raise BackendError(f"the bundle's entry command {command!r} is not plain words; it cannot be "
                           "passed through the SDK's shell driver unchanged")
    return command


class QuietHyperparameterWarning(logging.Filter):
    """The SDK warns that hyperparameters are not passed as arguments in command mode: that is
    intended here (the arguments travel in sm_launch.json)."""

    def filter(self, record):
        return not str(record.msg).startswith(_HP_WARNING)


@contextlib.contextmanager
def role_check_skipped(skip: bool):
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


def tensorboard_supported(region: str | None) -> bool:
    """Whether a job in `region` may ask for TensorBoardOutputConfig (SageMaker Debugger's output):
    not in the regions the SDK lists as without Debugger."""
    from sagemaker.core import fw_utils

    return (region or "").lower() not in getattr(fw_utils, "DEBUGGER_UNSUPPORTED_REGIONS", ())


def build_trainer(bundle: Bundle, config: TrainConfig, options: dict, sm_session, role: str,
                  output_path: str, key_prefix: str, inputs: dict[str, str]):
    """The SDK's ModelTrainer for the bundle: source code, compute, stopping condition, networking,
    checkpoints, image, output (TensorBoard's too), inputs, environment, hyperparameters, tags and
    the options that additional_args set (`options["_image"]` is the image URI chosen before)."""
    import_sdk()
    from sagemaker.core import shapes
    from sagemaker.core.training.configs import (
        CheckpointConfig,
        Compute,
        InfraCheckConfig,
        InputData,
        Networking,
        OutputDataConfig,
        RemoteDebugConfig,
        RetryStrategy,
        SessionChainingConfig,
        SourceCode,
        StoppingCondition,
        Tag,
        TensorBoardOutputConfig,
        TrainingImageConfig,
    )
    from sagemaker.train.model_trainer import ModelTrainer

    # With a warm pool the entry command installs the requirements (into the pool's cache), so the
    # SDK's driver is given none: it would install them into the image again on every job.
    own_install = (bundle.path / REQUIREMENTS_FILE).is_file() and not warm_pool(config)
    source = SourceCode(source_dir=str(bundle.path), command=entry_command(bundle),
                        requirements=REQUIREMENTS_FILE if own_install else None)
    compute = Compute(instance_type=config.ec2_instance_type, instance_count=config.num_machines,
                      volume_size_in_gb=options.get("volume_size", 30),
                      volume_kms_key_id=options.get("volume_kms_key"),
                      keep_alive_period_in_seconds=config.keep_alive_period_in_seconds,
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
        environment=sagemaker_environment(config, options.get("environment")),
        hyperparameters=api_hyperparameters(bundle.hyperparameters),
        tags=[Tag(key=k, value=v) for k, v in options.get("tags", [])] or None,
    )
    if bundle.metric_definitions:
        trainer.with_metric_definitions([shapes.MetricDefinition(name=m.name, regex=m.regex)
                                         for m in bundle.metric_definitions])
    # What the script writes under $SM_OUTPUT_DIR/tensorboard is uploaded while it runs, to
    # <output path>/<job>/tensorboard-output/, where the backend reads its scalars (s3_tensorboard).
    # It is Debugger's output, so not where the SDK knows Debugger is missing.
    if tensorboard_supported(config.region):
        trainer.with_tensorboard_output_config(TensorBoardOutputConfig(s3_output_path=output_path,
                                                                       local_path=TENSORBOARD_LOCAL_PATH))
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
