"""What a display shows of a job's metric rows, at a cost that does not grow with the job.

A job that logs one row per step can have tens of thousands of rows; `job.metrics` keeps them
all, but a table under a cell shows a window of them (`window`) and a plot draws each metric
from at most a few hundred points that keep the curve's shape (`downsample`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

TABLE_ROWS = 15     # rows a table shows once there are more: the latest, plus each metric's best
STEP_ROWS = 10      # for per-step rows: the latest this many ...
SUMMARY_ROWS = 10   # ... and at most this many per-epoch (or per step range) means
PLOT_POINTS = 300   # points drawn per metric at most
_LOWER_IS_BETTER = ("loss", "err", "perplex", "wer", "cer", "mse", "mae", "rmse", "time")
_KEYS = ("epoch", "step")


def lower_is_better(name: str) -> bool:
    """Loss-like metrics are best when lowest; accuracy-like ones when highest."""
    return any(word in name.lower() for word in _LOWER_IS_BETTER)


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None


@dataclass
class Window:
    """What a table shows of a job's rows: `rows` in job order, how many are `hidden`, and for a
    job logging per step, `summaries`: each epoch's (or each step range's) mean, oldest first."""

    rows: list[dict]
    hidden: int = 0
    summaries: list[dict] = field(default_factory=list)
    summary_of: str = ""   # "epoch" or "steps": what one summary row stands for


def window(rows: Sequence[dict], limit: int = TABLE_ROWS) -> Window:
    """All rows while there are at most `limit`. Then, for a job that logs per epoch, the latest
    `limit` rows plus for each metric the row with its best value; for one that logs per step
    (one noisy step's best means little), the latest rows and the mean of each epoch, or of each
    step range when the rows carry no epoch."""
    if len(rows) <= limit:
        return Window(list(rows))
    if any("step" in row for row in rows[-limit:]):
        latest = list(rows[-STEP_ROWS:])
        summaries, of = _means(rows)
        return Window(latest, len(rows) - len(latest), summaries, of)
    keep = set(range(len(rows) - limit, len(rows)))
    names = {k for row in rows[-limit:] for k in row if k not in _KEYS}
    for name in sorted(names):
        sign = 1.0 if lower_is_better(name) else -1.0
        best, best_at = None, None
        for i, row in enumerate(rows):
            value = _number(row.get(name))
            if value is not None and (best is None or sign * value < sign * best):
                best, best_at = value, i
        if best_at is not None:
            keep.add(best_at)
    shown = [rows[i] for i in sorted(keep)]
    return Window(shown, len(rows) - len(shown))


def _means(rows: Sequence[dict]) -> tuple[list[dict], str]:
    """The mean of each metric per epoch (the latest SUMMARY_ROWS epochs) when the rows carry
    epochs, else per step range (SUMMARY_ROWS equal ranges): (summary rows, "epoch" | "steps").
    A summary row has the rows' own keys: its epoch, and its steps as a range "first\u2013last"."""
    by_epoch = any("epoch" in row for row in rows[-STEP_ROWS:])
    groups: list[list[dict]] = []
    if by_epoch:
        index: dict = {}
        for row in rows:
            if "epoch" in row:
                if row["epoch"] not in index:
                    index[row["epoch"]] = len(groups)
                    groups.append([])
                groups[index[row["epoch"]]].append(row)
        groups = groups[-SUMMARY_ROWS:]
    else:
        size = -(-len(rows) // SUMMARY_ROWS)
        groups = [list(rows[start:start + size]) for start in range(0, len(rows), size)]
    return [_mean(part, by_epoch) for part in groups], "epoch" if by_epoch else "steps"


def _mean(part: list[dict], by_epoch: bool) -> dict:
    summary: dict = {"epoch": part[0]["epoch"]} if by_epoch else {}
    steps = [row["step"] for row in part if "step" in row]
    if steps:
        summary["step"] = f"{steps[0]}\u2013{steps[-1]}" if len(steps) > 1 else steps[0]
    sums: dict[str, list] = {}
    for row in part:
        for name, value in row.items():
            number = _number(value)
            if name not in _KEYS and number is not None:
                total = sums.setdefault(name, [0.0, 0])
                total[0] += number
                total[1] += 1
    summary.update((name, total / count) for name, (total, count) in sums.items())
    return summary


def downsample(xs: Sequence[float], ys: Sequence[float], limit: int = PLOT_POINTS) -> tuple[list, list]:
    """At most `limit` points of a series, in order, keeping its shape: the series is cut into
    buckets and each keeps its lowest and highest point (a spike or a dip is never lost); the
    first and last points are always kept."""
    n = len(xs)
    if n <= limit:
        return list(xs), list(ys)
    buckets = max(1, (limit - 2) // 2)
    keep = {0, n - 1}
    size = (n - 2) / buckets
    for b in range(buckets):
        lo, hi = 1 + int(b * size), 1 + int((b + 1) * size)
        if hi <= lo:
            continue
        part = range(lo, min(hi, n - 1))
        keep.add(min(part, key=lambda i: ys[i]))
        keep.add(max(part, key=lambda i: ys[i]))
    order = sorted(keep)
    return [xs[i] for i in order], [ys[i] for i in order]


def spans_decades(values: Sequence[float], decades: float = 2.0) -> bool:
    """Whether positive values span more than `decades` powers of ten (a log scale reads better)."""
    positive = [v for v in values if v > 0]
    return len(positive) == len(values) > 1 and max(positive) / min(positive) > 10 ** decades
