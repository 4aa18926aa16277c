"""What a display shows of a job's metric rows, at a cost that does not grow with the job.

A job that logs one row per step can have tens of thousands of rows; `job.metrics` keeps them
all, but a table under a cell shows a window of them (`window`, from running sums kept in
`Means` as rows arrive) and a plot draws each metric from at most a few hundred points that keep
the curve's shape (plot_series.PlotSeries, thinned as rows arrive).

The table has one of three shapes (row_kinds says which rows are steps' and which epochs'):

- **per epoch**, rows as logged: every row is an epoch's own row. All of them while there are at
  most TABLE_ROWS, then the latest TABLE_ROWS plus each metric's best;
- **an epoch table** when steps' rows belong to epochs (a step line per step and an epoch line
  per epoch; Hugging Face's Trainer): one row per epoch, with the epoch's own metrics as logged
  (validation) and each step metric's mean over the epoch's steps; the latest SUMMARY_ROWS epochs
  and the best; while an epoch runs, its latest steps under it;
- **per step**, no epochs: every row while there are at most TABLE_ROWS, then the mean of each
  of SUMMARY_ROWS step ranges and the latest STEP_ROWS steps.

The best epoch (by row_kinds.key_metric, the first validation metric, judged by
metric_direction's rule) is marked. A column is shown only where a shown row has a value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from math import isfinite

from .direction import direction
from .parser import ROW_KEYS
from .plot_series import PLOT_POINTS, PlotSeries, spans_decades
from .row_kinds import epoch_of, is_epoch_row, key_metric, number

TABLE_ROWS = 15     # rows a table shows once there are more: the latest, plus each metric's best
STEP_ROWS = 10      # for per-step rows: the latest this many ...
SUMMARY_ROWS = 10   # ... and at most this many per-epoch (or per step range) rows

_number = number


def lower_is_better(name: str) -> bool:
    """Loss-like metrics are best when lowest; accuracy-like ones when highest. The one rule
    (metric_direction), so the table's best row is the best sm_magic.compare shows."""
    return direction(name) == "min"


@dataclass
class Window:
    """What a table shows of a job's rows: `summaries` (one row per epoch, or each step range's
    mean, oldest first) then `rows` (the latest rows, in job order); how many are `hidden` (rows,
    or epochs for an epoch table: `hidden_of`), and `best`, the row marked best by `best_metric`."""

    rows: list[dict]
    hidden: int = 0
    summaries: list[dict] = field(default_factory=list)
    summary_of: str = ""   # "epoch" or "steps": what one summary row stands for
    means: list[str] = field(default_factory=list)   # metrics an epoch row shows the mean of
    best: dict | None = None     # one of `summaries` or `rows` (the same object)
    best_metric: str = ""
    hidden_of: str = "rows"
    total: int = 0               # the job's rows


def window(rows: Sequence[dict], limit: int = TABLE_ROWS, means: "Means" | None = None) -> Window:
    """What a table shows of `rows` (see the module's shapes). A display that redraws the table
    keeps `means` across calls, so each call reads only the rows new since the last (and the few
    rows shown)."""
    means = means if means is not None else Means()
    means.update(rows)
    if not rows:
        return Window([])
    if not means.steps:
        return _per_epoch(rows, limit, means)
    if means.epochs and (means.epoch_rows or len(rows) > limit):
        return _epoch_table(rows, means)
    if len(rows) <= limit:
        return Window(list(rows), total=len(rows))
    latest = list(rows[-STEP_ROWS:])
    return Window(latest, len(rows) - len(latest), means.ranges(), "steps", total=len(rows))


def _per_epoch(rows: Sequence[dict], limit: int, means: "Means") -> Window:
    """Every row an epoch's own: all of them, or the latest `limit` and each metric's best."""
    best, counts = means.judged(rows)
    metric = key_metric(name for name in means.names if counts.get(name, 0) > 1)   # a contest of two or more
    marked = rows[means.own_row(best[metric][1])] if metric else None
    if len(rows) <= limit:
        return Window(list(rows), best=marked, best_metric=metric or "", total=len(rows))
    keep = set(range(len(rows) - limit, len(rows)))
    names = {k for row in rows[-limit:] for k in row if k not in ROW_KEYS}
    keep.update(means.own_row(best[name][1]) for name in names if name in best)
    shown = [rows[i] for i in sorted(keep)]
    return Window(shown, len(rows) - len(shown), best=marked, best_metric=metric or "", total=len(rows))


def _epoch_table(rows: Sequence[dict], means: "Means") -> Window:
    """One row per epoch (the latest SUMMARY_ROWS and the best), and the running epoch's latest steps."""
    keys = list(means.epochs)
    running = keys[-1] if means.epochs[keys[-1]].at is None else None
    if means.pending.count:   # steps since the last epoch's own row: the next epoch's
        running = means.next_epoch()
        keys.append(running)
    judged, counts = means.judged(rows)
    metric = key_metric(name for name in means.epoch_names(counts) if counts[name] > 1)
    best = judged[metric] if metric else None
    shown = keys[-SUMMARY_ROWS:]
    if best is not None and best[1] not in shown:
        shown.insert(0, best[1])
    summaries = [means.epoch_row(rows, key) for key in shown]
    marked = summaries[shown.index(best[1])] if best is not None else None
    latest: list[dict] = []
    if running is not None:   # the epoch still running: its latest steps
        for row in reversed(rows[-STEP_ROWS:]):
            if is_epoch_row(row) or epoch_of(row) not in (None, running):
                break
            latest.insert(0, row)
    averaged = [name for name in means.step_names if any(name in row for row in summaries)]
    return Window(latest, len(keys) - len(shown), summaries, "epoch", averaged, marked, metric or "", "epochs",
                  len(rows))


class _Sums:
    """Each metric's sum and count over some rows, and the first and last step among them."""

    __slots__ = ("first", "last", "sums", "count")

    def __init__(self):
        self.first = self.last = None
        self.sums: dict[str, list] = {}
        self.count = 0

    def add(self, row: dict) -> None:
        self.count += 1
        if "step" in row:
            self.first = row["step"] if self.first is None else self.first
            self.last = row["step"]
        for name, value in row.items():
            kind = type(value)   # a float or an int (the parser's) without a call; else _number
            if kind is float or kind is int:
                if not isfinite(value) or name in ROW_KEYS:
                    continue
            elif _number(value) is None or name in ROW_KEYS:
                continue
            total = self.sums.get(name)
            if total is None:
                total = self.sums[name] = [0.0, 0]
            total[0] += value
            total[1] += 1

    def merge(self, other: "_Sums") -> "_Sums":
        self.first = other.first if self.first is None else self.first
        self.last = other.last if other.last is not None else self.last
        self.count += other.count
        for name, (total, count) in other.sums.items():
            mine = self.sums.setdefault(name, [0.0, 0])
            mine[0] += total
            mine[1] += count
        return self

    def steps(self):
        """Its steps as shown: `first–last`, one step, or None without steps."""
        if self.first is None:
            return None
        return f"{self.first}\u2013{self.last}" if self.last != self.first else self.first

    def mean(self, head: dict) -> dict:
        """A summary row with the rows' own keys: `head` (its epoch), its steps as a range."""
        summary = dict(head)
        if self.first is not None:
            summary["step"] = self.steps()
        summary.update((name, total / count) for name, (total, count) in self.sums.items())
        return summary


class _Epoch:
    """One epoch: the sums of its steps' rows, and where its own row is (None while it runs)."""

    __slots__ = ("sums", "at")

    def __init__(self):
        self.sums = _Sums()
        self.at: int | None = None


class Means:
    """Running sums of a job's rows as they arrive, so a table of means costs the new rows only:
    per block of BLOCK rows (step ranges), per epoch (its steps' sums and its own row's place),
    and each metric's best epoch over the epochs' own rows older than RECHECK rows (a newer one
    may still change: a validation metric joining its epoch's row). A step's row replaced after
    it was summed (rare) keeps its first values in the sums."""

    BLOCK = 256
    RECHECK = 8

    def __init__(self):
        self._reset()

    def _reset(self) -> None:
        self.count = 0
        self.blocks: list[_Sums] = []     # rows [i * BLOCK, (i + 1) * BLOCK)
        self.epochs: dict[int, _Epoch] = {}   # in order of first appearance
        self.pending = _Sums()            # steps' rows without an epoch, since the last epoch's own row
        self._pending_from: int | None = None   # ... not summed yet, from here (no epoch so far)
        self.names: dict[str, None] = {}       # every metric, in order of first appearance
        self.step_names: dict[str, None] = {}  # metrics on steps' rows: an epoch shows their mean
        self.steps = 0                    # steps' rows
        self.epoch_rows = 0               # epochs' own rows
        self._settled = 0                 # epochs' own rows before this index are final
        self._unsettled: list[int] = []   # epochs whose own row is newer
        self._best: dict[str, tuple[float, int]] = {}   # over settled rows: metric -> (value, epoch)
        self._counts: dict[str, int] = {}   # settled epochs' own rows with a value of each metric

    def update(self, rows: Sequence[dict]) -> None:
        if len(rows) < self.count:  # not the rows it has summed: start again
            self._reset()
        names, step_names = self.names, self.step_names
        for i in range(self.count, len(rows)):
            row = rows[i]
            for k in row:
                if k not in names and k not in ROW_KEYS:
                    names[k] = None
            key = epoch_of(row) if "epoch" in row else None
            if key is not None and not self.epochs:   # the first epoch: sum the steps before it
                self._catch_up(rows, i)
            if key is None and not self.epochs:   # step ranges: only a job without epochs shows them
                if i % self.BLOCK == 0:
                    self.blocks.append(_Sums())
                self.blocks[-1].add(row)
            if key is not None and is_epoch_row(row):
                self.epoch_rows += 1
                epoch = self.epochs.setdefault(key, _Epoch())
                epoch.at = i
                epoch.sums.merge(self.pending)
                self.pending = _Sums()
                self._unsettled.append(key)
                continue
            self.steps += 1
            for k in row:
                if k not in step_names and k not in ROW_KEYS and _number(row[k]) is not None:
                    step_names[k] = None
            if key is not None:
                self.epochs.setdefault(key, _Epoch()).sums.add(row)
            elif self.epochs:
                self.pending.add(row)
            elif self._pending_from is None:   # summed if an epoch comes (a job without epochs: never)
                self._pending_from = i
        self.count = len(rows)
        self._settle(rows, len(rows) - self.RECHECK)

    def _catch_up(self, rows: Sequence[dict], end: int) -> None:
        if self._pending_from is not None:
            for j in range(self._pending_from, end):
                self.pending.add(rows[j])
            self._pending_from = None

    def own_row(self, key: int) -> int:
        """Where epoch `key`'s own row is (an epoch that has one)."""
        at = self.epochs[key].at
        if at is None:
            raise KeyError(f"epoch {key} has no row of its own yet")
        return at

    def _settle(self, rows: Sequence[dict], end: int) -> None:
        while self._unsettled and self.own_row(self._unsettled[0]) < end:
            key = self._unsettled.pop(0)
            self._judge(self._best, self._counts, rows[self.own_row(key)], key)

    @staticmethod
    def _judge(best: dict, counts: dict, row: dict, key: int) -> None:
        for name, value in row.items():
            y = _number(value)
            if name in ROW_KEYS or y is None:
                continue
            counts[name] = counts.get(name, 0) + 1
            sign = 1.0 if lower_is_better(name) else -1.0
            if name not in best or sign * y < sign * best[name][0]:
                best[name] = (y, key)

    def judged(self, rows: Sequence[dict]) -> tuple[dict[str, tuple[float, int]], dict[str, int]]:
        """Over the epochs' own rows: each metric's best value and its epoch (the first on a
        tie), and how many of those rows have a value of it."""
        best, counts = dict(self._best), dict(self._counts)
        for key in self._unsettled:
            self._judge(best, counts, rows[self.own_row(key)], key)
        return best, counts

    def epoch_names(self, counts: dict[str, int]) -> list[str]:
        """Metrics of the epochs' own rows (`counts`, from judged) that no step's row has
        (validation), in order of first appearance."""
        return [name for name in self.names if name in counts and name not in self.step_names] + \
            [name for name in counts if name not in self.names and name not in self.step_names]

    def next_epoch(self) -> int:
        """The epoch the steps since the last epoch's own row belong to: the next to come, one
        interval after the last two (an epoch's row every 5 epochs: 5 after the last)."""
        keys = list(self.epochs)
        if not keys:
            return 0
        return keys[-1] + (keys[-1] - keys[-2] if len(keys) > 1 and keys[-1] > keys[-2] else 1)

    def epoch_row(self, rows: Sequence[dict], key: int) -> dict:
        """Epoch `key` as a table row: its own row's metrics as logged, each step metric's mean
        over its steps (its own row's value of one counted as a step's), its steps' range."""
        epoch = self.epochs.get(key)
        sums = epoch.sums if epoch is not None else self.pending
        own = rows[epoch.at] if epoch is not None and epoch.at is not None else {}
        shown: dict = {"epoch": key}
        if sums.first is not None:
            shown["step"] = sums.steps()
        for name in [*self.names, *(k for k in own if k not in self.names)]:
            value = _number(own.get(name))
            if name in self.step_names:
                total, count = sums.sums.get(name, (0.0, 0))
                if value is not None:
                    total, count = total + value, count + 1
                if count:
                    shown[name] = total / count
            elif value is not None:
                shown[name] = own[name]
        return shown

    def ranges(self) -> list[dict]:
        """The mean of each metric per step range: at most SUMMARY_ROWS ranges of whole blocks."""
        per = -(-len(self.blocks) // SUMMARY_ROWS)
        ranges = []
        for start in range(0, len(self.blocks), per):
            total = _Sums()
            for block in self.blocks[start:start + per]:
                total.merge(block)
            ranges.append(total.mean({}))
        return ranges


__all__ = ["Means", "PLOT_POINTS", "PlotSeries", "STEP_ROWS", "SUMMARY_ROWS", "TABLE_ROWS", "Window",
           "lower_is_better", "spans_decades", "window"]
