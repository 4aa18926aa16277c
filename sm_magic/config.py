"""TrainConfig: the one launch configuration, read from and written to accelerate's YAML.

The YAML is the file `accelerate config` writes for Amazon SageMaker, so a config saved here
still works with `accelerate launch`, and the Accelerate guide's example loads unchanged.
Layers, later wins: built-in defaults, accelerate's default config file (only when it is a
SageMaker config), `--config FILE`, then the magic's flags (`resolve_config`).
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from .errors import UsageProblem
from .safe_yaml import MAX_YAML_BYTES, YamlRefused, compose_yaml

# What accelerate 1.x itself writes or reads in a config file (BaseConfig, ClusterConfig,
# SageMakerConfig, plus the legacy keys it converts). Keys here that TrainConfig has no field
# for are kept verbatim, so a round trip never drops what accelerate wrote.
ACCELERATE_KEYS = frozenset(
    """compute_environment distributed_type mixed_precision use_cpu debug num_processes
    machine_rank num_machines gpu_ids main_process_ip main_process_port rdzv_backend same_network
    main_training_function enable_cpu_affinity fp8_config deepspeed_config fsdp_config
    parallelism_config megatron_lm_config mpirun_config downcast_bf16 tpu_name tpu_zone
    tpu_use_cluster tpu_use_sudo command_file commands tpu_vm tpu_env dynamo_config
    ec2_instance_type iam_role_name image_uri profile region base_job_name pytorch_version
    transformers_version py_version sagemaker_inputs_file sagemaker_metrics_file additional_args
    fp16 dynamo_backend""".split()
)

# Never stored: a config file is shared and committed; credentials come from the boto3 chain.
CREDENTIAL_KEYS = frozenset(
    {"aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_secret_key", "password"}
)

LOCAL_INSTANCE_TYPES = ("local", "local_gpu", "local_container")
_INSTANCE_TYPE_RE = re.compile(r"^ml\.[a-z0-9][a-z0-9-]*(\.[a-z0-9-]+)+$")  # ml.p6-b200.48xlarge too
_JOB_NAME_PREFIX_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")

FLAGS_LABEL = "the magic's flags"
MAX_RUNTIME_SECONDS = 28 * 24 * 60 * 60  # SageMaker's upper limit on a training job's runtime
# The API sets no maximum on InstanceCount (account quotas do, far lower by default); this bound
# only stops a typo (10000 for 10) from being sent or run.
MAX_INSTANCE_COUNT = 512
MAX_INT = 2**63 - 1  # every integer setting fits a signed 64-bit integer, as the APIs' do
# Script arguments reach the script on its command line (and are recorded as the job's
# hyperparameters): SageMaker's limit on one hyperparameter value, on every backend, and a total
# far below the OS's limit on a command line (ARG_MAX; one argument at most 128 KiB on Linux).
MAX_ARG_CHARS = 2500
MAX_ARGS_TOTAL = 64 * 1024
MAX_ARGS = 1000
# Flag names users type, mapped to accelerate's key names.
ALIASES = {"instance_type": "ec2_instance_type", "instance_count": "num_machines"}


class ConfigError(UsageProblem, ValueError):
    """A config that cannot be used; the message names the file, line and key, and the fix."""


def _group(name: str, label: str | None = None) -> dict:
    """Form metadata: the field's group, and its label where the one derived from the name reads badly."""
    return {"group": name, "label": label} if label else {"group": name}


class TrainConfig(BaseModel):
    """A training job's launch configuration, field names as in accelerate's SageMaker YAML.

    `TrainConfig.from_yaml(path)` / `.to_yaml(path)` read and write that YAML; keys accelerate
    knows but this model has no field for are kept in `extra_keys` and written back.
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
    distributed_type: Literal["NO", "DATA_PARALLEL", "FSDP", "DEEPSPEED", "MODEL_PARALLEL"] = Field(
        "NO", description="NO: one process per host. DATA_PARALLEL: one process per GPU "
        "(two per host on CPU-only hosts), gradients averaged across all hosts. FSDP / DEEPSPEED: "
        "model parallel (parameters sharded across the GPUs of all hosts; GPUs only).",
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
    fsdp_transformer_layer_cls_to_wrap: Optional[str] = Field(
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
    iam_role_name: Optional[str] = Field(None, description="IAM role name or ARN the job runs as.",
                                         json_schema_extra=_group("Compute"))
    profile: Optional[str] = Field(None, description="AWS profile for credentials (never stored here).",
                                   json_schema_extra=_group("Compute", "AWS profile"))
    region: str = Field("us-east-1", description="AWS region.", json_schema_extra=_group("Compute", "AWS region"))
    base_job_name: str = Field(
        "sm-magic", max_length=39, description="Job names are this plus a timestamp.",
        json_schema_extra=_group("Compute"))
    image_uri: Optional[str] = Field(
        None, description="Training image; default: chosen for the instance type (the newest Hugging Face "
        "PyTorch training image that runs on its GPU and installs the job's requirements; a PyTorch CPU "
        "image without a GPU).", json_schema_extra=_group("Software versions"))
    pytorch_version: Optional[str] = Field(
        None, description="PyTorch version of the training image (default: the newest that fits).",
        json_schema_extra=_group("Software versions"))
    transformers_version: Optional[str] = Field(
        None, description="Transformers version of the Hugging Face training image (default: the newest "
        "that fits).", json_schema_extra=_group("Software versions"))
    py_version: Optional[str] = Field(
        None, description="Python version tag of the training image, e.g. py312 (default: the newest that fits).",
        json_schema_extra=_group("Software versions"))
    sagemaker_inputs_file: Optional[str] = Field(
        None, description="TSV of input channels (header line, then name<TAB>uri).",
        json_schema_extra=_group("Advanced"))
    sagemaker_metrics_file: Optional[str] = Field(
        None, description="TSV of metric definitions (header line, then name<TAB>regex).",
        json_schema_extra=_group("Advanced"))
    use_spot_instances: bool = Field(
        False, description="Run on spot capacity (cheaper, may be interrupted; resume from checkpoints).",
        json_schema_extra={"group": "Spot & checkpoints", "yaml": "additional_args"})
    max_run: Optional[int] = Field(
        None, ge=1, description="Stop the job after this many seconds of training "
        "(MaxRuntimeExceeded; at most 28 days, the API's limit).",
        json_schema_extra={"group": "Spot & checkpoints", "yaml": "additional_args", "label": "Maximum run time (s)"})
    max_wait: Optional[int] = Field(
        None, ge=1, description="Spot only: give up after this many seconds, waiting included "
        "(at least max_run).", json_schema_extra={"group": "Spot & checkpoints", "yaml": "additional_args",
                                          "label": "Maximum wait time (s)", "shown_if": {"use_spot_instances": True}})
    checkpoint_s3_uri: Optional[str] = Field(
        None, description="Where checkpoints are kept between interruptions (default: under the "
        "job's output path).", json_schema_extra={"group": "Spot & checkpoints", "yaml": "additional_args"})
    checkpoint_local_path: Optional[str] = Field(
        None, description="Checkpoint directory inside the container (default /opt/ml/checkpoints).",
        json_schema_extra={"group": "Spot & checkpoints", "yaml": "additional_args"})
    additional_args: dict[str, Any] = Field(
        default_factory=dict, description="Extra training-job arguments (use_spot_instances, "
        "max_wait, max_run, enable_network_isolation, ...).", json_schema_extra=_group("Advanced"))
    debug: bool = Field(False, description="Accelerate's debug mode.", json_schema_extra=_group("Advanced"))
    dynamo_config: Optional[dict[str, Any]] = Field(
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
                     "deepspeed_gradient_accumulation_steps", "max_run", "max_wait", mode="before")
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
        data = dict(data)
        extra = dict(data.get("extra_keys") or {})
        for parent, fields in NESTED.items():
            holder = data if parent in cls.model_fields else extra
            nested = holder.get(parent)
            if not isinstance(nested, dict):
                continue
            keys = {nested_key(parent, f): f for f in fields}
            rest = {k: v for k, v in nested.items() if k not in keys}
            if rest or holder is data:
                holder[parent] = rest
            else:
                del holder[parent]
            for key, field in keys.items():
                if key in nested:
                    data.setdefault(field, nested[key])
        if "extra_keys" in data or extra:
            data["extra_keys"] = extra
        return data

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
        """Read one accelerate config file (defaults for the keys it lacks)."""
        return resolve_config(config_file=path, use_accelerate_default=False)

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        """The config as accelerate YAML; written atomically to `path` when given. No credentials."""
        data = self.model_dump(mode="json")
        data.update(self.extra_keys)
        data = _without_credentials(data)
        # Back where accelerate keeps them: spot settings in additional_args (always present),
        # FSDP / DeepSpeed settings in their section when that mode is chosen or they were changed.
        for parent, fields in NESTED.items():
            nested = _without_credentials(data.get(parent) or {})
            for field in fields:
                value = data.pop(field)
                default = TrainConfig.model_fields[field].default
                if parent == "additional_args" and value not in (None, False):
                    nested[nested_key(parent, field)] = value
                elif parent != "additional_args" and value is not None and (
                        value != default or self.distributed_type == NESTED_MODE[parent]):
                    nested[nested_key(parent, field)] = value
            if nested or parent == "additional_args":
                data[parent] = nested
        text = yaml.safe_dump(data, sort_keys=True, default_flow_style=False)
        if path is not None:
            _atomic_write(Path(path), text)
        return text

    @property
    def backend(self) -> str:
        """The backend this config selects when no --backend is given."""
        if self.ec2_instance_type in ("local", "local_gpu"):
            return "local"
        if self.ec2_instance_type == "local_container":
            return "local-container"
        return "sagemaker"


# Fields that the YAML nests under another key: {parent key: (field names)}.
NESTED = {parent: tuple(name for name, f in TrainConfig.model_fields.items()
                        if (f.json_schema_extra or {}).get("yaml") == parent)
          for parent in ("additional_args", "fsdp_config", "deepspeed_config")}
LIFTED_ARGS = NESTED["additional_args"]  # the training job's own arguments
NESTED_MODE = {"fsdp_config": "FSDP", "deepspeed_config": "DEEPSPEED"}  # the mode a section belongs to


def nested_key(parent: str, field: str) -> str:
    """accelerate's key inside the section: fsdp_* keep their prefix, deepspeed_* drop it."""
    return field.removeprefix("deepspeed_") if parent == "deepspeed_config" else field


def _without_credentials(data: dict) -> dict:
    return {k: v for k, v in data.items() if str(k).lower() not in CREDENTIAL_KEYS}


def _legacy_keys(values: dict) -> dict:
    """Convert the keys old accelerate versions wrote, as accelerate's process_config does."""
    values = dict(values)
    if "fp16" in values:
        fp16 = values.pop("fp16")
        values.setdefault("mixed_precision", "fp16" if fp16 else "no")
    if "dynamo_backend" in values:
        backend = values.pop("dynamo_backend")
        values.setdefault("dynamo_config", None if backend == "NO" else {"dynamo_backend": backend})
    return values


def accelerate_default_config_path() -> Path:
    """Where `accelerate config` saves, computed as accelerate does (no accelerate import)."""
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(os.path.expanduser(home)) / "accelerate" / "default_config.yaml"


def cache_home() -> Path:
    """Where sm_magic keeps what it may fetch again (wheels, downloaded inputs): $SM_MAGIC_CACHE,
    else ~/.cache/sm_magic."""
    root = os.environ.get("SM_MAGIC_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache",
                                                             "sm_magic")
    return Path(os.path.expanduser(root))


class _Layer:
    """One source of keys: its label for messages, its values and the line of each key."""

    def __init__(self, label: str, values: dict, lines: dict | None = None):
        self.label, self.values, self.lines = label, values, lines or {}

    def where(self, key: str) -> str:
        line = self.lines.get(key)
        return f"{self.label} line {line}" if line else self.label


_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16",
         b"\xfe\xff": "UTF-16"}


def read_text_file(path: Path, what: str, limit: int = MAX_YAML_BYTES) -> str:
    """A small text file's text, UTF-8 only (a UTF-8 BOM is dropped); ConfigError naming the file
    for a file that is missing, unreadable, too large or not UTF-8 text."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist: check the path, or run "
                          "`%sagemaker_config` to see which config is in use") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a directory: give the file's path") from None
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if len(data) > limit:
        raise ConfigError(f"{what} {path} is larger than {limit // 1024} KiB: a config file is a few hundred "
                          "bytes; check that this is the file you meant")
    encoding = next((name for bom, name in _BOMS.items() if data.startswith(bom)), None)
    if encoding is None and b"\0" in data:
        raise ConfigError(f"{what} {path} is not UTF-8 text (it holds NUL bytes: a binary file, or UTF-16 or "
                          "UTF-32 text): save it as UTF-8 and try again")
    try:
        if encoding is None:
            return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {e.start + 1}, line {line}): save it as "
                          "UTF-8 and try again") from None
    raise ConfigError(f"{what} {path} is {encoding} text: save it as UTF-8 and try again")


def _read_yaml_layer(path: Path) -> _Layer:
    label = str(path)
    text = read_text_file(path, "config file")
    try:
        values, node = compose_yaml(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        if isinstance(e, YamlRefused):
            raise ConfigError(f"{label}{where}: {problem}; fix the file and run the cell again") from None
        raise ConfigError(f"{label}{where}: not valid YAML ({problem}); fix the file and run the cell again") from None
    if values is None:
        return _Layer(label, {})
    if not isinstance(values, dict):
        raise ConfigError(f"{label}: expected a mapping of keys (like `ec2_instance_type: ml.p3.2xlarge`), "
                          f"found a {type(values).__name__}")
    lines = {k.value: k.start_mark.line + 1 for k, _ in node.value} if isinstance(node, yaml.MappingNode) else {}
    for old, new in (("fp16", "mixed_precision"), ("dynamo_backend", "dynamo_config")):
        if old in lines:
            lines.setdefault(new, lines[old])
    return _Layer(label, _legacy_keys(values), lines)


def _check_keys(layer: _Layer) -> dict:
    """Split a layer into field values and extra keys; refuse misspellings and credentials."""
    fields = set(TrainConfig.model_fields) - {"extra_keys"}
    known = fields | ACCELERATE_KEYS
    values, extra = {}, {}
    for key, value in layer.values.items():
        key = str(key)
        if key.lower() in CREDENTIAL_KEYS:
            raise ConfigError(f"{layer.where(key)}: `{key}` is a credential and never goes in a config "
                              "file; remove it and use `profile` or the AWS environment variables")
        if key in fields:
            values[key] = value
        elif key in ACCELERATE_KEYS:
            extra[key] = value
        else:
            close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
            if close:
                raise ConfigError(f"{layer.where(key)}: unknown key `{key}`; did you mean `{close[0]}`?")
            warnings.warn(f"{layer.where(key)}: key `{key}` is not one sm_magic knows; kept as it is "
                          "(a newer accelerate version may use it)", stacklevel=3)
            extra[key] = value
    return {"values": values, "extra": extra}


def resolve_config(config_file: str | os.PathLike | None = None, overrides: dict | None = None,
                   *, use_accelerate_default: bool = True, base: TrainConfig | None = None) -> TrainConfig:
    """The effective config: defaults (or `base`), accelerate's SageMaker default config,
    `config_file`, then `overrides` (flag values; None means "not given")."""
    layers: list[_Layer] = []
    if base is not None:
        layers.append(_Layer("the given config", {**base.model_dump(), **base.extra_keys}))
    elif use_accelerate_default:
        default = accelerate_default_config_path()
        if default.is_file():
            layer = _read_yaml_layer(default)
            if layer.values.get("compute_environment") == "AMAZON_SAGEMAKER":
                layers.append(layer)
    if config_file is not None:
        layer = _read_yaml_layer(Path(config_file))
        env = layer.values.get("compute_environment", "AMAZON_SAGEMAKER")
        if env != "AMAZON_SAGEMAKER":
            raise ConfigError(f"{layer.where('compute_environment')}: this is an accelerate config for "
                              f"compute_environment {env}; sm_magic runs SageMaker configs (answer "
                              "'AWS (Amazon SageMaker)' in `accelerate config`, or use `%sagemaker_config --edit`)")
        layers.append(layer)
    if overrides:
        flags = {ALIASES.get(k, k): v for k, v in overrides.items() if v is not None}
        layers.append(_Layer(FLAGS_LABEL, flags))

    merged, extra, origin = {}, {}, {}
    for layer in layers:
        split = _check_keys(layer)
        for key in split["values"]:
            origin[key] = layer
        merged.update(split["values"])
        extra.update(split["extra"])
    try:
        return TrainConfig(**merged, extra_keys=extra)
    except ValidationError as e:
        raise ConfigError(_explain(e, merged, origin)) from None


def _explain(error: ValidationError, values: dict, origin: dict) -> str:
    problems = []
    for item in error.errors():
        if not item["loc"]:  # a rule across fields names them in its message
            problems.append(item["msg"].removeprefix("Value error, "))
            continue
        key = str(item["loc"][0])
        layer = origin.get(key) or (origin.get("additional_args") if key in LIFTED_ARGS else None)
        msg = item["msg"].removeprefix("Value error, ")
        shown = key in values and "got" not in msg and not isinstance(values[key], dict)  # dicts may hold secrets
        got = f" (got {_shown(values[key])})" if shown else ""
        where = f"{layer.where(key)}: {key}" if layer else key
        if layer is not None and layer.label == FLAGS_LABEL:
            where = "--" + next((a for a, k in ALIASES.items() if k == key), key).replace("_", "-")
        problems.append(f"{where}: {msg}{got}")
    return "invalid config: " + "; ".join(problems)


def _shown(value, limit: int = 80) -> str:
    """A value as a message quotes it: its repr, cut short."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to convert
        text = f"a {type(value).__name__} too long to show"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_script_args(args) -> list[str]:
    """The script's arguments as strings, each checked: they reach the script on its command line
    and are recorded as hyperparameters, on every backend, so the same cell runs on all of them.
    ConfigError, before anything is written, for an argument with a NUL byte or a character that
    is no text (a lone surrogate), one longer than MAX_ARG_CHARS, more than MAX_ARGS of them, or
    more than MAX_ARGS_TOTAL bytes in all."""
    if isinstance(args, (str, bytes)):
        raise ConfigError(f"script arguments: give a list of strings, e.g. ['--epochs', '3'], not one "
                          f"{type(args).__name__} ({_shown(args, 40)}); shlex.split() splits a command line")
    out = [a if isinstance(a, str) else str(a) for a in args]
    if len(out) > MAX_ARGS:
        raise ConfigError(f"{len(out)} script arguments: at most {MAX_ARGS}; put the settings in a file the script "
                          "reads (--include FILE) instead")
    total = 0
    for number, arg in enumerate(out, start=1):
        where = f"script argument {number} ({_shown(arg, 40)})"
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


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
