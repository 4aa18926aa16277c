"""Metric rows from dicts and key=value lines: the Accelerate guide's `epoch 0: {'accuracy': 0.75}`
(also `epoch 2/3: {...}`, `step N: {...}`), JSON or Python dicts holding an `epoch` or `step` key
(Hugging Face Trainer's log dicts), and `epoch=1 loss=0.25` pairs; and how a value becomes a float.

Bounded: dict lines nested deeper than _MAX_DEPTH are skipped (json and literal_eval recurse), long
Python dicts are read as JSON (literal_eval holds the GIL about 1 us a character), and the key=value
scan is linear however the line is made.
"""

from __future__ import annotations

import ast
import json
import math
import re

ROW_KEYS = ("epoch", "step")
_MAX_DEPTH = 32            # dict lines nested deeper are skipped (json/literal_eval recurse)
_MAX_LITERAL = 2_000       # longer Python dicts are read as JSON (literal_eval holds the GIL)
# key=value runs (the historical `epoch=1 loss=0.25` format, values of any shape): see kv_pairs.
_KV_RUN = re.compile(r"(?<![\w.\-/])([\w.\-/]+)=([^\s,;=]+)")
_KV_KEY_START = re.compile(r"(?:^|/)([A-Za-z_])")
_BRACKETS = re.compile(r"[\[\](){}]")
# Python reprs of float('nan') / float('inf') are not literals; swap in parseable stand-ins.
_BARE_NONFINITE = re.compile(r"(?<![\w'\"])(nan|inf)(?![\w'\"])")
NAN_TOKEN = "'__sm_magic_nan__'"
_PY_TOKENS = re.compile(r"(?<![\w'\"])(True|False|None|nan|inf)(?![\w'\"])")
_JSON_TOKENS = {"True": "true", "False": "false", "None": "null", "nan": "NaN", "inf": "Infinity"}
_DICT_LINE = re.compile(r"(?<!\w)([Ee]poch|[Ss]tep|EPOCH|STEP)\s+(-?\d+(?:\.\d+)?)(?:\s*/\s*\d+)?\s*:\s*\{")


def number(value) -> float | None:
    """A metric value as float (inf becomes nan so plots and JSON stay valid), or None."""
    if isinstance(value, str) and value == NAN_TOKEN[1:-1]:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    try:
        value = float(value)
    except (ValueError, OverflowError):  # OverflowError: an int too big for a float
        return None
    return value if math.isfinite(value) or value != value else math.nan


def key_number(value) -> int | float | None:
    """An epoch/step number (int when integral, so 1.0 and 1 share a row), or None."""
    n = number(value)
    if n is None or not math.isfinite(n):
        return None
    return int(n) if n.is_integer() else n


def kv_pairs(line: str) -> dict:
    """``key=value`` pairs of a line, as ``dict(re.findall(r"(?<![\\w.\\-])([A-Za-z_][\\w.\\-/]*)=
    ([^\\s,;=]+)", line))`` gives them, in linear time: each run of key characters is scanned once,
    then the key is the run's tail from its first valid start (a regex trying every start after
    each "/" is quadratic: "a/a/..." of 10,000 characters, 250 ms in one C call)."""
    pairs: dict[str, str] = {}
    pos = 0
    while True:
        m = _KV_RUN.search(line, pos)
        if m is None:
            return pairs
        start = _KV_KEY_START.search(m.group(1))
        if start is not None:
            pairs[m.group(1)[start.start(1):]] = m.group(2)
            pos = m.end()
        else:  # no key starts in this run: the scan goes on after its "="
            pos = m.end(1) + 1


def _repr_as_json(text: str):
    """A long Python dict repr read as JSON (linear, about 20 ns a character), or None: only for
    reprs whose strings hold no quote or backslash, which is what metric dicts print."""
    if '"' in text or "\\" in text:
        return None
    try:
        return json.loads(_PY_TOKENS.sub(lambda m: _JSON_TOKENS[m.group(1)], text.replace("'", '"')))
    except (ValueError, RecursionError):
        return None


def _too_deep(text: str) -> bool:
    """Whether brackets nest deeper than _MAX_DEPTH (brackets inside strings count too: a
    conservative skip, never a miss of the bound)."""
    if text.count("{") + text.count("[") + text.count("(") <= _MAX_DEPTH:
        return False
    depth = 0
    for bracket in _BRACKETS.findall(text):  # a Python loop: the GIL is given away as usual
        if bracket in "{[(":
            depth += 1
            if depth > _MAX_DEPTH:
                return True
        else:
            depth -= 1
    return False


def _literal_dict(text: str):
    if len(text) > _MAX_LITERAL:
        return _repr_as_json(text)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        if "nan" not in text and "inf" not in text:
            return None
    patched = _BARE_NONFINITE.sub(lambda m: NAN_TOKEN if m.group(1) == "nan" else "1e999", text)
    try:
        return ast.literal_eval(patched)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def dict_at(line: str, start: int) -> dict | None:
    """The JSON or Python dict that runs from `start` to the end of `line`, or None."""
    text = line[start:].rstrip()
    if not text.endswith("}") or _too_deep(text):
        return None
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        obj = _literal_dict(text)  # Python dict reprs (Accelerate guide, HF Trainer)
    return obj if isinstance(obj, dict) else None


def dict_row(s: str) -> tuple[tuple[str, int | float] | None, dict] | None:
    """`epoch 0: {'accuracy': 0.75}` (also `epoch 2/3: {...}`, `step N: {...}`), or a JSON or
    Python dict anywhere in the line that holds its own epoch or step."""
    m = _DICT_LINE.search(s)
    if m:
        key = key_number(m.group(2))
        mapping = dict_at(s, m.end() - 1)
        if key is not None and mapping is not None:
            return (m.group(1).lower(), key), mapping
        return None
    mapping = dict_at(s, s.find("{"))
    if mapping is not None and any(k in mapping for k in ROW_KEYS):
        return None, mapping
    return None
