"""A local job's files: where they are, and the state file replaced atomically.

Shared by the backend (in the kernel) and the job runner (its own process), so stdlib only.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from pathlib import Path

from .base import JobState, Transition

STATE_FILE = "state.json"
STOP_FILE = "stop_requested"
RUNNER_LOG = "runner.log"


class JobFiles:
    """Paths inside one local job directory (sm_jobs/<name>/)."""

    def __init__(self, job_dir: Path):
        self.dir = Path(job_dir)

    state = property(lambda self: self.dir / STATE_FILE)
    stop_marker = property(lambda self: self.dir / STOP_FILE)
    runner_log = property(lambda self: self.dir / RUNNER_LOG)
    bundle = property(lambda self: self.dir / "bundle")
    logs = property(lambda self: self.dir / "logs")
    output = property(lambda self: self.dir / "output")
    model_tar = property(lambda self: self.dir / "output" / "model.tar.gz")

    def opt_ml(self, host: str, hosts: list[str]) -> Path:
        """algo-1's tree is opt_ml/; further hosts get hosts/<host>/opt_ml/."""
        return self.dir / "opt_ml" if host == hosts[0] else self.dir / "hosts" / host / "opt_ml"

    def log(self, host: str) -> Path:
        return self.logs / f"{host}.log"


def read_state(path: Path) -> JobState:
    with open(path, encoding="utf-8") as f:
        return JobState.from_dict(json.load(f))


def write_state(path: Path, state: JobState) -> None:
    """Replace the state file in one step: a reader sees the old or the new state, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".state.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(state.to_dict(), f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def enter(state: JobState, secondary: str, message: str, status: str | None = None,
          now: float | None = None) -> None:
    """Close the open transition and open `secondary`, as SecondaryStatusTransitions do."""
    now = time.time() if now is None else now
    if state.transitions and state.transitions[-1].end is None:
        state.transitions[-1].end = now
    state.transitions.append(Transition(status=secondary, start=now, message=message))
    state.secondary_status = secondary
    if status:
        state.status = status


def finish(state: JobState, status: str, message: str, now: float | None = None,
           secondary: str | None = None) -> None:
    """Record a terminal status (its secondary status defaults to the same word, as for
    Completed; Stopped may end as MaxRuntimeExceeded); its transition closes at the same instant."""
    now = time.time() if now is None else now
    enter(state, secondary or status, message, status=status, now=now)
    state.transitions[-1].end = now
    if state.training_start_time is not None:
        state.training_end_time = now
        state.training_seconds = int(round(now - state.training_start_time))
        state.billable_seconds = int(round(running_seconds(state, now)))


UNBILLED = ("Interrupted", "Restarting")  # waiting for spot capacity is not billed


def running_seconds(state: JobState, now: float) -> float:
    """Seconds the job's instances have run since training began, as SageMaker bills them:
    wall time minus the time spent interrupted and restarting."""
    if state.training_start_time is None:
        return 0.0
    waited = sum((t.end if t.end is not None else now) - t.start
                 for t in state.transitions if t.status in UNBILLED)
    return max(0.0, now - state.training_start_time - waited)


def pid_alive(pid: int | None) -> bool:
    """True while `pid` runs (a zombie counts as ended)."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        pass
    except OSError:
        pass
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _live_members(field: int, ident: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[field]) == ident:
            members.append(int(stat.parent.name))
    return members


def live_group_members(pgid: int) -> list[int]:
    """Processes of group `pgid` that still run (zombies excluded), read from /proc."""
    return _live_members(2, pgid)


def live_session_members(sid: int) -> list[int]:
    """Processes of session `sid` that still run (zombies excluded). Each host's entry command
    leads a session of its own, and the launcher it starts has a process group of its own in it."""
    return _live_members(3, sid)


def kill_sessions(sids: list[int], sig: int = signal.SIGKILL) -> None:
    """`sig` to every process of these sessions."""
    for sid in sids:
        for pid in live_session_members(sid):
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
