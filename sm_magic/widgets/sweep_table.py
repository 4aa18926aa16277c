"""Following a sweep: `SweepView` (the monitor's snapshots of each started job and the sweep's
own events: a point started, failed or was cancelled), each point as a row of text, and the
terminal's display of it (`print_sweep`: one line per status change).

In a kernel the sweep widget (widgets/sweep_widget.py) follows a sweep through a SweepView too;
`sweep_text` is its static summary's text/plain.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import TextIO

from ..display.table_text import clock
from ..jobs.job import Job, Snapshot
from ..jobs.monitor import get_monitor
from ..sweeps.grid import values_text
from ..sweeps.sweep import QUEUED, Point, Sweep
from .text import fmt_value, secondary_status

MAX_METRICS = 4  # latest metrics shown per row


def point_row(point: Point, snap: Snapshot | None, look: bool = False) -> dict[str, str]:
    """One point as the table shows it, from its job's last snapshot (no backend call). A started
    job with no snapshot yet has no status ("") rather than a guess: a job found from the registry
    may have ended long ago. `look=True` asks its backend instead (the Job caches the answer)."""
    status, elapsed, latest = point.state, "", ""
    if snap is not None:
        s = snap.state
        status = f"{s.status} ({secondary_status(s)})" if secondary_status(s) else s.status
        start = s.training_start_time or s.creation_time or None
        end = s.training_end_time if s.done and s.training_end_time else snap.taken_at
        elapsed = clock(end - start) if start else ""
        if snap.metrics:
            items = list(snap.metrics[-1].items())[:MAX_METRICS]
            latest = " ".join(f"{k}={fmt_value(v)}" for k, v in items)
    elif point.job is not None:
        status = point.status if look else ""
    return {"job": point.name, "values": values_text(point.values), "status": status, "elapsed": elapsed,
            "latest": latest, "note": point.error or (snap.state.failure_reason or "" if snap else "")}


def rows(sweep: Sweep, snaps: Mapping[str, Snapshot], look: bool = False) -> list[dict[str, str]]:
    return [point_row(p, snaps.get(p.name), look) for p in sweep.entries]


def sweep_text(sweep: Sweep, snaps: Mapping[str, Snapshot], limit: int | None = None) -> str:
    """The sweep as lines of text: its counts, then one line per point (the first `limit`)."""
    table = rows(sweep, snaps)
    lines = [f"Sweep {sweep.name}: {_counts(table)}"]
    shown = table if limit is None else table[:limit]
    lines += [f"  {r['job']}  {r['values']}  {r['status']}  {r['elapsed']}  {r['latest']}".rstrip() for r in shown]
    if len(shown) < len(table):
        lines.append(f"  ... {len(table) - len(shown)} more (sweep.entries has them all)")
    return "\n".join(lines + [f"  ! {e}" for e in sweep.errors[-5:]])


def status_counts(table: list[dict[str, str]]) -> dict[str, int]:
    """How many rows are in each status word (`InProgress (Training)` counts as InProgress), in
    order of first appearance; a job not looked at yet (no status) is not counted."""
    counts: dict[str, int] = {}
    for r in table:
        word = r["status"].split(" ")[0]
        if not word:
            continue
        counts[word] = counts.get(word, 0) + 1
    return counts


def _counts(table: list[dict[str, str]]) -> str:
    return ", ".join(f"{n} {w}" for w, n in status_counts(table).items())


class SweepView:
    """Follows a sweep for one display: `emit(sweep, snaps)` at most once per `interval` seconds
    (always when a job ends or a point starts, fails or is cancelled), from whichever thread
    saw the change. Each started job's snapshots come from the kernel's monitor, at most one per
    `watch_interval` seconds (default: `interval`)."""

    def __init__(self, sweep: Sweep, emit: Callable[[Sweep, Mapping[str, Snapshot]], None], interval: float = 1.0,
                 watch_interval: float | None = None):
        self.sweep, self.emit, self.interval = sweep, emit, interval
        self.watch_interval = interval if watch_interval is None else watch_interval
        self.snaps: dict[str, Snapshot] = {}
        self._watched: set[str] = set()
        self._lock = threading.Lock()
        self._last = 0.0

    def start(self) -> SweepView:
        self.sweep.subscribe(self._on_point)
        for point in self.sweep.entries:
            if point.job is not None:
                self._watch(point.job)
        self.render(force=True)
        return self

    def _watch(self, job: Job) -> None:
        with self._lock:
            if job.name in self._watched:
                return
            self._watched.add(job.name)
        get_monitor().watch(job, self._on_snap, min_interval=self.watch_interval)

    def _on_point(self, point: Point) -> None:
        if point.job is not None:
            self._watch(point.job)
        self.render(force=True)

    def _on_snap(self, snap: Snapshot) -> None:
        with self._lock:
            self.snaps[snap.state.name] = snap
        self.render(force=snap.state.done)

    def render(self, force: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            if not force and now - self._last < self.interval:
                return  # the next snapshot (at least one a second while a job runs) renders it
            self._last = now
            self.emit(self.sweep, dict(self.snaps))


def print_sweep(sweep: Sweep, out: TextIO | None = None, interval: float = 1.0) -> SweepView:
    """In a terminal: one line each time a point's status changes. A job is said in the state its
    backend gives (asked once if the monitor has not yet), never in a state it may have left."""
    said: dict[str, str] = {}

    def emit(s: Sweep, snaps: Mapping[str, Snapshot]) -> None:
        for r in rows(s, snaps, look=True):
            if said.get(r["job"], QUEUED) != r["status"]:  # a queued point is said when it starts
                said[r["job"]] = r["status"]
                note = f" ({r['note']})" if r["note"] else ""
                print(f"[{r['job']}] {r['values']}: {r['status']}{note}", file=out or sys.stdout, flush=True)

    return SweepView(sweep, emit, interval).start()
