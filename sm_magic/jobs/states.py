"""The words for states, in one place: every view (the widgets, the magics, `sm-magic`, `Job.status`,
`Sweep.counts()`) names a state with these and no other.

A job's state is SageMaker's own `TrainingJobStatus` word. A sweep's point that has no job yet (or
never will) has a word of its own; once its job exists, the job's word takes over.
"""

from __future__ import annotations

# A job: SageMaker's TrainingJobStatus.
IN_PROGRESS = "InProgress"
STOPPING = "Stopping"
COMPLETED = "Completed"
FAILED = "Failed"
STOPPED = "Stopped"
UNKNOWN = "Unknown"            # its state could not be read (a note says why)
JOB_ENDED = frozenset({COMPLETED, FAILED, STOPPED})

# A sweep's point without a job.
QUEUED = "Queued"              # waits for a free slot (or for the account's quota)
LAUNCHING = "Launching"        # being built and submitted
CANCELLED = "Cancelled"        # never launched and never will: the sweep was stopped first, or the
                               # process launching it ended or died first (the point's note says which)
LAUNCH_FAILED = "LaunchFailed"  # its launch was refused or failed (the point's note says why)
POINT_ENDED = frozenset({CANCELLED, LAUNCH_FAILED})

ENDED = JOB_ENDED | POINT_ENDED  # nothing more will happen to it

__all__ = ["CANCELLED", "COMPLETED", "ENDED", "FAILED", "IN_PROGRESS", "JOB_ENDED", "LAUNCHING", "LAUNCH_FAILED",
           "POINT_ENDED", "QUEUED", "STOPPED", "STOPPING", "UNKNOWN"]
