"""Turn training log lines into metric rows (one row per epoch or step).

Reads, with no set-up, the formats in :mod:`sm_magic.metrics.log_formats` (Hugging Face Trainer dicts,
the Accelerate guide's ``epoch 0: {'accuracy': 0.75}``, tqdm and Lightning bars, Keras-style lines
under an ``Epoch N/M`` header, ``name: value`` pairs on an epoch or step line, ...), and
SageMaker-style :class:`MetricDefinition` regexes (first capture group is the value). Prefixes
such as timestamps, ``[rank0]: `` or ``algo-1 | `` are fine.

Nothing a log line holds can stall the kernel: definition regexes run on RE2 (linear time, and the
search releases the GIL); the few that use syntax RE2 lacks (backreferences, lookaround) run on
Python's ``re`` in a worker process, with a time budget per line, and a definition over it is
disabled and named in :attr:`MetricsParser.warnings`. The default formats are bounded in line
length and nesting depth, and a line they cannot read is skipped.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..config.files import read_text
from ..errors import UsageProblem
from . import regex as metric_regex
from .log_dicts import ROW_KEYS
from .log_dicts import key_number as _key_number
from .log_dicts import number as _number
from .log_formats import MAX_LINE, LineReader
from .regex import Regex, compile_regex

try:  # the stdlib's regex parser, used only to find a cheap substring pre-check
    from re import _parser as _re_parser  # type: ignore[attr-defined]  # Python 3.11+, not in typeshed
except ImportError:  # pragma: no cover - Python 3.10
    import sre_parse as _re_parser

if TYPE_CHECKING:  # pandas is imported lazily so that importing this module stays cheap
    import pandas

__all__ = ["MetricDefinition", "MetricsError", "MetricsParser", "load_metrics_file", "parse_metric_flag"]

# SageMaker's API limits for MetricDefinition (Name: .+ 1..255, Regex: .+ 1..500);
# checking them here turns a late CreateTrainingJob failure into an early, clear one.
_NAME_MAX = 255
_REGEX_MAX = 500
# Default formats are skipped on longer lines: nobody prints metrics that way, and
# literal_eval/json on megabyte-long lines would stall the log tail.
_MAX_LINE = MAX_LINE
# Keys may not follow "-" so that echoed CLI flags ("--epoch=3") do not start rows.
_MENTION = re.compile(r"(?<![\w-])(epoch|step)[\s:=#]*(\d{1,18})\b", re.IGNORECASE)  # int() refuses 4,300+ digits


@dataclass(frozen=True)
class MetricDefinition:
    """A SageMaker metric definition: ``regex`` is searched in each log line and its
    first capture group is the metric's value."""

    name: str
    regex: str

    def to_api(self) -> dict:
        """Return the ``{"Name": ..., "Regex": ...}`` dict that SageMaker's API expects."""
        return {"Name": self.name, "Regex": self.regex}


class MetricsError(UsageProblem, ValueError):
    """A metric definition (flag or file) is unusable; the message says what to fix."""


def _compile(name: str, regex: str, where: str = "") -> Regex:
    """Validate a definition against SageMaker's rules and return the compiled regex.

    RE2 runs it when it can (any regex in linear time); a regex only Python's ``re`` reads
    (backreferences, lookaround, ``\\Z``, verbose mode) runs in the worker process instead."""
    label = f"{where}metric {name!r}"
    if not name:
        raise MetricsError(f"{where}metric name is empty; write NAME=REGEX, e.g. loss=loss: ([0-9.e-]+)")
    if len(name) > _NAME_MAX or "\n" in name or "\r" in name:
        raise MetricsError(f"{label}: SageMaker metric names must be 1-{_NAME_MAX} characters on one line")
    if not regex:
        raise MetricsError(f"{label}: the regex is empty; e.g. {name}=loss: ([0-9.e-]+)")
    if len(regex) > _REGEX_MAX:
        raise MetricsError(f"{label}: the regex has {len(regex)} characters; SageMaker accepts at most {_REGEX_MAX}")
    try:
        groups, result = compile_regex(regex)
    except (re.error, RecursionError, OverflowError, ValueError) as exc:  # re's parser, or its limits
        raise MetricsError(f"{label}: the regex {regex!r} does not compile: {exc}") from None
    if groups < 1:
        raise MetricsError(
            f"{label}: the regex {regex!r} has no capture group; wrap the number in (...), "
            f"e.g. loss: ([0-9.e-]+)"
        )
    return result




def check_definition(definition: MetricDefinition) -> MetricDefinition:
    """A definition given as one (from Python, or an exported bundle's job.json), checked as a
    flag is; raises :class:`MetricsError` saying what to fix."""
    _compile(definition.name, definition.regex)
    return definition


def parse_metric_flag(text: str) -> MetricDefinition:
    """Parse ``NAME=REGEX`` as typed after ``--metric`` into a validated
    :class:`MetricDefinition`; raises :class:`MetricsError` saying what to fix."""
    name, sep, regex = text.partition("=")  # names never contain "=", regexes may
    if not sep:
        raise MetricsError(
            f"--metric expects NAME=REGEX, e.g. --metric 'loss=loss: ([0-9.e-]+)'; got {text!r} (no '=')"
        )
    name = name.strip()
    _compile(name, regex)
    return MetricDefinition(name, regex)


def read_accelerate_tsv(path, what: str, error: type[Exception] = MetricsError) -> list[tuple[int, str, str]]:
    """Rows of one of accelerate's TSV files (`sagemaker_metrics_file`, `sagemaker_inputs_file`):
    (line number, first field, second field). The first line is a header and, as accelerate
    does, always skipped; blank lines too; fields are stripped and further fields ignored."""
    path = Path(path)
    try:
        text = read_text(path, 1024 * 1024)  # a FIFO would block the kernel until interrupted
    except FileNotFoundError:
        raise error(f"{what} file {path} does not exist; check the path") from None
    except OSError as exc:
        raise error(f"{what} file {path} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{what} file {path} cannot be read: {exc}") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if number == 1 or not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0].strip():
            raise error(f"{path}, line {number}: expected 'name<TAB>value' (a tab between them), got {line!r}")
        rows.append((number, fields[0].strip(), fields[1].strip()))
    return rows


def load_metrics_file(path) -> list[MetricDefinition]:
    """Read an Accelerate ``sagemaker_metrics_file`` (TSV, header line, then
    ``name<TAB>regex``) and return its validated definitions in file order."""
    definitions = []
    for number, name, regex in read_accelerate_tsv(path, "metrics"):
        _compile(name, regex, f"{path}, line {number}: ")
        definitions.append(MetricDefinition(name, regex))
    return definitions


def _matches(defs, line: str, index: int):
    """(name, group 1) of each definition in `defs` (`_Definition.matcher` tuples) that matched
    line number `index` of the batch: the worker's answer for Python-re definitions, else RE2
    run here when the line holds the definition's required substring."""
    for name, first_group, literal, found in defs:
        if found is not None:
            group = found.get(index)
        elif literal is None or literal in line:
            group = first_group(line)
        else:
            continue
        if group is not None:
            yield name, group


def _required_literal(pattern: str) -> str | None:
    """The longest plain substring every match of ``pattern`` must contain, or None.

    Lets feed() skip a definition with one ``in`` test instead of a regex search.
    The parser is private API, hence the blanket fallback to None (no pre-check).
    """
    try:
        parsed = _re_parser.parse(pattern)
        if parsed.state.flags & re.IGNORECASE:
            return None
        best = run = ""
        # Top-level literals are required in every match; anything else ends a run.
        for op, arg in parsed:
            run = run + chr(arg) if op == _re_parser.LITERAL else ""
            best = max(best, run, key=len)
        return best or None
    except Exception:
        return None


class _Definition:
    """A definition as the parser runs it; ``disabled`` once its Python-re regex overran."""

    __slots__ = ("name", "regex", "literal", "disabled")

    def __init__(self, name: str, regex: Regex, literal: str | None):
        self.name, self.regex, self.literal, self.disabled = name, regex, literal, False

    def matcher(self, fallback: dict) -> tuple:
        if self.regex.engine == "re2":
            return self.name, self.regex.first_group, self.literal, None
        return self.name, None, self.literal, fallback.get(self, {})


class Rows(Sequence):
    """A read-only window on the first `n` rows of a list that only grows and whose items are
    replaced, never changed: what a snapshot holds instead of a copy of every row."""

    __slots__ = ("_list", "_n", "changes")

    def __init__(self, rows: list, n: int, changes: int = 0):
        self._list, self._n = rows, n
        self.changes = changes  # rows added or replaced before this view: what a display keys on

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._list[j] for j in range(*i.indices(self._n))]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("row index out of range")
        return self._list[i]

    def __iter__(self):
        return itertools.islice(iter(self._list), self._n)

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"Rows({list(self)!r})"


class MetricsParser:
    """Accumulates metric rows from log lines fed to it, keyed by epoch or step.

    Safe to feed from a background thread while another thread reads ``rows``.
    """

    def __init__(self, definitions: Sequence[MetricDefinition] = ()):
        """Raises :class:`MetricsError` if a definition would be rejected by SageMaker."""
        self._key_defs: list[_Definition] = []
        self._value_defs: list[_Definition] = []
        for d in definitions:
            entry = _Definition(d.name, _compile(d.name, d.regex), _required_literal(d.regex))
            (self._key_defs if d.name in ROW_KEYS else self._value_defs).append(entry)
        self._rows: dict[tuple[str, int | float], dict[str, float]] = {}
        self._list: list[dict] = []  # the rows as shown, {kind: n, **metrics}; see _publish
        self._at: dict[tuple[str, int | float], int] = {}  # a row's place in _list
        self._changes = 0
        self._metric_names: dict[str, None] = {}  # ordered set: column order = first appearance
        self._current: tuple[str, int | float] | None = None
        self._unkeyed_counts: dict[str, int] = {}
        self._warnings: list[str] = []
        self._lock = threading.Lock()
        # The default formats, with the context they keep between lines; a metric a definition
        # names is left to that definition.
        self._reader = LineReader(frozenset(d.name for d in self._value_defs))

    @property
    def warnings(self) -> list[str]:
        """What went wrong reading the log, oldest first, each said once: so far only a
        definition disabled because its regex (Python ``re``, in the worker) ran over its budget."""
        with self._lock:
            return list(self._warnings)

    def _run_fallback(self, lines: list[str]) -> tuple[dict, list[str]]:
        """Group 1 by line index for each live Python-``re`` definition, searched in the worker
        process while this thread waits with the GIL free; and the warnings for any disabled."""
        results, warnings = {}, []
        for d in self._key_defs + self._value_defs:
            if d.disabled or d.regex.engine != "re":
                continue
            literal = d.literal
            indexes = [i for i, line in enumerate(lines) if literal is None or literal in line]
            found, failure = metric_regex.worker.search(d.regex.pattern, [lines[i][:_MAX_LINE] for i in indexes])
            results[d] = {indexes[i]: group for i, group in found}
            if failure:
                d.disabled = True
                warnings.append(
                    f"metric {d.name!r} disabled: its regex {d.regex.pattern!r} needs Python's re (it uses "
                    f"syntax RE2 lacks), and {failure}; no more of its values are read from this log. "
                    f"Without backreferences and lookaround a regex runs on RE2, in linear time."
                )
        return results, warnings

    # noqa below: the loop over every log line of every watched job; a call per branch is what a
    # long log would pay for splitting it (bench/widget_rate.py).
    def feed(self, lines: Iterable[str]) -> int:  # noqa: C901
        """Parse ``lines``; return how many rows were added or had a value changed.

        Never raises on a line's content: a line the default formats cannot read is skipped."""
        if isinstance(lines, str):  # a whole chunk of text would otherwise iterate by character
            lines = lines.splitlines()
        elif not isinstance(lines, list):
            lines = list(lines)
        touched: set = set()
        fallback, warnings = self._run_fallback(lines) if any(
            d.regex.engine == "re" and not d.disabled for d in self._key_defs + self._value_defs) else ({}, [])
        # (name, first_group, literal, found): found is the worker's answers by line index (Python
        # re definitions), else first_group(line) runs here, on RE2.
        key_defs = [d.matcher(fallback) for d in self._key_defs if d in fallback or d.regex.engine == "re2"]
        value_defs = [d.matcher(fallback) for d in self._value_defs if d in fallback or d.regex.engine == "re2"]
        with self._lock:
            self._warnings.extend(warnings)
            reader = self._reader
            for index, line in enumerate(lines):
                whole = line
                if len(line) > _MAX_LINE:
                    line = line[:_MAX_LINE]
                if key_defs:
                    for name, group in _matches(key_defs, line, index):
                        key = _key_number(group)
                        if key is not None:
                            self._current = (name, key)
                # A few substring tests (reader.wants, inline) keep ordinary log lines at about a
                # microsecond. An overlong line is read only as "\r"-separated redraws (each bounded).
                if ("poch" in whole or "tep" in whole or "%|" in whole or "\r" in whole or "iter" in whole
                        or "Iter" in whole or "rain:" in whole or reader.context) \
                        and (whole is line or "\r" in whole):
                    try:
                        for row_key, mapping in reader.read(whole):
                            self._ingest(row_key, mapping, touched)
                    except Exception:  # one hostile line must not cost the metrics after it
                        pass
                if value_defs:
                    # "Epoch 3/10 loss: 0.2": a definition's value belongs to epoch 3.
                    if "poch" in line or "tep" in line:
                        m = _MENTION.search(line)
                        if m:
                            self._current = (m.group(1).lower(), int(m.group(2)))
                    for name, group in _matches(value_defs, line, index):
                        value = _number(group)
                        if value is not None:
                            self._store_definition_value(name, value, touched)
            self._publish(touched)
        return len(touched)

    def _publish(self, touched: set) -> None:
        """Bring the shared row list up to date: new rows appended, a changed row replaced by a
        new dict, never mutated, so a reader holding the list (a snapshot) needs no copy."""
        self._changes += len(touched)
        for key in sorted(touched, key=self._at.__getitem__):
            row = {key[0]: key[1], **self._rows[key]}
            if self._at[key] < len(self._list):
                self._list[self._at[key]] = row
            else:
                self._list.append(row)

    def _store_definition_value(self, name, value, touched):
        key = self._current
        if key is None:  # no epoch/step seen yet: the nth value of this metric is step n
            key = ("step", self._unkeyed_counts.get(name, 0))
            self._unkeyed_counts[name] = key[1] + 1
        self._set(key, name, value, touched)

    def _ingest(self, key, mapping: dict, touched: set) -> None:
        """Store a mapping's numeric values; ``key`` None means take it from the mapping."""
        if key is None:
            for kind in ROW_KEYS:  # epoch wins when both appear; step is then kept as a value
                number = _key_number(mapping.get(kind)) if kind in mapping else None
                if number is not None:
                    key = (kind, number)
                    break
            else:
                return
        self._current = key
        for name, raw in mapping.items():
            if name == key[0] or not isinstance(name, str):
                continue
            value = _number(raw)
            if value is not None:
                self._set(key, name, value, touched)

    def _set(self, key, name: str, value: float, touched: set) -> None:
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = {}
            self._at[key] = len(self._at)
        old = row.get(name)
        # Data-parallel ranks print the same line; an identical rewrite is not a change.
        if old is None or not (old == value or (old != old and value != value)):
            row[name] = value
            self._metric_names[name] = None
            touched.add(key)

    def add_row(self, kind: str, n: int | float, values: dict) -> int:
        """Values read from somewhere other than the log (TensorBoard event files) into the row
        `kind` ("epoch" or "step") `n`; returns how many rows were added or changed (0 or 1)."""
        if kind not in ROW_KEYS:
            raise ValueError(f"a row is keyed by one of {ROW_KEYS}, not {kind!r}")
        key = _key_number(n)
        if key is None:
            return 0
        touched: set = set()
        with self._lock:
            for name, raw in values.items():
                value = _number(raw)
                if value is not None and isinstance(name, str) and name not in ROW_KEYS:
                    self._set((kind, key), name, value, touched)
            self._publish(touched)
        return len(touched)

    @property
    def rows(self) -> list[dict]:
        """One new dict per epoch/step in order of first appearance, e.g.
        ``{"epoch": 0, "accuracy": 0.75, "f1": 0.81}``."""
        with self._lock:
            return [dict(row) for row in self._list]

    def view(self) -> "Rows":
        """The rows so far without copying any (for a display polling a long job). Rows added
        later do not show through; a row changed later does, as a whole new dict, so a reader
        never sees one half-updated."""
        with self._lock:
            return Rows(self._list, len(self._list), self._changes)

    def to_frame(self) -> "pandas.DataFrame":
        """A float DataFrame with one column per metric and one row per epoch/step.

        Indexed by "epoch" or "step" when every row uses that key; if both kinds
        occur, a RangeIndex with "epoch" and "step" as the first columns. Empty
        parser gives an empty DataFrame.
        """
        import pandas as pd

        with self._lock:
            keys = list(self._rows)
            values = [dict(v) for v in self._rows.values()]
            names = list(self._metric_names)
        if not keys:
            return pd.DataFrame()
        kinds = {kind for kind, _ in keys}
        if len(kinds) == 1:
            kind = kinds.pop()
            index = pd.Index([n for _, n in keys], name=kind)
            return pd.DataFrame(values, index=index, columns=names, dtype=float)
        records = [{kind: n, **v} for (kind, n), v in zip(keys, values)]
        columns = list(ROW_KEYS) + [n for n in names if n not in ROW_KEYS]
        return pd.DataFrame(records, columns=columns, dtype=float)
