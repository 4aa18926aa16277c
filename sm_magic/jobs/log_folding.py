"""A failed job's log as a user reads it: the user's traceback once, and in place of the
launcher's wrapper around it (accelerate's `CalledProcessError` traceback, which repeats the
script's stderr as a `RuntimeError: ...` copy before it; torch's `ChildFailedError`) one line
saying how many lines were hidden and how to see them. The log on disk is never changed:
`job.logs(full=True)`, `sm-magic logs --full` show every line.

One function for every surface (job.logs(), `sm-magic logs`, the `--wait` stream), over the
lines as they show them: raw or rendered, with or without `algo-N | ` host prefixes.
"""

from __future__ import annotations

import re
from collections import deque

from ..container.failure import _CHAINED, _PREFIX, _parse, _user_traceback

SHOW_ALL = "`job.logs(full=True)`, `%sagemaker_logs {name} --full` or `sm-magic logs {name} --full` shows them"
_COPY = "RuntimeError: "  # accelerate chains the child's stderr to its error as RuntimeError(stderr)
_MARKERS = ("CalledProcessError", "ChildFailedError", "SignalException")
# torch's elastic agent: its log line before its ChildFailedError, and the table that error holds.
_ELASTIC = re.compile(r"^[EWI]\d{4} [\d:.]+ +\d+ torch/distributed/elastic/")
_RULE = "=" * 20


def _host(line: str) -> str:
    m = _PREFIX.match(line)
    return m.group(1) or "" if m else ""


def _body(line: str) -> str:
    m = _PREFIX.match(line)
    return line[m.end():] if m else line


def hidden_regions(lines: list[str]) -> list[list[int]]:
    """The line numbers of each launcher wrapper in `lines` (with the blank and "The above
    exception ..." lines chaining it, and the stderr copy before it), in log order. A region
    that would hold a line of the user's own traceback is not hidden."""
    text = "\n".join(lines)  # one scan: a 200,000-line log is mostly not a failure
    if not any(m in text for m in _MARKERS):
        return []
    _, blocks = _parse(lines)
    user = _user_traceback(blocks)
    keep = set(user.at) if user else set()
    b = user
    while b is not None:
        keep.update(b.at)
        b = b.then
    user_lines = {n for blk in blocks if not blk.wrapper for n in blk.at}
    regions: list[list[int]] = []
    for w in (blk for blk in blocks if blk.wrapper):
        host = _host(lines[w.at[0]])
        stream = [n for n in range(w.at[0]) if _host(lines[n]) == host]
        hidden = set(w.at)
        # The lines chaining it to what came before, and the elastic agent's line about it.
        while stream and (not _body(lines[stream[-1]]).strip() or _body(lines[stream[-1]]).startswith(_CHAINED)
                          or _ELASTIC.match(_body(lines[stream[-1]]))):
            hidden.add(stream.pop())
        # ChildFailedError's message, a table between two rules: it says which rank failed, what
        # the user's traceback (kept) says better; without one it is all there is, and it stays.
        if "ChildFailedError" in w.exc and user is not None:
            after = [n for n in range(w.at[-1] + 1, len(lines)) if _host(lines[n]) == host]
            rules = [i for i, n in enumerate(after[:40]) if _body(lines[n]).startswith(_RULE)]
            if len(rules) >= 2 and rules[0] == 0:
                hidden.update(after[:rules[1] + 1])
        # accelerate's copy of the script's stderr: hidden only where the original (a user
        # traceback before it, on the same host) is shown.
        starts = [i for i, n in enumerate(stream) if _body(lines[n]).startswith(_COPY) and n not in user_lines]
        if starts:
            first = stream[starts[-1]]
            earlier = any(n < first and _host(lines[n]) == host for n in user_lines)
            if earlier:
                hidden.update(stream[starts[-1]:])
        if hidden & keep:
            hidden -= keep
        regions.append(sorted(hidden))
    return [r for r in regions if r]


def note(count: int, host: str = "", name: str = "NAME") -> str:
    """The line that stands for `count` hidden lines of `host`'s, naming how job `name` shows them."""
    prefix = f"{host} | " if host else ""
    return f"{prefix}(accelerate's launcher traceback: {count} lines hidden; {SHOW_ALL.format(name=name)})"


WINDOW = 5000  # the end of a log looked at: a launcher's error comes last, its user's traceback before it


def fold(lines: list[str], name: str = "NAME") -> list[str]:
    """`lines` (job `name`'s) with each launcher region in their last WINDOW lines replaced by one
    note line, where the region began."""
    if len(lines) > WINDOW:
        return lines[:-WINDOW] + fold(lines[-WINDOW:], name)
    regions = hidden_regions(lines)
    if not regions:
        return list(lines)
    notes = {r[0]: note(len(r), _host(lines[r[0]]), name) for r in regions}
    hidden = {n for r in regions for n in r}
    out: list[str] = []
    for n, line in enumerate(lines):
        if n in notes:
            out.append(notes[n])
        if n not in hidden:
            out.append(line)
    return out


def could_start_region(line: str) -> bool:
    """Whether a streamed line may begin a launcher region, so a stream holds it (and what
    follows) until it knows (see widgets.text.StreamPrinter)."""
    body = _body(line)
    return body.startswith((_COPY, "Traceback (most recent call last):") + _CHAINED) or bool(_ELASTIC.match(body))


class FoldedStream:
    """`fold` for a log that arrives in pieces (the `--wait` stream, `sm-magic wait`): a line that
    may begin a launcher region is held, with what follows it, until the launcher's own error
    line arrives, two plain lines of the host that began it show it was none (a traceback the
    script caught and printed), a piece brings nothing new, HOLD lines are held, or the log has
    ended; then the held lines are given out folded (the last CONTEXT lines given out tell the
    user's traceback). accelerate's copy of the script's stderr is plain lines too: once it has
    begun, only the launcher's error line (or the end) releases it."""

    HOLD = 500
    CONTEXT = 300

    def __init__(self, name: str = "NAME") -> None:
        self.name = name  # the job's, for the note's commands
        self._given: deque[str] = deque(maxlen=self.CONTEXT)
        self._held: list[str] = []
        self._rules = 0      # the rules still to come of a ChildFailedError's table
        self._host = ""      # the host whose line began the hold
        self._plain = 0      # its plain lines in a row since
        self._copy = False   # accelerate's copy of the script's stderr has begun
        self._indented: dict[str, bool] = {}  # each host's latest line is a traceback's frame

    def feed(self, rows: list[str], done: bool = False) -> list[str]:
        out: list[str] = []
        for row in rows:
            host, body = _host(row), _body(row)
            after_frame = self._indented.get(host, False)
            self._indented[host] = body.startswith((" ", "\t"))
            if not (self._held or could_start_region(row)):
                out.append(row)
                self._given.append(row)
                continue
            if not self._held:
                self._host, self._plain = host, 0
            self._held.append(row)
            if not body.startswith((" ", "\t")) and any(m in body for m in _MARKERS):
                self._rules = 2 if "ChildFailedError" in body else 0
                if not self._rules:
                    out += self._release()
            elif self._rules and body.startswith(_RULE):
                self._rules -= 1
                if not self._rules:
                    out += self._release()
            elif body.startswith(_COPY) and not after_frame:
                self._copy = True
            elif host == self._host:
                plain = body.strip() and not body.startswith((" ", "\t")) and not could_start_region(row)
                self._plain = self._plain + 1 if plain else 0
                if self._plain >= 2 and not self._copy and not self._rules:
                    out += self._release()
        if self._held and (done or not rows or len(self._held) > self.HOLD):
            out += self._release()
        return out

    def _release(self) -> list[str]:
        lines = list(self._given) + self._held
        start = len(self._given)
        hidden: set[int] = set()
        notes: dict[int, str] = {}
        for region in hidden_regions(lines):
            mine = [n for n in region if n >= start]
            if mine:
                hidden.update(mine)
                notes[mine[0]] = note(len(mine), _host(lines[mine[0]]), self.name)
        out = []
        for n in range(start, len(lines)):
            if n in notes:
                out.append(notes[n])
            if n not in hidden:
                out.append(lines[n])
        self._given.extend(self._held)
        self._held, self._rules, self._copy = [], 0, False
        return out
