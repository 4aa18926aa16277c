"""Common SageMaker training instance types, with their accelerators, for the config form's list.

A short list to choose from, not a limit: any `ml.*` name the config accepts can be typed. The
numbers are AWS's published specifications (the EC2 accelerated-computing instance pages and the
SageMaker pricing page): accelerators per instance, their model, and their memory in all (GiB).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Accelerators:
    count: int          # 0: CPU only
    model: str = ""     # e.g. "A10G"
    memory_gib: int = 0  # all accelerators together


def _family(prefix: str, sizes: dict[str, int], model: str, gib_each: int) -> dict[str, Accelerators]:
    return {f"ml.{prefix}.{size}": Accelerators(n, model, n * gib_each) for size, n in sizes.items()}


def _cpu(prefix: str, sizes: str) -> dict[str, Accelerators]:
    return {f"ml.{prefix}.{size}": Accelerators(0) for size in sizes.split()}


INSTANCE_TYPES: dict[str, Accelerators] = {
    **_family("g5", {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1,
                     "12xlarge": 4, "24xlarge": 4, "48xlarge": 8}, "A10G", 24),
    **_family("g4dn", {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1,
                       "12xlarge": 4}, "T4", 16),
    **_family("p3", {"2xlarge": 1, "8xlarge": 4, "16xlarge": 8}, "V100", 16),
    **_family("p3dn", {"24xlarge": 8}, "V100", 32),
    **_family("p4d", {"24xlarge": 8}, "A100", 40),
    **_family("p4de", {"24xlarge": 8}, "A100", 80),
    **_family("p5", {"48xlarge": 8}, "H100", 80),
    **_family("trn1", {"2xlarge": 1, "32xlarge": 16}, "Trainium", 32),
    **_cpu("m5", "large xlarge 2xlarge 4xlarge 12xlarge 24xlarge"),
    **_cpu("c5", "xlarge 2xlarge 4xlarge 9xlarge 18xlarge"),
}

# The config's non-SageMaker choices, as the form offers them.
LOCAL_TYPES = {
    "local": "this machine (no AWS, no Docker)",
    "local_gpu": "this machine, with its GPUs",
    "local_container": "the SDK's Docker local mode",
}


def describe(name: str) -> str | None:
    """One line on what the type offers ("4 x A10G, 96 GiB GPU memory"); None if not listed."""
    if name in LOCAL_TYPES:
        return LOCAL_TYPES[name]
    spec = INSTANCE_TYPES.get(name)
    if spec is None:
        return None
    if spec.count == 0:
        return "CPU only (no GPU)"
    kind = "accelerator" if spec.model == "Trainium" else "GPU"
    return f"{spec.count} x {spec.model}, {spec.memory_gib} GiB {kind} memory"
