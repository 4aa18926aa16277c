"""`plan`, the one planner, and its two uses: a checked Plan is launched (`Plan.launch`) or shown
as a dry run (`Plan.dry_run`). `sm_magic.launch` and `dry_run` are those from plain Python, no
IPython needed.

Every launch is a request.LaunchRequest checked by `plan`: `launch` and `dry_run` make one from
their keyword arguments, the magic and `sm-magic export` from the `%%sagemaker_train` line
(train_line.parse), `sm-magic run` from an exported bundle's job.json. A job launched earlier is
found again by jobs.lookup."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..backends import BACKEND_NAMES, Backend, SubmitOptions, backend_class, get_backend
from ..bundle import git_source, includes
from ..bundle.build import SCRIPT_NAME, Bundle, BundleCode, JobSpec, Software, build_bundle, tree_clashes
from ..config.model import TrainConfig, check_script_args
from ..config.resolve import resolve_config
from ..console import progress
from ..jobs.job import Job
from ..jobs.lookup import job_handle
from ..jobs.registry import JobRecord, Registry, RegistryError
from ..software import requirements as reqs
from ..software.requirements import RequirementsError
from ..software.wheelhouse import WheelhouseError
from . import software
from .checks import LaunchError, absolute_local, check_code, check_distribution, check_job_name, job_name, parse_inputs, parse_metrics
from .dry_run_text import command_lines, software_lines
from .request import KEEP_ALIVE_FIELD, CodeSource, LaunchRequest


@dataclass
class Plan:
    """A launch request, checked: everything needed to build the bundle and submit it. Its two
    uses: `launch()` and `dry_run()`; either closes it."""

    request: LaunchRequest
    job: JobSpec        # its name is None only in an export's plan of a cell without --name
    code: BundleCode    # the entry script's text (None: the checkout's or the tree's own), its tree and path
    backend: Backend
    registry: Registry | None  # None in an export's plan: nothing is registered
    interruptions: tuple[float, ...]
    checkout: git_source.Checkout | None = None  # code from git, until close()
    owns_checkout: bool = True                   # close() removes it (a sweep's points share one)
    included: includes.Included | None = None   # --include: helper cells and files
    requirements_file: Path | None = None       # --requirements, or requirements.txt beside the notebook
    software: Software | None = None   # set by build(): requirements, image, wheels
    export: bool = False               # planned for `sm-magic export` (see plan)

    @property
    def config(self) -> TrainConfig:
        return self.job.config

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def job_key(self) -> tuple[str, Registry]:
        """The job's name and the registry that records it: a launch's plan has both, an export's
        neither (`sm-magic run` plans the exported request again)."""
        if self.job.name is None or self.registry is None:
            raise LaunchError("this plan was made for an export: plan the request again to launch it")
        return self.job.name, self.registry

    def build(self, dest: Path | None = None, name: str | None = None) -> Bundle:
        """The bundle, in a temporary directory (or `dest`, named `name`): the code (the git
        checkout or tree, with the included cells and files staged beside it), its requirements
        (checked against the training image, which is chosen here; an export's are those of the
        default image, its image being chosen when it runs) and the launch files."""
        c = self.code
        with includes.staged(c.source, self.included, tree=c.tree, script=c.script) as code:
            try:
                self.software = software.resolve(None if self.export else type(self.backend), self.config,
                                                 code, self.requirements_file, log=progress)
            except (RequirementsError, WheelhouseError) as e:
                raise LaunchError(str(e)) from None
            return build_bundle(code, replace(self.job, name=name or self.job_key()[0]), self.software, dest=dest)

    def launch(self, wait: bool = False, extra: dict | None = None) -> Job:
        """Build the bundle, register the job and start it; the plan is closed.

        Args:
            wait: return when the job ends (JobFailedError if it failed).
            extra: kept in the job's registry record (e.g. the sweep it is a point of).

        Returns:
            The started Job.
        """
        try:
            self.backend.check_writable()
            bundle = self.build()
        finally:
            self.close()
        try:
            _register(self, bundle, extra or {})
            try:
                name = self.backend.submit(bundle, self.config, SubmitOptions(interruptions=self.interruptions))
            except BaseException:
                _unregister(self)
                raise
        finally:
            shutil.rmtree(bundle.path.parent, ignore_errors=True)  # the backend moved or uploaded it
        job = job_handle(name, self.backend, self.job.metric_definitions, self.job_key()[1])
        return job.wait() if wait else job

    def dry_run(self) -> str:
        """What `launch` would run, as text: what every backend shows (the job, the code, its
        software, the entry command), then what this backend would do with the bundle. Nothing
        is registered or started; the plan is closed.

        Returns:
            The text.
        """
        try:
            bundle = self.build()
        finally:
            self.close()
        code = ([f"Code: {self.checkout.describe()}; entry script {self.code.script}"
                 + (" (replaced by the given source)" if self.code.source is not None else "")]
                if self.checkout else [])
        try:
            return "\n".join([f"Dry run: nothing started. Job {self.job.name} on the {self.backend_name} backend.",
                              *code, *software_lines(self.software),
                              *command_lines(self.config, type(self.backend), bundle),
                              "", self.backend.dry_run(bundle, self.config)])
        finally:
            shutil.rmtree(bundle.path.parent, ignore_errors=True)

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
    """Check a launch request without writing anything: the config, the script, names, inputs,
    metrics, the backend and what it can run, the registry, and last the git repository (fetched
    into a temporary checkout: call `close()` on the plan, or use it: `launch()` and `dry_run()`
    close it). The one planner: the magic, the form's Launch button, `launch`, `dry_run`, the
    sweeps, `sm-magic export` and `sm-magic run` all plan here.

    Args:
        request: the launch as asked for.
        registry: the registry the job's name is checked against (default: this user's).
        export: checked for a bundle that runs later (`sm-magic run`): no job name is chosen
            (the plan's name is the cell's --name, or None), the registry is not asked, and the
            requirements are those of the default image (the job's image is chosen when it runs).
        checkout: the request's repository, already fetched and checked by an earlier plan of
            the same code (a sweep's first point); used as it is, not fetched again, and not
            removed by `close()`.

    Returns:
        The Plan. Raises LaunchError (or the error of the part refused) saying what to change.

    Example: `plan(LaunchRequest.from_keywords("print(1)", backend="local")).dry_run()`
    """
    code, options, notebook = request.code, request.job, request.notebook
    cfg = request_config(request)
    args = check_script_args(request.args)
    backend_name = options.backend or cfg.backend
    if backend_name not in BACKEND_NAMES:
        raise LaunchError(f"unknown backend {backend_name!r}: choose one of {', '.join(BACKEND_NAMES)}")
    check_distribution(cfg)
    requirements = _requirements_file(_here(code.requirements, notebook.directory))
    try:
        git_source.check_options(code.git_repo, code.git_branch, code.git_commit, code.entry)
    except git_source.GitSourceError as e:
        raise LaunchError(str(e)) from None
    entry = git_source.check_entry_path(code.entry) if code.entry else code.script or SCRIPT_NAME
    source = check_code(code, entry)
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
    origin = {**(checkout.origin() if checkout is not None else {}), **code.origin}
    job = JobSpec(cfg, args, name, channel_map, metric_defs, origin)
    tree = checkout.path if checkout is not None else code.tree
    return Plan(request, job, BundleCode(source, tree, entry), be, None if export else registry, interruptions,
                checkout, not shared, included=included, requirements_file=requirements, export=export)


def launch(source: str | None, config: TrainConfig | str | os.PathLike | None = None, args: Sequence[str] = (),
           wait: bool = False, **overrides) -> Job:
    """Run the script text `source` as a training job: `sm_magic.launch`, the magic's core.

    Everything is checked before anything is written: a refused launch leaves nothing behind.

    Args:
        source: the training script's text (a cell). None with `git_repo`: the repository's own
            entry script; text there replaces it.
        config: a TrainConfig, the path of an accelerate config YAML, or None (accelerate's
            SageMaker default config if there is one, else the defaults).
        args: the script's own arguments, reaching it exactly as given and recorded as the
            job's hyperparameters.
        wait: return only when the job has ended.
        **overrides: `name`, `backend` ("local", "sagemaker", "local-container"), `inputs`
            (NAME=URI strings), `metrics` (NAME=REGEX strings), `jobs_dir`, `requirements` (a file
            that replaces the generated requirements.txt), `keep_alive` (minutes of a SageMaker
            warm pool), `max_cost` (dollars), `simulate_interruptions` (seconds into each run of
            the hosts; local backend only), code from git (`git_repo`, `git_branch` or
            `git_commit`, `entry`), and any config field (`instance_type`, `instance_count`,
            `mixed_precision`, ...).

    Returns:
        The Job, running (or ended, with `wait=True`).

    Raises:
        LaunchError: the request cannot run; the message says what to change. ConfigError,
            BundleError and the other usage errors likewise name the field or line.
        JobFailedError: with `wait=True`, the job failed (its failure reason is the message).

    Example:
        job = sm_magic.launch(open("train.py").read(), "sagemaker.yaml", ["--epochs", "3"])
        job.wait().metrics
    """
    registry = overrides.pop("registry", None)
    return plan(LaunchRequest.from_keywords(source, config, args, **overrides), registry=registry).launch(wait)


def dry_run(source: str | None, config: TrainConfig | str | os.PathLike | None = None, args: Sequence[str] = (),
            **overrides) -> str:
    """What `launch` would run, as text; nothing is written or started.

    Args:
        source, config, args, overrides: as `launch` takes them.

    Returns:
        The dry run's text (Plan.dry_run).

    Example: `print(sm_magic.plan.planner.dry_run("print(1)", backend="local"))`
    """
    return plan(LaunchRequest.from_keywords(source, config, args, **overrides)).dry_run()


def _register(p: Plan, bundle: Bundle, extra: dict) -> None:
    """Record the job before it starts: a launch either registers its job or starts none."""
    name, registry = p.job_key()
    record = JobRecord(name=name, backend=p.backend_name, created=time.time(),
                       instance_type=p.config.ec2_instance_type, instance_count=p.config.num_machines,
                       location=p.backend.job_location(name), hyperparameters=bundle.hyperparameters,
                       extra={"metric_definitions": [m.to_api() for m in p.job.metric_definitions],
                              "backend_options": type(p.backend).find_options(p.config),
                              **({"image": bundle.image.to_record()} if bundle.image else {}),
                              **({"accelerate": p.software.launcher.to_record()}
                                 if p.software is not None and p.software.launcher is not None else {}),
                              **({"keep_alive_seconds": p.config.keep_alive_period_in_seconds}
                                 if p.config.keep_alive_period_in_seconds and p.backend.traits.warm_pools else {}),
                              **p.job.origin, **extra})
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
