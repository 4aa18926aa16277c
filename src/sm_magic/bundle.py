"""A cell becomes a job bundle: the directory both backends run.

Layout: train.py (the cell, verbatim), requirements.txt, accelerate_config.yaml, sm_launch.json
(script, arguments, distribution), sm_entry.py, the one entry command, and sm_magic/runtime.py,
the checkpoint helpers a script may import. A bundle is built in a
staging directory and renamed into place, so a failure never leaves half of one behind.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import yaml

from .config import TrainConfig
from .metrics import MetricDefinition

SCRIPT_NAME = "train.py"
ENTRY_NAME = "sm_entry.py"
ENTRY_COMMAND = ("python", ENTRY_NAME)
_ENTRY_SOURCE = Path(__file__).with_name(ENTRY_NAME)
_RUNTIME_SOURCE = Path(__file__).with_name("runtime.py")
# The bundle's own `sm_magic` package holds only the runtime helpers, so a script's
# `from sm_magic.runtime import ...` works in a container where sm_magic is not installed.
_RUNTIME_INIT = '"""sm_magic\'s runtime helpers, carried in the job bundle (sm_magic.runtime)."""\n'

# The Hugging Face / PyTorch training images already carry these, at the versions the config
# names; pinning the notebook's own builds would reinstall torch inside the container.
IMAGE_PROVIDED = frozenset({"torch", "torchvision", "torchaudio", "transformers", "datasets", "tokenizers"})
# SageMaker's rule for training job names; every backend's jobs follow it.
JOB_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_NUMBER_RE = re.compile(r"^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


class BundleError(ValueError):
    """The cell cannot become a bundle; the message says where and what to change."""


@dataclass
class Bundle:
    """A built bundle directory and what a backend needs to run it."""

    path: Path
    name: str
    args: list[str]
    hyperparameters: dict[str, str]
    requirements: list[str]
    metric_definitions: list[MetricDefinition] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)
    entry_command: tuple[str, ...] = ENTRY_COMMAND
    script: str = SCRIPT_NAME                        # the entry script, relative to the bundle
    origin: dict = field(default_factory=dict)       # where the code came from (git, notebook)


def check_source(source: str) -> None:
    """Refuse an empty cell or one that does not compile, naming the line."""
    if not source.strip() or all(l.strip().startswith("#") for l in source.splitlines() if l.strip()):
        raise BundleError("the cell is empty: write the training script under the %%sagemaker_train line")
    try:
        # A pseudo file name: with a real one, CPython quotes that file's line from disk.
        compile(source, "<cell>", "exec", dont_inherit=True)
    except SyntaxError as e:
        lines = source.splitlines()
        text = lines[e.lineno - 1].rstrip() if e.lineno and e.lineno <= len(lines) else ""
        pointer = f"\n    {text}" if text else ""
        raise BundleError(f"syntax error in the cell, line {e.lineno}: {e.msg}{pointer}\n"
                          "Nothing was written or launched; fix the line and run the cell again.") from None


def hyperparameters_from_args(args: Sequence[str]) -> dict[str, str]:
    """Script arguments as SageMaker-style hyperparameters, for display only.

    `--lr=5e-5` and `--lr 5e-5` give {"lr": "5e-5"}, a flag alone gives "True", a negative
    number counts as a value; positional arguments are kept as `_positional`.
    """
    hps: dict[str, str] = {}
    positional: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        if token.startswith("-") and not _NUMBER_RE.match(token) and token.strip("-"):
            key = token.lstrip("-")
            if "=" in key:
                key, value = key.split("=", 1)
            elif i + 1 < len(args) and (not args[i + 1].startswith("-") or _NUMBER_RE.match(args[i + 1])):
                value = args[i + 1]
                i += 1
            else:
                value = "True"
            hps[key] = value
        else:
            positional.append(token)
        i += 1
    if positional:
        hps["_positional"] = json.dumps(positional)
    return hps


@lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    return md.packages_distributions()


def requirements_for(source: str) -> list[str]:
    """requirements.txt lines: accelerate, then the cell's third-party imports pinned to the
    versions installed here; packages the training image provides are listed as comments."""
    tops: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            tops.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
    tops -= set(sys.stdlib_module_names) | {"__future__", "sm_magic"}

    pinned: dict[str, str] = {"accelerate": f"accelerate=={_version('accelerate')}"}
    provided, unknown = [], []
    for top in sorted(tops):
        if top not in _distributions():
            # Not an installed package: most likely a module beside the notebook, which pip
            # must not look up on PyPI under that name.
            unknown.append(top)
        for dist in _distributions().get(top, []):
            key = _canonical(dist)
            if key in IMAGE_PROVIDED:
                provided.append(key)
            elif key not in pinned:
                pinned[key] = f"{dist}=={_version(dist)}"
    lines = list(pinned.values())
    if provided:
        lines.append(f"# provided by the training image: {', '.join(sorted(set(provided)))}")
    if unknown:
        lines.append(f"# imported but not installed here, so not listed: {', '.join(unknown)}")
    return lines


def _canonical(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def accelerate_launch_config(config: TrainConfig) -> dict:
    """The accelerate config the entry command launches with inside a host. Host counts,
    ranks and addresses are left to sm_entry.py, which knows the host it runs on."""
    launch = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": {"DATA_PARALLEL": "MULTI_GPU", "FSDP": "FSDP", "DEEPSPEED": "DEEPSPEED"}.get(
            config.distributed_type, "NO"),
        "mixed_precision": config.mixed_precision,
        "use_cpu": config.use_cpu,
        "debug": config.debug,
        "num_machines": 1,
        "num_processes": 1,
        "machine_rank": 0,
        "gpu_ids": config.gpu_ids,
        "rdzv_backend": "static",
        "same_network": True,
        "main_training_function": "main",
        "enable_cpu_affinity": config.enable_cpu_affinity,
        "downcast_bf16": "no",
    }
    # The section accelerate reads for the chosen mode, as TrainConfig writes it.
    section = {"FSDP": "fsdp_config", "DEEPSPEED": "deepspeed_config"}.get(config.distributed_type)
    if section:
        launch[section] = yaml.safe_load(config.to_yaml())[section]
    return launch


GENERATED = ("accelerate_config.yaml", "sm_launch.json", ENTRY_NAME, "sm_magic")


def _script_path(script: str) -> str:
    path = Path(script)
    if path.is_absolute() or ".." in path.parts or path.suffix != ".py":
        raise BundleError(f"entry script {script!r}: give a .py path relative to the code's top directory, "
                          "e.g. train.py or src/train.py")
    return path.as_posix()


def tree_clashes(tree: Path) -> list[str]:
    """The names of the bundle's own files that the user's code tree has too."""
    return [n for n in GENERATED if (tree / n).exists()]


def _check_tree(tree: Path) -> None:
    """The bundle's own files may not be shadowed by the user's code tree."""
    if not tree.is_dir():
        raise BundleError(f"no code directory {tree}")
    clashes = tree_clashes(tree)
    if clashes:
        raise BundleError(f"{tree} has its own {', '.join(clashes)}, which sm_magic writes into every bundle: "
                          "rename them")


def _copy_tree(tree: Path, staging: Path) -> None:
    """The user's code tree, without .git (checked by _check_tree first)."""
    shutil.copytree(tree, staging, ignore=shutil.ignore_patterns(".git"), symlinks=True, dirs_exist_ok=True)


def build_bundle(source: str | None, config: TrainConfig, args: Sequence[str], *, name: str,
                 metric_definitions: Sequence[MetricDefinition] = (),
                 inputs: dict[str, str] | None = None, dest: Path | None = None,
                 tree: Path | None = None, script: str = SCRIPT_NAME, origin: dict | None = None) -> Bundle:
    """Write the bundle to `dest` (a new temporary directory when None).

    `source` is the entry script's text, written to `script`. With `tree` (a directory of code,
    e.g. a git checkout) the whole tree is copied in first, and `source` None means the tree's
    own `script` is the entry; the tree's requirements.txt, if any, is used (plus accelerate).
    `origin` is recorded in sm_launch.json (e.g. the git commit).
    """
    script = _script_path(script)
    if tree is not None:
        _check_tree(Path(tree))
    if source is None:
        if tree is None or not (Path(tree) / script).is_file():
            raise BundleError(f"no entry script {script} in {tree}: name one that exists with --entry PATH")
        source = (Path(tree) / script).read_text(encoding="utf-8")
    check_source(source)
    if config.distributed_type == "MODEL_PARALLEL":
        raise BundleError("distributed_type MODEL_PARALLEL (SageMaker's model parallel library) is not "
                          "supported: use FSDP or DEEPSPEED for a model split across GPUs, DATA_PARALLEL for "
                          "data parallel, or NO for a single process")
    args = [str(a) for a in args]
    own_requirements = Path(tree) / "requirements.txt" if tree is not None else None
    if own_requirements is not None and own_requirements.is_file():
        requirements = own_requirements.read_text(encoding="utf-8").splitlines()
        if not any(re.match(r"^\s*accelerate\b", r) for r in requirements):
            requirements.append(f"accelerate=={_version('accelerate')}")
    else:
        requirements = requirements_for(source)
    if config.distributed_type == "DEEPSPEED" and not any(re.match(r"^\s*deepspeed\b", r) for r in requirements):
        version = _version("deepspeed")
        requirements.append(f"deepspeed=={version}" if version else "deepspeed")
    launch_spec = {"script": script, "args": args, "distributed_type": config.distributed_type,
                   "mixed_precision": config.mixed_precision, "use_cpu": config.use_cpu,
                   "checkpoint_dir": config.checkpoint_local_path or "/opt/ml/checkpoints"}
    if origin:
        launch_spec["origin"] = origin
    # Everything above is checked before anything is written; from here a failure removes what
    # this call made: the staging directory, and the temporary parent when `dest` is None.
    own_parent = None
    if dest is None:
        own_parent = Path(tempfile.mkdtemp(prefix=f"sm_magic-{name}-"))
        dest = own_parent / "bundle"
    dest = Path(dest)
    staging = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.staging-", dir=dest.parent))
        if tree is not None:
            _copy_tree(Path(tree), staging)
        (staging / script).parent.mkdir(parents=True, exist_ok=True)
        (staging / script).write_text(source, encoding="utf-8")
        (staging / "requirements.txt").write_text("\n".join(requirements) + "\n", encoding="utf-8")
        (staging / "accelerate_config.yaml").write_text(
            yaml.safe_dump(accelerate_launch_config(config), sort_keys=True), encoding="utf-8")
        (staging / "sm_launch.json").write_text(json.dumps(launch_spec, indent=2), encoding="utf-8")
        shutil.copyfile(_ENTRY_SOURCE, staging / ENTRY_NAME)
        (staging / "sm_magic").mkdir()
        (staging / "sm_magic" / "__init__.py").write_text(_RUNTIME_INIT, encoding="utf-8")
        shutil.copyfile(_RUNTIME_SOURCE, staging / "sm_magic" / "runtime.py")
        os.rename(staging, dest)
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if own_parent is not None:
            shutil.rmtree(own_parent, ignore_errors=True)
        raise
    return Bundle(path=dest, name=name, args=args, hyperparameters=hyperparameters_from_args(args),
                  requirements=requirements, metric_definitions=list(metric_definitions),
                  inputs=dict(inputs or {}), script=script, origin=dict(origin or {}))
