"""What CreateTrainingJob refuses, checked before anything is uploaded: the instance type, the
job's environment, the training image's repository access, and the hyperparameters' lengths.

The limits are read from botocore's model of the SageMaker API (the same model the SDK's client
validates against), so they follow the installed botocore; a model that cannot be read leaves a
check to the API. Each refusal is one line naming the field and what to change.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from typing import Any

from ..base import BackendError

# Trainium: torch-neuronx in a Neuron image, one process per NeuronCore over the XLA backend.
# The entry command starts accelerate's CUDA or gloo processes, which would leave the NeuronCores
# idle and train on the host's CPUs.
NEURON_PREFIXES = ("ml.trn",)


@lru_cache(maxsize=1)
def _model() -> Any | None:
    try:
        import botocore.session

        return botocore.session.get_session().get_service_model("sagemaker")
    except Exception:  # no botocore model: the API checks what this cannot
        return None


def training_instance_types() -> list[str]:
    """The instance types CreateTrainingJob accepts, per the installed botocore ([] if unknown)."""
    model = _model()
    return list(model.shape_for("TrainingInstanceType").enum) if model is not None else []


def _bounds(shape_name: str, default: int) -> int:
    model = _model()
    try:
        return int(model.shape_for(shape_name).metadata["max"]) if model is not None else default
    except Exception:  # a model without this shape or bound
        return default


def _map_limits(member: str, key_shape: str, value_shape: str, defaults: tuple[int, int, int]) -> tuple[int, int, int]:
    """(entries, key length, value length) the API allows in the CreateTrainingJob map `member`."""
    model = _model()
    entries = defaults[0]
    if model is not None:
        entries = int(model.operation_model("CreateTrainingJob").input_shape.members[member].metadata.get("max", entries))
    return entries, _bounds(key_shape, defaults[1]), _bounds(value_shape, defaults[2])


def env_limits() -> tuple[int, int, int]:
    """(entries, key length, value length) the API allows in Environment."""
    return _map_limits("Environment", "TrainingEnvironmentKey", "TrainingEnvironmentValue", (100, 512, 512))


def hyperparameter_limits() -> tuple[int, int, int]:
    """(entries, key length, value length) the API allows in HyperParameters."""
    return _map_limits("HyperParameters", "HyperParameterKey", "HyperParameterValue", (100, 256, 2500))


def check_instance_type(name: str) -> None:
    """Refuse a Trainium type (see NEURON_PREFIXES) and a type that is not a training instance."""
    if name.startswith(NEURON_PREFIXES):
        raise BackendError(
            f"ec2_instance_type {name} is a Trainium (Neuron) instance: it trains with torch-neuronx in a Neuron "
            "image, one process per NeuronCore, and sm_magic's launcher would start CPU processes there instead, "
            "leaving the NeuronCores idle. Nothing was uploaded. Use a GPU instance type (e.g. ml.g5.xlarge, "
            "ml.p4d.24xlarge)")
    known = training_instance_types()
    if known and name not in known:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        hint = f"did you mean {close[0]}? " if close else ""
        kind = "an inference instance, " if name.startswith("ml.inf") else ""
        raise BackendError(
            f"ec2_instance_type {name} is {kind}not a SageMaker training instance type: {hint}"
            f"CreateTrainingJob accepts {len(known)} types (ml.g5.xlarge, ml.p4d.24xlarge, ...); if it is "
            "newer than the installed botocore, `pip install -U botocore`")


def check_environment(env: dict[str, str], ours: int) -> None:
    """The job's whole Environment within the API's limits, `ours` of its variables set by
    sm_magic and the rest by additional_args.environment. Values are never echoed: they may be
    private."""
    entries, key_max, value_max = env_limits()
    if len(env) > entries:
        raise BackendError(f"additional_args environment: the job's environment would hold {len(env)} variables "
                           f"({ours} set by sm_magic); SageMaker allows {entries}: "
                           "move settings into a file in the code or into hyperparameters (script arguments)")
    for key, value in env.items():
        if len(key) > key_max:
            raise BackendError(f"additional_args environment: the name {key[:40]}... is {len(key)} characters; "
                               f"SageMaker allows {key_max}")
        if len(value) > value_max:
            raise BackendError(f"additional_args environment.{key}: the value is {len(value)} characters; SageMaker "
                               f"allows {value_max}: put it in a file in the code (or an input channel) and pass "
                               "its path instead")


def check_repository_access(options: dict[str, Any]) -> None:
    """Vpc repository access pulls the image through the job's VPC, so the job needs one."""
    if options.get("training_repository_access_mode") == "Vpc" and "subnets" not in options:
        raise BackendError("additional_args training_repository_access_mode Vpc pulls the image through the "
                           "job's VPC: add subnets and security_group_ids, or use Platform (the default)")
