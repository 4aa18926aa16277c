"""What a job ended with (the last value of each metric, its duration, its billable seconds),
kept in its registry record, so `%sagemaker_jobs` and `sm-magic jobs` show it without reading logs.

Listing must stay cheap however many jobs ended: a terminal job's status comes from its record, and
so does this. It is recorded once, by the Job handle that sees the job end (jobs.lookup.job_handle's status
hook: the handle has read most of the log by then, for its progress view); a job that ended before
sm_magic recorded these shows none.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..backends.base import JobState
from ..display.table_text import cut
from ..metrics.parser import ROW_KEYS

KEY = "final"       # the registry record's extra[KEY]
MAX_METRICS = 50    # metrics kept per job: a record stays small whatever a script logs


@dataclass
class Final:
    """The last value of each metric (in order of first appearance) and the job's seconds."""

    metrics: dict[str, float] = field(default_factory=dict)
    duration: float | None = None   # seconds from creation to the end
    billable: float | None = None   # BillableTimeInSeconds (local: what SageMaker would bill)
    cost: float | None = None       # USD, an estimate (SageMaker: backends/pricing.py), when known


def last_values(rows: Sequence[Mapping]) -> dict[str, float]:
    """Each metric's value in the last row that has it, in order of first appearance (a NaN the
    job logged last is kept: a diverged loss reads as one)."""
    order: dict[str, None] = {}
    last: dict[str, float] = {}
    for row in rows:
        for name, value in row.items():
            if name in ROW_KEYS or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            order.setdefault(name, None)
            last[name] = float(value)
    return {name: last[name] for name in order}


def duration(state: JobState, now: float | None = None) -> float | None:
    """Seconds from the job's creation to its end (the end of training, else of its last status
    transition), or to now while it runs; None when the backend gives no creation time."""
    if not state.creation_time:
        return None
    end = state.training_end_time
    if end is None and state.done and state.transitions:
        end = state.transitions[-1].end or state.transitions[-1].start
    if end is None:
        end = time.time() if now is None else now
    try:
        return max(0.0, float(end) - float(state.creation_time))
    except (TypeError, ValueError):  # a damaged state file's times: no duration, the rest still shows
        return None


def record(registry, name: str, state: JobState, rows: Sequence[Mapping]) -> None:
    """Keep what the ended job `name` shows in its registry record (raises RegistryError)."""
    values = dict(list(last_values(rows).items())[:MAX_METRICS])
    registry.merge_extra(name, {KEY: {"metrics": values, "duration": duration(state),
                                      "billable": state.billable_seconds, "cost": cost(state)}})


def cost(state: JobState) -> float | None:
    """The job's cost so far in USD, where its backend knows a price (an estimate)."""
    return _seconds((state.extra.get("cost") or {}).get("usd"))


def read(extra: Mapping) -> Final:
    """What a record keeps (an empty Final for a job that ended before it was recorded, or a
    record whose value was damaged)."""
    kept = extra.get(KEY)
    if not isinstance(kept, Mapping):
        return Final()
    metrics = kept.get("metrics")
    metrics = {str(k): float(v) for k, v in metrics.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)} if isinstance(metrics, Mapping) else {}
    return Final(metrics, _seconds(kept.get("duration")), _seconds(kept.get("billable")), _seconds(kept.get("cost")))


def _seconds(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def compact(values: Mapping[str, float], most: int = 3, width: int = 40) -> str:
    """`loss=0.1234 accuracy=0.93 (+2)`: at most `most` metrics, about `width` characters at
    most (a long name is cut with "…"), and how many more there are."""
    parts: list[str] = []
    for name, value in values.items():
        label = cut(name, 20)
        text = f"{label}={_number(value)}"
        if len(parts) == most or (parts and len(" ".join(parts + [text])) > width):
            break
        parts.append(text)
    more = len(values) - len(parts)
    return " ".join(parts) + (f" (+{more})" if more else "")


def _number(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)
