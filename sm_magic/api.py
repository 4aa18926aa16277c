"""`launch` and `attach`: the whole core path from plain Python, no IPython needed."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

from .errors import UsageProblem
from .backends import BACKEND_NAMES, TERMINAL_STATUSES, BackendError, get_backend
from .backends.base import progress
from .backends.images import instance_gpus
from .backends.local import gpu_count
from .sm_entry import launch_command
from .bundle import JOB_NAME_RE, SCRIPT_NAME, Bundle, build_bundle, check_channel, check_source, tree_clashes
from . import git_source, includes, software
from .config import TrainConfig, check_script_args, resolve_config
from .job import Job
from .metrics import (MetricDefinition, check_definition, load_metrics_file, parse_metric_flag,
                      read_accelerate_tsv)
from .registry import JobRecord, Registry, RegistryError
from .requirements import RequirementsError
from .wheelhouse import WheelhouseError

LOCAL_BACKENDS = ("local", "local-container")  # their jobs live in a job directory on this machine


class LaunchError(UsageProblem, ValueError):
    """A launch refused before anything ran; the message says what to change."""


def job_name(base: str, now: Optional[float] = None) -> str:
    """`base-YYYY-mm-dd-HH-MM-SS-mmm`, the SageMaker SDK's naming."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(now))
    return f"{base}-{stamp}-{int(now * 1000) % 1000:03d}"


def check_job_name(name: str) -> str:
    if not isinstance(name, str) or not JOB_NAME_RE.fullmatch(name):
        raise LaunchError(f"{name!r} is not a valid training job name: 1 to 63 letters, digits and "
                          "hyphens, starting with a letter or digit, no other characters (e.g. my-job-1)")
    return name


def parse_inputs(flags: Iterable[str], config: TrainConfig, *, base: Optional[Path] = None) -> dict[str, str]:
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
    if isinstance(flags, str):
        flags = [flags]
    elif isinstance(flags, dict):
        flags = list(flags.items())
    for flag in flags:
        if isinstance(flag, tuple) and len(flag) == 2:
            channel, uri = flag
        elif isinstance(flag, str) and "=" in flag:
            channel, uri = flag.split("=", 1)
        else:
            raise LaunchError(f"--input {flag!r}: expected NAME=URI, e.g. --input train=s3://bucket/train")
        inputs[channel] = checked(channel, uri, f"--input {flag!r}: ")
    return inputs


def parse_metrics(specs: Iterable[Union[str, MetricDefinition]], config: TrainConfig) -> list[MetricDefinition]:
    """Metric definitions: the config's sagemaker_metrics_file, then NAME=REGEX flags (or
    MetricDefinitions), each checked."""
    defs = load_metrics_file(config.sagemaker_metrics_file) if config.sagemaker_metrics_file else []
    defs += [check_definition(s) if isinstance(s, MetricDefinition) else parse_metric_flag(s) for s in specs]
    return defs


def _backend_options(backend_name: str, config: TrainConfig) -> dict:
    """What a backend needs to find a job again (region and profile for SageMaker; no secrets)."""
    if backend_name == "sagemaker":
        return {"region": config.region, "profile": config.profile}
    return {}


def resolve_launch_config(config: Union[TrainConfig, str, os.PathLike, None], overrides: dict) -> TrainConfig:
    if isinstance(config, TrainConfig):
        return resolve_config(base=config, overrides=overrides)
    return resolve_config(config_file=config, overrides=overrides)


@dataclass
class Plan:
    """A launch, checked: everything needed to build the bundle and submit it."""

    source: Optional[str]  # None: the git checkout's entry script
    config: TrainConfig
    backend_name: str
    backend: object
    args: list
    name: str
    metric_definitions: list
    inputs: dict
    registry: Registry
    interruptions: list
    checkout: Optional[git_source.Checkout] = None  # code from git, until close()
    entry: str = SCRIPT_NAME
    tree: Optional[Path] = None                    # a code directory (an exported bundle's code)
    tree_origin: dict = field(default_factory=dict)  # where that tree came from
    included: Optional[includes.Included] = None   # --include: helper cells and files
    requirements_file: Optional[Path] = None       # --requirements, or requirements.txt beside the notebook
    software: Optional[software.Software] = None   # set by build(): requirements, image, wheels

    def build(self) -> Bundle:
        """The bundle, in a temporary directory: the code (the git checkout or tree, with the
        included cells and files staged beside it), its requirements (checked against the training
        image, which is chosen here) and the launch files."""
        tree = self.checkout.path if self.checkout is not None else self.tree
        with includes.staged(self.source, self.included, tree=tree, script=self.entry) as code:
            gpus = 0 if self.config.use_cpu else gpu_count()
            try:
                self.software = software.resolve(self.backend_name, self.config, code, self.requirements_file,
                                                 gpus=gpus, log=progress)
            except (RequirementsError, WheelhouseError) as e:
                raise LaunchError(str(e)) from None
            return build_bundle(config=self.config, args=self.args, name=self.name, inputs=self.inputs,
                                metric_definitions=self.metric_definitions, origin=self.origin(),
                                requirements=self.software.requirements, wheels=self.software.wheels,
                                image=self.software.image, **code.kwargs())

    def origin(self) -> dict:
        return self.checkout.origin() if self.checkout is not None else dict(self.tree_origin)

    def close(self) -> None:
        """Remove the git checkout (once its files are in the bundle, or when not launching)."""
        if self.checkout is not None:
            self.checkout.cleanup()


def fetch_code(source: Optional[str], git_repo: Optional[str], git_branch: Optional[str],
               git_commit: Optional[str], entry: Optional[str]) -> Optional[git_source.Checkout]:
    """Fetch the repository (last of the checks, into a temporary directory) and check the
    entry script the job will run; a refusal leaves no checkout behind."""
    if not git_repo:
        return None
    try:
        checkout = git_source.fetch(git_repo, branch=git_branch, commit=git_commit)
    except git_source.GitSourceError as e:
        raise LaunchError(str(e)) from None
    try:
        clashes = tree_clashes(checkout.path)
        if clashes:
            raise git_source.GitSourceError(f"{checkout.url} has its own top-level {', '.join(clashes)}, which "
                                            "sm_magic writes into every bundle: rename them in the repository")
        if source is None:
            checkout.check_entry(entry or SCRIPT_NAME)
    except BaseException as e:
        checkout.cleanup()
        if isinstance(e, git_source.GitSourceError):
            raise LaunchError(str(e)) from None
        raise
    return checkout


def plan(source: Optional[str], config=None, args: Sequence[str] = (), *, name: Optional[str] = None,
         backend: Optional[str] = None, inputs: Iterable[str] = (),
         metrics: Iterable[Union[str, MetricDefinition]] = (), jobs_dir: Optional[str] = None,
         registry: Optional[Registry] = None, simulate_interruptions: Iterable[float] = (),
         git_repo: Optional[str] = None, git_branch: Optional[str] = None, git_commit: Optional[str] = None,
         entry: Optional[str] = None, tree: Optional[Path] = None, script: Optional[str] = None,
         origin: Optional[dict] = None, include: Iterable[str] = (), include_cells=None, notebook_names=None,
         requirements: Union[str, os.PathLike, None] = None, **overrides) -> Plan:
    """Check a launch without writing anything: config, cell, names, backend, registry, and
    last the git repository (fetched into a temporary checkout: call `close()` on the plan).

    `tree`: a code directory to bundle (e.g. an exported bundle's code), `script` its entry
    script, `origin` recorded as where it came from. `include`: tags of `%%sagemaker_include`
    cells (`include_cells`: tag -> cell sources) or .py files to bundle too. `notebook_names`:
    the notebook's own names (a Mapping also says where each is defined); a cell that reads one
    it never defines is refused (includes.check_names). `requirements`: a requirements file that
    replaces the generated requirements.txt."""
    cfg = resolve_launch_config(config, overrides)
    args = check_script_args(args)
    backend_name = backend or cfg.backend
    if backend_name not in BACKEND_NAMES:
        raise LaunchError(f"unknown backend {backend_name!r}: choose one of {', '.join(BACKEND_NAMES)}")
    if cfg.num_machines > 1 and cfg.distributed_type == "NO":
        raise LaunchError(f"num_machines {cfg.num_machines} with distributed_type NO would run the whole training "
                          f"once on each host ({cfg.num_machines} times the bill, each writing the same model): set "
                          "distributed_type DATA_PARALLEL to split the work across the hosts, or num_machines 1")
    if requirements is not None and not Path(requirements).is_file():
        raise LaunchError(f"requirements file {requirements}: no such file")
    try:
        git_source.check_options(git_repo, git_branch, git_commit, entry)
    except git_source.GitSourceError as e:
        raise LaunchError(str(e)) from None
    if git_repo and source is not None and not source.strip():
        source = None  # a blank cell under --git-repo: the repository's entry script
    if source is None and not git_repo:
        raise LaunchError("no script to run: give the script's text, or git_repo=URL (--git-repo) to run one "
                          "from a repository")
    if source is not None:
        check_source(source)
    if tree is not None and git_repo:
        raise LaunchError("give a code tree or a git repository, not both")
    included = includes.resolve(include, include_cells)
    if source is not None:
        includes.check_names(source, included, notebook_names, include_cells)
    metric_defs = parse_metrics(metrics, cfg)
    channel_map = parse_inputs(inputs, cfg)
    name = check_job_name(name) if name else job_name(cfg.base_job_name)
    interruptions = [float(x) for x in simulate_interruptions or ()]
    if interruptions and backend_name != "local":
        raise LaunchError(f"--simulate-interruption works on the local backend only, not {backend_name}: "
                          "there, spot interruptions are real")
    if any(not x > 0 for x in interruptions):
        raise LaunchError("--simulate-interruption SECONDS: give the seconds of training after which to "
                          "interrupt, a number above 0")
    options = {"jobs_dir": jobs_dir} if backend_name in LOCAL_BACKENDS and jobs_dir else _backend_options(backend_name, cfg)
    be = get_backend(backend_name, **options)
    if hasattr(be, "check_config"):
        be.check_config(cfg)
    registry = registry or Registry()
    if registry.get(name) is not None:
        raise LaunchError(f"a job named {name} is already in the registry: choose another --name")
    checkout = fetch_code(source, git_repo, git_branch, git_commit, entry)
    return Plan(source, cfg, backend_name, be, [str(a) for a in args], name, metric_defs, channel_map, registry,
                interruptions, checkout, git_source.check_entry_path(entry) if entry else script or SCRIPT_NAME,
                tree=Path(tree) if tree is not None else None, tree_origin=dict(origin or {}), included=included,
                requirements_file=Path(requirements).absolute() if requirements is not None else None)


def launch(source: Optional[str], config: Union[TrainConfig, str, os.PathLike, None] = None, args: Sequence[str] = (),
           wait: bool = False, **overrides) -> Job:
    """Run the script text `source` as a training job and return its `Job`.

    `config` is a TrainConfig, a YAML path or None (accelerate's SageMaker default config if any,
    else defaults). Keyword overrides: `name`, `backend`, `inputs` (NAME=URI strings), `metrics`
    (NAME=REGEX strings), `jobs_dir`, `simulate_interruptions` (seconds; local backend only: each
    kills the job that far into a run of its hosts, which then restart), and any config field (`instance_type`, `instance_count`,
    `mixed_precision`, ...). Code from git: `git_repo` (URL), `git_branch` or `git_commit` (full
    or abbreviated SHA), `entry` (the script's path in the repository, default train.py); the
    whole repository at that commit becomes the bundle, `source` (None, or text that replaces the
    entry script) is optional, and the commit is recorded in the job's registry record and
    sm_launch.json. `requirements`: a requirements file that replaces the generated
    requirements.txt. `args` reach the script exactly as given. With `wait=True` this
    returns when the job ends and raises JobFailedError if it failed.
    Everything is checked before anything is written: a refused launch leaves nothing behind.
    """
    p = plan(source, config, args, **overrides)
    try:
        if hasattr(p.backend, "check_writable"):
            p.backend.check_writable()
        bundle = p.build()
    finally:
        p.close()
    try:
        _register(p, bundle)
        try:
            options = {"interruptions": p.interruptions} if p.interruptions else {}
            name = p.backend.submit(bundle, p.config, **options)
        except BaseException:
            _unregister(p)
            raise
    finally:
        shutil.rmtree(bundle.path.parent, ignore_errors=True)  # the backend moved or uploaded it
    job = _job(name, p.backend, p.metric_definitions, p.registry)
    return job.wait() if wait else job


def _register(p: Plan, bundle: Bundle) -> None:
    """Record the job before it starts: a launch either registers its job or starts none."""
    location = str(p.backend.job_dir(p.name)) if hasattr(p.backend, "job_dir") else p.name
    record = JobRecord(name=p.name, backend=p.backend_name, created=time.time(),
                       instance_type=p.config.ec2_instance_type, instance_count=p.config.num_machines,
                       location=location, hyperparameters=bundle.hyperparameters,
                       extra={"metric_definitions": [m.to_api() for m in p.metric_definitions],
                              "backend_options": _backend_options(p.backend_name, p.config),
                              **({"image": bundle.image.to_record()} if bundle.image else {}),
                              **p.origin()})
    try:
        p.registry.add(record, on_wait=progress)
    except RegistryError as e:
        raise LaunchError(f"{e}; nothing was started") from None


def _unregister(p: Plan) -> None:
    """Forget a job whose start failed, so its name is free again."""
    try:
        p.registry.remove(p.name)
    except RegistryError as e:
        progress(f"could not remove {p.name}, which did not start, from the job registry: {e}")


def dry_run(source: Optional[str], config=None, args: Sequence[str] = (), **overrides) -> str:
    """What `launch` would run, as text; nothing is written or started."""
    p = plan(source, config, args, **overrides)
    try:
        bundle = p.build()
    finally:
        p.close()
    code = ([f"Code: {p.checkout.describe()}; entry script {p.entry}"
             + (" (replaced by the given source)" if p.source is not None else "")] if p.checkout else [])
    try:
        remote = hasattr(p.backend, "dry_run")  # a remote backend shows the request it would send
        out = [f"Dry run: nothing {'submitted' if remote else 'launched'}. Job {p.name} on the {p.backend_name} "
               "backend.", *code, *_software_text(p.software), *_command_text(p, bundle)]
        if remote:
            return "\n".join([*out, "", p.backend.dry_run(bundle, p.config)])
        out += ["", "Config:", *("  " + l for l in p.config.to_yaml().splitlines()),
                "", f"Hyperparameters: {json.dumps(bundle.hyperparameters)}",
                "", "Bundle files: " + ", ".join(sorted(f.name for f in bundle.path.iterdir()))]
        if p.inputs:
            out += ["Inputs: " + ", ".join(f"{k}={v}" for k, v in p.inputs.items())]
        if p.metric_definitions:
            out += ["Metric definitions: " + ", ".join(f"{m.name}={m.regex}" for m in p.metric_definitions)]
        return "\n".join(out)
    finally:
        shutil.rmtree(bundle.path.parent, ignore_errors=True)


def _software_text(sw: software.Software) -> list[str]:
    out = []
    if sw.image is not None:
        out += ["", f"Image: {sw.image.uri}", f"  chosen: {sw.image.reason}"]
    out += ["", f"requirements.txt ({sw.origin}):", *("  " + r for r in sw.requirements)]
    if sw.wheels is not None:
        out += [f"  installed offline (network isolation) from {len(sw.wheels.files)} wheels carried in the bundle, "
                f"{sw.wheels.size / 1e6:.1f} MB" + (" (from the cache)" if sw.wheels.cached else "")]
    return out


def _command_text(p: Plan, bundle: Bundle) -> list[str]:
    """What the entry command runs on the first host, when its GPU count is known."""
    hosts = [f"algo-{i}" for i in range(1, p.config.num_machines + 1)]
    if p.config.use_cpu:
        gpus = 0
    else:
        gpus = gpu_count() if p.backend_name == "local" else instance_gpus(p.config.ec2_instance_type)
    out = ["", f"Entry command: {' '.join(bundle.entry_command)}"]
    if gpus is None:
        return out + [f"  on {p.config.ec2_instance_type} it runs accelerate launch with one process per GPU"]
    spec = json.loads((bundle.path / "sm_launch.json").read_text())
    cmd, notes = launch_command(spec, {"SM_HOSTS": json.dumps(hosts), "SM_CURRENT_HOST": hosts[0],
                                       "SM_NUM_GPUS": str(gpus)}, bundle_dir=".")
    return out + [f"  on {hosts[0]} ({gpus} GPU{'s' if gpus != 1 else ''}) it runs: "
                  f"{shlex.join(['accelerate', 'launch', *cmd[3:]])}", *(f"  note: {n}" for n in notes)]


def _job(name: str, backend, metric_defs, registry: Registry) -> Job:
    def record_status(state):
        if state.extra.get("state_unwritten"):  # the job's own record may still change (disk full)
            return
        try:
            registry.update(name, status=state.status)
        except Exception:  # the registry is an index; a job must not fail because of it
            pass
    return Job(name, backend, metric_defs, on_status=record_status)


def attach(name: str, registry: Optional[Registry] = None) -> Job:
    """A `Job` for a job launched earlier (by this or another kernel), found in the registry."""
    registry = registry or Registry()
    record = registry.get(name)
    if record is None:
        raise LaunchError(f"no job named {name} in the registry ({registry.path}); "
                          "`%sagemaker_jobs` (or `sm-magic jobs`) lists the known jobs")
    options = ({"jobs_dir": str(Path(record.location).parent)} if record.backend in LOCAL_BACKENDS
               else record.extra.get("backend_options", {}))
    try:
        be = get_backend(record.backend, **options)
    except BackendError as e:
        raise LaunchError(str(e)) from None
    defs = [MetricDefinition(d["Name"], d["Regex"]) for d in record.extra.get("metric_definitions", [])]
    return _job(name, be, defs, registry)


@dataclass
class JobRow:
    """One job as `%sagemaker_jobs` and `sm-magic jobs` list it."""

    record: JobRecord
    status: str            # its current TrainingJobStatus, or "Unknown" when it cannot be read
    note: str = ""         # what is wrong with the job's record or files, when something is


def list_jobs(limit: Optional[int] = None, registry: Optional[Registry] = None) -> list[JobRow]:
    """Registry records, newest first, each with its current status (asked of the backend for
    jobs the registry last saw running). A job whose record or files cannot be read is listed
    as "Unknown" with a note saying why; it never hides the others."""
    registry = registry or Registry()
    rows = []
    for record in registry.list(limit=limit):
        row = JobRow(record, record.status, record.extra.get("unreadable", ""))
        if record.status not in TERMINAL_STATUSES:
            try:
                row.status = attach(record.name, registry).status
            except Exception as e:  # noqa: BLE001 - whatever broke this job must not break the list
                row.status, row.note = "Unknown", _one_line(e)
        rows.append(row)
    return rows


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if isinstance(error, (LaunchError, BackendError)) else f"{type(error).__name__}: {text}"
