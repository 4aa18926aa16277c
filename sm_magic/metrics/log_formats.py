"""The log formats read with no set-up: one reader per format, from a line to metric rows.

A line becomes a row only when it says which epoch or step it belongs to (or a header line a few
lines above it does, as Keras prints `Epoch 2/3` above its metrics); numbers inside prose are not
metrics. The formats, each with a line it reads (docs/metrics.md lists them all):

* dicts (read by log_dicts.py): `epoch 0: {'accuracy': 0.75}`, `epoch 2/3: {...}`, `step 10:
  {...}`, and JSON or Python dicts holding an `epoch` or `step` key (Hugging Face Trainer's);
* tqdm bars and their postfix, Lightning's among them:
  `Epoch 1: 100%|██████████| 8/8 [00:00<00:00, 40.1it/s, v_num=0, train_loss=0.512]`;
* Lightning's rich bar, whose metrics may wrap onto the lines below it:
  `Epoch 1/2  ━━━━━━━━ 8/8 0:00:00 • 0:00:00 40.10it/s v_num: 0 train_loss: 0.512`;
* `name: value` / `name=value` pairs after an epoch or step marker (`Epoch 3 | step 120 | loss:
  0.41`, `[epoch 3][step 120/500] loss=0.41`, mmcv's `Epoch [3][120/500]  lr: 1.000e-04, ...`,
  timm's `Train: 3 [ 120/500 ( 24%)]  Loss: 0.41 (0.45)`), or under an `Epoch N/M` header;
* `name value` segments between separators (nanoGPT's `iter 120: loss 0.4100, time 12.30ms`,
  fairseq's `epoch 001 | loss 4.123 | ppl 7.45`);
* Ultralytics YOLO's tables: `Epoch GPU_mem box_loss ...` over `1/3  0G  1.234 ...`, and the
  validation `Class Images Instances Box(P R mAP50 mAP50-95)` over `all 128 929 0.641 ...`.

Every regex here is linear in the line (no nested quantifiers; names start only where a run of
name characters starts), and lines are bounded in length by the caller.
"""

from __future__ import annotations

import re

from .log_dicts import dict_row as _dict_row
from .log_dicts import kv_pairs
from .terminal import redraws

MAX_LINE = 10_000          # longer lines (or redraws) are not read by these formats
HEADER_LINES = 20          # how many other lines below an `Epoch N/M` header its metrics may come

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[Nn]a[Nn]|[-+]?[Ii]nf"
# A value may carry a unit (12.3ms, 0.102s, 3.45%, 2.51G, 45.2it/s) but is not a time or a ratio.
_VALUE = rf"({_NUM})(?:%|[A-Za-z]{{1,3}}(?:/[A-Za-z]{{1,4}})?)?(?![\w.:/])"
# `name: value` or `name=value`; a name of up to three words only before ":" ("Train Loss: 0.4").
# The look-behind lets a name start only where a run of name characters starts: linear time.
_PAIR = re.compile(r"(?<![\w./@-])([A-Za-z_][\w./@-]*(?:(?: [A-Za-z_]\w*){1,2}(?=\s*:))?)\s*[:=]\s*" + _VALUE)
# A whole separator-delimited segment `name value` (fairseq, nanoGPT).
_SPACE_PAIR = re.compile(rf"([A-Za-z_][\w./@-]*(?: [A-Za-z_]\w*)?) +{_VALUE}")
_SEGMENTS = re.compile(r"[|,;]")
_WORD = re.compile(r"(?<![\w./@-])[A-Za-z]{2,}(?![\w/@(-])")
_NOT_PROSE = frozenset({"step", "iter", "iteration", "epoch", "batch", "train", "training", "val", "valid",
                        "eval", "test", "it", "eta", "time", "lr"})
_SKIPPED = frozenset({"v_num", "ETA", "eta"})  # Lightning's logger version; time left: not metrics
_PHASES = frozenset({"valid", "val", "eval", "test"})  # fairseq's `| valid |`: validation metrics

# Markers: which epoch or step a line belongs to. Not after a word character or "-" (echoed flags
# such as --epochs=3 or max_epoch=3 are not markers) nor "(" (a side note: "lr: 0.1 (iter 20)");
# integers only (HF's fractional epochs are in its dicts).
_EPOCH_MARK = re.compile(r"(?<![\w(-])(?:[Ee]poch|EPOCH)(?:\((?:train|val|test)\))?[\s:=#\[]{0,4}(\d{1,9})"
                         r"(?:\s*(?:/|of)\s*(\d{1,9}))?(?![\d.]\d)\]?")
_TIMM_MARK = re.compile(r"(?<![\w-])Train:\s*(\d{1,9})\s*\[")
_STEP_MARK = re.compile(r"(?<![\w(-])(?:[Ss]tep|STEP|[Ii]ter(?:ation)?|ITER|global_step)(?:\((?:train|val|test)\))?"
                        r"[\s:=#\[]{0,4}(\d{1,12})(?:\s*(?:/|of)\s*(\d{1,12}))?(?![\d.]\d)\]?")
_TQDM = re.compile(r"\|[^|]{0,300}\|\s*(\d+)/(\d+|\?)\s*\[([^\]]{0,2000})\]")
# Ultralytics YOLO: a column header (`Epoch GPU_mem box_loss ... Size`, `Class Images ... mAP50-95):`)
# and the rows under it (`1/3  0G  1.234 ... 640: 100%|...`, `all  128  929  0.641 ...`).
_TABLE_HEAD = re.compile(r"\s*(Epoch|Class)((?:\s+[A-Za-z_][\w()/.-]*){2,30})\s*(?::|$)")
_TABLE_ROW = re.compile(r"\s*(\d{1,9})/\d{1,9}\s+([^:]{0,500})")
_CELL = re.compile(rf"({_NUM})(?:[A-Za-z%]{{1,3}})?")
_NOT_COLUMNS = frozenset({"Instances", "Size", "Images"})  # counts and sizes, not metrics
_HOST = re.compile(r"algo-\d{1,4} \| ")
_RICH = re.compile(r"(?<![\w-])Epoch (\d{1,9})(?:/(\d{1,9}))?\s+[━╸╺╾╼─]+\s*(\d+)/(\d+|\?)")

Key = tuple[str, "int | float"]


def pairs(text: str, skip: frozenset = _SKIPPED) -> tuple[dict[str, str], int]:
    """The `name: value` / `name=value` pairs of `text` (but those named in `skip`) and how many
    plain words are left over (prose words: what tells a sentence from a metric line)."""
    found: dict[str, str] = {}
    gaps = []
    pos = 0
    for m in _PAIR.finditer(text):
        gaps.append(text[pos:m.start()])
        pos = m.end()
        name = " ".join(m.group(1).split())
        if name not in skip:
            found[name] = m.group(2)
    gaps.append(text[pos:])
    words = sum(1 for gap in gaps for w in _WORD.findall(gap) if w.lower() not in _NOT_PROSE)
    return found, words


def space_pairs(text: str, skip: frozenset = _SKIPPED) -> dict[str, str]:
    """`name value` segments between `|`, `,` or `;` (fairseq, nanoGPT): read only when most
    segments are such pairs, so that `epoch 1 done, took 12s` stays prose."""
    found: dict[str, str] = {}
    others = 0
    for segment in _SEGMENTS.split(text):
        segment = segment.strip(" \t:[]()")
        if not segment:
            continue
        m = _SPACE_PAIR.fullmatch(segment)
        if m:
            if m.group(1) not in skip:
                found[m.group(1)] = m.group(2)
        else:
            others += 1
    return found if len(found) > others else {}


def ends_in_words(line: str) -> bool:
    """Whether a line ends in two plain words (`... of a flood of log lines`): prose, not a metric
    line. The cheap first test, so that a flood of such lines costs about a microsecond each."""
    if not line or not line[-1].isalpha():
        return False
    tail = line.rsplit(None, 2)
    return len(tail) == 3 and tail[-1].isalpha() and tail[-2].isalpha()


def _is_prose(found: dict, words: int) -> bool:
    """More plain words than values, by more than one: a sentence that happens to hold a number."""
    return words > len(found) + 1


def _bar_desc(state: str) -> str | None:
    """The description of a tqdm bar redraw (`Epoch 1:` of `Epoch 1:  50%|...`), or None when the
    state is not a tqdm bar; redraws of one bar share it."""
    i = state.find("%|")
    return None if i < 0 else state[:i].rstrip("0123456789 ")


def last_states(line: str) -> list[str]:
    """The redraws of `line` worth reading: every state that is not a tqdm bar (Hugging Face's
    dicts come between its bar's redraws), and of a bar only its last redraw before another bar
    (or another epoch of the same bar) takes over: a bar redrawn a thousand times is read once
    an epoch."""
    states = redraws(line)
    if len(states) == 1:
        return states
    descs = [_bar_desc(s) for s in states]
    return [s for i, s in enumerate(states) if descs[i] is None or i + 1 == len(states) or descs[i + 1] != descs[i]]


class LineReader:
    """Reads log lines into (key, values) rows, keeping the little context formats need: the
    `Epoch N/M` header of the lines below it, and a rich bar whose metrics wrap onto later lines.
    `key` None means the values (a dict) hold their own epoch or step. Names in `defined` (the
    job's metric definitions) are left to those definitions by the pair formats."""

    def __init__(self, defined: frozenset[str] = frozenset()) -> None:
        self._skip = _SKIPPED | defined
        self._header: Key | None = None
        self._header_left = 0
        self._wrapped: Key | None = None
        self._columns: list[str] | None = None      # a YOLO training table's column names
        self._val_columns: list[str] | None = None  # its validation table's, until its row comes
        self._val_left = 0                           # lines that row may still come in
        self._table_key: Key | None = None           # the epoch of the table's last row
        self.context = False  # whether the next lines may belong to a header or a bar above them

    def wants(self, line: str) -> bool:
        """The cheap test a line must pass to be read at all (a few substring tests): it names an
        epoch, step or iteration, holds a bar, or may belong to a header or bar above it.
        MetricsParser.feed runs the same tests inline (a call per line costs as much again)."""
        return ("poch" in line or "tep" in line or "%|" in line or "\r" in line or "iter" in line
                or "Iter" in line or "rain:" in line or self.context)

    def read(self, line: str) -> list[tuple[Key | None, dict]]:
        """The rows `line` holds (usually none or one)."""
        self._header_left -= 1
        if self._val_columns is not None:
            self._val_left -= 1
            if self._val_left < 0:
                self._val_columns = None  # not YOLO's table after all: stop reading every line
        if "\r" in line or "\x1b" in line:
            states = last_states(line)
        elif line[-1:].isalpha() and ends_in_words(line) and "Epoch " not in line:  # (YOLO's header)
            self.context = self._header_left > 0 or self._wrapped is not None
            return []  # prose: the fast way out of a flood of `step 5 loss=0.5 of a flood of log lines`
        else:
            states = [line]
        rows = []
        for state in states:
            if len(state) <= MAX_LINE:
                row = self._read_state(state)
                if row is not None:
                    rows.append(row)
        self.context = self._header_left > 0 or self._wrapped is not None or self._val_columns is not None
        return rows

    # noqa below: the per-line dispatch over the formats, cheapest test first; each branch is one
    # format's guard, and a line goes through it once.
    def _read_state(self, s: str) -> tuple[Key | None, dict] | None:  # noqa: C901
        if "{" in s and ("poch" in s or "tep" in s or "POCH" in s or "TEP" in s):
            row = _dict_row(s)
            if row is not None:
                return row
        if self._columns is not None or "Epoch" in s or "Class" in s:
            table = self._table_row(s)
            if table is not False:
                return table
        if "%|" in s:
            return self._tqdm_row(s)
        if self._wrapped is not None:
            if s.startswith("algo-"):  # a multi-host job's `algo-1 | ` prefix
                s = _HOST.sub("", s, count=1)
            if s[:1].isspace():
                found, words = pairs(s, self._skip)
                if found and not words:
                    return self._wrapped, found
            self._wrapped = None
        if "━" in s:
            m = _RICH.search(s)
            if m:
                key: Key = ("epoch", int(m.group(1)))
                self._wrapped = key
                found, _ = pairs(s[m.end():], self._skip)
                return (key, found) if found else None
        if ends_in_words(s):
            return None
        key_and_end = _marker(s)
        if key_and_end is None:
            if self._header_left > 0 and self._header is not None:
                found, words = pairs(s, self._skip)
                if found and not _is_prose(found, words):
                    # Its metric lines keep a header alive (Keras' batch lines, when every
                    # redraw comes as a line of its own): the window counts other lines.
                    self._header_left = HEADER_LINES + 1
                    return self._header, found
            return None
        key, start, end, by_equals = key_and_end
        rest = s[end:]
        found, words = pairs(rest, self._skip)
        if by_equals:  # the historical key=value format: every pair of the line counts
            found = {**kv_pairs(s[:start]), **found}
        if not found:
            found = space_pairs(rest, self._skip)
            words = 0
        if found:
            if _is_prose(found, words):
                return None
            self._header, self._header_left = None, 0
            phase = _phase(s[:start]) if "|" in s[:start] else None
            return key, {f"{phase}_{k}": v for k, v in found.items()} if phase else found
        if not _WORD.search(rest):  # `Epoch 2/3`, `=== epoch 2 ===`: a header for the lines below
            self._header, self._header_left = key, HEADER_LINES + 1
        return None

    def _table_row(self, s: str):
        """Ultralytics YOLO's tables: a header sets the columns, a row under it is the epoch its
        `N/M` names (its validation row, `all ...`, goes to the same epoch). False: not a table line."""
        m = _TABLE_HEAD.match(s)
        if m:
            names = [n.strip("()") for n in m.group(2).split()]
            names = [n[4:] if n.startswith("Box(") else n for n in names]
            if m.group(1) == "Epoch":
                self._columns = names
            else:
                self._val_columns, self._val_left = names, 5
            return None
        if self._val_columns is not None and s.lstrip().startswith("all "):
            names, self._val_columns = self._val_columns, None
            cells = s.split()[1:]
            return self._cells(self._table_key, names, cells) if self._table_key else None
        if self._columns is not None:
            m = _TABLE_ROW.match(s)
            if m:
                cells = m.group(2).split()
                if len(cells) == len(self._columns):
                    self._table_key = ("epoch", int(m.group(1)))
                    return self._cells(self._table_key, self._columns, cells)
        return False

    def _cells(self, key: Key, names: list[str], cells: list[str]) -> tuple[Key, dict] | None:
        if len(cells) != len(names):
            return None
        found = {}
        for name, cell in zip(names, cells):
            m = _CELL.fullmatch(cell)
            if m and name not in _NOT_COLUMNS and name not in self._skip:
                found[name] = m.group(1)
        return (key, found) if found else None

    def _tqdm_row(self, s: str) -> tuple[Key | None, dict] | None:
        """A tqdm bar's postfix (`[00:01<00:00, 45.2it/s, loss=0.123]`) as a row of the epoch its
        description names, else of the header above it, else of the step it has reached."""
        m = _TQDM.search(s)
        if m is None:
            return None
        inside = m.group(3).split(",", 2)
        if len(inside) < 3:
            return None  # no postfix: nothing to read
        found, _ = pairs(inside[2], self._skip)
        if not found:
            return None
        desc = s[:m.start()]
        marker = _marker(desc)
        if marker is not None:
            return marker[0], found
        if self._header_left > 0 and self._header is not None:
            self._header_left = HEADER_LINES + 1
            return self._header, found
        return ("step", int(m.group(1))), found


def _phase(prefix: str) -> str | None:
    """`valid` in fairseq's `... | valid | epoch 001 | loss 4.0`: its metrics are the validation
    set's, and are named so (`valid_loss`) rather than overwrite the training ones."""
    for segment in prefix.split("|"):
        if segment.strip() in _PHASES:
            return segment.strip()
    return None


def _marker(s: str) -> tuple[Key, int, int, bool] | None:
    """The epoch (else step) a line names: (key, start, end of the marker, whether it is written
    `epoch=N`), or None."""
    m = _EPOCH_MARK.search(s) or _TIMM_MARK.search(s)
    kind = "epoch"
    if m is None:
        m = _STEP_MARK.search(s)
        kind = "step"
        if m is None:
            return None
    return (kind, int(m.group(1))), m.start(), m.end(), "=" in s[m.start():m.start(1)]
