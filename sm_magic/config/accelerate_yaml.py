"""Accelerate's config YAML as accelerate writes it: the keys it knows, the keys it used to write,
and the sections it nests settings in (`additional_args`, `fsdp_config`, `deepspeed_config`).

TrainConfig keeps every setting as a flat, typed field; these functions map between that flat
form and accelerate's nesting, so a file saved here still works with `accelerate launch`.
Which field sits in which section is declared on the field (`json_schema_extra["yaml"]`), so the
section table is passed in rather than written twice.
"""

from __future__ import annotations

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

NESTED_MODE = {"fsdp_config": "FSDP", "deepspeed_config": "DEEPSPEED"}  # the mode a section belongs to


def nested_key(parent: str, field: str) -> str:
    """accelerate's key inside the section: fsdp_* keep their prefix, deepspeed_* drop it."""
    return field.removeprefix("deepspeed_") if parent == "deepspeed_config" else field


def without_credentials(data: dict) -> dict:
    """`data` less any key that names a credential (in any case)."""
    return {k: v for k, v in data.items() if str(k).lower() not in CREDENTIAL_KEYS}


def legacy_keys(values: dict) -> dict:
    """Convert the keys old accelerate versions wrote, as accelerate's process_config does."""
    values = dict(values)
    if "fp16" in values:
        fp16 = values.pop("fp16")
        values.setdefault("mixed_precision", "fp16" if fp16 else "no")
    if "dynamo_backend" in values:
        backend = values.pop("dynamo_backend")
        values.setdefault("dynamo_config", None if backend == "NO" else {"dynamo_backend": backend})
    return values


def lift_sections(data: dict, sections: dict[str, tuple[str, ...]], own_fields) -> dict:
    """`data` (a model's input: field values, plus keys kept verbatim under `extra_keys`) with the
    settings each section nests lifted to their flat fields. A section that is itself a field
    (`own_fields`) keeps the keys that have no field; one kept verbatim is dropped once empty.
    A flat value given alongside the nested one wins."""
    data = dict(data)
    extra = dict(data.get("extra_keys") or {})
    for parent, fields in sections.items():
        holder = data if parent in own_fields else extra
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


def nest_sections(data: dict, sections: dict[str, tuple[str, ...]], defaults: dict,
                  distributed_type: str | None) -> dict:
    """Flat settings put back where accelerate keeps them: spot settings in additional_args
    (always present), FSDP / DeepSpeed settings in their section when that mode is chosen or
    they were changed from `defaults`. No credentials inside a section either."""
    data = dict(data)
    for parent, fields in sections.items():
        nested = without_credentials(data.get(parent) or {})
        for field in fields:
            value = data.pop(field)
            if parent == "additional_args" and value not in (None, False):
                nested[nested_key(parent, field)] = value
            elif parent != "additional_args" and value is not None and (
                    value != defaults[field] or distributed_type == NESTED_MODE[parent]):
                nested[nested_key(parent, field)] = value
        if nested or parent == "additional_args":
            data[parent] = nested
    return data
