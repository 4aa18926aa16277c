"""A sweep's points: each combination of the grid, its state until it has a job, and the job."""

from __future__ import annotations

from dataclasses import dataclass

from .job import Job

# A point's life before (or instead of) its job: the job's own status takes over once it starts.
QUEUED = "Queued"              # waits for a free slot (or for the account quota)
LAUNCHING = "Launching"        # being built and submitted
STARTED = "Started"            # has a Job
CANCELLED = "Cancelled"        # the stop came before it started (given here or elsewhere)
LAUNCH_FAILED = "LaunchFailed"  # its launch was refused or failed; `error` says why
NOT_STARTED = "NotStarted"     # found from the registry with no job: its launcher ended or died without starting it
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
            return "Unknown"


def ended(job: Job) -> bool:
    try:
        return job.done
    except Exception:  # noqa: BLE001 - unreadable for now: counted as running, looked at again
        return False
