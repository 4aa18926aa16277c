"""A sweep seen from another process than the one launching it: another kernel, `sm-magic wait`
or `stop` in a shell. Its points are what the sweep's record (record.py) and its jobs'
records say, read again while someone waits or a display follows: the points launched since are
taken up, and those without a job are Queued (or Launching) while the launcher may still start
them, LaunchFailed, or Cancelled once the sweep was stopped or once the launcher ended or died
without starting them (each point's note says which; `launcher_gone` says what a dead launcher lost).

A mixin of `sweeps.Sweep`: it works on the sweep's points, lock and listeners.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import record as sweep_record
from .points import CANCELLED, LAUNCH_FAILED, LAUNCHING, NOT_STARTED, PENDING, QUEUED, STARTED, Point

if TYPE_CHECKING:
    from ..jobs.job import Job
    from ..jobs.registry import Registry
    from .record import SweepRow

LAUNCH_WAIT_SECONDS = 120.0  # a stop from elsewhere waits this long for the launch in flight, to stop its job too
LAUNCHER_GONE = "never launched: the process that launched the sweep"
LAUNCHER_ENDED = "never launched: the process that launched the sweep ended first"


class FollowsRecord:
    # What it works on, the Sweep's own (sweeps.Sweep.__init__).
    name: str
    registry: Registry | None
    _entries: list[Point]
    _lock: threading.RLock
    _changed: threading.Condition
    _launcher: Callable[[Point], Job] | None
    _poll: float
    _thread: threading.Thread | None
    _row: SweepRow | None          # its record as last read; None: launched here, or recorded before records
    _refreshing: threading.Lock
    _gone: str | None              # its launcher died (which one)
    _cut_short: set[int]           # ... while launching these points: no job came of them

    if TYPE_CHECKING:
        @property
        def entries(self) -> list[Point]: ...

        @property
        def jobs(self) -> list[Job]: ...

        def _notify(self, point: Point) -> None: ...

        def _note_once(self, message: str) -> None: ...

        def _stop_jobs(self, jobs: list[Job]) -> None: ...

    @property
    def launcher_gone(self) -> str | None:
        """For a sweep found from the registry whose launching process died (a killed kernel) with
        points queued: what was lost, as a line. None otherwise."""
        lost = [p.name for p in self.entries if p.state == NOT_STARTED and (p.error or "").startswith(LAUNCHER_GONE)]
        if self._gone is None or not lost:
            return None
        names = ", ".join(lost[:5]) + (", ..." if len(lost) > 5 else "")
        return (f"the process that launched it ({self._gone}) is gone: {len(lost)} of its {len(self._entries)} "
                f"points never launched ({names})")

    def _refresh(self, row: SweepRow | None = None) -> None:
        """For a sweep found from the registry: take up the points launched since by the process
        that launches them, and what became of the others, from the sweep's record (`row`, else
        read now). The record is read before the jobs: a job registered before it said "ended"
        is found."""
        if self._launcher is not None or self.registry is None:
            return
        with self._refreshing:  # one at a time: a display's thread, a wait, a stop
            waiting = [p for p in self.entries if p.job is None and p.state in (*PENDING, NOT_STARTED)]
            if not waiting:
                return
            if row is None and self._row is not None:
                try:
                    row = sweep_record.read(self.registry, self.name) or self._row
                except Exception:  # noqa: BLE001 - unreadable now: looked at again next time
                    return
            self._row = row
            alive = row is not None and row.launcher_state() == sweep_record.ALIVE
            for p in waiting:
                if p.index in self._cut_short:
                    continue
                if row is not None and (p.index > row.claimed or (alive and p.index == row.launching)):
                    continue  # not claimed yet (points are claimed in order), or its launch is not over
                self._take_up(p)
            if row is not None:
                self._settle_unlaunched(row)

    def _take_up(self, point: Point) -> None:
        from ..jobs.lookup import attach_job

        try:
            job = attach_job(point.name, self.registry)
        except Exception:  # noqa: BLE001 - not registered (yet), or unreadable now: looked at again next time
            return
        with self._lock:
            point.state, point.job, point.error = STARTED, job, None
        self._notify(point)

    def _settle_unlaunched(self, row: SweepRow) -> None:
        """Each point without a job, as the record tells: queued or being launched while its
        launcher may still launch it, else cancelled (stopped), failed, or never launched."""
        state = row.launcher_state()
        if state == sweep_record.GONE and self._gone is None:
            self._gone = row.launcher_text()
        if state == sweep_record.GONE and row.launching is not None:
            self._drop_cut_short(row.launching)
        changed = []
        with self._lock:
            for p in self._entries:
                if p.job is not None:
                    continue
                new: tuple[str, str | None]
                if p.index in row.failed:
                    new = (LAUNCH_FAILED, row.failed[p.index])
                elif state == sweep_record.ALIVE and p.index == row.launching:
                    new = (LAUNCHING, None)
                elif row.stopped is not None:
                    new = (CANCELLED, None)
                elif state == sweep_record.ALIVE:
                    new = (QUEUED, None)
                elif state == sweep_record.GONE:
                    new = (NOT_STARTED, f"{LAUNCHER_GONE} ({self._gone}) is gone")
                else:  # its launcher ended without launching it
                    new = (NOT_STARTED, LAUNCHER_ENDED)
                if (p.state, p.error) != new:
                    p.state, p.error = new
                    changed.append(p)
        gone = self.launcher_gone
        if gone:
            self._note_once(gone)
        for p in changed:
            self._notify(p)

    def _drop_cut_short(self, index: int) -> None:
        """The launcher died launching point `index`: its job may be registered but was never
        submitted (the backend knows no such job). Such a point never launched."""
        point = next((p for p in self.entries if p.index == index), None)
        if point is None or point.job is None or index in self._cut_short:
            return
        try:
            point.job.describe()
            return
        except Exception:  # noqa: BLE001 - no such job where it was to run
            pass
        with self._lock:
            self._cut_short.add(index)
            point.job, point.state = None, NOT_STARTED

    def _follow_record(self) -> None:
        """For a sweep found from the registry and displayed: follow its record from a daemon
        thread while points may still start, so the display sees them start, or not."""
        if self._launcher is not None or self._row is None:
            return
        with self._lock:
            if self._thread is not None or not any(p.state in PENDING for p in self._entries):
                return
            self._thread = threading.Thread(target=self._follow, name=f"sm_magic-sweep-follow-{self.name}",
                                            daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while any(p.state in PENDING for p in self.entries):
            self._refresh()
            with self._changed:
                self._changed.wait(self._poll)

    def _await_launch(self, timeout: float = LAUNCH_WAIT_SECONDS) -> list[Point]:
        """After a stop given from elsewhere: wait (at most `timeout` s) for the point its launcher
        was launching as the stop came, then stop its job too. The points still being launched."""
        before = {job.name for job in self.jobs}
        deadline = time.monotonic() + timeout
        while any(p.state == LAUNCHING for p in self.entries) and time.monotonic() < deadline:
            with self._changed:
                self._changed.wait(0.05)
            self._refresh()
        self._stop_jobs([job for job in self.jobs if job.name not in before])
        return [p for p in self.entries if p.state == LAUNCHING]

