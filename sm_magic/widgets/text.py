"""Progress as text: a live display under a cell, and the SDK-style stream for `--wait`.

The stream prints what `sagemaker` prints while it waits (the Accelerate guide's output): one
line per status transition, the job's log lines, then training and billable seconds and where
the model is.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO
from collections.abc import Sequence

from ..eta import clock, describe, text_bar
from ..job import Snapshot, format_transition
from .series import Window, window

TAIL_LINES = 10


def fmt_value(value) -> str:
    """A metric value as shown: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def metric_columns(rows: Sequence[dict]) -> list[str]:
    """Every key of the rows, in order of first appearance."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    return columns


def secondary_status(s) -> str:
    """The secondary status where it adds something to the status ("" for Completed/Completed)."""
    return "" if s.secondary_status in (s.status, "") else s.secondary_status


def hidden_note(w: Window) -> str:
    shown = "the latest are, and the mean of each " + ("epoch" if w.summary_of == "epoch" else "step range") \
        if w.summaries else "the latest and each metric's best are"
    return f"... {w.hidden:,} more row{'s' if w.hidden != 1 else ''} not shown ({shown}; job.metrics has them all)"


def means_title(w: Window) -> str:
    return "mean per epoch" if w.summary_of == "epoch" else "mean per step range"


def metrics_table(rows: Sequence[dict]) -> list[str]:
    """Rows as an aligned text table (no pandas needed): a window of them when there are many."""
    if not rows:
        return []
    w = window(rows)
    columns = metric_columns(w.summaries + w.rows)
    cells = [columns] + [[fmt_value(r.get(c, "")) for c in columns] for r in w.summaries + w.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    table = ["  ".join(v.rjust(width) for v, width in zip(row, widths)) for row in cells]
    if w.summaries:  # the means first, under a title, then the latest rows
        table[1:1] = [f"{means_title(w)}:"]
        table.insert(2 + len(w.summaries), "latest:")
    return table + ([hidden_note(w)] if w.hidden else [])


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
        shown = snap.log_tail if s.status == "Failed" else snap.log_tail[-tail:]
        lines += ["", "log:", *("  " + l for l in shown)]
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
                print(f"[{s.name}] " + " ".join(f"{k}={fmt_value(v)}" for k, v in row.items()), file=out)
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

    def __call__(self, snap: Snapshot) -> None:
        out = self.out or sys.stdout
        s = snap.state
        # Log lines belong to the latest Training phase: print transitions up to it, the
        # lines, then the transitions after it (Uploading, Completed, ...).
        new = s.transitions[self.printed:]
        split = max((i + 1 for i, t in enumerate(new) if t.status == "Training"), default=0)
        for t in new[:split]:
            print(format_transition(t), file=out)
        for line in snap.new_lines:
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
            if s.model_artifacts:
                print(f"You can find your model data at: {s.model_artifacts}", file=out)
        out.flush()
