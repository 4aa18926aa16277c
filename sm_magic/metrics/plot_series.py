"""What a plot draws of a job's rows: each metric from at most a few hundred points that keep the
curve's shape, thinned as rows arrive, over an x axis that is what the rows count.

The x axis is **epoch** when every row carries an epoch and none a step (a job that logs per
epoch, or Hugging Face's Trainer, whose training loss comes at fractions of an epoch), else
**step**: step rows at their step, and an epoch's own row (`{"epoch": 2, "val_loss": 0.4}`) at
the last step logged before it, so validation points sit at the end of their epoch's steps.
"""

from __future__ import annotations

from collections.abc import Sequence

from .parser import ROW_KEYS
from .row_kinds import number

PLOT_POINTS = 300   # points drawn per metric at most


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


class _State:
    """What PlotSeries knows of the rows it has read: each metric's thinned points, whether every
    row had an epoch and any a step, and where rows without a step sit on a step axis."""

    __slots__ = ("lines", "all_epoch", "any_step", "last_step", "anchors")

    def __init__(self):
        self.lines: dict[str, _Thinned] = {}      # in order of first appearance
        self.all_epoch, self.any_step = True, False
        self.last_step: float | None = None
        self.anchors: dict[int, float] = {}       # row index -> the step before it (rows without a step)

    def copy(self) -> "_State":
        """A copy that rows can be added to without changing this one (its lines are not copied:
        rows added to the copy go into lines of their own, see PlotSeries.update)."""
        other = _State()
        other.all_epoch, other.any_step, other.last_step = self.all_epoch, self.any_step, self.last_step
        return other

    def add(self, i: int, row: dict, limit: int) -> None:
        self.all_epoch = self.all_epoch and "epoch" in row
        if number(row.get("step")) is not None:
            self.any_step, self.last_step = True, row["step"]
        elif self.last_step is not None:   # (before any step: at 0)
            self.anchors[i] = self.last_step
        for name, value in row.items():
            y = number(value)
            if name not in ROW_KEYS and y is not None:
                if name not in self.lines:
                    self.lines[name] = _Thinned(limit)
                self.lines[name].add(i, y)


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
        self.count = 0            # rows thinned so far
        self.state = _State()

    def update(self, rows: Sequence[dict]) -> tuple[str | None, dict[str, tuple[list, list]]]:
        """(the x axis: "epoch" or "step", None without rows; {metric: (xs, ys)})."""
        if len(rows) < self.count:  # not the rows it has thinned: start again
            self._reset()
        end = max(self.count, len(rows) - self.RECHECK)
        for i in range(self.count, end):
            self.state.add(i, rows[i], self.limit)
        self.count = end
        fresh = self.state.copy()
        for i in range(end, len(rows)):
            fresh.add(i, rows[i], self.limit)
        if not rows:
            return None, {}
        points = {name: line.points() for name, line in self.state.lines.items()}
        for name, line in fresh.lines.items():
            points.setdefault(name, {}).update(line.points())
        key = "epoch" if fresh.all_epoch and not fresh.any_step else "step"
        drawn = {}
        for name, kept in points.items():
            order = sorted(kept)
            drawn[name] = ([self._x(rows, i, key, fresh) for i in order], [kept[i] for i in order])
        return key, drawn

    def _x(self, rows: Sequence[dict], i: int, key: str, fresh: _State):
        row = rows[i]
        if key in row:
            return row[key]
        # A step axis: a row without a step (an epoch's own row) at the step logged before it;
        # rows with neither key (none comes from the parser) at their place in the list.
        return self.state.anchors.get(i, fresh.anchors.get(i, 0.0 if fresh.any_step else float(i)))


def spans_decades(values: Sequence[float], decades: float = 2.0) -> bool:
    """Whether positive values span more than `decades` powers of ten (a log scale reads better)."""
    positive = [v for v in values if v > 0]
    return len(positive) == len(values) > 1 and max(positive) / min(positive) > 10 ** decades


__all__ = ["PLOT_POINTS", "PlotSeries", "spans_decades"]
