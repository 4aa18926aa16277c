"""How far along a job is and how long it has left, from what it logs.

The total comes from, in this order:

* tqdm progress bars in the log (`45%|####5     | 450/1000 [00:10<00:12, 45.0it/s]`, the last
  update of a line of `\\r`-separated updates);
* `step N/M` (or `Step N of M`, `iteration N/M`) in a line;
* epochs: the script's `--epochs` / `--num_train_epochs` / `--num-epochs` argument, or an
  `epoch N/M` line, against the epochs the metric rows have reached.

With no total there is no estimate (and no bar: a bar without a total would be made up).
"""

from __future__ import annotations

import re2
from dataclasses import dataclass
from collections.abc import Iterable, Sequence

# RE2: linear in the text, so a whole chunk of log is searched at once.
_TQDM = re2.compile(r"(\d+)/(\d+) \[(?:(\d+:)?(\d+):(\d+))<(?:(\d+:)?(\d+):(\d+)|\?)?")
_STEP = re2.compile(r"(?i)\b(step|iteration|iter|batch)\s*[:#]?\s*(\d+)\s*(?:/|of)\s*(\d+)\b")
_EPOCH = re2.compile(r"(?i)\bepoch\s*[:#]?\s*(\d+)\s*(?:/|of)\s*(\d+)\b")
_EPOCH_ARGS = ("epochs", "num_train_epochs", "num-epochs", "num_epochs", "n_epochs", "max_epochs")


@dataclass(frozen=True)
class Estimate:
    """`done` of `total` `unit`s; seconds elapsed and (when the rate is known) left; rate per second."""

    done: float
    total: float
    unit: str                     # "epoch" or "step"
    elapsed: float
    remaining: float | None
    rate: float | None         # units per second

    @property
    def fraction(self) -> float:
        return max(0.0, min(1.0, self.done / self.total)) if self.total else 0.0


def clock(seconds: float | None) -> str:
    """`1:02:03`, `2:03`, `0:05`: a duration as people read one."""
    if seconds is None:
        return "?"
    seconds = int(round(max(0.0, seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _last(pattern, text: str, total: int):
    """The last match of `pattern` in `text` whose total (group number `total`) is above 0."""
    last = None
    for m in pattern.finditer(text):
        if int(m.group(total)) > 0:
            last = m
    return last


def _seconds(h: str | None, m: str, s: str) -> float:
    return (int(h[:-1]) * 3600 if h else 0) + int(m) * 60 + int(s)


class Tracker:
    """Fed the job's log lines as they come; `estimate(...)` says where the job stands."""

    def __init__(self, hyperparameters: dict | None = None):
        self.steps: tuple[int, int] | None = None           # (n, total) last seen
        self.tqdm_times: tuple[float, float | None] | None = None  # tqdm's (elapsed, remaining)
        self.epoch_total: int | None = _epochs_argument(hyperparameters or {})
        self.epoch_line: int | None = None                  # N of the last `epoch N/M` line

    def feed(self, lines: Iterable[str]) -> None:
        """Only the last progress line of each kind counts. The patterns run on RE2 over the
        lines joined, in linear time: a flood of other lines costs about 2 ms per 20,000.
        tqdm's `\r`-separated updates are in one line; the last match is its last update."""
        text = "\n".join(lines)
        tqdm, step, epoch = _last(_TQDM, text, 2), _last(_STEP, text, 3), _last(_EPOCH, text, 2)
        if tqdm is not None and (step is None or tqdm.start() > step.start()):
            self.steps = (int(tqdm.group(1)), int(tqdm.group(2)))
            remaining = _seconds(tqdm.group(6), tqdm.group(7), tqdm.group(8)) if tqdm.group(7) else None
            self.tqdm_times = (_seconds(tqdm.group(3), tqdm.group(4), tqdm.group(5)), remaining)
        elif step is not None:
            self.steps, self.tqdm_times = (int(step.group(2)), int(step.group(3))), None
        if epoch is not None:
            self.epoch_line, self.epoch_total = int(epoch.group(1)), int(epoch.group(2))

    def estimate(self, rows: Sequence[dict], started: float | None, now: float) -> Estimate | None:
        """Where the job stands (None without a known total). `started`: when training began."""
        elapsed = max(0.0, now - started) if started is not None else 0.0
        if self.steps is not None:
            n, total = self.steps
            if self.tqdm_times is not None:
                tq_elapsed, tq_remaining = self.tqdm_times
                rate = n / tq_elapsed if tq_elapsed > 0 else None
                return Estimate(n, total, "step", elapsed, tq_remaining, rate)
            return _from_rate(n, total, "step", elapsed)
        if self.epoch_total:
            epochs = [r["epoch"] for r in rows[-1:] if isinstance(r.get("epoch"), (int, float))]
            done = 0.0
            if epochs:
                first = rows[0].get("epoch", 0)
                done = epochs[-1] + 1 if first == 0 else epochs[-1]  # epochs counted from 0 or from 1
            if self.epoch_line is not None:
                done = max(done, self.epoch_line - 1)  # `epoch 3/10` is printed as epoch 3 starts
            return _from_rate(min(done, self.epoch_total), self.epoch_total, "epoch", elapsed)
        return None


def _from_rate(done: float, total: float, unit: str, elapsed: float) -> Estimate:
    rate = done / elapsed if elapsed > 0 and done > 0 else None
    remaining = (total - done) / rate if rate else None
    return Estimate(done, total, unit, elapsed, remaining, rate)


def _epochs_argument(hyperparameters: dict) -> int | None:
    for name in _EPOCH_ARGS:
        value = hyperparameters.get(name)
        try:
            epochs = int(str(value))
        except (TypeError, ValueError):
            continue
        if epochs > 0:
            return epochs
    return None


def describe(e: Estimate) -> str:
    """`step 450/1000 (45%) · 0:10 elapsed < 0:12 left · 45.0 steps/s`, as tqdm and Hugging Face
    Trainer show progress."""
    done = f"{e.done:g}" if e.done != int(e.done) else f"{int(e.done)}"
    left = f" < {clock(e.remaining)} left" if e.remaining is not None and e.done < e.total else ""
    rate = ""
    if e.rate:
        rate = (f" · {e.rate:.3g} {e.unit}s/s" if e.rate >= 1 else f" · {1 / e.rate:.3g} s/{e.unit}")
    return f"{e.unit} {done}/{e.total:g} ({100 * e.fraction:.0f}%) · {clock(e.elapsed)} elapsed{left}{rate}"


def text_bar(e: Estimate, width: int = 20) -> str:
    filled = int(round(e.fraction * width))
    return "[" + "#" * filled + "." * (width - filled) + "]"
