"""Sweep: one handle on the jobs of a grid of script arguments, and the queue that starts them.

A sweep's points are started in order, at most `max_parallel` at once: the first before
`sm_magic.sweep(...)` returns, the rest by one daemon thread per sweep, which starts the next
queued point when a running job ends (looking every `job.poll_interval`), so the kernel stays
free. The thread never dies silently: what goes wrong is recorded in `sweep.errors` and on the
point it happened to, and shown by the displays.

A stop may come from anywhere (this kernel, another, `sm-magic stop`): it is recorded in the
sweep's own record (record.py), which the queue reads before each launch, in the same
transaction as its claim on the point, and at least every STOP_CHECK_SECONDS while it waits.

(The module is `sweeps`, not `sweep`: importing a submodule sets the package attribute of its
name, which would replace the function `sm_magic.sweep`.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, overload

from ..display.live import LiveDisplay
from ..jobs.job import Job
from ..jobs.states import COMPLETED, ENDED, FAILED, IN_PROGRESS, STOPPED
from ..plan.checks import LaunchError
from . import grid as sweep_grid
from . import record as sweep_record
from .compare import compare as compare_jobs
from .follow import FollowsRecord
from .points import CANCELLED, LAUNCH_FAILED, LAUNCHING, NOT_STARTED, QUEUED, STARTED, Point
from .points import PENDING as _PENDING
from .points import ended as _ended

if TYPE_CHECKING:
    from ..jobs.registry import Registry
    from .record import SweepRow

QUOTA_RETRY_SECONDS = 60.0  # a launch the account quota refused is tried again this often (or when a job ends)
IDLE_POLL_SECONDS = 1.0     # how often the queue looks when no job of its own is running (quota waits)
MAX_ERRORS = 200            # errors kept on a sweep (a broken display must not grow it without end)
STOP_CHECK_SECONDS = 1.0    # the queue reads its record for a stop given elsewhere at least this often
JOIN_SECONDS = 10.0         # wait() gives the ended queue this long to record its end and clean up


def quota_refused(error: BaseException) -> bool:
    """Did SageMaker refuse the launch for the account's quota (ResourceLimitExceeded)? Then the
    point waits and is tried again instead of failing."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        response = getattr(current, "response", None)
        code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
        if code == "ResourceLimitExceeded" or "ResourceLimitExceeded" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


class Sweep(FollowsRecord, LiveDisplay, Sequence[Job]):
    """The jobs of one sweep. It behaves as the list of the `Job`s started so far, in the grid's
    order (iterate, `len`, index); `.points` are the grid's value dicts, `.entries` each point
    with its job or what became of it.

    `wait()` returns once every point has ended (queued ones included) and does not raise for a
    failed job: look at `.status`, `.counts()` or `.failed`. `.errors` holds what went wrong
    starting jobs (each also on its point)."""

    #: A Sweep as a cell's value (LiveDisplay): the magics follow it with the live table.
    display_hook: ClassVar[Callable[[Sweep], bool] | None] = None

    def __init__(self, name: str, grid: dict[str, list[str]], entries: list[Point],
                 launcher: Callable[[Point], Job] | None = None, max_parallel: int | None = None,
                 backend: str = "", poll: float = IDLE_POLL_SECONDS, quota_retry: float = QUOTA_RETRY_SECONDS,
                 on_settled: Callable[[], None] | None = None, registry: Registry | None = None,
                 row: SweepRow | None = None):
        self.name = name
        self.grid = grid
        self.backend = backend
        self.max_parallel = max_parallel or max(1, len(entries))
        self.errors: list[str] = []
        self._entries = entries
        self._launcher = launcher
        self._poll = poll
        self._quota_retry = quota_retry
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._stopping = False
        self._hold_until = 0.0      # after a quota refusal: no launch before then ...
        self._running_at_hold = 0   # ... unless fewer jobs run than did then (one ended)
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[Point], None]] = []
        self._on_settled = on_settled  # called once nothing is left to launch (the shared checkout removed)
        self.registry = registry       # where its jobs are recorded, and a stop asked from elsewhere is seen
        self._recorded: Registry | None = None  # where this process recorded the sweep it launches
        self._row = row                # found from the registry: its record as last read
        self._refreshing = threading.Lock()
        self._gone: str | None = None  # found from the registry: its launcher died (which one)
        self._cut_short: set[int] = set()  # ... in the middle of launching these points: no job came of them

    # -- what it holds -----------------------------------------------------------------------

    @property
    def jobs(self) -> list[Job]:
        """The Jobs started so far, in the grid's order."""
        with self._lock:
            return [p.job for p in self._entries if p.job is not None]

    @property
    def points(self) -> list[dict[str, str]]:
        """The grid's combinations, in order: each job's swept values."""
        return [dict(p.values) for p in self._entries]

    @property
    def entries(self) -> list[Point]:
        """Every point: its index, job name, values, state, Job (once started) and error."""
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        return len(self.jobs)

    @overload
    def __getitem__(self, i: int) -> Job: ...

    @overload
    def __getitem__(self, i: slice) -> list[Job]: ...

    def __getitem__(self, i):
        return self.jobs[i]

    def __iter__(self) -> Iterator[Job]:
        return iter(self.jobs)

    # -- status ------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """How many points are in each status: the jobs' (Completed, InProgress, ...) and the
        points' without a job (Queued, Launching, Cancelled, LaunchFailed): the words of states.py."""
        counts: dict[str, int] = {}
        for p in self.entries:
            counts[p.status] = counts.get(p.status, 0) + 1
        return counts

    @property
    def status(self) -> str:
        """One word for the whole sweep: InProgress while a point runs or waits to; once all
        ended, Completed if every job completed, else Failed if a job failed or a launch
        failed, else Stopped."""
        counts = self.counts()
        if set(counts) - ENDED:
            return IN_PROGRESS
        if set(counts) == {COMPLETED}:
            return COMPLETED
        return FAILED if counts.get(FAILED) or counts.get(LAUNCH_FAILED) else STOPPED

    @property
    def failed(self) -> list[Point]:
        """The points whose job failed or whose launch failed."""
        return [p for p in self.entries if p.state == LAUNCH_FAILED or (p.job is not None and p.status == "Failed")]

    @property
    def done(self) -> bool:
        """Every point has ended: none waits, none is launching, every job has ended."""
        entries = self.entries
        return not any(p.state in _PENDING for p in entries) and all(_ended(p.job) for p in entries if p.job)

    def summary(self) -> str:
        """`6 jobs: 2 Completed, 1 InProgress, 3 Queued`."""
        counts = self.counts()
        return f"{len(self._entries)} job{'s' if len(self._entries) != 1 else ''}: " + \
            ", ".join(f"{n} {word}" for word, n in counts.items())

    # -- control -----------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> Sweep:
        """Block until every point has ended (queued ones included); returns the Sweep. A failed
        job does not raise (see `.failed`); TimeoutError after `timeout` seconds (the sweep goes on).
        A sweep found from the registry (started by another kernel) also takes up the points
        that kernel launches meanwhile, as their records appear, and ends when that kernel died
        with points queued (`.launcher_gone` says so)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._refresh()
            if self.done:
                self._join_queue()
                return self
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"sweep {self.name} has not ended after {timeout} s ({self.summary()}); "
                                   "it goes on (sweep.stop() ends it)")
            with self._changed:
                self._changed.wait(self._interval() if left is None else min(left, self._interval()))

    def stop(self) -> Sweep:
        """Cancel the queued points and stop the running jobs (they end Stopped, keeping what
        they saved). A point being launched now is stopped as soon as it has started. Returns at once.
        The stop is recorded with the sweep: given in another kernel (or `sm-magic stop`), it
        stops the sweep in the kernel that started it too, whose queue launches nothing more."""
        row = self._record_stop()
        if row is not None:
            self._refresh(row)
        with self._lock:
            self._stopping = True
            cancelled = []
            for p in self._entries:
                if p.state == QUEUED:
                    p.state, p.error = CANCELLED, None
                    cancelled.append(p)
            jobs = [p.job for p in self._entries if p.job is not None]
        self._wake.set()
        for p in cancelled:
            self._notify(p)
        self._stop_jobs(jobs)
        return self

    def _stop_jobs(self, jobs: list[Job]) -> None:
        for job in jobs:
            if not _ended(job):
                try:
                    job.stop()
                except Exception as e:  # noqa: BLE001 - the others are stopped all the same
                    self._error(f"{job.name}: could not stop it: {e}")

    def _record_stop(self) -> SweepRow | None:
        if self.registry is None or (self._recorded is None and self._row is None):
            return None
        try:
            return sweep_record.stop(self.registry, self.name)
        except Exception as e:  # noqa: BLE001 - its jobs are stopped all the same
            self._error(f"could not record the stop of the sweep: {e}")
            return None

    def _stop_recorded(self) -> bool:
        """Was the sweep stopped from another kernel (or the command line)?"""
        if self._recorded is None:
            return False
        try:
            row = sweep_record.read(self._recorded, self.name)
        except Exception:  # noqa: BLE001 - unreadable now: each launch's claim reads it again
            return False
        return row is not None and row.stopped is not None

    def compare(self, sort_by: str | None = None, best: Any = None):
        """The jobs side by side (sm_magic.compare): one row per job, its hyperparameters, status
        and the last and best value of each metric."""
        return compare_jobs(self.jobs, sort_by=sort_by, best=best)

    def subscribe(self, listener: Callable[[Point], None]) -> None:
        """Call `listener(point)` (from any thread) whenever a point starts, fails or is cancelled."""
        with self._lock:
            self._listeners.append(listener)
        self._follow_record()

    # -- the queue ---------------------------------------------------------------------------

    def start(self) -> Sweep:
        """Record the sweep (its name taken, its stop to be seen from anywhere), start the first
        point here (an error common to every point, such as missing credentials, is raised at
        once and nothing else starts), then the others from a daemon thread, at most
        `max_parallel` at once."""
        try:
            if self.registry is not None and self._launcher is not None:
                sweep_record.begin(self.registry, self.name, self.backend, grid_record(self.grid), len(self._entries),
                                   self.max_parallel)
                self._recorded = self.registry
            first = self._next_queued()
            if first is not None and self._launcher is not None:
                self._launch(first, raise_errors=True)
        except BaseException:
            with self._lock:
                for p in self._entries:
                    if p.state in _PENDING:
                        p.state = CANCELLED
            self._settled()
            recorded, self._recorded = self._recorded, None
            if recorded is not None:
                try:
                    sweep_record.forget(recorded, self.name)  # nothing started: the name is free again
                except Exception as e:  # noqa: BLE001 - the launch's own error is the one raised
                    self._error(f"could not remove the record of the sweep: {e}")
            raise
        if self._next_queued() is not None and self._launcher is not None:
            self._thread = threading.Thread(target=self._run, name=f"sm_magic-sweep-{self.name}", daemon=True)
            self._thread.start()
        else:
            self._settled()
        return self

    def _settled(self) -> None:
        """Nothing is left to launch: recorded (its points without a job never get one), and what
        the launches shared can go."""
        if self._recorded is not None:
            try:
                sweep_record.end(self._recorded, self.name)
            except Exception as e:  # noqa: BLE001 - said, never raised from the queue
                self._error(f"could not record that the sweep launches nothing more: {e}")
        done, self._on_settled = self._on_settled, None
        if done is not None:
            try:
                done()
            except Exception as e:  # noqa: BLE001 - said, never raised from the queue
                self._error(f"cleaning up after the last launch: {e}")

    def _run(self) -> None:
        try:
            self._queue()
        except BaseException as e:  # noqa: BLE001 - never silently: said on the sweep and on every point left
            message = f"the sweep's queue stopped: {type(e).__name__}: {e}"
            self._error(message)
            with self._lock:
                left = [p for p in self._entries if p.state in _PENDING]
                for p in left:
                    p.state, p.error = LAUNCH_FAILED, message
            for p in left:
                self._release(p, message)
                self._notify(p)
        finally:
            self._settled()
            with self._changed:
                self._changed.notify_all()

    def _queue(self) -> None:
        look = 0.0  # when the running jobs are looked at next (their backend's pace)
        while True:
            with self._lock:
                if self._stopping:
                    return  # stop() cancelled what was queued
            if self._stop_recorded():
                self.stop()  # given elsewhere: cancelled here too, and the running jobs stopped
                return
            nxt = self._next_queued()
            if nxt is None:
                return
            now = time.monotonic()
            if now >= look:
                with self._lock:
                    started = [p.job for p in self._entries if p.job is not None]
                running = sum(1 for job in started if not _ended(job))
                held = now < self._hold_until and running >= self._running_at_hold
                if running < self.max_parallel and not held:
                    self._launch(nxt)
                    continue  # another free slot is filled at once (or, after a refusal, the hold begins)
                look = now + self._interval()
            self._wake.wait(min(STOP_CHECK_SECONDS, max(0.0, look - now)))
            self._wake.clear()

    def _join_queue(self) -> None:
        """Every point has ended: let the queue record that and clean up before wait() returns
        (a script that exits right after would otherwise cut it short)."""
        thread = self._thread
        if self._launcher is None or thread is None or thread is threading.current_thread():
            return
        self._wake.set()  # it finds nothing queued and returns
        thread.join(JOIN_SECONDS)

    def _interval(self) -> float:
        """Seconds between two looks: the running jobs' poll interval (their backend's pace)."""
        intervals = [job.poll_interval for job in self.jobs if not _ended(job)]
        return min(intervals, default=self._poll)

    def _next_queued(self) -> Point | None:
        with self._lock:
            return next((p for p in self._entries if p.state == QUEUED), None)

    def _launch(self, point: Point, raise_errors: bool = False) -> str:
        """Start one point: "started", "quota" (it stays queued, to be tried again), "failed", or
        "stopped" (the sweep's stop was recorded before this point could be claimed)."""
        assert self._launcher is not None
        with self._lock:
            point.state = LAUNCHING
        try:
            if not self._claim(point):
                with self._lock:
                    point.state = QUEUED
                self.stop()
                return "stopped"
            job = self._launcher(point)
        except Exception as e:
            if quota_refused(e):
                self._release(point)
                running = sum(1 for job in self.jobs if not _ended(job))
                with self._lock:
                    self._hold_until, self._running_at_hold = time.monotonic() + self._quota_retry, running
                    point.state = QUEUED
                    point.error = (f"waiting: the account's quota refused it (ResourceLimitExceeded); tried again "
                                   f"when a job of the sweep ends, or in {self._quota_retry:g} s")
                    self._note_once(f"{point.name}: {point.error}")
                self._notify(point)
                return "quota"
            error = " ".join(str(e).split()) or type(e).__name__
            self._release(point, error)
            if raise_errors:
                raise
            with self._lock:
                point.state, point.error = LAUNCH_FAILED, error
            self._error(f"{point.name} ({sweep_grid.values_text(point.values)}) did not start: {point.error}")
            self._notify(point)
            return "failed"
        stopped_elsewhere = self._release(point)
        with self._lock:
            point.state, point.job, point.error = STARTED, job, None
            stopping = self._stopping
            self._hold_until = 0.0  # the quota took this one: try the next at once
        if stopping:  # stop() came while it was being launched
            self._stop_jobs([job])
        elif stopped_elsewhere:
            self.stop()
        self._notify(point)
        return "started"

    def _claim(self, point: Point) -> bool:
        """May `point` be launched? Not once the sweep's stop is recorded (sweep_record.claim)."""
        return self._recorded is None or sweep_record.claim(self._recorded, self.name, point.index)

    def _release(self, point: Point, error: str | None = None) -> bool:
        """`point`'s launch is over; True when the sweep's stop was recorded meanwhile."""
        if self._recorded is None:
            return False
        try:
            return sweep_record.launched(self._recorded, self.name, point.index, error)
        except Exception as e:  # noqa: BLE001 - the queue reads the record for a stop again within a second
            self._error(f"could not record the end of {point.name}'s launch: {e}")
            return False

    def _note_once(self, message: str) -> None:
        with self._lock:
            if message not in self.errors:
                self._error(message)

    def _error(self, message: str) -> None:
        with self._lock:
            if len(self.errors) < MAX_ERRORS:
                self.errors.append(message)

    def _notify(self, point: Point) -> None:
        with self._changed:
            self._changed.notify_all()
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(point)
            except Exception as e:  # noqa: BLE001 - a broken display must not stop the queue
                self._note_once(f"a display of the sweep failed: {type(e).__name__}: {e}")

    # -- display -----------------------------------------------------------------------------

    def __repr__(self) -> str:
        errors = f", {len(self.errors)} error{'s' if len(self.errors) != 1 else ''} (sweep.errors)" if self.errors else ""
        return f"<Sweep {self.name} {self.summary()}{errors}>"


# -- finding a sweep again -----------------------------------------------------------------------

_live: dict[tuple[str, str], Sweep] = {}  # (registry path, name) -> the sweeps this kernel started
_live_lock = threading.Lock()


def remember(sweep: Sweep, registry: Registry) -> None:
    """Keep a started sweep, so that attaching to its name in this kernel returns it, queue and all."""
    with _live_lock:
        _live[(str(registry.path), sweep.name)] = sweep


def is_live(name: str, registry: Registry) -> bool:
    """Did this kernel start a sweep called `name` (with the same registry)? It may have no record
    yet: its first job may be waiting for the account's quota."""
    with _live_lock:
        return (str(registry.path), name) in _live


def find_sweep(name: str, registry: Registry | None = None) -> Sweep | None:
    """The sweep called `name`: this kernel's own (queue and all), else one made from the registry:
    the sweep's own record (record.py) and its jobs' records. The record holds the whole
    grid, so points that never started are there too: Queued (or Launching) while the process
    that launches them may still do so, LaunchFailed, or Cancelled once the sweep was stopped or
    that process ended or died without launching them. A sweep recorded before sweeps had their
    own record is made from its jobs' records alone (its points without a job Cancelled). None
    when the registry knows no sweep of that name, or when `name` is a job's."""
    from ..jobs.lookup import attach_job
    from ..jobs.registry import Registry

    registry = registry or Registry()
    with _live_lock:
        live = _live.get((str(registry.path), name))
    if live is not None:
        return live
    if registry.get(name) is not None:
        return None
    row = sweep_record.read(registry, name)  # before the jobs' records: see Sweep._refresh
    records = sweep_record.sweep_records(name, registry)
    if row is None and not records:
        return None
    size: int | None
    parallel: int | None
    if row is not None:
        grid, size, backend, parallel = _grid(row.grid), row.size, row.backend, row.max_parallel
    else:
        info = sweep_record.sweep_info(records[-1].extra)
        grid, size, backend, parallel = _grid(info.get("grid")), info.get("size"), records[0].backend, None
    by_index = {sweep_record.sweep_info(r.extra).get("index"): r for r in records}
    if grid and sweep_grid.size(grid) == size:
        combos = sweep_grid.points(grid)
        names = sweep_grid.job_names(name, len(combos))
        entries = [Point(i, names[i - 1], combos[i - 1], NOT_STARTED) for i in range(1, len(combos) + 1)]
    else:  # an old or damaged record: the jobs there are
        infos = [sweep_record.sweep_info(r.extra) for r in records]
        entries = [Point(info.get("index") or i, r.name, dict(info.get("values") or {}), NOT_STARTED)
                   for i, (r, info) in enumerate(zip(records, infos), start=1)]
    launching = row.launching if row is not None and row.launcher_state() == sweep_record.ALIVE else None
    for p in entries:
        record = by_index.get(p.index)
        if record is not None and record.name == p.name and p.index != launching:
            p.state, p.job = STARTED, attach_job(record.name, registry)
    sweep = Sweep(name, grid, entries, max_parallel=parallel, backend=backend, registry=registry, row=row)
    if row is not None:
        sweep._settle_unlaunched(row)
    return sweep


def grid_record(grid: dict[str, list[str]]) -> list:
    """The grid as a registry record keeps it: [[name, [values]], ...], in order (the registry
    writes a dict's keys sorted, and the order of the names is the order of the points)."""
    return [[name, list(values)] for name, values in grid.items()]


def _grid(recorded) -> dict[str, list[str]]:
    try:
        return {str(name): [str(v) for v in values] for name, values in recorded or ()}
    except (TypeError, ValueError):  # a damaged record: its jobs are still found
        return {}


def attach(name: str, registry: Registry | None = None) -> Job | Sweep:
    """Follow a job or a sweep again by its name (after a kernel restart, or from another
    notebook): `sm_magic.attach`.

    Args:
        name: a job's name, or a sweep's (as `%sagemaker_jobs` lists them).
        registry: the job registry to look in (default: this user's).

    Returns:
        The Job called `name`, or the Sweep of that name.

    Raises:
        LaunchError: no job or sweep has that name.

    Example:
        job = sm_magic.attach("sm-magic-2026-12-07-10-42-07-117")
        job.wait()
    """
    from ..jobs.lookup import attach_job
    from ..jobs.registry import Registry

    registry = registry or Registry()
    if registry.get(name) is not None:
        return attach_job(name, registry)
    found = find_sweep(name, registry)
    if found is None:
        raise LaunchError(f"no job or sweep named {name} in the registry ({registry.path}); "
                          "`%sagemaker_jobs` (or `sm-magic jobs`) lists the known jobs")
    return found


def stop_named(name: str, registry: Registry | None = None) -> str:
    """`%sagemaker_stop NAME` and `sm-magic stop NAME`: stop the job or the sweep called `name`;
    what was done, as a line to print. A sweep started elsewhere is stopped there too: once this
    returns its launcher starts nothing more, and the job it was launching as the stop came (if
    any) has been stopped as well."""
    found = attach(name, registry)
    if isinstance(found, Job):
        if found.done:
            return f"{found.name} already ended: {found.status}"
        found.stop()
        return f"Stopping {found.name}"
    if found.done:
        return f"Sweep {name} already ended: {found.summary()}"
    before = {job.name for job in found.jobs}
    running = sum(1 for job in found.jobs if not _ended(job))
    queued = sum(1 for p in found.entries if p.state == QUEUED)
    if found._launcher is not None:
        found.stop()
        return f"Stopping sweep {name}: {running} running job{'s' if running != 1 else ''}, {queued} queued cancelled"
    found.stop()
    launching = found._await_launch()
    caught = [job.name for job in found.jobs if job.name not in before]
    running += len(caught)
    said = f"Stopping sweep {name}: {running} running job{'s' if running != 1 else ''}"
    if caught:
        said += f" ({', '.join(caught)} launched as the stop came)"
    said += ", the kernel that started it launches none of its queued jobs"
    cancelled = sum(1 for p in found.entries if p.state == CANCELLED)
    if cancelled:
        said += f" ({cancelled} cancelled)"
    if launching:
        said += (f"; {', '.join(p.name for p in launching)} is still being launched: that kernel stops it once it "
                 "has started")
    return said


__all__ = ["Sweep", "Point", "attach", "find_sweep", "quota_refused", "stop_named"]
