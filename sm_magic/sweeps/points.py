"""A sweep's points: each combination of the grid, its state until it has a job, and the job."""

from __future__ import annotations

from dataclasses import dataclass

from ..jobs.job import Job
from ..jobs.states import CANCELLED, LAUNCH_FAILED, LAUNCHING, QUEUED, UNKNOWN

# A point's life before (or instead of) its job, in the words of states.py: the job's own status
# takes over once it starts (STARTED is no word anyone is shown: the job's status is).
STARTED = "Started"            # has a Job
# Found from the registry with no job, its launcher ended or died without starting it: it never
# launches, as a cancelled point, and is named so everywhere (its `error` says why); the code that
# tells the two apart (sweep_follow.launcher_gone) reads that note.
NOT_STARTED = CANCELLED
PENDING = (QUEUED, LAUNCHING)  # may still start


@dataclass
class Point:
    """One combination of the grid and what became of it."""

    index: int                  # 1-based, as in the job's name
    name: str                   # the job's name, `<sweep>-<i>`
    values: dict[str, str]
    state: str = QUEUED
    job: Job | None = None
    error: str | None = None    # why it did not start (LAUNCH_FAILED), or why it waits (quota)

    @property
    def status(self) -> str:
        """The job's TrainingJobStatus once it started, else the point's state (Queued, ...)."""
        if self.job is None:
            return self.state
        try:
            return self.job.status
        except Exception:  # noqa: BLE001 - a job that cannot be described now is shown as such
            return UNKNOWN


def ended(job: Job) -> bool:
    try:
        return job.done
    except Exception:  # noqa: BLE001 - unreadable for now: counted as running, looked at again
        return False


__all__ = ["CANCELLED", "LAUNCHING", "LAUNCH_FAILED", "NOT_STARTED", "PENDING", "QUEUED", "STARTED", "Point", "ended"]
