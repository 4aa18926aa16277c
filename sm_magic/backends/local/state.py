"""A local job's files: where they are, and the state file replaced atomically.

Shared by the backend (in the kernel) and the job runner (its own process), so stdlib only.
"""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
import time
from pathlib import Path

from ..base import JobState, Transition
from .procs import proc_stat

STATE_FILE = "state.json"
STOP_FILE = "stop_requested"
RUNNER_LOG = "runner.log"
RUNNER_FILE = "runner.json"   # the runner's identity (pid, start time, boot id), written once
EXIT_DIR = "exits"            # one exit record per host, for the current run of the hosts
EXIT_RECORD_SIZE = 32         # written in full before a host starts, overwritten in place
RUNNING = "running"


class JobFiles:
    """Paths inside one local job directory (sm_jobs/<name>/)."""

    def __init__(self, job_dir: Path):
        self.dir = Path(job_dir)

    state = property(lambda self: self.dir / STATE_FILE)
    stop_marker = property(lambda self: self.dir / STOP_FILE)
    runner_log = property(lambda self: self.dir / RUNNER_LOG)
    runner_record = property(lambda self: self.dir / RUNNER_FILE)
    bundle = property(lambda self: self.dir / "bundle")
    logs = property(lambda self: self.dir / "logs")
    output = property(lambda self: self.dir / "output")
    model_tar = property(lambda self: self.dir / "output" / "model.tar.gz")

    def opt_ml(self, host: str, hosts: list[str]) -> Path:
        """algo-1's tree is opt_ml/; further hosts get hosts/<host>/opt_ml/."""
        return self.dir / "opt_ml" if host == hosts[0] else self.dir / "hosts" / host / "opt_ml"

    def log(self, host: str) -> Path:
        return self.logs / f"{host}.log"

    def exit_record(self, host: str) -> Path:
        """Where the host's entry command writes its exit status (SM_MAGIC_EXIT_FILE), so that
        the outcome of a run survives its runner."""
        return self.dir / EXIT_DIR / host


def read_state(path: Path) -> JobState:
    """The job state in `path`; ValueError (UnicodeDecodeError and JSONDecodeError are ones) when
    the file holds no job state, OSError when it cannot be read."""
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except RecursionError:
            raise ValueError("not a job state: nested too deep") from None
    try:
        return JobState.from_dict(data)
    except (TypeError, KeyError, AttributeError, ValueError, RecursionError) as e:
        raise ValueError(f"not a job state: {type(e).__name__}: {e}") from None


def write_state(path: Path, state: JobState) -> None:
    """Replace the state file in one step: a reader sees the old or the new state, never half."""
    write_json(path, state.to_dict(), indent=1)


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


def write_json(path: Path, data: dict, indent: int | None = None) -> None:
    """Replace a small JSON file in one step."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=indent)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_runner(files: JobFiles) -> dict | None:
    """The runner's identity as the backend recorded it when it started the runner; None when
    there is none (not written yet, or lost)."""
    try:
        with open(files.runner_record, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except ValueError:
        return {}  # unreadable: proves nothing, so the runner counts as gone
    return data if isinstance(data, dict) else {}


def job_token(state: JobState) -> str | None:
    """The token every process of the job carries (None for jobs that have none)."""
    for spec in state.extra.values():
        if isinstance(spec, dict) and spec.get("token"):
            return spec["token"]
    return None


def job_hosts(state: JobState) -> list[str]:
    spec = state.extra.get("local") or {}
    return list(spec.get("host_env", {}))


def reset_exit_records(files: JobFiles, hosts: list[str]) -> None:
    """Before a run of the hosts: each host's record says `running`, written to its full size,
    so that the entry command's later overwrite in place needs no new space (a full disk still
    takes it)."""
    (files.dir / EXIT_DIR).mkdir(exist_ok=True)
    for host in hosts:
        fd = os.open(files.exit_record(host), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, RUNNING.ljust(EXIT_RECORD_SIZE - 1).encode() + b"\n", 0)
        finally:
            os.close(fd)


def read_exit_record(files: JobFiles, host: str) -> int | None:
    """The host's exit status in the current run (negative: killed by that signal), or None
    while it runs, was killed before it could write, or has no record."""
    try:
        text = files.exit_record(host).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def pack_model(files: JobFiles, hosts: list[str]) -> str:
    """algo-1's model directory as output/model.tar.gz (as SageMaker packs it); returns the path."""
    model_dir = files.opt_ml(hosts[0], hosts) / "model"
    target = files.model_tar
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(".model.tar.gz.tmp")
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            for item in sorted(model_dir.iterdir()):
                tar.add(item, arcname=item.name)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return str(target)


def _live_members(field: int, ident: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = proc_stat(int(stat.parent.name))
        if fields and fields[0] != "Z" and int(fields[field]) == ident:
            members.append(int(stat.parent.name))
    return members


def live_group_members(pgid: int) -> list[int]:
    """Processes of group `pgid` that still run (zombies excluded), read from /proc."""
    return _live_members(2, pgid)


def live_session_members(sid: int) -> list[int]:
    """Processes of session `sid` that still run (zombies excluded). Each host's entry command
    leads a session of its own (state.extra["pgids"] records them, for the record only: the
    job's processes are found and ended by its token, see local_procs)."""
    return _live_members(3, sid)
