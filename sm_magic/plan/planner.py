"""`launch` and `attach`: the whole core path from plain Python, no IPython needed.

Every launch is a request.LaunchRequest checked by `plan`, the one planner: `launch` and
`dry_run` make one from their keyword arguments, the magic and `sm-magic export` from the
`%%sagemaker_train` line (train_line.parse), `sm-magic run` from an exported bundle's job.json."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..backends import (BACKEND_NAMES, TERMINAL_STATUSES, Backend, BackendError, SubmitOptions, backend_class,
                        get_backend)
from ..console import progress
from ..bundle.build import SCRIPT_NAME, Bundle, build_bundle, check_source, tree_clashes
from ..jobs import final_metrics
from ..bundle import git_source, includes
from . import software
from ..software import requirements as reqs
from ..config.model import TrainConfig, check_script_args
from ..config.resolve import resolve_config
from ..jobs.job import Job
from .checks import LaunchError, absolute_local, check_job_name, job_name, parse_inputs, parse_metrics
from .dry_run_text import command_lines, software_lines
from ..metrics.parser import MetricDefinition
from ..jobs.registry import JobRecord, Registry, RegistryError
from .request import KEEP_ALIVE_FIELD, CodeSource, LaunchRequest
from ..software.requirements import RequirementsError
from ..software.wheelhouse import WheelhouseError

@dataclass
class Plan:
    """A launch request, checked: everything needed to build the bundle and submit it."""

    request: LaunchRequest
    source: str | None  # the entry script's text; None: the git checkout's or the tree's own
    config: TrainConfig
    backend: Backend
    args: list[str]
    name: str | None    # None only in an export's plan of a cell without --name
    metric_definitions: list[MetricDefinition]
    inputs: dict[str, str]
    registry: Registry | None  # None in an export's plan: nothing is registered
    interruptions: tuple[float, ...]
    checkout: git_source.Checkout | None = None  # code from git, until close()
    owns_checkout: bool = True                   # close() removes it (a sweep's points share one)
    entry: str = SCRIPT_NAME
    included: includes.Included | None = None   # --include: helper cells and files
    requirements_file: Path | None = None       # --requirements, or requirements.txt beside the notebook
    software: software.Software | None = None   # set by build(): requirements, image, wheels
    export: bool = False                           # planned for `sm-magic export` (see plan)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def job_key(self) -> tuple[str, Registry]:
        """The job's name and the registry that records it: a launch's plan has both, an export's
        neither (`sm-magic run` plans the exported request again)."""
        if self.name is None or self.registry is None:
            raise LaunchError("this plan was made for an export: plan the request again to launch it")
        return self.name, self.registry

    def build(self, dest: Path | None = None, name: str | None = None) -> Bundle:
        """The bundle, in a temporary directory (or `dest`, named `name`): the code (the git
        checkout or tree, with the included cells and files staged beside it), its requirements
        (checked against the training image, which is chosen here; an export's are those of the
        default image, its image being chosen when it runs) and the launch files."""
        tree = self.checkout.path if self.checkout is not None else self.request.code.tree
        with includes.staged(self.source, self.included, tree=tree, script=self.entry) as code:
            try:
                self.software = software.resolve(None if self.export else type(self.backend), self.config,
                                                 code, self.requirements_file, log=progress)
            except (RequirementsError, WheelhouseError) as e:
                raise LaunchError(str(e)) from None
            return build_bundle(config=self.config, args=self.args, name=name or self.job_key()[0], inputs=self.inputs,
                                metric_definitions=self.metric_definitions, origin=self.origin(), dest=dest,
                                requirements=self.software.requirements, wheels=self.software.wheels,
                                image=self.software.image, **code.kwargs())

    def origin(self) -> dict:
        """Where the code came from (the git commit, the notebook or bundle), as recorded with the job."""
        return {**(self.checkout.origin() if self.checkout is not None else {}), **self.request.code.origin}

    def close(self) -> None:
        """Remove the git checkout (once its files are in the bundle, or when not launching)."""
        if self.checkout is not None and self.owns_checkout:
            self.checkout.cleanup()


def fetch_code(code: CodeSource, source: str | None) -> git_source.Checkout | None:
    """Fetch the repository (last of the checks, into a temporary directory) and check the
    entry script the job will run; a refusal leaves no checkout behind."""
    if not code.git_repo:
        return None
    try:
        checkout = git_source.fetch(code.git_repo, branch=code.git_branch, commit=code.git_commit)
    except git_source.GitSourceError as e:
        raise LaunchError(str(e)) from None
    try:
        clashes = tree_clashes(checkout.path)
        if clashes:
            raise git_source.GitSourceError(f"{checkout.url} has its own top-level {', '.join(clashes)}, which "
                                            "sm_magic writes into every bundle: rename them in the repository")
        if source is None:
            checkout.check_entry(code.entry or SCRIPT_NAME)
    except BaseException as e:
        checkout.cleanup()
        if isinstance(e, git_source.GitSourceError):
            raise LaunchError(str(e)) from None
        raise
    return checkout


def _here(path, directory: Path | None) -> Path | None:
    """A path of the request, relative to the notebook's directory when it has one."""
    if path is None:
        return None
    path = Path(path).expanduser()
    return path if path.is_absolute() or directory is None else directory / path


def request_config(request: LaunchRequest) -> TrainConfig:
    """The TrainConfig a request resolves to (its file or TrainConfig, overrides, notebook directory)."""
    given, directory = request.config.given, request.notebook.directory
    if isinstance(given, TrainConfig):
        cfg = resolve_config(base=given, overrides=request.config.overrides)
    else:
        cfg = resolve_config(config_file=_here(given, directory) if given is not None else None,
                             overrides=request.config.overrides,
                             use_accelerate_default=request.config.accelerate_default)
    if directory is not None:  # the config's own relative paths, like the line's, from the notebook's directory
        files = {key: str(_here(getattr(cfg, key), directory))
                 for key in ("sagemaker_inputs_file", "sagemaker_metrics_file") if getattr(cfg, key)}
        cfg = cfg.model_copy(update=files) if files else cfg
    return cfg


def _requirements_file(path: Path | None) -> Path | None:
    if path is None:
        return None
    if not path.exists():
        raise LaunchError(f"requirements file {path}: no such file")
    try:
        reqs.from_file(path)  # read and checked now, before anything is written
    except RequirementsError as e:
        raise LaunchError(str(e)) from None
    return path.absolute()


def _interruptions(given) -> tuple[float, ...]:
    try:
        seconds = tuple(float(x) for x in given or ())
    except (TypeError, ValueError):
        seconds = (0.0,)
    if any(not x > 0 for x in seconds):  # NaN too
        raise LaunchError("--simulate-interruption SECONDS: give the seconds of training after which to "
                          "interrupt, a number above 0")
    return seconds


def _check_keep_alive(cfg: TrainConfig, backend: type[Backend], request: LaunchRequest) -> None:
    """Warm pools are SageMaker's: asked for on this launch (--keep-alive, keep_alive=) with a
    backend that has none, refused; set in a config file used for a local run, said and left unused."""
    backend_name = backend.name
    if not cfg.keep_alive_period_in_seconds or backend.traits.warm_pools:
        return
    if KEEP_ALIVE_FIELD in request.config.overrides:
        raise LaunchError(f"--keep-alive asks SageMaker for a warm pool; the {backend_name} backend has none: "
                          "remove --keep-alive, or run with --backend sagemaker")
    progress(f"keep_alive_period_in_seconds {cfg.keep_alive_period_in_seconds} (a SageMaker warm pool) does not "
             f"apply to the {backend_name} backend: this job keeps nothing warm")


def plan(request: LaunchRequest, *, registry: Registry | None = None, export: bool = False,
         checkout: git_source.Checkout | None = None) -> Plan:
    """Check a launch request without writing anything: the config, the cell, names, inputs,
    metrics, the backend and what it can run, the registry, and last the git repository (fetched
    into a temporary checkout: call `close()` on the plan). The one planner: the magic, the form's
    Launch button, `launch`, `dry_run`, `sm-magic export` and `sm-magic run` all plan here.

    `export`: checked for a bundle that runs later (`sm-magic run`): no job name is chosen (the
    plan's name is the cell's --name, or None), the registry is not asked, and the requirements
    are those of the default image (the job's image is chosen when it runs).

    `checkout`: the request's repository, already fetched and checked by an earlier plan of the
    same code (a sweep's first point); used as it is, not fetched again, and not removed by `close()`."""
    code, options, notebook = request.code, request.job, request.notebook
    cfg = request_config(request)
    args = check_script_args(request.args)
    backend_name = options.backend or cfg.backend
    if backend_name not in BACKEND_NAMES:
        raise LaunchError(f"unknown backend {backend_name!r}: choose one of {', '.join(BACKEND_NAMES)}")
    if cfg.num_machines > 1 and cfg.distributed_type == "NO":
        raise LaunchError(f"num_machines {cfg.num_machines} with distributed_type NO would run the whole training "
                          f"once on each host ({cfg.num_machines} times the bill, each writing the same model): set "
                          "distributed_type DATA_PARALLEL (or leave it unset) to split the work across the hosts, "
                          "or num_machines 1")
    requirements = _requirements_file(_here(code.requirements, notebook.directory))
    try:
        git_source.check_options(code.git_repo, code.git_branch, code.git_commit, code.entry)
    except git_source.GitSourceError as e:
        raise LaunchError(str(e)) from None
    source = code.cell
    if code.git_repo and source is not None and not source.strip():
        source = None  # a blank cell under --git-repo: the repository's entry script
    if source is None and not code.git_repo and code.tree is None:
        raise LaunchError("no script to run: give the script's text, or git_repo=URL (--git-repo) to run one "
                          "from a repository")
    if source is not None:
        check_source(source)
    if code.tree is not None and code.git_repo:
        raise LaunchError("give a code tree or a git repository, not both")
    included = includes.resolve(code.include, notebook.tagged_cells, base_dir=notebook.directory)
    if source is not None:
        includes.check_names(source, included, notebook.names, notebook.tagged_cells)
    metric_defs = parse_metrics(options.metrics, cfg)
    channel_map = parse_inputs(options.inputs, cfg, base=notebook.directory)
    if notebook.directory is not None:  # the backend resolves a relative path from its own working directory
        channel_map = {k: absolute_local(v, notebook.directory) for k, v in channel_map.items()}
    name = check_job_name(options.name) if options.name else None
    interruptions = _interruptions(options.simulate_interruptions)
    kind = backend_class(backend_name)
    backend_options = ({"jobs_dir": options.jobs_dir} if kind.traits.job_dir and options.jobs_dir
                       else kind.find_options(cfg))
    be = get_backend(backend_name, **backend_options)
    if interruptions and not be.simulates_interruptions:
        raise LaunchError(f"--simulate-interruption works on the local backend only, not {backend_name}: "
                          "there, spot interruptions are real")
    be.check_config(cfg)
    _check_keep_alive(cfg, kind, request)
    if not export:
        registry = registry or Registry()
        name = name or job_name(cfg.base_job_name, registry=registry)  # one no other launch is given
        if registry.get(name) is not None:
            raise LaunchError(f"a job named {name} is already in the registry: choose another --name")
    shared = checkout is not None and bool(code.git_repo)
    checkout = checkout if shared else fetch_code(code, source)
    entry = git_source.check_entry_path(code.entry) if code.entry else code.script or SCRIPT_NAME
    return Plan(request, source, cfg, be, args, name, metric_defs, channel_map, None if export else registry,
                interruptions, checkout, not shared, entry, included=included, requirements_file=requirements,
                export=export)


def launch(source: str | None, config: TrainConfig | str | os.PathLike | None = None, args: Sequence[str] = (),
           wait: bool = False, **overrides) -> Job:
    """Run the script text `source` as a training job and return its `Job`.

    `config` is a TrainConfig, a YAML path or None (accelerate's SageMaker default config if any,
    else defaults). Keyword overrides: `name`, `backend`, `inputs` (NAME=URI strings), `metrics`
    (NAME=REGEX strings), `jobs_dir`, `simulate_interruptions` (seconds; local backend only: each
    kills the job that far into a run of its hosts, which then restart), `keep_alive` (minutes:
    a SageMaker warm pool, as --keep-alive), and any config field (`instance_type`, `instance_count`,
    `mixed_precision`, ...). Code from git: `git_repo` (URL), `git_branch` or `git_commit` (full
    or abbreviated SHA), `entry` (the script's path in the repository, default train.py); the
    whole repository at that commit becomes the bundle, `source` (None, or text that replaces the
    entry script) is optional, and the commit is recorded in the job's registry record and
    sm_launch.json. `requirements`: a requirements file that replaces the generated
    requirements.txt. `args` reach the script exactly as given. With `wait=True` this
    returns when the job ends and raises JobFailedError if it failed.
    Everything is checked before anything is written: a refused launch leaves nothing behind.
    """
    registry = overrides.pop("registry", None)
    return launch_request(LaunchRequest.from_keywords(source, config, args, **overrides), wait=wait, registry=registry)


def launch_request(request: LaunchRequest, wait: bool = False, registry: Registry | None = None,
                   extra: dict | None = None) -> Job:
    """Plan the request, build its bundle, register the job (with `extra` in its record's extra,
    e.g. the sweep it belongs to) and start it."""
    return launch_plan(plan(request, registry=registry), wait=wait, extra=extra)


def launch_plan(p: Plan, wait: bool = False, extra: dict | None = None) -> Job:
    """Build a checked plan's bundle, register the job and start it; the plan is closed."""
    try:
        p.backend.check_writable()
        bundle = p.build()
    finally:
        p.close()
    try:
        _register(p, bundle, extra or {})
        try:
            name = p.backend.submit(bundle, p.config, SubmitOptions(interruptions=p.interruptions))
        except BaseException:
            _unregister(p)
            raise
    finally:
        shutil.rmtree(bundle.path.parent, ignore_errors=True)  # the backend moved or uploaded it
    job = _job(name, p.backend, p.metric_definitions, p.job_key()[1])
    return job.wait() if wait else job


def _register(p: Plan, bundle: Bundle, extra: dict) -> None:
    """Record the job before it starts: a launch either registers its job or starts none."""
    name, registry = p.job_key()
    record = JobRecord(name=name, backend=p.backend_name, created=time.time(),
                       instance_type=p.config.ec2_instance_type, instance_count=p.config.num_machines,
                       location=p.backend.job_location(name), hyperparameters=bundle.hyperparameters,
                       extra={"metric_definitions": [m.to_api() for m in p.metric_definitions],
                              "backend_options": type(p.backend).find_options(p.config),
                              **({"image": bundle.image.to_record()} if bundle.image else {}),
                              **({"accelerate": p.software.launcher.to_record()}
                                 if p.software is not None and p.software.launcher is not None else {}),
                              **({"keep_alive_seconds": p.config.keep_alive_period_in_seconds}
                                 if p.config.keep_alive_period_in_seconds and p.backend.traits.warm_pools else {}),
                              **p.origin(), **extra})
    try:
        registry.add(record, on_wait=progress)
    except RegistryError as e:
        raise LaunchError(f"{e}; nothing was started") from None


def _unregister(p: Plan) -> None:
    """Forget a job whose start failed, so its name is free again."""
    name, registry = p.job_key()
    try:
        registry.remove(name)
    except RegistryError as e:
        progress(f"could not remove {name}, which did not start, from the job registry: {e}")


def dry_run(source: str | None, config=None, args: Sequence[str] = (), **overrides) -> str:
    """What `launch` would run, as text; nothing is written or started."""
    return dry_run_request(LaunchRequest.from_keywords(source, config, args, **overrides))


def dry_run_request(request: LaunchRequest) -> str:
    """What `launch_request` would run, as text: what every backend shows (the job, the code, its
    software, the entry command), then what this backend would do with the bundle."""
    return dry_run_plan(plan(request))


def dry_run_plan(p: Plan) -> str:
    """`dry_run_request` of a checked plan; the plan is closed."""
    try:
        bundle = p.build()
    finally:
        p.close()
    code = ([f"Code: {p.checkout.describe()}; entry script {p.entry}"
             + (" (replaced by the given source)" if p.source is not None else "")] if p.checkout else [])
    try:
        return "\n".join([f"Dry run: nothing started. Job {p.name} on the {p.backend_name} backend.", *code,
                          *software_lines(p.software), *command_lines(p.config, type(p.backend), bundle),
                          "", p.backend.dry_run(bundle, p.config)])
    finally:
        shutil.rmtree(bundle.path.parent, ignore_errors=True)


def _job(name: str, backend, metric_defs, registry: Registry, record_final: bool = True) -> Job:
    """A Job whose status reaches the registry; with `record_final` (not for jobs the registry saw
    end: each attach would read their log), its final metrics too, when it is seen ending."""
    def record_status(state):
        if state.extra.get("state_unwritten"):  # the job's own record may still change (disk full)
            return
        try:
            registry.update(name, status=state.status)
            if record_final and state.done:
                final_metrics.record(registry, name, state, job.metric_rows())
        except Exception:  # the registry is an index; a job must not fail because of it
            pass
    job = Job(name, backend, metric_defs, on_status=record_status)  # the hook reads its rows
    return job


def attach(name: str, registry: Registry | None = None) -> Job:
    """A `Job` for a job launched earlier (by this or another kernel), found in the registry."""
    registry = registry or Registry()
    record = registry.get(name)
    if record is None:
        raise LaunchError(f"no job named {name} in the registry ({registry.path}); "
                          "`%sagemaker_jobs` (or `sm-magic jobs`) lists the known jobs")
    try:
        kind = backend_class(record.backend)
        options = ({"jobs_dir": str(Path(record.location).parent)} if kind.traits.job_dir
                   else record.extra.get("backend_options", {}))
        be = get_backend(record.backend, **options)
    except BackendError as e:
        raise LaunchError(str(e)) from None
    defs = [MetricDefinition(d["Name"], d["Regex"]) for d in record.extra.get("metric_definitions", [])]
    return _job(name, be, defs, registry, record_final=record.status not in TERMINAL_STATUSES)


@dataclass
class JobRow:
    """One job as `%sagemaker_jobs` and `sm-magic jobs` list it."""

    record: JobRecord
    status: str            # its current TrainingJobStatus, or "Unknown" when it cannot be read
    note: str = ""         # what is wrong with the job's record or files, when something is
    metrics: dict[str, float] = field(default_factory=dict)  # an ended job's last metric values
    duration: float | None = None  # seconds from creation to its end (or to now, while it runs)
    cost: float | None = None      # USD so far, an estimate, where the backend knows a price

    @property
    def sweep(self) -> str:
        """The name of the sweep the job is a point of; "" for a job of its own."""
        info = self.record.extra.get("sweep")
        name = info.get("name") if isinstance(info, dict) else None
        return name if isinstance(name, str) else ""


def list_jobs(limit: int | None = None, registry: Registry | None = None) -> list[JobRow]:
    """Registry records, newest first, each with its current status (asked of the backend for
    jobs the registry last saw running), duration and final metrics (an ended job's from its
    record, never its log: final_metrics). A job whose record or files cannot be read is listed
    as "Unknown" with a note saying why; it never hides the others."""
    registry = registry or Registry()
    rows = []
    for record in registry.list(limit=limit):
        final = final_metrics.read(record.extra)
        row = JobRow(record, record.status, record.extra.get("unreadable", ""), final.metrics, final.duration,
                     final.cost)
        if record.status not in TERMINAL_STATUSES:
            try:
                job = attach(record.name, registry)
                state = job.describe()
                row.status, row.duration = state.status, final_metrics.duration(state)
                row.cost = final_metrics.cost(state)
                if state.done:  # ended since the registry last looked: its status hook recorded it
                    row.metrics = final_metrics.last_values(job.metric_rows())
            except Exception as e:  # noqa: BLE001 - whatever broke this job must not break the list
                row.status, row.note = "Unknown", _one_line(e)
        rows.append(row)
    return rows


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if isinstance(error, (LaunchError, BackendError)) else f"{type(error).__name__}: {text}"
