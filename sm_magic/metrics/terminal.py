"""A training log as a terminal shows it.

Progress bars (tqdm, Lightning, Hugging Face Trainer) redraw a line with carriage returns and move
the cursor between bars with escape sequences; a log file or CloudWatch keeps every redraw. The
backends split logs on "\\n" only, so a line may hold many "\\r"-separated redraws and escapes.
The raw lines are what the metrics parser and the progress tracker read (`redraws` gives the
states a line went through, `strip_escapes` removes colours and cursor codes); what people read
(`job.logs()`, the widget's log tail, `sm-magic logs`, the summary, the text views) is the screen a
terminal would show after those lines (`render`, `render_tail`, `LogStream`):

* "\\r" returns to column 0 and later text overwrites; "\\b" steps back one column;
* `ESC[K` / `ESC[1K` / `ESC[2K` erase, `ESC[J` erases below; `ESC[nA` / `ESC[nB` move the cursor
  up and down rows (`ESC[nF` / `ESC[nE` to column 0 too), `ESC[nC` / `ESC[nD` / `ESC[nG` along
  the row: tqdm's nested bars and Lightning's validation bar redraw the rows above this way;
* colours (SGR, `ESC[...m`), hyperlinks (OSC 8) and every other escape are removed. Colours are
  stripped everywhere rather than kept in some views: the HTML views would otherwise show
  `ESC[32m` as text, and the same log should read the same in the widget, `job.logs()` and a
  shell, whether or not that shell would colour it.

Several hosts' lines carry an `algo-N | ` prefix (the backends add it); each host gets its own
cursor and rows, as each container had its own terminal, and its rows keep the prefix.

Costs: a line with no control characters is kept as it is (one regex scan); a line of k
"\\r"-redraws costs O(k + its length), never k times the row; the cursor reaches at most
`SCREEN_ROWS` rows back (a terminal cannot go above its screen either), so memory per host is
bounded and `render_tail` reads only a bounded window of the newest lines.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections import deque
from collections.abc import Iterable, Reversible

from ..container.failure import ESCAPE as _ESCAPE  # one definition, in the module the container carries

_CONTROL = re.compile(r"[\r\x08\x1b]")
# One control at a time: "\r", "\b", a CSI (params, final), an OSC, any other escape (or a lone ESC).
_TOKEN = re.compile(r"\r|\x08|\x1b\[([0-?]*)[ -/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?")
_HOST = re.compile(r"algo-\d+ \| ")

SCREEN_ROWS = 200      # rows a cursor can move back over, per host (a tall terminal's screen)
MAX_COLUMN = 4096      # cursor moves past this column stop there (a bounded row per escape)
TAIL_MARGIN = 50       # raw lines read above a tail, for the cursor moves that redraw it
TAIL_WINDOW_MAX = 2000  # raw lines a tail reads at most, however many redraws share its rows


def strip_escapes(text: str) -> str:
    """`text` without ANSI colour, cursor-movement and erase sequences."""
    return _ESCAPE.sub("", text) if "\x1b" in text else text


def redraws(line: str) -> list[str]:
    """The visible states of a line redrawn with carriage returns, oldest first, escapes removed
    and empty redraws dropped: the last is what a terminal shows at the end."""
    line = strip_escapes(line)
    if "\r" not in line:
        return [line]
    return [part for part in line.split("\r") if part.strip()] or [""]


def render(lines: Iterable[str]) -> list[str]:
    """The rows a terminal shows after printing `lines` (each ended by "\\n"), top to bottom, in
    linear time. Lines without control characters come back as they are but for trailing blanks
    (no row keeps those: a bar's padding is not text); blank rows at the very end (a cleared bar)
    are dropped."""
    lines = lines if isinstance(lines, list) else list(lines)
    joined = "\n".join(lines)  # three scans in C instead of one per line
    if "\r" not in joined and "\x1b" not in joined and "\x08" not in joined:
        # Nothing moves the cursor: each line is its own row (most logs, and a rendered one).
        return _trim([line.rstrip() for line in lines])
    screen = _Screen()
    screen.feed(lines)
    return _trim(screen.texts(screen.rows))


def render_tail(lines: Reversible[str], n: int) -> list[str]:
    """The last `n` rows of `render(lines)`, reading only the newest lines: `n` plus a margin
    for cursor moves, more (up to TAIL_WINDOW_MAX) while redraws of the same rows leave fewer
    than `n` rows (windows growing fourfold: under 2 * TAIL_WINDOW_MAX lines rendered in all). For a
    200,000-line buffer this costs what the window costs."""
    if n <= 0:
        return []
    window = n + TAIL_MARGIN
    while True:
        newest = list(itertools.islice(reversed(lines), window))
        shown = render(reversed(newest))
        if len(shown) >= n or len(newest) < window or window >= TAIL_WINDOW_MAX:
            return shown[-n:]
        window = min(window * 4, TAIL_WINDOW_MAX)


class LogStream:
    """Rendered rows for a log that arrives in pieces (`sm-magic wait`, `--wait` in a terminal):
    `feed(lines)` returns the rows no later line can change any more, in order; `flush()` the rest
    once the log has ended. A row counts as settled once its host's cursor is further below it than
    the cursor has ever moved up (plain logs: at once; tqdm's nested bars: once the bars are done).
    A row changed after it was given out (the cursor moved up further than ever before) is given
    out again, so a final bar state is never missed. Only rows a cursor can still reach are held:
    memory stays bounded however long the log."""

    def __init__(self) -> None:
        self._screen = _Screen(stream=True)

    def feed(self, lines: Iterable[str]) -> list[str]:
        self._screen.feed(lines)
        return self._screen.texts(self._screen.settled())

    def flush(self) -> list[str]:
        return _trim(self._screen.texts(self._screen.settled(everything=True)))


# -- the model ---------------------------------------------------------------------------------

class _Row:
    __slots__ = ("text", "prefix", "given", "seq")

    def __init__(self, prefix: str, seq: int):
        self.text: str | list[str] = ""  # a str until edited in place, then a list of characters
        self.prefix = prefix
        self.given = False               # LogStream: handed out (and not changed since)
        self.seq = seq                   # its place in the log

    def chars(self) -> list[str]:
        if isinstance(self.text, str):
            self.text = list(self.text)
        return self.text

    def render(self) -> str:
        text = self.text if isinstance(self.text, str) else "".join(self.text)
        return (self.prefix + text).rstrip() if self.prefix else text.rstrip()


class _Cursor:
    """One host's terminal: the rows its cursor can reach (newest last) and where it stands."""

    __slots__ = ("rows", "r", "col", "up")

    def __init__(self) -> None:
        self.rows: deque[_Row] = deque(maxlen=SCREEN_ROWS)
        self.r = -1      # index in rows; -1 before the first line
        self.col = 0
        self.up = 0      # the furthest the cursor moved up at once (LogStream's settling)


class _Screen:
    def __init__(self, stream: bool = False) -> None:
        self.hosts: dict[str, _Cursor] = {}
        # Every row in order of appearance (render), or (stream) the rows not yet handed out.
        self.rows: list[_Row] = []
        self.stream = stream
        self.made = 0

    def feed(self, lines: Iterable[str]) -> None:
        for line in lines:
            prefix = ""
            if line.startswith("algo-"):
                m = _HOST.match(line)
                if m:
                    prefix, line = m.group(), line[m.end():]
            h = self.hosts.get(prefix)
            if h is None:
                h = self.hosts[prefix] = _Cursor()
            # The "\n" before each line: the row below, a new one at the bottom.
            h.col = 0
            if h.r + 1 < len(h.rows):
                h.r += 1
            else:
                self._new_row(h, prefix)
            if _CONTROL.search(line) is None:
                row = h.rows[h.r]
                if row.text == "" and not row.given:
                    row.text = line  # the common case: a new row, printed once
                else:
                    self._write(h, line)
            elif "\x1b" not in line and "\x08" not in line:
                self._redraws(h, line)
            else:
                self._controls(h, line)

    def _new_row(self, h: _Cursor, prefix: str) -> None:
        row = _Row(prefix, self.made)
        self.made += 1
        h.rows.append(row)  # a full deque forgets its top row: out of the cursor's reach
        h.r = len(h.rows) - 1
        self.rows.append(row)

    def _write(self, h: _Cursor, text: str) -> None:
        if not text:
            return
        row = h.rows[h.r]
        col = h.col
        if row.given:
            self._again(row)
        if col == 0 and len(text) >= len(row.text):
            row.text = text  # covers the whole row: no copy of the old one
        else:
            chars = row.chars()
            if col > len(chars):
                chars.extend(" " * (col - len(chars)))
            chars[col:col + len(text)] = text
        h.col = col + len(text)

    def _redraws(self, h: _Cursor, line: str) -> None:
        """Only "\\r"s: the row is the first part at the cursor, then the later parts laid over
        each other from column 0; laid from the newest back, each part costs O(1) unless it
        reaches further right than the newer ones."""
        parts = line.split("\r")
        self._write(h, parts[0])
        shown = ""
        for part in reversed(parts[1:]):
            if len(part) > len(shown):
                shown += part[len(shown):]
        h.col = 0
        self._write(h, shown)
        h.col = len(parts[-1])

    def _controls(self, h: _Cursor, line: str) -> None:
        at = 0
        for m in _TOKEN.finditer(line):
            if m.start() > at:
                self._write(h, line[at:m.start()])
            at = m.end()
            token = m.group()
            if token == "\r":
                h.col = 0
            elif token == "\x08":
                h.col = max(0, h.col - 1)
            elif m.group(2):
                self._csi(h, m.group(1), m.group(2))
        if at < len(line):
            self._write(h, line[at:])

    def _csi(self, h: _Cursor, params: str, final: str) -> None:
        if final == "m":
            return  # colours: dropped
        try:
            n = int(params) if params else 0
        except ValueError:
            return  # private or several parameters (ESC[?25l, ESC[1;2H): nothing a log can show
        if final in "ABEF":
            step = max(n, 1)
            if final in "AF":
                h.up = max(h.up, step)
                h.r = max(0, h.r - step)
            else:
                h.r = min(len(h.rows) - 1, h.r + step)
            if final in "EF":
                h.col = 0
        elif final == "C":
            h.col = min(MAX_COLUMN, h.col + max(n, 1))
        elif final == "D":
            h.col = max(0, h.col - max(n, 1))
        elif final == "G":
            h.col = min(MAX_COLUMN, max(n, 1) - 1)
        elif final == "K":
            self._erase(h, h.rows[h.r], n)
        elif final == "J" and n in (0, 2):
            # Erase below (0) or the whole screen (2): this host's rows from the cursor down, or all.
            self._erase(h, h.rows[h.r], 0 if n == 0 else 2)
            for i in range(h.r + 1 if n == 0 else 0, len(h.rows)):
                if i != h.r:
                    self._erase(h, h.rows[i], 2)

    def _erase(self, h: _Cursor, row: _Row, how: int) -> None:
        """ESC[K: to the end of the row (0), from its start to the cursor (1), all of it (2)."""
        if row.given and row.text:
            self._again(row)
        if how == 2:
            row.text = ""
        elif how == 0:
            if h.col < len(row.text):
                del row.chars()[h.col:]
        elif how == 1:
            chars = row.chars()
            end = min(h.col + 1, len(chars))
            chars[:end] = " " * end

    # -- LogStream -----------------------------------------------------------------------------

    def _again(self, row: _Row) -> None:
        """A row changed after it was handed out: hand it out again, in its place among those
        still held."""
        row.given = False
        bisect.insort(self.rows, row, key=lambda r: r.seq)

    def settled(self, everything: bool = False) -> list[_Row]:
        """Take the rows, in order, that no cursor can reach again (all of them at the end). A
        row held for one host's cursor does not hold back the rows of other hosts after it."""
        if everything:
            out, self.rows = self.rows, []
        else:
            open_rows: set[int] = set()
            for h in self.hosts.values():
                # The next line starts on the row below the cursor; from there the cursor has moved
                # up at most h.up rows at once: rows above that are out of its reach.
                first = max(0, h.r + 1 - h.up)
                open_rows.update(id(row) for row in itertools.islice(h.rows, first, None))
            out = [row for row in self.rows if id(row) not in open_rows]
            self.rows = [row for row in self.rows if id(row) in open_rows]
        for row in out:
            row.given = True
        return out

    @staticmethod
    def texts(rows: Iterable[_Row]) -> list[str]:
        return [row.render() for row in rows]


def _trim(rows: list[str]) -> list[str]:
    while rows and not rows[-1]:
        rows.pop()
    return rows

