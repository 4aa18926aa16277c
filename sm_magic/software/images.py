"""The training image a SageMaker job runs in, chosen offline from the installed SDK's image tables.

For a GPU instance: the newest Hugging Face PyTorch training image whose CUDA still runs on the
instance's GPU (CUDA 13 dropped Volta, so ml.p3 gets a CUDA 12 image) and whose Python can install
the bundle's requirements. For a CPU instance (the Hugging Face images are GPU-only): the newest
PyTorch CPU training image whose Python can. Versions in the config (`pytorch_version`,
`transformers_version`, `py_version`) narrow the choice; `image_uri` replaces it. The chosen image
says why it was chosen (`Image.reason`), which `--dry-run` prints and the job's record keeps.

The notebook's accelerate does not decide the image: the job gets the newest accelerate of the same
major version that installs in it (requirements.job_launcher), so an image is passed over only when
no such release does, or another pin of the requirements does not install there.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from packaging.version import Version

from ..config.model import TrainConfig
from ..errors import UsageProblem
from .requirements import HF_IMAGE_PROVIDES, PYTORCH_IMAGE_PROVIDES, job_launcher

HF_REPOSITORY = "huggingface-pytorch-training"
PYTORCH_REPOSITORY = "pytorch-training"
# The GPU of each SageMaker GPU instance family and its compute capability (sm_XY as XY).
GPUS = {
    "p2": ("NVIDIA K80", 37), "g3": ("NVIDIA M60", 52), "g3s": ("NVIDIA M60", 52),
    "p3": ("NVIDIA V100", 70), "p3dn": ("NVIDIA V100", 70), "g4dn": ("NVIDIA T4", 75),
    "p4d": ("NVIDIA A100", 80), "p4de": ("NVIDIA A100", 80), "g5": ("NVIDIA A10G", 86), "g5n": ("NVIDIA A10G", 86),
    "g6": ("NVIDIA L4", 89), "gr6": ("NVIDIA L4", 89), "g6e": ("NVIDIA L40S", 89),
    "p5": ("NVIDIA H100", 90), "p5e": ("NVIDIA H200", 90), "p5en": ("NVIDIA H200", 90),
    "p6-b200": ("NVIDIA B200", 100), "p6e-gb200": ("NVIDIA GB200", 100), "p6-b300": ("NVIDIA B300", 103),
    "g7e": ("NVIDIA RTX PRO 6000 Blackwell", 120),
}
_ARCHITECTURES = {37: "Kepler", 52: "Maxwell", 70: "Volta", 75: "Turing", 80: "Ampere", 86: "Ampere",
                  89: "Ada Lovelace", 90: "Hopper", 100: "Blackwell", 103: "Blackwell", 120: "Blackwell"}
# The first CUDA release that builds for a compute capability.
_FIRST_CUDA = {80: (11, 0), 86: (11, 1), 89: (11, 8), 90: (11, 8), 100: (12, 8), 103: (12, 9), 120: (12, 8)}
# glibc of the images' Ubuntu, for the wheels a network-isolated job carries.
_GLIBC = {"ubuntu18.04": (2, 27), "ubuntu20.04": (2, 31), "ubuntu22.04": (2, 35), "ubuntu24.04": (2, 39)}


class ImageError(UsageProblem, ValueError):
    """No training image fits the versions or instance type asked for; the message says what was
    tried and what to set."""


def cuda_runs_on(cuda: tuple[int, int], sm: int) -> bool:
    """Whether a CUDA release builds for compute capability `sm` (CUDA 12 dropped Kepler, CUDA 13
    dropped Maxwell, Pascal and Volta; new architectures need a release that knows them)."""
    lowest = 75 if cuda >= (13, 0) else 50 if cuda >= (12, 0) else 35
    return sm >= lowest and cuda >= _FIRST_CUDA.get(sm, (0, 0))


@dataclass(frozen=True)
class Image:
    """A training image: where it is, and what is in it."""

    framework: str                        # "huggingface", "pytorch" or "custom"
    uri: str
    python: tuple[int, int] | None     # None: not known (a custom image without a pyNNN tag)
    pytorch: str | None = None
    transformers: str | None = None
    cuda: tuple[int, int] | None = None
    os: str | None = None
    reason: str = ""
    provides: frozenset = field(default=frozenset(), compare=False)

    @property
    def versions(self) -> dict[str, str]:
        """Package versions the image fixes."""
        return {k: v for k, v in (("torch", self.pytorch), ("transformers", self.transformers)) if v}

    @property
    def platform(self) -> str:
        """The pip platform tag of its wheels (glibc of its Ubuntu; 2.31 when the tag does not say)."""
        glibc = _GLIBC.get(self.os or "", (2, 31))
        return f"manylinux_{glibc[0]}_{glibc[1]}_x86_64"

    def describe(self) -> str:
        parts = [f"PyTorch {self.pytorch}" if self.pytorch else "",
                 f"transformers {self.transformers}" if self.transformers else "",
                 f"Python {self.python[0]}.{self.python[1]}" if self.python else "",
                 f"CUDA {self.cuda[0]}.{self.cuda[1]}" if self.cuda else ""]
        return ", ".join(p for p in parts if p)

    def to_record(self) -> dict:
        """What the job's record keeps of it."""
        return {"uri": self.uri, "reason": self.reason,
                "python": f"{self.python[0]}.{self.python[1]}" if self.python else None}


def _py(tag: str) -> tuple[int, int] | None:
    m = re.fullmatch(r"py(\d)(\d+)", tag)
    return (int(m.group(1)), int(m.group(2))) if m else None


@lru_cache(maxsize=None)
def _sdk_table(name: str) -> dict:
    """One of the SDK's image_uri_config tables (read as data: importing its module takes seconds)."""
    path = md.distribution("sagemaker-core").locate_file(f"sagemaker/core/image_uri_config/{name}.json")
    return json.loads(Path(str(path)).read_text(encoding="utf-8"))


def _table(framework: str) -> dict:
    """The SDK's training image table for a framework."""
    return _sdk_table(framework)["training"]


def _host(account: str, region: str) -> str:
    suffix = ("amazonaws.com.cn" if region.startswith("cn-") else "c2s.ic.gov" if region.startswith("us-iso-")
              else "sc2s.sgov.gov" if region.startswith("us-isob-") else "amazonaws.com")
    return f"{account}.dkr.ecr.{region}.{suffix}"


def _sorted_versions(keys) -> list[str]:
    return sorted((k for k in keys if re.fullmatch(r"\d+(\.\d+)*", k)), key=Version, reverse=True)


def hugging_face_images(region: str) -> list[Image]:
    """Every Hugging Face PyTorch training image the SDK knows, newest first."""
    images = []
    versions = _table("huggingface")["versions"]
    for tf in _sorted_versions(versions):
        bases = {k.removeprefix("pytorch"): v for k, v in versions[tf].items() if k.startswith("pytorch")}
        for pt in _sorted_versions(bases):
            spec = bases[pt]
            container = (spec.get("container_version") or {}).get("gpu")
            if not container or region not in spec["registries"]:
                continue
            cuda = re.match(r"cu(\d+?)(\d)-", container)
            for py in spec["py_versions"]:
                tag = f"{pt}-transformers{tf}-gpu-{py}-{container}"
                uri = f"{_host(spec['registries'][region], region)}/{spec['repository']}:{tag}"
                images.append(Image("huggingface", uri, _py(py), pt, tf,
                                    (int(cuda.group(1)), int(cuda.group(2))) if cuda else None,
                                    container.split("-", 1)[-1], provides=HF_IMAGE_PROVIDES))
    return images


def pytorch_images(region: str, processor: str) -> list[Image]:
    """Every PyTorch training image the SDK knows for this processor ("cpu", "gpu"), newest first."""
    table = _table("pytorch")
    images = []
    for version in _sorted_versions(table["versions"]):
        spec = table["versions"][version]
        if processor not in (spec.get("processors") or table.get("processors", [])) or region not in spec["registries"]:
            continue
        for py in reversed(spec["py_versions"]):
            if _py(py) is None:
                continue
            tag = f"{spec.get('tag_prefix', version)}-{processor}-{py}"
            images.append(Image("pytorch", f"{_host(spec['registries'][region], region)}/{spec['repository']}:{tag}",
                                _py(py), version, provides=PYTORCH_IMAGE_PROVIDES))
    return images


def instance_gpu(instance_type: str) -> tuple[str, int | None] | None:
    """(GPU name, compute capability or None when unknown) of a GPU instance type; None for CPU."""
    family = instance_type.split(".")[1] if instance_type.count(".") >= 2 else instance_type
    if family in GPUS:
        return GPUS[family]
    if instance_type == "local_gpu" or family[:1] in ("g", "p"):
        return ("GPU", None)
    return None


def _matches(value: str | None, wanted: str | None) -> bool:
    """An image version matches a configured one exactly or as its prefix ("2.9" ~ "2.9.0")."""
    return not wanted or value == wanted or (value or "").startswith(wanted + ".")


# The versions `accelerate config` writes into every SageMaker config (and the guide's example
# shows): a preference, not a demand, held only where the notebook's own accelerate installs (that
# py38 image would otherwise run a job of today's notebook with an accelerate years older).
ACCELERATE_DEFAULTS = {"pytorch_version": "1.10.2", "transformers_version": "4.17.0", "py_version": "py38"}


def _as_it_is(check: Callable[[Image], list[str]]) -> Callable[[Image], list[str]]:
    """`check`, and the notebook's accelerate installs in the image as it is."""
    def strict(image: Image) -> list[str]:
        found = check(image)
        launcher = job_launcher(image.python, image.versions)
        return found or ([] if launcher.kept and not launcher.problem
                         else [f"the notebook's accelerate {launcher.notebook} {launcher.needs}"])
    return strict


def choose(config: TrainConfig, check: Callable[[Image], list[str]]) -> Image:
    """The image for config's instance type; `check(image)` says why the bundle's requirements
    would not install in an image ([] when they would)."""
    instance = config.ec2_instance_type
    wanted = {k: getattr(config, k) for k in ACCELERATE_DEFAULTS if getattr(config, k)}
    if config.image_uri:
        # accelerate's default py38 says nothing about the user's own image
        image = custom_image(config.image_uri, config.py_version if wanted != ACCELERATE_DEFAULTS else None)
        found = check(image) if image.python else []
        if found:
            raise ImageError(f"the requirements cannot be installed in image_uri {config.image_uri}: "
                             f"{'; '.join(found)}. Use an image whose Python supports them, or give your own "
                             "requirements file (--requirements FILE) with versions that install there")
        return image
    family = instance.split(".")[1] if instance.count(".") >= 2 else instance
    if family.startswith(("inf", "trn")):
        raise ImageError(f"{instance} is an AWS Inferentia/Trainium instance, which needs a Neuron training image: "
                         "set image_uri to one (e.g. a pytorch-training-neuronx image)")
    gpu = instance_gpu(instance)
    if gpu is None and config.transformers_version and wanted != ACCELERATE_DEFAULTS:
        raise ImageError(f"{instance} has no GPU and the Hugging Face training images are GPU-only, so "
                         f"transformers_version {config.transformers_version} has no image for it: remove "
                         "transformers_version (the PyTorch CPU training image is then used; the bundle's "
                         "requirements.txt installs transformers), choose a GPU instance type, or set image_uri")
    newest, rejected = _newest(config.region, gpu, wanted, _as_it_is(check) if wanted == ACCELERATE_DEFAULTS else check)
    note = ""
    if newest is None and wanted == ACCELERATE_DEFAULTS:
        why = rejected[0][1] if rejected else f"there is none for {instance}"
        note = (f"; the config's versions ({', '.join(ACCELERATE_DEFAULTS.values())}) are the ones `accelerate "
                f"config` always writes, and that image does not fit ({why})")
        wanted, rejected = {}, []
        newest, rejected = _newest(config.region, gpu, wanted, check)
    if newest is None:
        named = ", ".join(f"{k} {v}" for k, v in wanted.items())
        tried = _grouped(rejected)
        raise ImageError(
            f"no SageMaker training image{' with ' + named if named else ''} can run this job on {instance}"
            + (f":\n{tried}\n" if rejected else " (the SDK knows none for it in this region). ")
            + ("Remove the version settings to let sm_magic choose, " if named else "")
            + "set image_uri to an image whose Python installs the requirements, or give your own requirements "
            "file (--requirements FILE) with versions that install there")
    return _with_reason(newest, instance, gpu, wanted, rejected, note)


def _grouped(rejected: list[tuple[str, str]]) -> str:
    """Why images were passed over, one line per reason, newest image first."""
    by_reason: dict[str, list[str]] = {}
    for image, why in rejected:
        by_reason.setdefault(why, []).append(image)
    lines = []
    for why, names in list(by_reason.items())[:8]:
        more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
        lines.append(f"  - {names[0]}{more}: {why}")
    return "\n".join(lines)


def _newest(region: str, gpu, wanted: dict, check) -> tuple[Image | None, list[tuple[str, str]]]:
    """The newest image that matches `wanted`, runs on `gpu` and passes `check`; and why each newer
    one did not, as (image, reason)."""
    kinds = [hugging_face_images(region)] if gpu is not None else []
    if gpu is None or not wanted.get("transformers_version"):
        kinds.append(pytorch_images(region, "gpu" if gpu is not None else "cpu"))
    rejected: list[tuple[str, str]] = []
    for images in kinds:
        for image in images:
            if not (_matches(image.pytorch, wanted.get("pytorch_version"))
                    and _matches(image.transformers, wanted.get("transformers_version"))
                    and (not wanted.get("py_version") or image.python == _py(wanted["py_version"]))):
                continue
            if gpu is not None and gpu[1] == 37 and image.pytorch and Version(image.pytorch) >= Version("1.13"):
                rejected.append((_short(image), f"PyTorch 1.13 and later images do not support the {gpu[0]} "
                                                "(ml.p2, deprecated by SageMaker)"))
                continue
            if gpu is not None and gpu[1] is not None and image.cuda and not cuda_runs_on(image.cuda, gpu[1]):
                rejected.append((_short(image), f"CUDA {image.cuda[0]}.{image.cuda[1]} does not run on the "
                                                f"{gpu[0]} ({_ARCHITECTURES.get(gpu[1], 'sm_' + str(gpu[1]))})"))
                continue
            found = check(image)
            if found:
                rejected.append((_short(image), "; ".join(found)))
                continue
            return image, rejected
    return None, rejected


def _short(image: Image) -> str:
    return image.uri.rsplit("/", 1)[-1]


def _with_reason(image: Image, instance: str, gpu, wanted: dict, rejected: list[tuple[str, str]],
                 note: str) -> Image:
    kind = "Hugging Face PyTorch training image" if image.framework == "huggingface" else (
        "PyTorch GPU training image" if gpu is not None else "PyTorch CPU training image")
    named = ", ".join(f"{k} {v}" for k, v in wanted.items())
    why = f"the newest {kind}" + (f" with {named} (from the config)" if named else "")
    where = (f"{instance} ({gpu[0]})" if gpu is not None
             else f"{instance} (no GPU; the Hugging Face images are GPU-only)")
    reason = f"{why} for {where}: {image.describe()}"
    if rejected:
        more = f", and {len(rejected) - 1} more" if len(rejected) > 1 else ""
        reason += f"; newer ones do not fit ({rejected[0][0]}: {rejected[0][1]}{more})"
    return Image(image.framework, image.uri, image.python, image.pytorch, image.transformers, image.cuda, image.os,
                 reason + note, image.provides)


def custom_image(uri: str, py_version: str | None = None) -> Image:
    """An image_uri: its Python from its tag's pyNNN (else `py_version`); for a PyTorch image
    (its repository says so) the torch version from the tag."""
    repository, _, tag = uri.rsplit("/", 1)[-1].partition(":")
    m = re.search(r"(?:^|-)(py\d{2,3})(?:-|$)", tag)
    python = _py(m.group(1)) if m else (_py(py_version) if py_version else None)
    torch = re.match(r"^(\d+\.\d+(?:\.\d+)?)-", tag) if "pytorch" in repository else None
    if python:
        known = f"Python {python[0]}.{python[1]}, from {'its tag' if m else 'py_version'}"
    else:
        known = "its Python is not known: set py_version to have the requirements checked against it"
    os_tag = re.search(r"ubuntu\d+\.\d+", tag)
    return Image("custom", uri, python, torch.group(1) if torch else None,
                 os=os_tag.group(0) if os_tag else None, reason=f"image_uri from the config ({known})",
                 provides=HF_IMAGE_PROVIDES if "huggingface" in repository else PYTORCH_IMAGE_PROVIDES)


# GPUs per instance size where the SDK's table (instance_gpu_info.json) does not say.
_GPUS_BY_SIZE = {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1, "12xlarge": 4,
                 "24xlarge": 4, "48xlarge": 8}
_GPUS_BY_FAMILY_SIZE = {("p3", "2xlarge"): 1, ("p3", "8xlarge"): 4, ("p3", "16xlarge"): 8, ("p5", "4xlarge"): 1}


def instance_gpus(instance_type: str) -> int | None:
    """GPUs of an instance type: 0 without a GPU, else from the SDK's table or the family's sizes;
    None when not known."""
    if instance_gpu(instance_type) is None:
        return 0
    for region in _sdk_table("instance_gpu_info").values():
        if instance_type in region:
            return int(region[instance_type]["Count"])
    parts = instance_type.split(".")
    if len(parts) != 3:
        return None
    family, size = parts[1], parts[2]
    if (family, size) in _GPUS_BY_FAMILY_SIZE:
        return _GPUS_BY_FAMILY_SIZE[family, size]
    if family.startswith("g") and family in GPUS:
        return _GPUS_BY_SIZE.get(size)
    return 8 if family in GPUS and size in ("24xlarge", "48xlarge", "36xlarge") else None
