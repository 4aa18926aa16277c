"""Progress as text: a live display under a cell, and the SDK-style stream for `--wait`.

The stream prints what `sagemaker` prints while it waits (the Accelerate guide's output): one
line per status transition, the job's log lines, then training and billable seconds and where
the model is.
"""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

from ..eta import describe, text_bar
from ..job import Snapshot, format_transition
from .series import window

TAIL_LINES = 10


def fmt_value(value) -> str:
    """A metric value as shown: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def metric_columns(rows: list[dict]) -> list[str]:
    """Every key of the rows, in order of first appearance."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    return columns


def hidden_note(hidden: int) -> str:
    return (f"... {hidden} more row{'s' if hidden != 1 else ''} not shown (the latest and each metric's best "
            "are; job.metrics has them all)")


def metrics_table(rows: list[dict]) -> list[str]:
    """Rows as an aligned text table (no pandas needed): a window of them when there are many."""
    if not rows:
        return []
    shown, hidden = window(rows)
    columns = metric_columns(shown)
    cells = [columns] + [[fmt_value(r.get(c, "")) for c in columns] for r in shown]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    table = ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return table + ([hidden_note(hidden)] if hidden else [])


def render_text(snap: Snapshot, tail: int = TAIL_LINES) -> str:
    """The whole progress view as plain text."""
    s = snap.state
    end = s.training_end_time or time.time()
    elapsed = end - s.creation_time if s.creation_time else 0
    lines = [f"{s.name}  [{snap.backend}, {s.instance_type} x{s.instance_count}]  "
             f"{s.status} / {s.secondary_status}  {elapsed:.0f} s elapsed"
             + (f", {s.billable_seconds} billable" if s.billable_seconds is not None else "")]
    if s.extra.get("connection") and not s.done:
        lines.append(f"  ({s.extra['connection']})")
    if snap.estimate is not None:
        lines.append(f"  {text_bar(snap.estimate)} {describe(snap.estimate)}")
    lines += ["  " + format_transition(t) for t in s.transitions]
    table = metrics_table(snap.metrics)
    if table:
        lines += ["", *table]
    if snap.log_tail and tail:
        lines += ["", "log:", *("  " + l for l in snap.log_tail[-tail:])]
    if s.failure_reason:
        lines += ["", f"FailureReason: {s.failure_reason}"]
    if s.model_artifacts:
        lines += ["", f"model: {s.model_artifacts}"]
    return "\n".join(lines)


class TerminalLines:
    """For a terminal IPython: each new transition and metric row as one line, then the result."""

    def __init__(self, out: Optional[TextIO] = None):
        self.out = out
        self.transitions = 0
        self.rows: list[dict] = []

    def __call__(self, snap: Snapshot) -> None:
        out = self.out or sys.stdout
        s = snap.state
        for t in s.transitions[self.transitions:]:
            print(f"[{s.name}] {format_transition(t)}", file=out)
        self.transitions = len(s.transitions)
        for row in snap.metrics:
            if row not in self.rows:
                print(f"[{s.name}] " + " ".join(f"{k}={fmt_value(v)}" for k, v in row.items()), file=out)
        self.rows = [dict(r) for r in snap.metrics]
        if s.done:
            if s.failure_reason:
                print(f"[{s.name}] FailureReason: {s.failure_reason}", file=out)
            if s.model_artifacts:
                print(f"[{s.name}] model: {s.model_artifacts}", file=out)
        out.flush()


class StreamPrinter:
    """Prints transitions and log lines as they arrive, then the SDK's closing lines."""

    def __init__(self, out: Optional[TextIO] = None):
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
            if s.failure_reason:
                print(f"FailureReason: {s.failure_reason}", file=out)
            if s.training_seconds is not None:
                print(f"Training seconds: {s.training_seconds}", file=out)
                print(f"Billable seconds: {s.billable_seconds}", file=out)
                if s.billable_seconds is not None and 0 < s.billable_seconds < s.training_seconds:
                    saved = 100 * (1 - s.billable_seconds / s.training_seconds)
                    print(f"Managed Spot Training savings: {saved:.1f}%", file=out)
            if s.model_artifacts:
                print(f"You can find your model data at: {s.model_artifacts}", file=out)
        out.flush()
