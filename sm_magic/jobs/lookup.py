"""Jobs found again by name: `attach_job` (a Job for a job the registry knows, started by this or
another kernel), `list_jobs` (what `%sagemaker_jobs` and `sm-magic jobs` show) and `job_handle`,
the Job a launch or an attach returns, whose status reaches the registry. Nothing here plans or
starts a job; `sm_magic.attach` (sweeps/sweep.py) is the public attach, a job's or a sweep's."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..backends import TERMINAL_STATUSES, Backend, BackendError, backend_class, get_backend
from ..errors import UsageProblem
from ..metrics.parser import MetricDefinition
from . import final_metrics
from .job import Job
from .registry import JobRecord, Registry


class AttachError(UsageProblem, ValueError):
    """No job of that name in the registry, or its record names a backend that cannot be used."""


def job_handle(name: str, backend: Backend, metric_defs: list[MetricDefinition], registry: Registry,
               record_final: bool = True) -> Job:
    """A Job whose status reaches the registry.

    Args:
        name: the job's name.
        backend: the backend it runs on.
        metric_defs: the metric definitions its log is read with.
        registry: the registry that records it.
        record_final: record its final metrics too, when it is seen ending (not for jobs the
            registry saw end: each attach would read their log).

    Returns:
        The Job.
    """
    def record_status(state):
        if state.extra.get("state_unwritten"):  # the job's own record may still change (disk full)
            return
        try:
            registry.update(name, status=state.status)
            if record_final and state.done:
                final_metrics.record(registry, name, state, job.metric_rows())
        except Exception:  # the registry is an index; a job must not fail because of it
            pass
    job = Job(name, backend, metric_defs, on_status=record_status)  # the hook reads its rows
    return job


def attach_job(name: str, registry: Registry | None = None) -> Job:
    """A `Job` for a job launched earlier (by this or another kernel), found in the registry.

    Args:
        name: the job's name.
        registry: the registry to look in (default: this user's).

    Returns:
        The Job, on the backend and with the metric definitions its record names.

    Raises:
        AttachError: no job of that name, or its backend cannot be made.
    """
    registry = registry or Registry()
    record = registry.get(name)
    if record is None:
        raise AttachError(f"no job named {name} in the registry ({registry.path}); "
                          "`%sagemaker_jobs` (or `sm-magic jobs`) lists the known jobs")
    try:
        kind = backend_class(record.backend)
        options = ({"jobs_dir": str(Path(record.location).parent)} if kind.traits.job_dir
                   else record.extra.get("backend_options", {}))
        be = get_backend(record.backend, **options)
    except BackendError as e:
        raise AttachError(str(e)) from None
    defs = [MetricDefinition(d["Name"], d["Regex"]) for d in record.extra.get("metric_definitions", [])]
    return job_handle(name, be, defs, registry, record_final=record.status not in TERMINAL_STATUSES)


@dataclass
class JobRow:
    """One job as `%sagemaker_jobs` and `sm-magic jobs` list it."""

    record: JobRecord
    status: str            # its current TrainingJobStatus, or "Unknown" when it cannot be read
    note: str = ""         # what is wrong with the job's record or files, when something is
    metrics: dict[str, float] = field(default_factory=dict)  # an ended job's last metric values
    duration: float | None = None  # seconds from creation to its end (or to now, while it runs)
    cost: float | None = None      # USD so far, an estimate, where the backend knows a price

    @property
    def sweep(self) -> str:
        """The name of the sweep the job is a point of; "" for a job of its own."""
        info = self.record.extra.get("sweep")
        name = info.get("name") if isinstance(info, dict) else None
        return name if isinstance(name, str) else ""


def list_jobs(limit: int | None = None, registry: Registry | None = None) -> list[JobRow]:
    """Registry records, newest first, each with its current status (asked of the backend for
    jobs the registry last saw running), duration and final metrics (an ended job's from its
    record, never its log: final_metrics). A job whose record or files cannot be read is listed
    as "Unknown" with a note saying why; it never hides the others.

    Args:
        limit: at most this many of the newest jobs (None: all).
        registry: the registry to read (default: this user's).

    Returns:
        One JobRow per job.
    """
    registry = registry or Registry()
    rows = []
    for record in registry.list(limit=limit):
        final = final_metrics.read(record.extra)
        row = JobRow(record, record.status, record.extra.get("unreadable", ""), final.metrics, final.duration,
                     final.cost)
        if record.status not in TERMINAL_STATUSES:
            try:
                job = attach_job(record.name, registry)
                state = job.describe()
                row.status, row.duration = state.status, final_metrics.duration(state)
                row.cost = final_metrics.cost(state)
                if state.done:  # ended since the registry last looked: its status hook recorded it
                    row.metrics = final_metrics.last_values(job.metric_rows())
            except Exception as e:  # noqa: BLE001 - whatever broke this job must not break the list
                row.status, row.note = "Unknown", one_line(e)
        rows.append(row)
    return rows


def one_line(error: BaseException) -> str:
    """An error as a note on one line: its message, after its class's name unless it is one a
    user reads as it is (the job could not be found, or its backend said why)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if isinstance(error, (AttachError, BackendError)) else f"{type(error).__name__}: {text}"
