"""Which run was best: several jobs side by side, one row each, and one metric overlaid in a plot.

`sm_magic.compare(jobs_or_names, sort_by=None, best=None)` is a pandas DataFrame, one row per
job (Job objects, or names found in the registry; a mix is fine; a sweep's name or a Sweep
stands for its jobs, in the grid's order), with the columns

    name, status, <each hyperparameter>, billable_s, duration_s, cost_usd,
    <metric>_last, <metric>_best (for each metric), created[, note]

(`cost_usd`: a SageMaker job's billable seconds x instances x the instance's on-demand price, an
estimate (backends/sagemaker/pricing.py); NaN where no price is known, and for the local backends.)

Flat columns rather than a MultiIndex: they read as one header row in a notebook, and
`df["accuracy_best"]` or `df.sort_values("loss_last")` need no tuples. A hyperparameter whose name
is taken by one of these columns is `hp.<name>`. Hyperparameters are the script's arguments as
recorded (strings); a column whose values all read as numbers holds numbers, so `lr` sorts as one.

`best` is the max or the min over the job's rows, as metrics/direction.py decides from the name
(accuracy-like max, loss-like min, anything else min), overridden by `best={"metric": "max"}`.
Sorted by `sort_by`: a metric name means its best value, best first; any column sorts as that
column (a metric's columns best first, the others ascending); missing values go last. Default:
the first metric's best, else creation time (oldest first: a sweep's jobs in launch order).

`sm_magic.compare.plot(jobs_or_names, metric)` is that metric of every job as one line each, PNG
bytes (metrics/overlay.py, which a sweep's widget reuses); `plot` is an attribute of the
function `compare`, so the two read as one verb.

In a notebook the table shows compact (display/table_view.py): a mark on the best row, then name, status,
the ranking metric's best value, the hyperparameters that differ and the duration (`0:32`),
numbers to 4 significant digits, every column one click away; the frame's data is as above, and
a frame derived from it (`df.sort_values(...)`) is a plain DataFrame.

A job whose record, state or log cannot be read is still listed (status "Unknown" when its state
cannot be read), with a note saying why: one broken job never hides the others.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import UsageProblem
from ..jobs import final_metrics
from ..jobs.states import UNKNOWN
from ..metrics.direction import check_overrides, direction
from ..metrics.parser import ROW_KEYS

if TYPE_CHECKING:  # pandas and the job machinery load when a comparison is made
    import pandas

    from ..jobs.job import Job
    from ..jobs.registry import Registry

__all__ = ["compare", "plot", "comparison", "Comparison", "CompareError"]

LISTED_BY = "`%sagemaker_jobs` (or `sm-magic jobs`) lists the known jobs"


@runtime_checkable
class JobGroup(Protocol):
    """What compare takes as a group of jobs: a Sweep (sweep.py imports this module, so it is
    known by what it has, not by its class)."""

    @property
    def jobs(self) -> list[Job]: ...


class CompareError(UsageProblem, ValueError):
    """Jobs that cannot be compared as asked (an unknown name, sort key or metric)."""


@dataclass
class _Run:
    """One job as compared: what its row and its line in the plot are made of."""

    name: str
    status: str = UNKNOWN
    created: float | None = None
    hyperparameters: dict[str, str] = field(default_factory=dict)
    billable: float | None = None
    cost: float | None = None   # USD, an estimate (SageMaker's billable seconds at the instance's price)
    duration: float | None = None
    rows: Sequence[dict] = ()
    note: str = ""


def _items(jobs_or_names, registry: Registry) -> tuple[list, dict[str, Any]]:
    """The jobs asked for, in order, each once (a name, or a Job; one alone is fine too); a
    Sweep, or the name of a sweep in the registry (not of a job), is its jobs. With the registry's
    record of each name (None: no such job)."""
    from ..jobs.job import Job
    from .record import sweep_records

    if isinstance(jobs_or_names, (str, Job, JobGroup)):
        jobs_or_names = [jobs_or_names]
    elif isinstance(jobs_or_names, (bytes, Mapping)) or not isinstance(jobs_or_names, Iterable):
        raise CompareError(_takes(jobs_or_names))
    flat: list = []
    records: dict[str, Any] = {}
    for item in jobs_or_names:
        if isinstance(item, JobGroup):
            flat.extend(item.jobs)
        elif isinstance(item, str):
            record = registry.get(item)
            swept = sweep_records(item, registry) if record is None else []
            if swept:
                records.update((r.name, r) for r in swept)
                flat.extend(r.name for r in swept)
            else:
                records[item] = record
                flat.append(item)
        else:
            flat.append(item)
    items, seen = [], set()
    for item in flat:
        if not isinstance(item, (str, Job)):
            raise CompareError(_takes(item))
        name = item if isinstance(item, str) else item.name
        if name not in seen:
            seen.add(name)
            items.append(item)
    if not items:
        raise CompareError(f"no jobs to compare: name at least one ({LISTED_BY})")
    return items, records


def _takes(given) -> str:
    return (f"compare takes Jobs, Sweeps and job or sweep names (one, or a list of them), "
            f"not {type(given).__name__}")


def _gather(jobs_or_names, registry: Registry | None) -> list[_Run]:
    """Each job's state and metric rows (its whole log is read once, for the best values).
    Every name is looked up before any log is read: an unknown one is an error at once."""
    from ..jobs.lookup import attach_job, one_line
    from ..jobs.registry import Registry

    registry = registry or Registry()
    items, records = _items(jobs_or_names, registry)
    unknown = [name for name, record in records.items() if record is None]
    if unknown:
        raise CompareError(f"no job or sweep named {', '.join(unknown)} in the registry ({registry.path}); {LISTED_BY}")
    runs = []
    for item in items:
        record = records.get(item) if isinstance(item, str) else None
        run = _Run(item if isinstance(item, str) else item.name)
        if record is not None:
            run.created, run.hyperparameters = record.created, dict(record.hyperparameters)
            run.note = record.extra.get("unreadable", "")
        try:
            job: Job = attach_job(item, registry) if isinstance(item, str) else item
            state = job.describe()
        except Exception as e:  # noqa: BLE001 - whatever broke this job must not hide the others
            run.note = "; ".join(filter(None, [run.note, one_line(e)]))
            runs.append(run)
            continue
        run.status, run.created = state.status, state.creation_time or run.created
        run.hyperparameters = dict(state.hyperparameters) or run.hyperparameters
        run.billable, run.duration = state.billable_seconds, final_metrics.duration(state)
        run.cost = final_metrics.cost(state)
        try:
            run.rows = job.metric_rows()
        except Exception as e:  # noqa: BLE001 - its status still says something
            run.note = "; ".join(filter(None, [run.note, f"its metrics could not be read: {one_line(e)}"]))
        runs.append(run)
    return runs


def _metric_names(runs: Sequence[_Run]) -> list[str]:
    """Every metric any job logged, in order of first appearance (jobs in the order given)."""
    names: dict[str, None] = {}
    for run in runs:
        for row in run.rows:
            for name, value in row.items():
                if name not in ROW_KEYS and name not in names and _is_number(value):
                    names[name] = None
    return list(names)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _best(rows: Sequence[dict], name: str, way: str) -> float:
    """The metric's best finite value over the rows (NaN when there is none)."""
    values = []
    for row in rows:
        value = row.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            values.append(float(value))
    if not values:
        return math.nan
    return max(values) if way == "max" else min(values)


@dataclass
class Comparison:
    """A comparison's table and what its plot needs: `frame` (as `compare` returns it), the
    metrics and their directions, and each job's rows for `png(metric)`."""

    frame: pandas.DataFrame
    metrics: list[str]
    directions: dict[str, str]
    sorted_by: str | None          # the metric the rows are sorted by, if a metric
    runs: list[_Run] = field(repr=False, default_factory=list)
    hyperparameters: list[str] = field(default_factory=list)  # their columns' names

    def text(self) -> str:
        """The compact table as lines of text, as `sm-magic jobs --compare` prints it."""
        from ..display.table_view import compare_text

        ranked = self.metric()
        return compare_text(self.frame, ranked, self.directions.get(ranked, "min") if ranked else "min",
                            self.hyperparameters)

    def metric(self, name: str | None = None) -> str | None:
        """`name` checked against the metrics the jobs logged; None: the sort metric, else the
        first metric, else None (no job logged any)."""
        if name is None:
            return self.sorted_by or (self.metrics[0] if self.metrics else None)
        if name not in self.metrics:
            raise CompareError(f"no metric named {name} to plot; {_available(self.metrics)}")
        return name

    def png(self, metric: str | None = None) -> bytes:
        """The overlay plot of `metric` (default: see `metric`), PNG bytes; b"" without metrics."""
        from ..metrics.overlay import overlay_png

        name = self.metric(metric)
        if name is None:
            return b""
        return overlay_png({run.name: run.rows for run in self.runs if run.rows}, name, best=self.directions[name])


def _available(metrics: Sequence[str]) -> str:
    return f"these jobs' metrics: {', '.join(metrics)}" if metrics else "these jobs log no metrics (yet)"


def comparison(jobs_or_names, sort_by: str | None = None, best: Mapping[str, str] | None = None, *,
               registry: Registry | None = None) -> Comparison:
    """`compare`'s table with what its plot needs, from one reading of each job's log."""
    import pandas as pd

    from ..display.table_view import compare_frame

    runs = _gather(jobs_or_names, registry)
    metrics = _metric_names(runs)
    overrides = check_overrides(best, metrics)
    directions = {name: direction(name, overrides) for name in metrics}
    fixed = {"name", "status", "billable_s", "duration_s", "cost_usd", "created", "note",
             *(f"{m}_{kind}" for m in metrics for kind in ("last", "best"))}
    hp_names: dict[str, None] = {}
    for run in runs:
        hp_names.update(dict.fromkeys(run.hyperparameters))
    hp_columns = {hp: f"hp.{hp}" if hp in fixed else hp for hp in hp_names}
    records = []
    for run in runs:
        last = final_metrics.last_values(run.rows)
        record: dict[str, Any] = {"name": run.name, "status": run.status}
        record.update({hp_columns[hp]: run.hyperparameters.get(hp) for hp in hp_names})
        record.update(billable_s=_float(run.billable), duration_s=_float(run.duration), cost_usd=_float(run.cost))
        for m in metrics:
            record[f"{m}_last"] = last.get(m, math.nan)
            record[f"{m}_best"] = _best(run.rows, m, directions[m])
        record["created"] = pd.Timestamp(run.created, unit="s").floor("s") if run.created else pd.NaT
        record["note"] = run.note
        records.append(record)
    frame = pd.DataFrame(records)
    for column in hp_columns.values():  # "0.01" -> 0.01 where the whole column reads as numbers
        try:
            frame[column] = pd.to_numeric(frame[column])
        except (ValueError, TypeError):
            pass
    if not any(run.note for run in runs):  # a column only when some job has something wrong
        frame = frame.drop(columns="note")
    frame, sorted_by = _sort(frame, sort_by, metrics, directions)
    ranked = sorted_by or (metrics[0] if metrics else None)
    frame = compare_frame(frame, ranked, directions.get(ranked, "min") if ranked else "min", list(hp_columns.values()))
    return Comparison(frame, metrics, directions, sorted_by, runs, list(hp_columns.values()))


def _float(value) -> float:
    return float(value) if value is not None else math.nan


def _sort(frame: pandas.DataFrame, sort_by: str | None, metrics: list[str],
          directions: dict[str, str]) -> tuple[pandas.DataFrame, str | None]:
    metric = None
    if sort_by is None:
        metric = metrics[0] if metrics else None
        column = f"{metric}_best" if metric else "created"
    elif sort_by in metrics:
        metric, column = sort_by, f"{sort_by}_best"
    elif sort_by in frame.columns:
        column = sort_by
        metric = next((m for m in metrics if column in (f"{m}_last", f"{m}_best")), None)
    else:
        raise CompareError(f"cannot sort by {sort_by}: it is no metric or column of these jobs; {_available(metrics)}; "
                           f"columns: {', '.join(map(str, frame.columns))}")
    ascending = directions[metric] == "min" if metric else True
    frame = frame.sort_values(column, ascending=ascending, na_position="last", kind="stable")
    return frame.reset_index(drop=True), metric


def compare(jobs_or_names: Iterable[Job | str] | Job | str, sort_by: str | None = None,
            best: Mapping[str, str] | None = None, *, registry: Registry | None = None) -> pandas.DataFrame:
    """Several jobs side by side, one row each: which run was best.

    Each job's log is read once, whole, for its best values. A job whose record, state or log
    cannot be read is still listed (status "Unknown" when its state cannot be read) with a `note`
    saying why. In a notebook the frame shows compact (the best row marked, the hyperparameters
    that differ); its data is every column below.

    Args:
        jobs_or_names: a Job, a job's name, a Sweep or a sweep's name, or a list of them (a mix
            is fine; a sweep stands for its jobs, in the grid's order; each job is listed once).
        sort_by: a metric (its best value, best first) or any column (a metric's columns best
            first, the others ascending); missing values go last. Default: the first metric's
            best, else creation time, oldest first.
        best: which way is better, per metric (`{"grad_norm": "max"}`), where the name does not
            say it (accuracy-like names are max, loss-like and other names min).
        registry: the job registry the names are looked up in (default: this user's).

    Returns:
        A pandas DataFrame with the columns `name`, `status`, one per hyperparameter (`hp.<name>`
        where a fixed column has that name; numbers where every value reads as one),
        `billable_s`, `duration_s`, `cost_usd` (an estimate; NaN without a known price),
        `<metric>_last` and `<metric>_best` for each metric, `created`, and `note` when some job
        could not be read.

    Raises:
        CompareError: no jobs were given, a name is no job or sweep in the registry, or
            `sort_by` is no metric or column of these jobs.
        MetricDirectionError: `best` is not {metric: "max" | "min"}, or names a metric none of
            the jobs logged.

    Example:
        df = sm_magic.compare(["sweep-lr-0.01", "sweep-lr-0.05", job], sort_by="loss")
        df[["name", "lr", "loss_best"]]
    """
    return comparison(jobs_or_names, sort_by, best, registry=registry).frame


def plot(jobs_or_names: Iterable[Job | str] | Job | str, metric: str, best: Mapping[str, str] | None = None, *,
         registry: Registry | None = None) -> bytes:
    """One metric of every job, one line a job, in one plot; `sm_magic.compare.plot`.

    Each line is thinned to a few hundred points that keep spikes and dips, however many rows a
    job logged; the axis label says which way is better. Past 12 jobs the legend gives way to a
    title saying how many.

    Args:
        jobs_or_names: what `compare` takes: Jobs, job or sweep names, Sweeps, or a mix.
        metric: the metric to draw, as the jobs log it (`"accuracy"`, `"eval_loss"`).
        best: which way is better, per metric, as for `compare`.
        registry: the job registry the names are looked up in (default: this user's).

    Returns:
        The plot as PNG bytes (matplotlib's Agg canvas: no display needed).

    Raises:
        CompareError: a name is no job or sweep in the registry, or no job logged `metric`
            (the message lists the metrics they did log).

    Example:
        png = sm_magic.compare.plot(sweep, "accuracy")
        IPython.display.Image(png)
    """
    result = comparison(jobs_or_names, best=best, registry=registry)
    return result.png(result.metric(metric))


# `sm_magic.compare.plot(jobs, metric)`, as documented: the plot is reached through the table's function.
compare.plot = plot  # type: ignore[attr-defined]
