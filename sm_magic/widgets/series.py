"""What a display shows of a job's metric rows, at a cost that does not grow with the job.

A job that logs one row per step can have tens of thousands of rows; `job.metrics` keeps them
all, but a table under a cell shows a window of them (`window`, with `Means` summed as rows
arrive) and a plot draws each metric from at most a few hundred points that keep the curve's
shape (`PlotSeries`, thinned as rows arrive).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from collections.abc import Sequence

from ..metric_direction import direction
from ..metrics import ROW_KEYS

TABLE_ROWS = 15     # rows a table shows once there are more: the latest, plus each metric's best
STEP_ROWS = 10      # for per-step rows: the latest this many ...
SUMMARY_ROWS = 10   # ... and at most this many per-epoch (or per step range) means
PLOT_POINTS = 300   # points drawn per metric at most


def lower_is_better(name: str) -> bool:
    """Loss-like metrics are best when lowest; accuracy-like ones when highest. The one rule
    (metric_direction), so the table's best row is the best sm_magic.compare shows."""
    return direction(name) == "min"


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


def window(rows: Sequence[dict], limit: int = TABLE_ROWS, means: "Means" | None = None) -> Window:
    """All rows while there are at most `limit`. Then, for a job that logs per epoch, the latest
    `limit` rows plus for each metric the row with its best value; for one that logs per step
    (one noisy step's best means little), the latest rows and the mean of each epoch, or of each
    step range when the rows carry no epoch. A display that redraws the table keeps `means`
    across calls, so each call sums only the rows new since the last."""
    if len(rows) <= limit:
        return Window(list(rows))
    if any("step" in row for row in rows[-limit:]):
        latest = list(rows[-STEP_ROWS:])
        means = means if means is not None else Means()
        means.update(rows)
        by_epoch = any("epoch" in row for row in latest)
        return Window(latest, len(rows) - len(latest), means.summaries(by_epoch), "epoch" if by_epoch else "steps")
    keep = set(range(len(rows) - limit, len(rows)))
    names = {k for row in rows[-limit:] for k in row if k not in ROW_KEYS}
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


class _Sums:
    """Each metric's sum and count over some rows, and the first and last step among them."""

    __slots__ = ("first", "last", "sums")

    def __init__(self):
        self.first = self.last = None
        self.sums: dict[str, list] = {}

    def add(self, row: dict) -> None:
        if "step" in row:
            self.first = row["step"] if self.first is None else self.first
            self.last = row["step"]
        for name, value in row.items():
            number = _number(value)
            if name not in ROW_KEYS and number is not None:
                total = self.sums.setdefault(name, [0.0, 0])
                total[0] += number
                total[1] += 1

    def merge(self, other: "_Sums") -> "_Sums":
        self.first = other.first if self.first is None else self.first
        self.last = other.last if other.last is not None else self.last
        for name, (total, count) in other.sums.items():
            mine = self.sums.setdefault(name, [0.0, 0])
            mine[0] += total
            mine[1] += count
        return self

    def mean(self, head: dict) -> dict:
        """A summary row with the rows' own keys: `head` (its epoch), its steps as a range."""
        summary = dict(head)
        if self.first is not None:
            summary["step"] = f"{self.first}\u2013{self.last}" if self.last != self.first else self.first
        summary.update((name, total / count) for name, (total, count) in self.sums.items())
        return summary


class Means:
    """Running sums of a per-step job's metrics, per epoch and per block of BLOCK rows: a table
    of means then costs the new rows only. A row replaced after it was summed (rare for step
    rows) keeps its first values in the sums."""

    BLOCK = 256

    def __init__(self):
        self._reset()

    def _reset(self) -> None:
        self.count = 0
        self.epochs: dict = {}           # epoch -> _Sums, in order of first appearance
        self.blocks: list[_Sums] = []    # rows [i * BLOCK, (i + 1) * BLOCK)

    def update(self, rows: Sequence[dict]) -> None:
        if len(rows) < self.count:  # not the rows it has summed: start again
            self._reset()
        for i in range(self.count, len(rows)):
            row = rows[i]
            if i % self.BLOCK == 0:
                self.blocks.append(_Sums())
            self.blocks[-1].add(row)
            if "epoch" in row:
                self.epochs.setdefault(row["epoch"], _Sums()).add(row)
        self.count = len(rows)

    def summaries(self, by_epoch: bool) -> list[dict]:
        """The mean of each metric per epoch (the latest SUMMARY_ROWS epochs), or per step range
        (at most SUMMARY_ROWS ranges of whole blocks, over every row)."""
        if by_epoch:
            return [s.mean({"epoch": e}) for e, s in list(self.epochs.items())[-SUMMARY_ROWS:]]
        per = -(-len(self.blocks) // SUMMARY_ROWS)
        ranges = []
        for start in range(0, len(self.blocks), per):
            total = _Sums()
            for block in self.blocks[start:start + per]:
                total.merge(block)
            ranges.append(total.mean({}))
        return ranges


class _Thinned:
    """One metric's points as they arrive, at most `limit` kept, keeping the curve's shape: the
    points go into buckets of `size`, each keeping its lowest and its highest (a spike or a dip
    is never lost); when there are too many buckets, neighbours merge and `size` doubles. The
    first and the latest points are always kept. Each point costs O(1), however long the job."""

    def __init__(self, limit: int):
        self.limit, self.size = limit, 1
        self.buckets: list[list] = []   # [index of lowest, lowest, index of highest, highest, count]
        self.first: tuple[int, float] = (-1, 0.0)   # (-1, _): no point yet
        self.latest: tuple[int, float] = (-1, 0.0)

    def add(self, i: int, y: float) -> None:
        if self.first[0] < 0:
            self.first = (i, y)
        self.latest = (i, y)
        if not self.buckets or self.buckets[-1][4] >= self.size:
            self.buckets.append([i, y, i, y, 0])
        b = self.buckets[-1]
        if y < b[1]:
            b[0], b[1] = i, y
        if y > b[3]:
            b[2], b[3] = i, y
        b[4] += 1
        if 2 * len(self.buckets) + 2 > self.limit:
            self.size *= 2
            self.buckets = [_merge(self.buckets[k:k + 2]) for k in range(0, len(self.buckets), 2)]

    def points(self) -> dict[int, float]:
        """{row index: value} of the points kept."""
        kept = {i: y for b in self.buckets for i, y in ((b[0], b[1]), (b[2], b[3]))}
        for i, y in (self.first, self.latest):
            if i >= 0:
                kept[i] = y
        return kept


def _merge(pair: list[list]) -> list:
    lo = min(pair, key=lambda b: b[1])
    hi = max(pair, key=lambda b: b[3])
    return [lo[0], lo[1], hi[2], hi[3], sum(b[4] for b in pair)]


class PlotSeries:
    """What a plot draws of a job's rows: each metric thinned to at most `limit` points as the
    rows arrive, so a redraw costs the new rows only. The latest RECHECK rows are read afresh at
    each draw (a validation metric may still join its epoch's row); a row replaced before that
    keeps its first values here."""

    RECHECK = 8

    def __init__(self, limit: int = PLOT_POINTS):
        self.limit = limit
        self._reset()

    def _reset(self) -> None:
        self.count = 0                                    # rows thinned so far
        self.lines: dict[str, _Thinned] = {}              # in order of first appearance
        self.keyed = {key: True for key in ROW_KEYS}         # whether every row so far has the key

    def _add(self, lines: dict, keyed: dict, i: int, row: dict) -> None:
        for key in ROW_KEYS:
            keyed[key] = keyed[key] and key in row
        for name, value in row.items():
            number = _number(value)
            if name not in ROW_KEYS and number is not None:
                if name not in lines:
                    lines[name] = _Thinned(self.limit)
                lines[name].add(i, number)

    def update(self, rows: Sequence[dict]) -> tuple[str | None, dict[str, tuple[list, list]]]:
        """(the x key: "epoch", "step" or None for the row number, {metric: (xs, ys)})."""
        if len(rows) < self.count:  # not the rows it has thinned: start again
            self._reset()
        end = max(self.count, len(rows) - self.RECHECK)
        for i in range(self.count, end):
            self._add(self.lines, self.keyed, i, rows[i])
        self.count = end
        points = {name: line.points() for name, line in self.lines.items()}
        keyed = dict(self.keyed)
        fresh: dict[str, _Thinned] = {}
        for i in range(end, len(rows)):
            self._add(fresh, keyed, i, rows[i])
        for name, line in fresh.items():
            points.setdefault(name, {}).update(line.points())
        key = "epoch" if keyed["epoch"] else "step" if keyed["step"] else None
        drawn = {}
        for name, kept in points.items():
            order = sorted(kept)
            drawn[name] = ([rows[i][key] if key else i for i in order], [kept[i] for i in order])
        return key, drawn


def spans_decades(values: Sequence[float], decades: float = 2.0) -> bool:
    """Whether positive values span more than `decades` powers of ten (a log scale reads better)."""
    positive = [v for v in values if v > 0]
    return len(positive) == len(values) > 1 and max(positive) / min(positive) > 10 ** decades
