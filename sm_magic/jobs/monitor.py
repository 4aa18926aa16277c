"""One background poller per kernel for every watched job.

A single daemon thread describes each watched job, pulls its new log lines, and hands a
Snapshot to the job's subscribers, no more often than each subscriber's `min_interval` (the
final snapshot always goes out). Errors back the job off instead of killing the thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .job import Job, Snapshot

POLL_SECONDS = 0.25
MAX_BACKOFF_SECONDS = 30.0
HEARTBEAT_SECONDS = 1.0  # a quiet job's display still refreshes (its elapsed clock) this often


@dataclass
class Watch:
    job: Job
    callback: Callable[[Snapshot], None]
    min_interval: float = 0.5
    last_sent: float = 0.0
    pending: bool = True         # something changed since the last delivery
    errors: int = 0
    next_poll: float = 0.0
    last_state: tuple | None = None
    new_lines: list = field(default_factory=list)


class Monitor:
    """Polls watched jobs on one daemon thread and delivers throttled snapshots."""

    def __init__(self, poll: float = POLL_SECONDS):
        self.poll = poll
        self._watches: list[Watch] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, job: Job, callback: Callable[[Snapshot], None], min_interval: float = 0.5) -> Watch:
        """Deliver `job`'s snapshots to `callback` (from the monitor thread) until it ends."""
        w = Watch(job, callback, min_interval)
        with self._lock:
            self._watches.append(w)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sm_magic-monitor", daemon=True)
                self._thread.start()
        self._wake.set()
        return w

    def unwatch(self, w: Watch) -> None:
        with self._lock:
            if w in self._watches:
                self._watches.remove(w)

    def watched(self) -> list[Job]:
        with self._lock:
            return [w.job for w in self._watches]

    def _run(self) -> None:
        while True:
            with self._lock:
                watches = list(self._watches)
                if not watches:  # idle: the thread ends; the next watch() starts another
                    self._thread = None
                    return
            now = time.monotonic()
            for w in watches:
                if now >= w.next_poll:
                    self._poll(w, now)
            self._wake.wait(self.poll)
            self._wake.clear()

    def _poll(self, w: Watch, now: float) -> None:
        try:
            snap = w.job.snapshot()
        except Exception:  # a dropped connection or a busy file: try again later
            w.errors += 1
            w.next_poll = now + min(MAX_BACKOFF_SECONDS, self.poll * 2 ** w.errors)
            return
        w.errors = 0
        w.next_poll = now + w.job.poll_interval
        key = (snap.state.status, snap.state.secondary_status, len(snap.state.transitions), len(snap.metrics),
               snap.state.extra.get("connection"))
        w.new_lines.extend(snap.new_lines)
        if key != w.last_state or snap.new_lines or now - w.last_sent >= HEARTBEAT_SECONDS:
            w.pending = True
            w.last_state = key
        done = snap.state.done
        if w.pending and (done or now - w.last_sent >= w.min_interval):
            snap.new_lines, w.new_lines = w.new_lines, []
            w.pending, w.last_sent = False, now
            try:
                w.callback(snap)
            except Exception:
                pass  # a broken display must not stop the other jobs' updates
        if done and not w.pending:
            self.unwatch(w)


_monitor: Monitor | None = None
_monitor_lock = threading.Lock()


def get_monitor() -> Monitor:
    """The kernel's one Monitor."""
    global _monitor
    with _monitor_lock:
        if _monitor is None:
            _monitor = Monitor()
        return _monitor
