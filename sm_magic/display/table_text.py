"""How the tables' cells read (compare, `%sagemaker_jobs`, `sm-magic jobs`): durations as a clock,
numbers to a few significant digits, long text cut with an ellipsis. Plain strings, no pandas:
the data the tables hold stays as it was; only what is shown goes through here."""

from __future__ import annotations

import math
import time

SIGNIFICANT = 4  # digits a number is shown with: 0.9123, 0.0001235, 1234, 12346


def clock(seconds: float | None) -> str:
    """`1:02:03`, `2:03`, `0:05`: a duration as people read one."""
    if seconds is None:
        return "?"
    seconds = int(round(max(0.0, seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def duration(seconds) -> str:
    """`0:32`, `2:03`, `1:02:03`; "" when unknown (None, NaN)."""
    if not is_number(seconds) or not math.isfinite(seconds):
        return ""
    return clock(seconds)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) or _is_numpy_number(value)


def _is_numpy_number(value) -> bool:
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    return kind in ("i", "u", "f") and getattr(value, "ndim", 1) == 0


def number(value, digits: int = SIGNIFICANT) -> str:
    """A number to `digits` significant digits, as people read one: `0.9123`, `3`, `1.235e-05`;
    a whole number of many digits in full (`123457`, not `1.235e+05`). NaN and None are ""."""
    if value is None:
        return ""
    if not is_number(value):
        return str(value)
    if isinstance(value, int) or getattr(getattr(value, "dtype", None), "kind", "f") in "iu":
        return str(int(value))
    value = float(value)
    if math.isnan(value):
        return ""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if abs(value) >= 10 ** digits:
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def cut(text: str, width: int) -> str:
    """`text` in at most `width` characters: its end replaced by "…" when longer."""
    return text if len(text) <= width else text[:max(0, width - 1)] + "\u2026"


def cut_middle(text: str, width: int) -> str:
    """A name in at most `width` characters, its middle replaced by "…" when longer: the start
    and the end (a sweep's index, a timestamp) are what tell names apart."""
    if len(text) <= width:
        return text
    if width < 3:
        return cut(text, width)
    tail = (width - 1) // 2
    return text[:width - 1 - tail] + "\u2026" + text[len(text) - tail:]


def when(seconds: float | None, year: bool = False) -> str:
    """A creation time, local: `12-07 07:35` (`2026-12-07 07:35:12` with `year`)."""
    if seconds is None or not is_number(seconds) or not math.isfinite(seconds):
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S" if year else "%m-%d %H:%M", time.localtime(seconds))


__all__ = ["cut", "cut_middle", "duration", "is_number", "number", "when"]
