"""Progress as text: a live display under a cell, and the SDK-style stream for `--wait`.

The stream prints what `sagemaker` prints while it waits (the Accelerate guide's output): one
line per status transition, the job's log lines, then training and billable seconds and where
the model is.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO

from ..backends.sagemaker.pricing import cost_text
from ..display.literal import shown
from ..display.table_text import clock
from ..jobs.eta import describe, text_bar
from ..jobs.job import Snapshot, format_transition
from ..jobs.log_folding import FoldedStream
from ..metrics.parser import ROW_KEYS
from ..metrics.row_kinds import is_timing
from ..metrics.series import Window, lower_is_better, window
from ..metrics.terminal import LogStream, render

TAIL_LINES = 10
BEST_MARK = "\u2605"   # ★ after the best row's epoch
LATEST = "latest steps"   # the title over a running epoch's (or a per-step job's) latest rows


def fmt_value(value) -> str:
    """A metric value as shown: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def metric_columns(rows: Sequence[dict]) -> list[str]:
    """The keys of the rows that hold a value in some row: epoch and step first, then the metrics
    in order of first appearance, timing and throughput last (Trainer's eval_runtime, ...)."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update((k, None) for k, v in row.items() if v is not None and v != "" and k not in seen)
    keys = [k for k in ROW_KEYS if k in seen]
    metrics = [k for k in seen if k not in ROW_KEYS]
    return keys + [k for k in metrics if not is_timing(k)] + [k for k in metrics if is_timing(k)]


def table_cell(w: Window, row: dict, column: str, first: bool) -> str:
    """A row's cell as shown; the first cell of the best row carries the best mark."""
    text = fmt_value(row.get(column, ""))
    return f"{text} {BEST_MARK}" if first and row is w.best else text


def secondary_status(s) -> str:
    """The secondary status where it adds something to the status ("" for Completed/Completed)."""
    return "" if s.secondary_status in (s.status, "") else s.secondary_status


def hidden_note(w: Window) -> str:
    """What the table leaves out ("" when nothing)."""
    if not w.hidden:
        return ""
    if w.hidden_of == "epochs":
        return (f"... {w.hidden:,} more epoch{'s' if w.hidden != 1 else ''} not shown (the latest and the best "
                f"are; job.metrics has all {w.total:,} rows)")
    kept = "the latest are, and the mean of each step range" if w.summaries else "the latest and each metric's best are"
    return f"... {w.hidden:,} more row{'s' if w.hidden != 1 else ''} not shown ({kept}; job.metrics has them all)"


def best_note(w: Window) -> str:
    """`★ best eval_loss (lowest)`: what the mark means ("" without one)."""
    if w.best is None:
        return ""
    return f"{BEST_MARK} best {shown(w.best_metric)} ({'lowest' if lower_is_better(w.best_metric) else 'highest'})"


def means_title(w: Window) -> str:
    """The title over the summary rows: what one stands for, and which values are means."""
    if w.summary_of != "epoch":
        return "mean per step range"
    logged = any(k not in ROW_KEYS and k not in w.means for row in w.summaries for k in row)
    if not logged:
        return "mean per epoch"
    names = ", ".join(shown(m) for m in w.means[:4]) + (", ..." if len(w.means) > 4 else "")
    return f"per epoch ({names}: the mean of its steps)" if w.means else "per epoch"


def metrics_table(rows: Sequence[dict]) -> list[str]:
    """Rows as an aligned text table (no pandas needed): a window of them when there are many."""
    if not rows:
        return []
    w = window(rows)
    table_rows = w.summaries + w.rows
    columns = metric_columns(table_rows)
    cells = [[shown(c) for c in columns]] + [[table_cell(w, r, c, i == 0) for i, c in enumerate(columns)]
                                             for r in table_rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    table = ["  ".join(v.rjust(width) for v, width in zip(row, widths)) for row in cells]
    if w.summaries:  # the summaries first, under a title, then the latest rows under theirs
        table[1:1] = [f"{means_title(w)}:"]
        if w.rows:
            table.insert(2 + len(w.summaries), f"{LATEST}:")
    return table + [note for note in (best_note(w), hidden_note(w)) if note]


def render_text(snap: Snapshot, tail: int = TAIL_LINES) -> str:
    """The whole progress view as plain text."""
    s = snap.state
    end = s.training_end_time or time.time()
    elapsed = end - s.creation_time if s.creation_time else 0
    secondary = secondary_status(s)
    status = f"{s.status} / {secondary}" if secondary else s.status
    lines = [f"{s.name}  [{snap.backend}, {s.instance_type} x{s.instance_count}]  "
             f"{status}  {clock(elapsed)} elapsed"
             + (f", {clock(s.billable_seconds)} billable" if s.billable_seconds is not None else "")]
    if s.extra.get("connection") and not s.done:
        lines.append(f"  ({s.extra['connection']})")
    if snap.estimate is not None:
        lines.append(f"  {text_bar(snap.estimate)} {describe(snap.estimate)}")
    lines += ["  " + format_transition(t) for t in s.transitions]
    table = metrics_table(snap.metrics)
    if table:
        lines += ["", *table]
    if snap.log_tail and tail:
        # A failed job's tail is its traceback (Job.snapshot): shown whole, to the exception line.
        tail_lines = render(snap.log_tail if s.status == "Failed" else snap.log_tail[-tail:])  # no-op when rendered
        lines += ["", "log:", *("  " + l for l in tail_lines)]
    if s.failure_reason:
        lines += ["", f"FailureReason: {s.failure_reason}"]
    if s.model_artifacts:
        lines += ["", f"model: {s.model_artifacts}"]
    return "\n".join(lines)


class TerminalLines:
    """For a terminal IPython: each new transition and metric row as one line, then the result.
    A row that changes after it was printed (a validation metric joining its epoch) is printed
    again; only the latest RECHECK rows are looked at, so a long job costs the same per poll."""

    RECHECK = 8

    def __init__(self, out: TextIO | None = None):
        self.out = out
        self.transitions = 0
        self.printed: list[dict] = []  # the latest rows as printed (rows are replaced, never changed)
        self.count = 0                 # rows printed so far

    def __call__(self, snap: Snapshot) -> None:
        out = self.out or sys.stdout
        s = snap.state
        for t in s.transitions[self.transitions:]:
            print(f"[{s.name}] {format_transition(t)}", file=out)
        self.transitions = len(s.transitions)
        start = max(0, self.count - len(self.printed))
        rows = snap.metrics[start:]
        for i, row in enumerate(rows):
            known = self.printed[i] if i < len(self.printed) else None
            if row is not known and row != known:
                print(f"[{s.name}] " + " ".join(f"{shown(k)}={fmt_value(v)}" for k, v in row.items()), file=out)
        self.count = start + len(rows)
        self.printed = list(snap.metrics[max(0, self.count - self.RECHECK):self.count])
        if s.done:
            if s.failure_reason:
                print(f"[{s.name}] FailureReason: {s.failure_reason}", file=out)
            if s.model_artifacts:
                print(f"[{s.name}] model: {s.model_artifacts}", file=out)
        out.flush()


class StreamPrinter:
    """Prints transitions and log lines as they arrive, then the SDK's closing lines."""

    def __init__(self, out: TextIO | None = None):
        self.out = out
        self.printed = 0
        self.log = LogStream()  # the log's rows as a terminal shows them, once each is final
        self.folded: FoldedStream | None = None  # a failed launcher's own traceback as one line

    def __call__(self, snap: Snapshot) -> None:
        out = self.out or sys.stdout
        s = snap.state
        # Log lines belong to the latest Training phase: print transitions up to it, the
        # lines, then the transitions after it (Uploading, Completed, ...).
        new = s.transitions[self.printed:]
        split = max((i + 1 for i, t in enumerate(new) if t.status == "Training"), default=0)
        for t in new[:split]:
            print(format_transition(t), file=out)
        rows = self.log.feed(snap.new_lines) + (self.log.flush() if s.done else [])
        if self.folded is None:
            self.folded = FoldedStream(s.name)
        for line in self.folded.feed(rows, done=s.done):
            print(line, file=out)
        for t in new[split:]:
            print(format_transition(t), file=out)
        self.printed = len(s.transitions)
        if s.done:
            # No FailureReason line: the JobFailedError that ends the wait says it, once (the
            # magic's cell fails with it; `sm-magic` prints it as its error line).
            if s.training_seconds is not None:
                print(f"Training seconds: {s.training_seconds}", file=out)
                print(f"Billable seconds: {s.billable_seconds}", file=out)
                if s.billable_seconds is not None and 0 < s.billable_seconds < s.training_seconds:
                    saved = 100 * (1 - s.billable_seconds / s.training_seconds)
                    print(f"Managed Spot Training savings: {saved:.1f}%", file=out)
                cost = cost_text(s.extra.get("cost"))
                if cost:
                    print(f"Cost: {cost}", file=out)
            if s.model_artifacts:
                print(f"You can find your model data at: {s.model_artifacts}", file=out)
        out.flush()
