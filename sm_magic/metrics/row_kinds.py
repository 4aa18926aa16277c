"""What a metric row is, for the table and the plot: a step's row or an epoch's own row, the
epoch it belongs to, and which metric marks an epoch as the best.

The parser keys each row by epoch or step (metrics.ROW_KEYS). A row is an **epoch's own row**
when it is keyed by a whole epoch and carries no step: `{"epoch": 2, "val_loss": 0.4}`. Every
other row is a **step's row**: keyed by step (`{"step": 120, "loss": 0.41}`, with or without an
epoch value), or by a fraction of an epoch, as Hugging Face's Trainer logs its training loss
(`{'loss': 0.69, 'epoch': 1.33}`: a third into the second epoch). A step's row belongs to the
epoch `ceil(epoch)` when it carries one (Trainer's epoch 1.0 is the end of its first epoch; a
0-based counter's `epoch: 3` is epoch 3), else to the epoch whose own row comes next in the log.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

# Words that say a metric was measured on held-out data: what an epoch is judged by.
VALIDATION_WORDS = frozenset({"val", "valid", "validation", "eval", "evaluation", "test", "dev", "holdout"})
# Words of timing and throughput metrics (Trainer's eval_runtime, eval_samples_per_second):
# never what judges an epoch, and left out of the plot (another scale, and no curve to read).
TIMING_WORDS = frozenset({"runtime", "time", "seconds", "second", "sec", "secs", "latency", "duration", "throughput"})
_WORD = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")


def number(value) -> float | None:
    """A finite int or float as float (not a bool), else None."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None


def epoch_of(row: dict) -> int | None:
    """The epoch a row belongs to by its own epoch value (ceil of a fraction), or None."""
    value = number(row.get("epoch"))
    return None if value is None else math.ceil(value)


def is_epoch_row(row: dict) -> bool:
    """An epoch's own row: keyed by a whole epoch, with no step."""
    if "step" in row:
        return False
    value = number(row.get("epoch"))
    return value is not None and value.is_integer()


def words(name: str) -> set[str]:
    """`eval_samples_per_second` -> {"eval", "samples", "per", "second"}; `valLoss` -> {"val", "loss"}."""
    return {w.lower() for w in _WORD.split(name) if w}


def is_timing(name: str) -> bool:
    """Whether a metric measures time or throughput (eval_runtime, train_samples_per_second)."""
    found = words(name)
    return bool(found & TIMING_WORDS) or {"per", "s"} <= found   # tokens_per_s


def is_schedule(name: str) -> bool:
    """Whether a metric is a learning-rate schedule (learning_rate, lr, train/lr): a setting the
    script follows, on a scale of its own (1e-5 beside a loss of 0.7 forces a log axis)."""
    found = words(name)
    return "lr" in found or {"learning", "rate"} <= found or "learningrate" in found


def key_metric(names: Iterable[str]) -> str | None:
    """The metric that judges an epoch: the first validation metric (val_loss, eval_accuracy,
    valAcc, test_f1), else the first metric; timing and throughput never. None without one."""
    candidates = [name for name in names if not is_timing(name)]
    for name in candidates:
        if words(name) & VALIDATION_WORDS:
            return name
    return candidates[0] if candidates else None


__all__ = ["epoch_of", "is_epoch_row", "is_schedule", "is_timing", "key_metric", "number", "words"]
