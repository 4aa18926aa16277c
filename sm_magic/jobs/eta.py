"""How far along a job is and how long it has left, from every signal its log has.

Signals, read as the lines come:

* the job's own tqdm bar (`45%|####5     | 450/1000 [00:10<00:12, 45.0it/s]`, the last redraw
  of a line of `\\r`-separated ones): the longest bar, not a nested one (followed by a cursor-up,
  as Hugging Face's and Lightning's evaluation bars are) nor a validation or sanity-check bar;
* `step N/M` (or `Step N of M`, `iteration N/M`) in a line;
* epochs: the script's `--epochs` / `--num_train_epochs` / `--max_epochs` ... argument, or an
  `Epoch N/M` line (counted from 1; Lightning's rich bar `Epoch N/M` counts from 0, so it means
  epoch N+1 of M+1), against the latest epoch seen anywhere: on any metric row (not only the last),
  in a line or header, and the position inside it (`Epoch 1:  50%| 4/8` is 1.5 epochs done when
  Lightning counts from 0; `Epoch [3/10], Step [100/600]`; Keras' `32/63` under `Epoch 3/10`;
  YOLO's `1/3  0G  1.234 ...: 50%|...| 4/8`).

With no epoch anywhere (TensorBoard scalars are rows by step), each step row holding a validation
metric (`val/accuracy`) counts as an epoch ended. Epochs are counted from 0 when an epoch 0 was
seen, else from 1. A bar or `step N/M` that covers
the whole run is the estimate; one that restarts (a bar per epoch) or names its epoch gives way to
the epoch count. With no total there is no estimate (a bar without a total would be made up).
A job that ended shows its final state: Completed is 100 %, Failed or Stopped where it stopped,
with no time left either way.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import re2

from ..display.table_text import clock

# One RE2 pattern over the lines joined: linear in the text, one pass however many lines. It runs
# on the UTF-8 bytes: with a str, each match's start costs a scan from the text's beginning (the
# binding converts byte offsets to characters), quadratic over a line of thousands of redraws.
_PROGRESS = re2.compile((
    r"(?P<rich>(?:^|[^\w-])Epoch (?P<rn>\d{1,9})/(?P<rm>\d{1,9})\s+[━╸╺╾╼─]+\s*(?P<ri>\d{1,12})/(?P<rt>\d{1,12}))"
    r"|(?P<epos>(?:^|[^\w-])(?i:epoch)(?:\(\w+\))?[\s:#\[]{0,4}(?P<en>\d{1,9})(?:\s*(?:/|of)\s*(?P<em>\d{1,9}))?"
    r"[\] ,:|\[\t]{0,8}(?:(?i:step|iter|iteration|batch)[\s:#\[]{0,4}(?P<ei>\d{1,12})(?:\s*/\s*(?P<et>\d{1,12}))?"
    r"|(?P<ej>\d{1,12})\s*/\s*(?P<eu>\d{1,12})))"
    r"|(?P<timm>\bTrain:\s*(?P<tn>\d{1,9})\s*\[\s*(?P<ti>\d{1,12})/(?P<tt>\d{1,12}))"
    r"|(?P<enm>(?:^|[^\w-])(?i:epoch)[\s:#\[]{0,4}(?P<nn>\d{1,9})\s*(?:/|of)\s*(?P<nm>\d{1,9}))"
    r"|(?P<mention>(?:^|[^\w-])(?i:epoch)[\s:=#\[]{0,4}(?P<mn>\d{1,9}))"
    r"|(?P<tqdm>(?P<qn>\d{1,12})/(?P<qt>\d{1,12}) \[(?P<qe>(?:\d+:)?\d+:\d+)<(?P<qr>(?:\d+:)?\d+:\d+|\?)?)"
    r"|(?P<step>\b(?i:step|iteration|iter|batch)\s*[:#]?\s*(?P<sn>\d{1,12})\s*(?:/|of)\s*(?P<st>\d{1,12})\b)"
    r"|(?P<keras>\b(?P<kn>\d{1,12})/(?P<kt>\d{1,12})\s+(?:\[[=>.]*\]|[━╸╺]+|- \d))"
).encode())
# Escape codes sit inside rich's and Keras' bars and before a redraw ("\x1b[2KEpoch 1/2"): each
# becomes a bare ESC (not a word character) when it moves the cursor up, which tells a nested bar,
# and nothing otherwise.
_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*([@-~])|[@-Z\\-_])")
_KINDS = ("rich", "epos", "timm", "enm", "mention", "tqdm", "step", "keras")
# Indexes into Match.groups() by name (a bytes pattern's names are bytes).
_G = {(k.decode() if isinstance(k, bytes) else k): v - 1 for k, v in _PROGRESS.groupindex.items()}
_EPOCH_IN_DESC = re.compile(r"(?i)(?<![\w-])epoch[\s:#]{0,3}(\d{1,9})")
_YOLO_DESC = re.compile(r"\s*(\d{1,9})/(\d{1,9})\s+\d")
_EVAL_BAR = re.compile(r"(?i)\s*(?:validat|sanity|test|predict|evaluat|class\s)")  # YOLO: `Class Images ...`
_EPOCH_ARGS = frozenset({"epochs", "num_train_epochs", "num_epochs", "n_epochs", "max_epochs", "nb_epochs",
                         "train_epochs", "total_epochs", "nepochs"})
FINAL = ("Completed", "Failed", "Stopped")
_RESCAN = 64  # rows read again at each estimate: a step's row may gain its validation metric later
_VALIDATION = frozenset({"val", "valid", "validation", "eval", "evaluation", "test"})
_WORDS = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")


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
        """How much is done, 0.0 to 1.0."""
        return max(0.0, min(1.0, self.done / self.total)) if self.total else 0.0


@functools.lru_cache(maxsize=1024)
def _is_validation(name: str) -> bool:
    """Whether a metric is measured on held-out data (`val/accuracy`, `eval_loss`, `valid_ppl`)."""
    return bool(_VALIDATION & {w.lower() for w in _WORDS.split(name) if w})


def _spans(data: bytes):
    """The (start, end) byte spans of group 0 and every group of each match of _PROGRESS in
    `data`, through the binding's own Match: its Python wrapper costs microseconds a group."""
    try:
        match, anchor = _PROGRESS._regexp.Match, re2._Anchor.UNANCHORED
    except AttributeError:  # pragma: no cover - another google-re2 layout: the public API
        for m in _PROGRESS.finditer(data):
            yield [m.span(i) for i in range(_PROGRESS.groups + 1)]
        return
    pos, size = 0, len(data)
    while pos <= size:
        spans = match(anchor, data, pos, size)
        start, end = spans[0]
        if start < 0:
            return
        yield spans
        pos = end if end > start else end + 1


def _seconds(text: bytes | None) -> float | None:
    """`01:02` or `1:02:03` (tqdm's elapsed / remaining) in seconds; None for `?` or nothing."""
    if not text or text == b"?":
        return None
    total = 0
    for part in text.split(b":"):
        total = total * 60 + int(part)
    return float(total)


class Tracker:
    """Fed the job's log lines as they come; `estimate(...)` says where the job stands."""

    def __init__(self, hyperparameters: dict | None = None):
        self.steps: tuple[int, int] | None = None           # the whole run's (n, total), last seen
        self.tqdm_times: tuple[float, float | None] | None = None  # its tqdm (elapsed, remaining)
        self.epoch_total: int | None = _epochs_argument(hyperparameters or {})
        self.epoch_line: int | None = None                  # N of the last epoch named in a line
        self.position: tuple[int, float | None] | None = None  # (epoch, fraction of it) last seen
        self.restarted = False                              # the step signal went backwards
        self._bar_total = 0                                 # the longest bar: the job's own
        self._min_epoch: int | float | None = None          # 0 here: epochs are counted from 0
        self._zero_based = False     # an `N/M` that counts from 0 (rich's, YOLOv5's): M+1 epochs
        self._rows_seen = 0
        self._row_max: int | float | None = None
        self._validated: set = set()                        # steps of rows with a validation metric

    # -- reading the log -----------------------------------------------------------------------

    def feed(self, lines: Iterable[str]) -> None:
        """Read progress from `lines`. One RE2 pass over the lines joined (linear: a flood of
        20,000 other lines costs a few milliseconds); Python runs only for the matches."""
        text = "\n".join(lines)
        if "\x1b" in text:
            text = _ESCAPE.sub(lambda m: "\x1b" if m.group(1) == "A" else "", text)
        data = text.encode("utf-8", "replace")
        for spans in _spans(data):
            g = [None if start < 0 else data[start:end] for start, end in spans[1:]]
            for kind in _KINDS:
                if g[_G[kind]] is not None:
                    getattr(self, "_on_" + kind)(g, spans[0], data)
                    break

    def _seen(self, epoch: int | float) -> None:
        if self._min_epoch is None or epoch < self._min_epoch:
            self._min_epoch = epoch

    def _at(self, epoch: int, n: int | None, total: int | None) -> None:
        """The job is inside `epoch`, `n` of `total` through it (fraction unknown without them)."""
        self._seen(epoch)
        self.epoch_line = epoch
        fraction = min(1.0, n / total) if n is not None and total else None
        old = self.position
        if old is not None and old[0] == epoch and old[1] is not None and (fraction is None or fraction < old[1]):
            return  # Lightning resets the bar (`Epoch 0: 0%`) before naming the next epoch
        self.position = (epoch, fraction)

    def _on_rich(self, g: list, span: tuple[int, int], data: bytes) -> None:  # Lightning's rich bar: `Epoch 1/2 ━━━ 4/8`
        self._zero_based = True
        self.epoch_total = int(g[_G["rm"]]) + 1
        self._at(int(g[_G["rn"]]), int(g[_G["ri"]]), int(g[_G["rt"]]))

    def _on_epos(self, g: list, span: tuple[int, int], data: bytes) -> None:  # `Epoch [3/10], Step [100/600]`, `Epoch [3][120/500]`
        if g[_G["em"]]:
            self.epoch_total = int(g[_G["em"]])
        if g[_G["ei"]] is not None:
            n, total = g[_G["ei"]], g[_G["et"]]
        else:
            n, total = g[_G["ej"]], g[_G["eu"]]
        self._at(int(g[_G["en"]]), int(n), int(total) if total else None)

    def _on_timm(self, g: list, span: tuple[int, int], data: bytes) -> None:  # timm: `Train: 3 [ 120/500 ( 24%)]`
        self._at(int(g[_G["tn"]]), int(g[_G["ti"]]), int(g[_G["tt"]]))

    def _on_enm(self, g: list, span: tuple[int, int], data: bytes) -> None:  # `Epoch 3/10`, `epoch 3 of 10`: epoch 3 has begun
        total = int(g[_G["nm"]])
        if total > 0:
            self.epoch_total = total
        self._mention(int(g[_G["nn"]]))

    def _on_mention(self, g: list, span: tuple[int, int], data: bytes) -> None:
        self._mention(int(g[_G["mn"]]))

    def _mention(self, epoch: int) -> None:
        self._seen(epoch)
        self.epoch_line = epoch
        if self.position is not None and self.position[0] != epoch:
            self.position = None  # the position read was of another epoch

    def _on_tqdm(self, g: list, span: tuple[int, int], data: bytes) -> None:
        start, end = span
        line_start = max(data.rfind(b"\r", max(0, start - 600), start), data.rfind(b"\n", max(0, start - 600), start)) + 1
        desc = data[line_start:start].decode("utf-8", "replace")
        n, total = int(g[_G["qn"]]), int(g[_G["qt"]])
        if total <= 0 or _EVAL_BAR.match(desc.lstrip("\x1b")):
            return
        close = data.find(b"]", end, end + 2000)
        if close >= 0 and data.startswith(b"\x1b", close + 1):
            return  # a nested bar (position 1): an evaluation or inner loop, not the job's own
        epoch = _EPOCH_IN_DESC.search(desc)
        if epoch is not None:  # a bar per epoch (Lightning's `Epoch 1:  50%|...| 4/8`)
            self._at(int(epoch.group(1)), n, total)
            return
        yolo = _YOLO_DESC.match(desc)
        if yolo is not None:  # YOLO's `  1/3   0G   1.234 ...: 50%|...| 4/8` (YOLOv5 counts from 0)
            current, last = int(yolo.group(1)), int(yolo.group(2))
            self._zero_based = self._zero_based or current == 0
            self.epoch_total = last + 1 if self._zero_based else last
            self._at(current, n, total)
            return
        if total < self._bar_total:
            return  # a shorter bar than the job's own: an evaluation run at position 0
        if self.steps is not None and total == self.steps[1] and n < self.steps[0]:
            self.restarted = True  # the same bar again from the start: one bar per epoch
        self._bar_total = total
        self.steps = (n, total)
        self.tqdm_times = (_seconds(g[_G["qe"]]) or 0.0, _seconds(g[_G["qr"]]))

    def _on_step(self, g: list, span: tuple[int, int], data: bytes) -> None:
        n, total = int(g[_G["sn"]]), int(g[_G["st"]])
        if total <= 0:
            return
        if self.steps is not None and total == self.steps[1] and n < self.steps[0]:
            self.restarted = True
        self.steps, self.tqdm_times = (n, total), None

    def _on_keras(self, g: list, span: tuple[int, int], data: bytes) -> None:  # `32/63 ━━━━` under `Epoch 3/10`
        if self.epoch_line is not None and int(g[_G["kt"]]) > 0:
            self._at(self.epoch_line, int(g[_G["kn"]]), int(g[_G["kt"]]))

    # -- where the job stands ------------------------------------------------------------------

    def _scan(self, rows: Sequence[dict]) -> None:
        """The epochs of rows not seen before (rows only grow: a job's rows so far; the last few
        are read again, as a row may gain values later), and the step rows with a validation
        metric (`val/accuracy` from TensorBoard): with no epoch anywhere, one such row per epoch."""
        if len(rows) < self._rows_seen:
            self._rows_seen, self._row_max, self._validated = 0, None, set()
        for i in range(max(0, self._rows_seen - _RESCAN), len(rows)):
            row = rows[i]
            epoch = row.get("epoch")
            if isinstance(epoch, (int, float)) and not isinstance(epoch, bool) and epoch == epoch:
                self._seen(epoch)
                if self._row_max is None or epoch > self._row_max:
                    self._row_max = epoch
            elif "step" in row and any(_is_validation(name) for name in row if name != "step"):
                self._validated.add(row["step"])
        self._rows_seen = len(rows)

    def epochs_done(self) -> float | None:
        """Epochs completed (a fraction inside the current one), from every epoch signal seen."""
        base = 0 if self._min_epoch == 0 or self._zero_based else 1
        candidates = []
        row = self._row_max
        if self.position is not None:
            epoch, fraction = self.position
            candidates.append(epoch - base + (fraction or 0.0))
            if row is not None and row <= epoch:
                row = None  # the row of the epoch under way: its position says how far it is
        if row is not None:
            # A fractional epoch (Hugging Face's 1.25) is itself the progress.
            candidates.append(row - base + 1 if float(row).is_integer() else row)
        if self.epoch_line is not None:
            candidates.append(self.epoch_line - base)  # an epoch named has at least begun
        if not candidates and self._validated:
            return float(len(self._validated))
        return max(candidates) if candidates else None

    def estimate(self, rows: Sequence[dict], started: float | None, now: float,
                 status: str | None = None) -> Estimate | None:
        """Where the job stands (None without a known total). `rows`: the job's metric rows so
        far; `started`: when training began; `status`: the job's status (final states show as
        such: Completed full, Failed or Stopped where they stopped, no time left)."""
        self._scan(rows)
        elapsed = max(0.0, now - started) if started is not None else 0.0
        estimate = None
        if self.steps is not None and not self.restarted:
            n, total = self.steps
            if self.tqdm_times is not None:
                tq_elapsed, tq_remaining = self.tqdm_times
                rate = n / tq_elapsed if tq_elapsed > 0 else None
                estimate = Estimate(n, total, "step", elapsed, tq_remaining, rate)
            else:
                estimate = _from_rate(n, total, "step", elapsed)
        elif self.epoch_total:
            done = self.epochs_done() or 0.0
            estimate = _from_rate(max(0.0, min(done, self.epoch_total)), self.epoch_total, "epoch", elapsed)
        if estimate is None or status is None:
            return estimate
        if status == "Completed":
            return replace(estimate, done=estimate.total, remaining=0.0)
        if status in FINAL or status == "Stopping":
            return replace(estimate, remaining=None)
        return estimate


def _from_rate(done: float, total: float, unit: str, elapsed: float) -> Estimate:
    rate = done / elapsed if elapsed > 0 and done > 0 else None
    remaining = (total - done) / rate if rate else None
    return Estimate(done, total, unit, elapsed, remaining, rate)


def _epochs_argument(hyperparameters: dict) -> int | None:
    """The script's epoch count from its arguments (`--epochs 3`, `--max-epochs=3`, ...)."""
    for name, value in hyperparameters.items():
        if str(name).replace("-", "_").lower() not in _EPOCH_ARGS:
            continue
        try:
            epochs = int(str(value).strip("\"' "))  # SageMaker may keep them JSON-quoted
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
    """`[##########..........]`: the fraction done as a text bar."""
    filled = int(round(e.fraction * width))
    return "[" + "#" * filled + "." * (width - filled) + "]"
