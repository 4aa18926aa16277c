"""Endings the runner and the readers share: the failure reason of a host, the reason for state
that cannot be written, and the recovery of a job whose runner is gone.

A runner can die (kill -9, out of memory, the machine restarted) or give up (a full disk): its
job's state then stays InProgress with nobody to end it. Whoever reads the job next (describe,
in any kernel or `sm-magic` command) sees that the runner is gone (its identity proof fails),
ends every process carrying the job's token, and records what really happened: every host's
entry command left its exit status in an exit record (SM_MAGIC_EXIT_FILE); if each says 0, the
model is packed and the job is Completed, otherwise it is Failed with the reason. Two readers
doing it at once take turns on the job directory's lock, each re-reading the state first.

Stdlib only: the job runner imports it.
"""

from __future__ import annotations

import copy
import fcntl
import os
import signal
import time
from collections.abc import Callable
from contextlib import contextmanager

from ...container.failure import clean_reason, log_summary, read_failure_file
from ..base import JobState
from .procs import end_token_processes
from .state import (
    STATE_FILE,
    JobFiles,
    enter,
    finish,
    job_hosts,
    job_token,
    pack_model,
    read_exit_record,
    read_runner,
    read_state,
    write_state,
)


def host_failure_reason(files: JobFiles, hosts: list[str], codes: dict[str, int]) -> str:
    """FailureReason for the first host in `codes` (in the order hosts ended) that failed."""
    host = next((h for h, c in codes.items() if c != 0), hosts[0])
    code = codes.get(host)
    exit_text = (f"killed by signal {signal.Signals(-code).name}" if code and code < 0
                 else f"exit code {code}")
    # The entry command wrote the reason, as it does in SageMaker's container; a host killed
    # before it could leaves only its log.
    reason = read_failure_file(files.opt_ml(host, hosts) / "output" / "failure")
    # Cut to SageMaker's cap as a whole, the exit status kept.
    return clean_reason(f"AlgorithmError: {reason or log_summary(files.log(host))} ({exit_text})")


def unwritable_reason(path, error: OSError) -> str:
    """FailureReason for a job ended because its files could not be written."""
    name = os.path.basename(str(path))
    what = ("the job's state" if name == STATE_FILE or name.startswith(".state.") else
            "the job's model" if "model.tar.gz" in name else "the job's files")
    return (f"InternalServerError: {what} could not be written to {path} ({error.strerror or error}); "
            "the job was ended")


def failed_in_memory(state: JobState, path, error: OSError, now: float | None = None) -> JobState:
    """`state` (a copy) ended as Failed because it could not be written: what a reader shows
    while the disk refuses it, without raising. extra["state_unwritten"] says so (the record
    on disk still says InProgress, and the next reader tries again: once the disk takes it, a
    run whose hosts all succeeded ends Completed)."""
    state = copy.deepcopy(state)
    state.failure_reason = unwritable_reason(path, error)
    finish(state, "Failed", "Training job failed", now=now)
    state.extra["state_unwritten"] = True
    return state


@contextmanager
def job_lock(files: JobFiles):
    """The job directory's exclusive lock (flock on the directory itself: no file to write, so
    it works on a full or read-only disk)."""
    fd = os.open(files.dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _ended_at(files: JobFiles, hosts: list[str], state: JobState) -> float:
    """When the last host finished: its exit record's time (not the time someone noticed)."""
    times = []
    for host in hosts:
        try:
            times.append(files.exit_record(host).stat().st_mtime)
        except OSError:
            pass
    floor = state.transitions[-1].start if state.transitions else state.creation_time
    return max([floor, *times]) if times else time.time()


def recover(files: JobFiles, runner_gone: Callable[[JobState], bool]) -> JobState:
    """End and record the job in `files` if its runner is gone (`runner_gone(state)`, asked
    again under the lock). Never raises for state that cannot be written: the ending is then
    returned in memory, Failed with that reason, and the next reader tries again."""
    with job_lock(files):
        state = read_state(files.state)
        if state.done or not runner_gone(state):
            return state
        before = copy.deepcopy(state)
        token = job_token(state)
        survivors = end_token_processes(token) if token else []
        hosts = job_hosts(state)
        codes = {host: read_exit_record(files, host) for host in hosts}
        runner = read_runner(files) or {}
        why = (f"the local job runner (pid {runner.get('pid', '?')}) ended before the job did (it was killed, ran "
               "out of memory, the machine restarted, or the job's files could not be written)")
        now = time.time()
        if hosts and all(code == 0 for code in codes.values()) and not survivors:
            ended = _ended_at(files, hosts, state)
            enter(state, "Uploading", f"Uploading generated training model ({why}; every host had finished "
                  "with exit status 0)", now=ended)
            try:
                state.model_artifacts = pack_model(files, hosts)
            except OSError as e:
                return failed_in_memory(before, files.model_tar, e, now=ended)
            finish(state, "Completed", "Training job completed", now=ended)
        else:
            failed = {host: code for host, code in codes.items() if code not in (None, 0)}
            if failed:
                reason = f"{host_failure_reason(files, hosts, failed)}; then {why}"
            else:
                reason = (f"InternalServerError: {why}; every process of the job was ended. See "
                          f"{files.runner_log}")
            if survivors:
                reason += f"; processes {survivors} of the job could not be ended"
            state.failure_reason = clean_reason(reason)
            finish(state, "Failed", "Training job failed", now=now)
        try:
            write_state(files.state, state)
        except OSError as e:
            return failed_in_memory(before, files.state, e, now=now)
        return state


