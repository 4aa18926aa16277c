"""What a launch is checked for before anything is written: the script, the distribution, the
job's name, its input channels and its metric definitions, each refused with a LaunchError (the
script: a BundleError, as the bundle would refuse it) that says what to change."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..bundle.build import JOB_NAME_RE, SCRIPT_NAME, check_channel, check_source
from ..config.model import TrainConfig
from ..errors import UsageProblem
from ..jobs.registry import Registry, RegistryError
from ..metrics.parser import (
    MetricDefinition,
    check_definition,
    load_metrics_file,
    parse_metric_flag,
    read_accelerate_tsv,
)
from .request import CodeSource, InputSpec


class LaunchError(UsageProblem, ValueError):
    """A launch refused before anything ran; the message says what to change."""


def check_code(code: CodeSource, entry: str = SCRIPT_NAME) -> str | None:
    """The entry script's text the job runs, the one check of it: an empty cell, or one that
    does not compile, is refused naming the line.

    Args:
        code: the request's code.
        entry: the entry script's path in a code tree.

    Returns:
        The cell's text; None when the job runs the git repository's entry script (a blank cell
        under --git-repo is one; the checkout checks it once fetched) or the code tree's.
    """
    source = code.cell
    if code.git_repo and source is not None and not source.strip():
        source = None  # a blank cell under --git-repo: the repository's entry script
    if source is None and not code.git_repo and code.tree is None:
        raise LaunchError("no script to run: give the script's text, or git_repo=URL (--git-repo) to run one "
                          "from a repository")
    if code.tree is not None and code.git_repo:
        raise LaunchError("give a code tree or a git repository, not both")
    if source is not None:
        check_source(source)
    elif code.tree is not None:
        path = Path(code.tree) / entry
        if path.is_file() and not path.is_symlink():  # a missing or linked one: the bundle refuses it
            check_source(path.read_text(encoding="utf-8"))
    return source


def check_distribution(config: TrainConfig) -> None:
    """Refuse a distribution no backend runs, before the image or the bundle depends on it."""
    if config.distributed_type == "MODEL_PARALLEL":
        raise LaunchError("distributed_type MODEL_PARALLEL (SageMaker's model parallel library) is not "
                          "supported: use FSDP or DEEPSPEED for a model split across GPUs, DATA_PARALLEL for "
                          "data parallel, or NO for a single process")
    if config.num_machines > 1 and config.distributed_type == "NO":
        raise LaunchError(f"num_machines {config.num_machines} with distributed_type NO would run the whole "
                          f"training once on each host ({config.num_machines} times the bill, each writing the same "
                          "model): set distributed_type DATA_PARALLEL (or leave it unset) to split the work across "
                          "the hosts, or num_machines 1")


def job_name(base: str, now: float | None = None, registry: Registry | None = None) -> str:
    """`base-YYYY-mm-dd-HH-MM-SS-mmm`, the SageMaker SDK's naming. With `registry`, a millisecond
    no other launch sharing that registry was given for `base` (threads, kernels and shells that
    launch at the same moment), a later one if need be."""
    ms = int((time.time() if now is None else now) * 1000)
    if registry is not None:
        try:
            ms = registry.next_stamp(base, ms)
        except RegistryError:  # locked or read-only: registering the job says so, or refuses a clash
            pass
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(ms // 1000))
    return f"{base}-{stamp}-{ms % 1000:03d}"


def check_job_name(name: str) -> str:
    if not isinstance(name, str) or not JOB_NAME_RE.fullmatch(name):
        raise LaunchError(f"{name!r} is not a valid training job name: 1 to 63 letters, digits and "
                          "hyphens, starting with a letter or digit, no other characters (e.g. my-job-1)")
    return name


def parse_inputs(flags: str | Mapping[str, str] | Iterable[InputSpec], config: TrainConfig, *,
                 base: Path | None = None) -> dict[str, str]:
    """Input channels: the config's sagemaker_inputs_file, then NAME=URI flags over it (or
    (NAME, URI) pairs, or a {NAME: URI} mapping). Each is checked as every backend takes it: a
    channel name SageMaker accepts, a URI that is an s3:// prefix or a local path, and never a
    local file: a channel is an S3 prefix, which the container gets as a directory, so it is
    given as a directory on every backend. `base`: what a relative local path is relative to
    (default: the working directory)."""

    def checked(channel, uri, where: str) -> str:
        if not isinstance(channel, str):
            raise LaunchError(f"{where}the channel name must be a string, not {type(channel).__name__}")
        check_channel(channel, where)
        uri = os.fspath(uri) if isinstance(uri, os.PathLike) else uri
        example = f"e.g. {channel}=s3://bucket/{channel} or {channel}=./data/{channel}"
        if not isinstance(uri, str) or not uri.strip():
            raise LaunchError(f"{where}input channel {channel} has no URI: give an s3:// prefix or a local "
                              f"directory, {example}")
        if "\0" in uri:
            raise LaunchError(f"{where}input channel {channel}: the URI holds a NUL byte; remove it")
        if uri.startswith("s3://"):
            if not uri.removeprefix("s3://").split("/", 1)[0]:
                raise LaunchError(f"{where}input channel {channel}: {uri!r} names no bucket; {example}")
            return uri
        path = Path(uri.removeprefix("file://")).expanduser()
        path = path if path.is_absolute() or base is None else Path(base) / path
        if path.exists() and not path.is_dir():
            raise LaunchError(f"{where}input channel {channel}: {uri} is a file, and a channel is a directory "
                              f"(on SageMaker an S3 prefix; the script reads SM_CHANNEL_{channel.upper()}/<file>): "
                              "give the directory that holds it")
        return uri

    inputs = {}
    if config.sagemaker_inputs_file:
        rows = read_accelerate_tsv(config.sagemaker_inputs_file, "inputs", LaunchError)
        for number, channel, uri in rows:
            inputs[channel] = checked(channel, uri, f"{config.sagemaker_inputs_file}, line {number}: ")
    specs: Iterable[InputSpec] = ([flags] if isinstance(flags, str)
                                  else list(flags.items()) if isinstance(flags, Mapping) else flags)
    for flag in specs:
        if isinstance(flag, tuple) and len(flag) == 2:
            channel, uri = flag
        elif isinstance(flag, str) and "=" in flag:
            channel, uri = flag.split("=", 1)
        else:
            raise LaunchError(f"--input {flag!r}: expected NAME=URI, e.g. --input train=s3://bucket/train")
        inputs[channel] = checked(channel, uri, f"--input {flag!r}: ")
    return inputs


def parse_metrics(specs: Iterable[str | MetricDefinition], config: TrainConfig) -> list[MetricDefinition]:
    """Metric definitions: the config's sagemaker_metrics_file, then NAME=REGEX flags (or
    MetricDefinitions), each checked."""
    defs = load_metrics_file(config.sagemaker_metrics_file) if config.sagemaker_metrics_file else []
    for spec in [specs] if isinstance(specs, (str, MetricDefinition)) else specs:
        if isinstance(spec, MetricDefinition):
            defs.append(check_definition(spec))
        elif isinstance(spec, str):
            defs.append(parse_metric_flag(spec))
        else:
            raise LaunchError(f"metric {spec!r}: give a NAME=REGEX string or a MetricDefinition(name, regex)")
    return defs


def absolute_local(uri: str, base: Path) -> str:
    """A relative local input path made absolute from `base`; URIs with a scheme other than
    file:// are left alone."""
    if "://" in uri and not uri.startswith("file://"):
        return uri
    path = Path(uri.removeprefix("file://")).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())
