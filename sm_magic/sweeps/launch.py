"""`sm_magic.sweep(...)` and the magic's `--sweep`: a grid of script arguments, one job per point.

Everything is checked before the first job starts: the grid, its size, the parallelism, the
sweep's name, and every point's own launch request through `planner.plan` (the one planner), so a
refusal launches nothing and writes nothing. Then the Sweep (sweep.py) starts the points, at
most `max_parallel` at once.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from ..backends import backend_class
from ..bundle.git_source import Checkout
from ..config.model import TrainConfig, check_script_args
from ..jobs.job import Job
from ..jobs.registry import Registry
from ..plan import planner
from ..plan.checks import LaunchError, job_name
from ..plan.request import LaunchRequest
from . import grid as sweep_grid
from . import record as sweep_record
from .record import sweep_records_named
from .sweep import Point, Sweep, grid_record, is_live, remember


@dataclass
class SweepPlan:
    """A sweep, checked: its name, grid, one checked launch plan per point, and how many run at once.
    The points of a sweep from git share one checkout, fetched once; `close()` removes it."""

    name: str
    grid: dict[str, list[str]]
    entries: list[Point]
    plans: list[planner.Plan]           # entries[i]'s, launched as they are (nothing is planned twice)
    backend: str
    max_parallel: int
    registry: Registry
    checkout: Checkout | None = None

    def close(self) -> None:
        if self.checkout is not None:
            self.checkout.cleanup()


def default_parallel(backend: str, config: TrainConfig) -> int | None:
    """How many jobs of a sweep run at once when not asked (None: all). On a local backend, one
    host per CPU, as the local backend bounds a job's hosts (its max_hosts; at least 1 job):
    each job's hosts are processes here, so more would only share the CPUs. On a machine with
    GPUs (and use_cpu off) one at a time: every local job is given every GPU. On SageMaker all
    of them; the account's quota holds back what it refuses, which is retried."""
    here = backend_class(backend)
    hosts = here.max_hosts()
    if hosts is None:
        return None
    if here.host_gpus() and not config.use_cpu:
        return 1
    return max(1, min(os.cpu_count() or 1, hosts) // config.num_machines)


def _check_parallel(asked) -> None:
    if asked is not None and (isinstance(asked, bool) or not isinstance(asked, int) or asked < 1):
        raise LaunchError(f"--sweep-max-parallel (max_parallel) {asked!r}: give a whole number of jobs to run at "
                          "once, 1 or more")


def _parallel(asked: int | None, backend: str, config: TrainConfig, count: int) -> int:
    chosen = default_parallel(backend, config) if asked is None else asked
    parallel = count if chosen is None else min(chosen, count)
    hosts = backend_class(backend).max_hosts() if asked is not None else None
    if hosts is not None:
        cap = max(1, hosts // config.num_machines)
        if parallel > cap:
            raise LaunchError(
                f"--sweep-max-parallel {asked}: the {backend} backend runs every host as processes on this machine, "
                f"at most {hosts} hosts at once ({os.cpu_count()} CPUs here), and each job of this sweep "
                f"has {config.num_machines}: give --sweep-max-parallel {cap} or fewer, or run the sweep on SageMaker")
    return parallel


def _check_name_free(name: str, registry: Registry) -> None:
    if registry.get(name) is not None:
        raise LaunchError(f"a job named {name} is already in the registry, and `%sagemaker_attach {name}` must find "
                          "one thing: choose another --name for the sweep")
    taken = sweep_records_named(name, registry)
    if taken or is_live(name, registry) or sweep_record.read(registry, name) is not None:
        jobs = f" (its jobs {', '.join(taken[:3])}{', ...' if len(taken) > 3 else ''})" if taken else ""
        raise LaunchError(f"a sweep named {name} is already in the registry{jobs}: choose another --name")


def plan_sweep(request: LaunchRequest, grid: Mapping[str, Sequence], *, max_parallel: int | None = None,
               yes: bool = False, registry: Registry | None = None) -> SweepPlan:
    """Check a sweep without starting or writing anything: the grid (names, values, duplicates),
    its size (more than 100 jobs need `yes`), no swept name also in the script's own arguments,
    `max_parallel`, the sweep's name (`request.job.name`, else base_job_name plus a timestamp)
    and that no job or sweep has it, then every point's request through `planner.plan`. A sweep from
    git keeps the one checkout its points share until the plan's `close()`."""
    checked = sweep_grid.check_grid(grid)
    count = sweep_grid.check_size(checked, yes)
    _check_parallel(max_parallel)
    args = check_script_args(request.args)
    sweep_grid.check_args_free(checked, args)
    config = planner.request_config(request)
    given = request.job.name
    name = sweep_grid.check_sweep_name(given or job_name(config.base_job_name), count, given=bool(given))
    registry = registry or Registry()
    _check_name_free(name, registry)
    combos = sweep_grid.points(checked)
    names = sweep_grid.job_names(name, count)
    requests = [replace(request, args=sweep_grid.point_args(values, args), job=replace(request.job, name=job))
                for values, job in zip(combos, names)]
    first = planner.plan(requests[0], registry=registry)
    # One checkout for every point: fetched once, so a branch that moves while the sweep runs
    # cannot give its jobs different code.
    checkout, first.owns_checkout = first.checkout, False
    try:
        parallel = _parallel(max_parallel, first.backend_name, first.config, count)
        plans = [first] + [planner.plan(r, registry=registry, checkout=checkout) for r in requests[1:]]
    except BaseException:
        if checkout is not None:
            checkout.cleanup()
        raise
    entries = [Point(i, job, values) for i, (job, values) in enumerate(zip(names, combos), start=1)]
    return SweepPlan(name, checked, entries, plans, first.backend_name, parallel, registry, checkout)


def _launcher(plan: SweepPlan) -> Callable[[Point], Job]:
    plans = {point.index: p for point, p in zip(plan.entries, plan.plans)}

    def launch(point: Point) -> Job:
        # The whole grid in every record: attaching by the sweep's name can tell what never ran.
        record = {"sweep": {"name": plan.name, "index": point.index, "size": len(plan.entries),
                            "values": point.values, "grid": grid_record(plan.grid)}}
        return plans.pop(point.index).launch(extra=record)

    return launch


def start_sweep(request: LaunchRequest, grid: Mapping[str, Sequence], *, max_parallel: int | None = None,
                yes: bool = False, registry: Registry | None = None) -> Sweep:
    """Plan the sweep, start its first point here and queue the rest (sweeps.Sweep.start)."""
    plan = plan_sweep(request, grid, max_parallel=max_parallel, yes=yes, registry=registry)
    sweep = Sweep(plan.name, plan.grid, plan.entries, launcher=_launcher(plan), max_parallel=plan.max_parallel,
                  backend=plan.backend, on_settled=plan.close, registry=plan.registry)
    sweep.start()
    remember(sweep, plan.registry)
    return sweep


def sweep(source: str | None, grid: Mapping[str, Sequence], config: TrainConfig | str | os.PathLike | None = None,
          args: Sequence[str] = (), max_parallel: int | None = None, yes: bool = False, wait: bool = False,
          **keywords) -> Sweep:
    """Run the script text `source` once per point of a grid of script arguments: `sm_magic.sweep`.

    Everything is checked before the first job starts.

    Args:
        source: the training script's text, as `sm_magic.launch` takes it.
        grid: script argument names and their values, e.g. {"lr": [0.01, 0.1], "batch-size":
            [32, 64]} (4 jobs); each job gets its values as arguments (`--lr 0.01 --batch-size
            32`) before `args`, recorded as its hyperparameters.
        config: as `sm_magic.launch` takes it.
        args: arguments every job gets after its grid values.
        max_parallel: at most that many jobs at once, the rest queued (default: on a local
            backend the hosts this machine runs at once; on SageMaker all, a launch the account's
            quota refuses waiting to be tried again).
        yes: needed for more than 100 jobs.
        wait: return once every job has ended (a failed job does not raise).
        **keywords: `name`, the sweep's name (default: base_job_name and a timestamp; its jobs
            are `<name>-1`, `<name>-2`, ...), and every other keyword `sm_magic.launch` takes.

    Returns:
        The Sweep: its points, jobs, `wait()`, `stop()` and `compare()`.

    Raises:
        LaunchError: the grid or the launch cannot run; the message says what to change.

    Example:
        sweep = sm_magic.sweep(source, {"lr": [1e-4, 3e-4]}, "sagemaker.yaml", max_parallel=2)
        sweep.wait().compare(sort_by="accuracy")
    """
    registry = keywords.pop("registry", None)
    request = LaunchRequest.from_keywords(source, config, args, **keywords)
    started = start_sweep(request, grid, max_parallel=max_parallel, yes=yes, registry=registry)
    return started.wait() if wait else started


def dry_run_sweep(request: LaunchRequest, grid: Mapping[str, Sequence], *, max_parallel: int | None = None,
                  yes: bool = False, registry: Registry | None = None) -> str:
    """What start_sweep would run, as text: each job's name and script arguments, then the first
    job's dry run. Every point is checked; nothing is started or written."""
    plan = plan_sweep(request, grid, max_parallel=max_parallel, yes=yes, registry=registry)
    try:
        first = plan.plans[0].dry_run()
    finally:
        plan.close()
    count = len(plan.entries)
    lines = [f"Dry run: nothing started. Sweep {plan.name}: {count} job{'s' if count != 1 else ''} on the "
             f"{plan.backend} backend, at most {plan.max_parallel} at a time."]
    width = max(len(p.name) for p in plan.entries)
    lines += [f"  {p.name.ljust(width)}  {shlex.join(r.job.args)}" for p, r in zip(plan.entries, plan.plans)]
    return "\n".join([*lines, "", "The first job:", first])
