"""SageMaker warm pools, as a user reads them: what a launch asks for, and what DescribeTrainingJob
says of the job's pool afterwards (its WarmPoolStatus).

A job with ResourceConfig.KeepAlivePeriodInSeconds above 0 leaves its instances in a warm pool
when it ends: `Available` until a job with the same instance type and count takes them over (then
`Reused`, naming that job in `ReusedByJob`) or the keep-alive runs out (`Terminated`); `InUse`
while a job runs on them. The pool is billed while kept (`ResourceRetainedBillableTimeInSeconds`).
"""

from __future__ import annotations

from typing import Any

STATUS_WORDS = {
    "InUse": "in use by this job",
    "Available": "kept for the next matching job",
    "Reused": "reused",
    "Terminated": "released",
}


def _minutes(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def launch_line(keep_alive_seconds: int | None) -> str | None:
    """What a launch with a warm pool prints (None without one)."""
    if not keep_alive_seconds:
        return None
    return (f"warm pool: the instances stay {_minutes(keep_alive_seconds)} after the job for the next job with the "
            "same instance type and count (billed while kept); its requirements go to the pool's cache, so that "
            "job installs only what changed")


def facts(description: dict) -> dict[str, Any] | None:
    """The warm-pool facts of a DescribeTrainingJob answer, for JobState.extra["warm_pool"] (None:
    the job asked for no warm pool). The backend adds "started_on_pool_of": the job whose pool this
    one took over (None: none), once it has asked (SageMakerBackend._warm_pool_origin)."""
    keep = (description.get("ResourceConfig") or {}).get("KeepAlivePeriodInSeconds")
    status = description.get("WarmPoolStatus") or {}
    if not keep and not status:
        return None
    return {"keep_alive_seconds": keep, "status": status.get("Status"), "reused_by": status.get("ReusedByJob"),
            "retained_billable_seconds": status.get("ResourceRetainedBillableTimeInSeconds")}


def status_line(warm: dict | None) -> str | None:
    """One line for a job's warm pool, as `sm-magic`, the widget or a job summary shows it."""
    if not warm:
        return None
    keep = warm.get("keep_alive_seconds")
    parts = [f"warm pool ({_minutes(keep)} keep-alive)" if keep else "warm pool"]
    status = warm.get("status")
    if status == "Reused" and warm.get("reused_by"):
        parts.append(f"reused by job {warm['reused_by']}")
    elif status:
        parts.append(STATUS_WORDS.get(status, status))
    else:
        parts.append("requested")
    origin = warm.get("started_on_pool_of", "")
    if origin:
        parts.append(f"started on the warm pool of job {origin}")
    elif origin is None:
        parts.append("started on newly provisioned instances")
    if warm.get("retained_billable_seconds"):
        parts.append(f"{warm['retained_billable_seconds']} s billed while kept")
    return ": ".join(parts[:2]) + "".join(f"; {p}" for p in parts[2:])
