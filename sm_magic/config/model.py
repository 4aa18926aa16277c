"""TrainConfig: the one launch configuration, field names as in accelerate's SageMaker YAML.

The form is derived from its fields and the magic's flags override them, so each setting, its
limits and the message for a bad value are written once, here. Reading and layering config files
is layers.py and resolve.py; where accelerate nests settings in its YAML is accelerate_yaml.py.
"""

from __future__ import annotations

import math
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .accelerate_yaml import CREDENTIAL_KEYS, lift_sections, nest_sections, without_credentials
from .files import atomic_write
from .layers import ConfigError, build, config_file_layer, short_repr

LOCAL_INSTANCE_TYPES = ("local", "local_gpu", "local_container")
_INSTANCE_TYPE_RE = re.compile(r"^ml\.[a-z0-9][a-z0-9-]*(\.[a-z0-9-]+)+$")  # ml.p6-b200.48xlarge too
_JOB_NAME_PREFIX_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")

MAX_RUNTIME_SECONDS = 28 * 24 * 60 * 60  # SageMaker's upper limit on a training job's runtime
# The API sets no maximum on InstanceCount (account quotas do, far lower by default); this bound
# only stops a typo (10000 for 10) from being sent or run.
MAX_INSTANCE_COUNT = 512
# ResourceConfig.KeepAlivePeriodInSeconds: botocore's model of the API allows 0 to 21600 s
# (tests/test_warm_pool.py keeps this equal to the installed model's bound).
MAX_KEEP_ALIVE_SECONDS = 21600
MAX_INT = 2**63 - 1  # every integer setting fits a signed 64-bit integer, as the APIs' do
# Script arguments reach the script on its command line (and are recorded as the job's
# hyperparameters): SageMaker's limit on one hyperparameter value, on every backend, and a total
# far below the OS's limit on a command line (ARG_MAX; one argument at most 128 KiB on Linux).
MAX_ARG_CHARS = 2500
MAX_ARGS_TOTAL = 64 * 1024
MAX_ARGS = 1000


def _group(name: str, label: str | None = None) -> dict:
    """Form metadata: the field's group, and its label where the one derived from the name reads badly."""
    return {"group": name, "label": label} if label else {"group": name}


class TrainConfig(BaseModel):
    """A training job's launch configuration, field names as in accelerate's SageMaker YAML.

    The one source of every setting: `%sagemaker_config --edit` shows its fields, the magic's
    flags and `sm_magic.launch(..., **overrides)` override them, and `from_yaml` / `to_yaml` read
    and write the file `accelerate config` writes. Keys accelerate knows but this model has no
    field for are kept in `extra_keys` and written back. Every value is checked when the config is
    made and when a field is assigned; docs/config.md lists the fields.

    Args:
        **fields: any of the fields by name (`ec2_instance_type`, `num_machines`,
            `distributed_type`, `mixed_precision`, `iam_role_name`, `region`, ...); the rest keep
            their defaults. `ec2_instance_type` "local" (the default) runs on this machine,
            "local_container" in the SDK's Docker local mode, an `ml.*` type on SageMaker.

    Raises:
        pydantic.ValidationError: a value that cannot be used, or an unknown field (a
            ValueError; `from_yaml` turns it into a ConfigError naming the file and line).

    Example:
        config = TrainConfig(ec2_instance_type="ml.g5.xlarge", iam_role_name="SageMakerRole")
        job = sm_magic.launch(source, config=config)
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    compute_environment: Literal["AMAZON_SAGEMAKER"] = Field(
        "AMAZON_SAGEMAKER", description="Accelerate's compute environment; always Amazon SageMaker here.",
        json_schema_extra=_group("Compute"))
    ec2_instance_type: str = Field(
        "local", description="Instance type (ml.p3.16xlarge, ...); 'local' runs on this machine, "
        "'local_container' in the SDK's Docker local mode.", json_schema_extra=_group("Compute", "Instance type"))
    num_machines: int = Field(1, ge=1, description="Number of instances (hosts).",
                              json_schema_extra=_group("Compute", "Number of machines"))
    use_cpu: bool = Field(False, description="Train on CPU even where a GPU is present.",
                          json_schema_extra=_group("Compute"))
    gpu_ids: str = Field("all", description="GPUs to use on each host ('all' or a list like '0,1').",
                         json_schema_extra=_group("Compute"))
    distributed_type: Literal["NO", "DATA_PARALLEL", "FSDP", "DEEPSPEED", "MODEL_PARALLEL"] | None = Field(
        None, description="Unset: every GPU trains, as with plain `accelerate launch` (data parallel on a "
        "host with several GPUs or with several hosts, else one process). NO: one process per host. "
        "DATA_PARALLEL: one process per GPU (two per host on CPU-only hosts), gradients averaged across "
        "all hosts. FSDP / DEEPSPEED: model parallel (parameters sharded across the GPUs of all hosts; "
        "GPUs only).",
        json_schema_extra=_group("Distributed"))
    fsdp_sharding_strategy: Literal["FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD",
                                    "HYBRID_SHARD_ZERO2"] = Field(
        "FULL_SHARD", description="FSDP: what is sharded (FULL_SHARD: parameters, gradients and "
        "optimizer state; SHARD_GRAD_OP: gradients and optimizer state; HYBRID_*: within a host).",
        json_schema_extra={"group": "Distributed", "yaml": "fsdp_config"})
    fsdp_auto_wrap_policy: Literal["TRANSFORMER_BASED_WRAP", "SIZE_BASED_WRAP", "NO_WRAP"] = Field(
        "TRANSFORMER_BASED_WRAP", description="FSDP: which submodules become FSDP units (transformer "
        "layers, modules over a size, or the whole model).",
        json_schema_extra={"group": "Distributed", "yaml": "fsdp_config"})
    fsdp_transformer_layer_cls_to_wrap: str | None = Field(
        None, description="FSDP, TRANSFORMER_BASED_WRAP: layer class names, comma-separated "
        "(default: the model's own _no_split_modules).",
        json_schema_extra={"group": "Distributed", "yaml": "fsdp_config", "label": "FSDP transformer layer class"})
    fsdp_min_num_params: int = Field(
        100_000_000, ge=0, description="FSDP, SIZE_BASED_WRAP: parameters a module needs to be wrapped.",
        json_schema_extra={"group": "Distributed", "yaml": "fsdp_config", "label": "FSDP minimum module size"})
    fsdp_state_dict_type: Literal["FULL_STATE_DICT", "SHARDED_STATE_DICT", "LOCAL_STATE_DICT"] = Field(
        "FULL_STATE_DICT", description="FSDP: how checkpoints and the model are saved (FULL: one "
        "ordinary state dict; SHARDED: one shard per process, faster for large models).",
        json_schema_extra={"group": "Distributed", "yaml": "fsdp_config"})
    fsdp_offload_params: bool = Field(
        False, description="FSDP: keep parameters and gradients in CPU memory between uses.",
        json_schema_extra={"group": "Distributed", "yaml": "fsdp_config"})
    deepspeed_zero_stage: int = Field(
        2, ge=0, le=3, description="DeepSpeed ZeRO stage (1: optimizer state, 2: and gradients, "
        "3: and parameters sharded).", json_schema_extra={"group": "Distributed", "yaml": "deepspeed_config"})
    deepspeed_offload_optimizer_device: Literal["none", "cpu", "nvme"] = Field(
        "none", description="DeepSpeed: where optimizer state is offloaded.",
        json_schema_extra={"group": "Distributed", "yaml": "deepspeed_config"})
    deepspeed_offload_param_device: Literal["none", "cpu", "nvme"] = Field(
        "none", description="DeepSpeed ZeRO-3: where parameters are offloaded.",
        json_schema_extra={"group": "Distributed", "yaml": "deepspeed_config"})
    deepspeed_gradient_accumulation_steps: int = Field(
        1, ge=1, description="DeepSpeed: micro-batches per optimizer step.",
        json_schema_extra={"group": "Distributed", "yaml": "deepspeed_config"})
    mixed_precision: Literal["no", "fp16", "bf16", "fp8"] = Field(
        "no", description="Mixed precision mode passed to accelerate (fp16 needs a GPU; on a "
        "CPU-only host the local backend runs fp32 and says so).", json_schema_extra=_group("Distributed"))
    iam_role_name: str | None = Field(None, description="IAM role name or ARN the job runs as.",
                                         json_schema_extra=_group("Compute"))
    profile: str | None = Field(None, description="AWS profile for credentials (never stored here).",
                                   json_schema_extra=_group("Compute", "AWS profile"))
    region: str = Field("us-east-1", description="AWS region.", json_schema_extra=_group("Compute", "AWS region"))
    base_job_name: str = Field(
        "sm-magic", max_length=39, description="Job names are this plus a timestamp.",
        json_schema_extra=_group("Compute"))
    image_uri: str | None = Field(
        None, description="Training image; default: chosen for the instance type (the newest Hugging Face "
        "PyTorch training image that runs on its GPU and installs the job's requirements; a PyTorch CPU "
        "image without a GPU).", json_schema_extra=_group("Software versions"))
    pytorch_version: str | None = Field(
        None, description="PyTorch version of the training image (default: the newest that fits).",
        json_schema_extra=_group("Software versions"))
    transformers_version: str | None = Field(
        None, description="Transformers version of the Hugging Face training image (default: the newest "
        "that fits).", json_schema_extra=_group("Software versions"))
    py_version: str | None = Field(
        None, description="Python version tag of the training image, e.g. py312 (default: the newest that fits).",
        json_schema_extra=_group("Software versions"))
    sagemaker_inputs_file: str | None = Field(
        None, description="TSV of input channels (header line, then name<TAB>uri).",
        json_schema_extra=_group("Advanced"))
    sagemaker_metrics_file: str | None = Field(
        None, description="TSV of metric definitions (header line, then name<TAB>regex).",
        json_schema_extra=_group("Advanced"))
    use_spot_instances: bool = Field(
        False, description="Run on spot capacity (cheaper, may be interrupted; resume from checkpoints).",
        json_schema_extra={"group": "Spot & checkpoints", "yaml": "additional_args"})
    max_run: int | None = Field(
        None, ge=1, description="Stop the job after this many seconds of training "
        "(MaxRuntimeExceeded; at most 28 days, the API's limit).",
        json_schema_extra={"group": "Spot & checkpoints", "yaml": "additional_args", "label": "Maximum run time (s)"})
    max_wait: int | None = Field(
        None, ge=1, description="Spot only: give up after this many seconds, waiting included "
        "(at least max_run).", json_schema_extra={"group": "Spot & checkpoints", "yaml": "additional_args",
                                          "label": "Maximum wait time (s)", "shown_if": {"use_spot_instances": True}})
    checkpoint_s3_uri: str | None = Field(
        None, description="Where checkpoints are kept between interruptions (default: under the "
        "job's output path).", json_schema_extra={"group": "Spot & checkpoints", "yaml": "additional_args"})
    checkpoint_local_path: str | None = Field(
        None, description="Checkpoint directory inside the container (default /opt/ml/checkpoints).",
        json_schema_extra={"group": "Spot & checkpoints", "yaml": "additional_args"})
    keep_alive_period_in_seconds: int | None = Field(
        None, ge=0, description="SageMaker only: keep the instances this many seconds after the job "
        "(a warm pool) for the next matching job, which then starts without provisioning and reuses the "
        "requirements installed in the pool's cache (at most 21600; billed while kept).",
        json_schema_extra={"group": "Compute", "yaml": "additional_args", "label": "Warm pool keep-alive (s)"})
    max_cost: float | None = Field(
        None, gt=0, description="SageMaker only: refuse a launch whose worst case (instances x on-demand "
        "price x max_run) is above this many US dollars; the price is an estimate (AWS Price List API, "
        "else sm_magic's table), and a launch whose price is unknown is refused too.",
        json_schema_extra={"group": "Compute", "yaml": "additional_args", "label": "Maximum cost (USD)"})
    additional_args: dict[str, Any] = Field(
        default_factory=dict, description="Extra training-job arguments (use_spot_instances, "
        "max_wait, max_run, enable_network_isolation, ...).", json_schema_extra=_group("Advanced"))
    debug: bool = Field(False, description="Accelerate's debug mode.", json_schema_extra=_group("Advanced"))
    dynamo_config: dict[str, Any] | None = Field(
        None, description="torch.compile settings, as accelerate writes them.",
        json_schema_extra=_group("Advanced", "torch.compile (dynamo) config"))
    enable_cpu_affinity: bool = Field(False, description="Pin processes to CPU cores.",
                                      json_schema_extra=_group("Advanced"))
    extra_keys: dict[str, Any] = Field(
        default_factory=dict, exclude=True,
        description="Keys from the YAML with no field here, written back unchanged.")

    @field_validator("distributed_type", mode="before")
    @classmethod
    def _upper(cls, v):
        if v is False:  # YAML 1.1 reads an unquoted NO as false
            return "NO"
        return v.upper() if isinstance(v, str) else v

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _precision(cls, v):
        if v is None or v is False:
            return "no"
        return v.lower() if isinstance(v, str) else v

    @field_validator("ec2_instance_type")
    @classmethod
    def _instance_type(cls, v: str) -> str:
        if v in LOCAL_INSTANCE_TYPES or _INSTANCE_TYPE_RE.fullmatch(v):
            return v
        raise ValueError(
            f"'{v}' is not an instance type: use an ml.* type such as ml.p3.2xlarge, "
            f"or one of {', '.join(LOCAL_INSTANCE_TYPES)}")

    @field_validator("num_machines", "fsdp_min_num_params", "deepspeed_zero_stage",
                     "deepspeed_gradient_accumulation_steps", "max_run", "max_wait", "keep_alive_period_in_seconds",
                     mode="before")
    @classmethod
    def _whole_number(cls, v, info: ValidationInfo):
        """A count or a number of seconds, from a flag, YAML or Python: true/false and fractions
        are refused with a plain message (pydantic would take true as 1), a whole float or a
        number written as text (YAML reads `1e29` as a string) is the integer it says, and a
        number beyond every API's integers is refused."""
        if isinstance(v, bool):
            raise ValueError(f"expected a whole number, got {str(v).lower()}")
        if isinstance(v, str) and len(v) <= 40:
            try:
                v = float(v) if not v.strip().lstrip("+-").isdigit() else int(v)
            except ValueError:
                return v  # pydantic says what it expected
        if isinstance(v, float):
            if not (math.isfinite(v) and v.is_integer()):
                raise ValueError(f"expected a whole number, got {v!r}")
            v = int(v)
        if isinstance(v, int) and info.field_name not in ("max_run", "max_wait") and v > MAX_INT:
            raise ValueError(f"at most {MAX_INT}")
        return v

    @field_validator("num_machines")
    @classmethod
    def _instance_limit(cls, v: int) -> int:
        if v > MAX_INSTANCE_COUNT:
            raise ValueError(f"at most {MAX_INSTANCE_COUNT} instances (got {v}); an account's SageMaker quota is "
                             "far lower unless raised, so a count this large is taken for a typo")
        return v

    @field_validator("max_run", "max_wait")
    @classmethod
    def _api_limit(cls, v):
        if v is not None and v > MAX_RUNTIME_SECONDS:
            raise ValueError(f"at most {MAX_RUNTIME_SECONDS} s (28 days), SageMaker's limit")
        return v

    @field_validator("keep_alive_period_in_seconds")
    @classmethod
    def _keep_alive_limit(cls, v):
        if v is not None and v > MAX_KEEP_ALIVE_SECONDS:
            raise ValueError(f"at most {MAX_KEEP_ALIVE_SECONDS} s ({MAX_KEEP_ALIVE_SECONDS // 60} minutes), "
                             "SageMaker's limit on ResourceConfig.KeepAlivePeriodInSeconds")
        return v

    @field_validator("py_version")
    @classmethod
    def _py_tag(cls, v):
        if v is not None and not re.fullmatch(r"py3\d{1,2}", v):
            raise ValueError(f"'{v}' is not a Python version tag: write it as the images do, e.g. py312")
        return v

    @field_validator("base_job_name")
    @classmethod
    def _job_prefix(cls, v: str) -> str:
        if not _JOB_NAME_PREFIX_RE.fullmatch(v):
            raise ValueError(f"'{v}' is not a valid job name prefix: letters, digits and inner hyphens only")
        return v

    @field_validator("additional_args", "extra_keys", mode="before")
    @classmethod
    def _args(cls, v):
        if v is None:
            return {}
        if isinstance(v, dict):
            found = sorted(CREDENTIAL_KEYS & {str(k).lower() for k in v})
            if found:
                raise ValueError(f"credentials ({', '.join(found)}) never go in a config: "
                                 "use `profile` or the AWS environment variables")
        return v

    @model_validator(mode="before")
    @classmethod
    def _lift_nested(cls, data):
        """Settings that accelerate nests (spot and checkpoints inside additional_args, the
        training job's arguments; FSDP inside fsdp_config; DeepSpeed inside deepspeed_config)
        become the typed fields."""
        if not isinstance(data, dict):
            return data
        return lift_sections(data, NESTED, cls.model_fields)

    @model_validator(mode="after")
    def _spot(self) -> "TrainConfig":
        if self.max_wait is not None and not self.use_spot_instances:
            raise ValueError("max_wait applies to spot jobs only: set use_spot_instances, or remove max_wait")
        if self.max_wait is not None and self.max_run is not None and self.max_wait < self.max_run:
            raise ValueError(f"max_wait ({self.max_wait} s) must be at least max_run ({self.max_run} s)")
        return self

    # -- YAML in and out ---------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "TrainConfig":
        """Read one accelerate config file: the YAML `accelerate config` writes for
        `compute_environment: AMAZON_SAGEMAKER`, or one `to_yaml` wrote.

        Keys the file lacks keep their defaults (accelerate's own default config is not read).
        Nested sections are lifted into the fields (spot and checkpoint settings in
        `additional_args`, `fsdp_config`, `deepspeed_config`); a key with no field here is kept
        in `extra_keys` (one accelerate does not write either, with a warning: a newer version
        may use it).

        Args:
            path: the YAML file.

        Returns:
            The config the file describes.

        Raises:
            ConfigError: the file is missing, unreadable, larger than a config file can be, not
                UTF-8 or not YAML; it is for another compute environment; a key is misspelt (the
                message names the closest valid one) or holds a credential; or a value is invalid.
                The message names the file and, where there is one, the line and the key.

        Example:
            config = TrainConfig.from_yaml("sagemaker.yaml")
            config.num_machines = 2
        """
        return build(cls, [config_file_layer(Path(path))], LIFTED_ARGS)

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        """The config as accelerate YAML, the file `accelerate launch` and `from_yaml` read.

        Keys sorted, nested sections as accelerate nests them, `extra_keys` written back; no
        credentials (`profile` names a profile, never a key). The file is written whole or not at
        all: a reader never sees half of it, and an interrupted save leaves the old one.

        Args:
            path: where to write it (its directory is made if missing); None: only return the text.

        Returns:
            The YAML text (also when it was written to `path`).

        Example:
            config.to_yaml("sagemaker.yaml")
            print(config.to_yaml())
        """
        text = yaml.safe_dump(self._yaml_data(), sort_keys=True, default_flow_style=False)
        if path is not None:
            atomic_write(Path(path), text)
        return text

    def shown_yaml(self) -> str:
        """to_yaml's text as it is shown (`%sagemaker_config`, dry runs): credentials in it, such
        as an access key in additional_args.environment, masked (masking.py)."""
        from .masking import masked

        return yaml.safe_dump(masked(self._yaml_data()), sort_keys=True, default_flow_style=False)

    def secrets(self) -> list[str]:
        """Where the config holds a credential and what kind (`additional_args.environment.HF_TOKEN:
        a Hugging Face token`), never the credential itself."""
        from .masking import secrets_in

        return secrets_in(self._yaml_data())

    def _yaml_data(self) -> dict:
        data = self.model_dump(mode="json")
        data.update(self.extra_keys)
        return nest_sections(without_credentials(data), NESTED, _NESTED_DEFAULTS, self.distributed_type)

    @property
    def backend(self) -> str:
        """The backend this config selects when no --backend is given."""
        if self.ec2_instance_type in ("local", "local_gpu"):
            return "local"
        if self.ec2_instance_type == "local_container":
            return "local-container"
        return "sagemaker"


def unwrap_optional(annotation) -> tuple[Any, bool]:
    """(X, True) for a field annotated `X | None`, else (the annotation, False)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0], True
    return annotation, False


def field_extra(name: str) -> dict:
    """A field's own metadata: its "group", "label", the "yaml" section it is nested under, ..."""
    extra = TrainConfig.model_fields[name].json_schema_extra
    return extra if isinstance(extra, dict) else {}


# Fields that the YAML nests under another key: {parent key: (field names)}, read from each
# field's "yaml" metadata so the form and the YAML agree.
NESTED = {parent: tuple(name for name in TrainConfig.model_fields if field_extra(name).get("yaml") == parent)
          for parent in ("additional_args", "fsdp_config", "deepspeed_config")}
LIFTED_ARGS = NESTED["additional_args"]  # the training job's own arguments
_NESTED_DEFAULTS = {name: TrainConfig.model_fields[name].default for names in NESTED.values() for name in names}


def check_script_args(args) -> list[str]:
    """The script's arguments as strings, each checked: they reach the script on its command line
    and are recorded as hyperparameters, on every backend, so the same cell runs on all of them.
    ConfigError, before anything is written, for an argument with a NUL byte or a character that
    is no text (a lone surrogate), one longer than MAX_ARG_CHARS, more than MAX_ARGS of them, or
    more than MAX_ARGS_TOTAL bytes in all."""
    if isinstance(args, (str, bytes)):
        raise ConfigError(f"script arguments: give a list of strings, e.g. ['--epochs', '3'], not one "
                          f"{type(args).__name__} ({short_repr(args, 40)}); shlex.split() splits a command line")
    out = [a if isinstance(a, str) else str(a) for a in args]
    if len(out) > MAX_ARGS:
        raise ConfigError(f"{len(out)} script arguments: at most {MAX_ARGS}; put the settings in a file the script "
                          "reads (--include FILE) instead")
    total = 0
    for number, arg in enumerate(out, start=1):
        where = f"script argument {number} ({short_repr(arg, 40)})"
        if "\0" in arg:
            raise ConfigError(f"{where} holds a NUL byte, which no command line can carry: remove it")
        try:
            size = len(arg.encode("utf-8"))
        except UnicodeEncodeError as e:
            raise ConfigError(f"{where} holds {arg[e.start]!r} at character {e.start + 1}, which is not text "
                              "(a lone surrogate): remove it") from None
        if len(arg) > MAX_ARG_CHARS:
            raise ConfigError(f"{where} is {len(arg)} characters long: at most {MAX_ARG_CHARS} per argument "
                              "(SageMaker's limit on a hyperparameter value, applied on every backend); pass "
                              "large values in a file the script reads (--include FILE, or an --input channel)")
        total += size + 1
    if total > MAX_ARGS_TOTAL:
        raise ConfigError(f"the script arguments are {total} bytes in all: at most {MAX_ARGS_TOTAL} (a command line "
                          "has a limit); pass large values in a file the script reads (--include FILE)")
    return out
