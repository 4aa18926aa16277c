"""A cell becomes a job bundle: the directory both backends run.

Layout: train.py (the cell, verbatim), requirements.txt, accelerate_config.yaml, sm_launch.json
(script, arguments, distribution), sm_entry.py, the one entry command, and sm_magic/runtime.py
with sm_magic/container/, the checkpoint helpers a script may import and the entry command's
failure reasons. A bundle is built in a staging directory and renamed into place, so a failure
never leaves half of one behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..config import credentials
from ..config.model import TrainConfig
from ..console import progress
from ..container.runtime import DEFAULT_DIR as CHECKPOINT_DIR
from ..errors import UsageProblem
from ..metrics.parser import MetricDefinition
from ..software import requirements as reqs
from ..software.wheelhouse import WHEELS_DIR, Wheelhouse, offline_requirements
from . import safe_copy
from .smignore import IGNORE_FILE

if TYPE_CHECKING:
    from ..software.images import Image

SCRIPT_NAME = "train.py"
ENTRY_NAME = "sm_entry.py"
ENTRY_COMMAND = ("python", ENTRY_NAME)
_PACKAGE = Path(__file__).resolve().parents[1]
_ENTRY_SOURCE = _PACKAGE / "container" / "entry.py"
# The bundle's own `sm_magic` package holds only sm_magic/container/ (standard library only, as
# tests/test_layers.py checks) and the public name of its runtime, so that a script's `from
# sm_magic.runtime import ...` and the entry command's failure reasons work in a container where
# sm_magic is not installed. The entry command itself goes to the bundle's top as sm_entry.py.
_CARRIED = ("runtime.py", *sorted(f"container/{p.name}" for p in (_PACKAGE / "container").glob("*.py")
                                  if p != _ENTRY_SOURCE))
_RUNTIME_INIT = '"""sm_magic\'s runtime helpers, carried in the job bundle (sm_magic.runtime)."""\n'

# SageMaker's rule for training job names; every backend's jobs follow it.
JOB_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_NUMBER_RE = re.compile(r"^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_LISTED_HITS = 20  # credentials named in one message at most


class BundleError(UsageProblem, ValueError):
    """The cell cannot become a bundle; the message says where and what to change."""


@dataclass
class BundleCode:
    """The code a bundle carries: the entry script's text (None: the tree's own `script`), the
    directory of code copied in first (None: the script alone) and the entry script's path in
    the bundle."""

    source: str | None
    tree: Path | None = None
    script: str = SCRIPT_NAME


@dataclass
class JobSpec:
    """What the job is besides its code and software, as sm_launch.json and the Bundle record it."""

    config: TrainConfig
    args: list[str] = field(default_factory=list)   # the script's own arguments, as given
    name: str | None = None     # None only in an export's plan of a cell without --name
    inputs: dict[str, str] = field(default_factory=dict)
    metric_definitions: list[MetricDefinition] = field(default_factory=list)
    origin: dict = field(default_factory=dict)      # where the code came from (git, notebook)


@dataclass
class Software:
    """What the job's container installs and runs on: requirements.txt's lines and, on a backend
    that runs a training image, that image and (for a job without network) the wheels the
    requirements install from."""

    requirements: list[str]
    origin: str = ""                     # where requirements.txt comes from, for --dry-run
    image: Image | None = None        # None: the job runs in this machine's environment
    wheels: Wheelhouse | None = None  # a network-isolated job's wheels
    launcher: reqs.JobLauncher | None = None  # the accelerate added for the image (None: no image, or the user's file names one)


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
    image: Image | None = None                    # the training image it was checked against


def check_source(source: str) -> None:
    """Refuse an empty cell or one that does not compile, naming the line."""
    if not source.strip() or all(l.strip().startswith("#") for l in source.splitlines() if l.strip()):
        raise BundleError("the cell is empty: write the training script under the %%sagemaker_train line")
    try:  # a NUL byte or a lone surrogate: no file can hold the script (refused before one is written)
        source.encode("utf-8")
        at = source.find("\0")
    except UnicodeEncodeError as e:
        at = e.start
    if at >= 0:
        what = "a NUL byte" if source[at] == "\0" else f"{source[at]!r}, a lone surrogate that is no text"
        raise BundleError(f"line {source.count(chr(10), 0, at) + 1} of the cell holds {what}: remove it "
                          "(nothing was written or launched)")
    try:
        # A pseudo file name: with a real one, CPython quotes that file's line from disk.
        compile(source, "<cell>", "exec", dont_inherit=True)
    except SyntaxError as e:
        lines = source.splitlines()
        text = lines[e.lineno - 1].rstrip() if e.lineno and e.lineno <= len(lines) else ""
        pointer = f"\n    {text}" if text else ""
        raise BundleError(f"syntax error in the cell, line {e.lineno}: {e.msg}{pointer}\n"
                          "Nothing was written or launched; fix the line and run the cell again.") from None


CHANNEL_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
SDK_CHANNELS = ("code", "sm_drivers")  # the SageMaker SDK's own channels


def check_channel(channel: str, where: str = "") -> None:
    """A channel name the training container can export as SM_CHANNEL_<NAME>, the same on every
    backend: SageMaker allows '-' and '.', but the SDK's driver then writes `export
    SM_CHANNEL_MY-DATA=...`, which is no shell variable, and the job dies before the script."""
    if channel in SDK_CHANNELS:
        raise BundleError(f"{where}input channel name {channel!r} is used by the SageMaker SDK itself "
                          f"({', '.join(SDK_CHANNELS)}): choose another name")
    if not CHANNEL_RE.fullmatch(channel):
        fix = re.sub(r"[^A-Za-z0-9_]", "_", channel)[:64] or "train"
        raise BundleError(f"{where}input channel name {channel!r}: the container exports each channel as "
                          f"SM_CHANNEL_{channel.upper()}, so a name may use only letters, digits and _ (1 to 64 "
                          f"of them); e.g. {fix!r}, read as os.environ['SM_CHANNEL_{fix.upper()}']")


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


def accelerate_launch_config(config: TrainConfig) -> dict:
    """The accelerate config the entry command launches with inside a host. Host counts,
    ranks and addresses are left to sm_entry.py, which knows the host it runs on."""
    launch = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": {"DATA_PARALLEL": "MULTI_GPU", "FSDP": "FSDP", "DEEPSPEED": "DEEPSPEED"}.get(
            config.distributed_type or "NO", "NO"),
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
    section = {"FSDP": "fsdp_config", "DEEPSPEED": "deepspeed_config"}.get(config.distributed_type or "NO")
    if section:
        launch[section] = yaml.safe_load(config.to_yaml())[section]
    return launch


GENERATED = ("accelerate_config.yaml", "sm_launch.json", ENTRY_NAME, "sm_magic", WHEELS_DIR)


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


def _check_credentials(staging: Path, requirements: Sequence[str]) -> None:
    """Refuse a bundle whose code (or requirements, e.g. a token in a git URL) holds a
    credential-shaped string, naming the file and line, never the string. A tree's own
    requirements.txt is replaced by `requirements` (its lines as written, so the same numbers)."""
    hits = credentials.find_credentials(staging, skip_top=(*GENERATED, "requirements.txt"))
    hits += credentials.credentials_in_text("requirements.txt", "\n".join(requirements))
    if hits:
        raise BundleError(_credentials_message(hits))


def _credentials_message(hits: list[str]) -> str:
    return ("the bundle would carry credentials, and sm_magic never uploads them: "
            + "; ".join(hits[:_LISTED_HITS]) + (f"; and {len(hits) - _LISTED_HITS} more" if len(hits) > _LISTED_HITS else "")
            + ". Take them out of the code: read them from the environment (os.environ) or a secret store "
            "(e.g. AWS Secrets Manager) when the job runs, or, for a file the job does not need, list it in "
            f"{IGNORE_FILE} at the top of the code. Nothing was written or launched.")


def _write_launch_files(staging: Path, config: TrainConfig, requirements: list[str], launch_spec: dict) -> None:
    """What sm_magic writes beside the user's code: requirements, accelerate's launch config, the
    launch spec, the entry command and the container code it imports."""
    (staging / "requirements.txt").write_text("\n".join(requirements) + "\n", encoding="utf-8")
    (staging / "accelerate_config.yaml").write_text(
        yaml.safe_dump(accelerate_launch_config(config), sort_keys=True), encoding="utf-8")
    (staging / "sm_launch.json").write_text(json.dumps(launch_spec, indent=2), encoding="utf-8")
    shutil.copyfile(_ENTRY_SOURCE, staging / ENTRY_NAME)
    (staging / "sm_magic" / "container").mkdir(parents=True)
    (staging / "sm_magic" / "__init__.py").write_text(_RUNTIME_INIT, encoding="utf-8")
    for module in _CARRIED:
        shutil.copyfile(_PACKAGE / module, staging / "sm_magic" / module)


def build_bundle(code: BundleCode, job: JobSpec, software: Software | None = None,
                 dest: Path | None = None) -> Bundle:
    """Write the bundle to `dest` (a new temporary directory when None). The planner has checked
    the script and the config; what is checked here is what only the files can tell.

    Args:
        code: the entry script's text, written to `code.script`; with `code.tree` (a directory
            of code, e.g. a git checkout) the whole tree is copied in first (safe_copy: regular
            files only, no link out of it, secrets and .smignore'd files left out), and a source
            of None means the tree's own script is the entry.
        job: its name (required here), config, script arguments, inputs and metric definitions,
            and its origin (e.g. the git commit), recorded in sm_launch.json.
        software: requirements.txt's lines (None: the tree's requirements.txt, if any, else
            generated from the script's imports; see requirements.py), the wheels carried in
            sm_wheels/ for a container without network (requirements.txt then installing only
            from them), and the training image they were checked against, kept on the Bundle
            for the backend.
        dest: the bundle directory to create.

    Returns:
        The Bundle. A bundle whose code holds a credential-shaped string is refused (BundleError).

    Example: `build_bundle(BundleCode("print(1)\\n"), JobSpec(TrainConfig(), name="job-1"))`
    """
    if not job.name:
        raise ValueError("build_bundle: the job has no name")
    name, config, tree, source = job.name, job.config, code.tree, code.source
    script = _script_path(code.script)
    plan = None
    if tree is not None:
        _check_tree(Path(tree))
        # Walked before the tree's files are read: a link out of it is refused here.
        plan = safe_copy.plan_tree(Path(tree), label="the code", error=BundleError)
    if source is None:
        if tree is None or not (Path(tree) / script).is_file():
            raise BundleError(f"no entry script {script} in {tree}: name one that exists with --entry PATH")
        source = (Path(tree) / script).read_text(encoding="utf-8")
    args = [str(a) for a in job.args]
    if software is None:
        own = Path(tree) / "requirements.txt" if tree is not None else None
        software = Software(reqs.for_job([source], reqs.HF_IMAGE_PROVIDES, distributed_type=config.distributed_type,
                                         own_file=own if own is not None and own.is_file() else None).lines)
    requirements, wheels, origin = list(software.requirements), software.wheels, job.origin
    launch_spec: dict[str, Any] = {
        "script": script, "args": args, "distributed_type": config.distributed_type,
        "mixed_precision": config.mixed_precision, "use_cpu": config.use_cpu,
        "checkpoint_dir": config.checkpoint_local_path or CHECKPOINT_DIR}
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
        if plan is not None:
            safe_copy.copy_plan(plan, staging)
            if plan.left_out:
                progress(safe_copy.left_out_note(plan.left_out))
        (staging / script).parent.mkdir(parents=True, exist_ok=True)
        (staging / script).write_text(source, encoding="utf-8")
        _check_credentials(staging, requirements)
        if wheels is not None:
            wheels.copy_to(staging / WHEELS_DIR)
            requirements = offline_requirements(requirements)
        _write_launch_files(staging, config, requirements, launch_spec)
        os.rename(staging, dest)
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if own_parent is not None:
            shutil.rmtree(own_parent, ignore_errors=True)
        raise
    return Bundle(path=dest, name=name, args=args, hyperparameters=hyperparameters_from_args(args),
                  requirements=requirements, metric_definitions=list(job.metric_definitions),
                  inputs=dict(job.inputs), script=script, origin=dict(origin), image=software.image)
