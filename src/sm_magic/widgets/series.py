"""What a display shows of a job's metric rows, at a cost that does not grow with the job.

A job that logs one row per step can have tens of thousands of rows; `job.metrics` keeps them
all, but a table under a cell shows a window of them (`window`) and a plot draws each metric
from at most a few hundred points that keep the curve's shape (`downsample`).
"""

from __future__ import annotations

import math
from typing import Sequence

TABLE_ROWS = 15     # rows a table shows once there are more: the latest, plus each metric's best
PLOT_POINTS = 300   # points drawn per metric at most
_LOWER_IS_BETTER = ("loss", "err", "perplex", "wer", "cer", "mse", "mae", "rmse", "time")
_KEYS = ("epoch", "step")


def lower_is_better(name: str) -> bool:
    """Loss-like metrics are best when lowest; accuracy-like ones when highest."""
    return any(word in name.lower() for word in _LOWER_IS_BETTER)


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None


def window(rows: Sequence[dict], limit: int = TABLE_ROWS) -> tuple[list[dict], int]:
    """(the rows to show, how many are not shown). All rows while there are at most `limit`;
    then the latest `limit` rows, plus for each metric the row with its best value, in their
    order in the job."""
    if len(rows) <= limit:
        return list(rows), 0
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
    return shown, len(rows) - len(shown)


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
