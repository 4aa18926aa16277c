""".smignore: a user's list of files to leave out of a bundle, in gitignore syntax.

Each pattern runs as an RE2 regular expression: RE2 matches with an automaton, never by
backtracking, so a match takes time proportional to the path's length times (at worst) the
pattern's, whatever the pattern (Python's `re` took exponential time on `*a*a*...*b`, holding the
GIL, and the kernel froze with it). A pattern is checked when the file is read, and the file is
bounded: a problem is one line naming the file, the line and the pattern.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

import re2

from ..errors import UsageProblem

IGNORE_FILE = ".smignore"
MAX_BYTES = 1024 * 1024        # a hand-written list is a few KB; git's own ignore files stay far below
MAX_PATTERNS = 10_000          # every path of the tree is matched against each pattern
MAX_PATTERN_CHARS = 4_096      # PATH_MAX: no path a pattern names is longer

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False    # a refused pattern is ours to report, not RE2's to print on stderr
_OPTIONS.dot_nl = True         # `**` and the any-directory prefix cross every character of a name
# RE2 simplifies an expression within a budget of steps, and one over it is logged on stderr:
# the patterns are joined in groups well below it.
_GROUP_CHARS = 32 * 1024
_SURROGATE = re.compile("[\ud800-\udfff]")
_WORD = re.compile(r"\w", re.ASCII)


class IgnoreError(UsageProblem, ValueError):
    """A `.smignore` that cannot be used; the message names the file and line and what to do."""


def _char(c: str) -> str:
    return c if _WORD.match(c) else f"\\x{{{ord(c):x}}}"


def _fullmatch(regex) -> Callable[[bytes], bool]:
    """`UTF-8 path -> whether the whole of it matches` for an RE2 regex."""
    try:  # the binding's own Match: a third of the public wrapper's cost, and a tree has many paths
        match, anchor = regex._regexp.Match, re2._Anchor.ANCHOR_BOTH
    except AttributeError:  # pragma: no cover - another google-re2 layout: the public API
        return lambda data: regex.fullmatch(data.decode("utf-8")) is not None
    return lambda data: match(anchor, data, 0, len(data))[0][0] >= 0  # spans; (-1, -1): no match


def _any_of(sources: list[str]) -> list[Callable[[bytes], bool]] | None:
    """Matchers that together say whether any of the expressions matches, a few passes for
    the lot (most paths match no pattern); None where RE2 refuses one."""
    groups: list[str] = []
    for source in sources:
        part = f"(?:{source})"
        if groups and len(groups[-1]) + len(part) < _GROUP_CHARS:
            groups[-1] += "|" + part
        else:
            groups.append(part)
    try:
        return [_fullmatch(re2.compile(group, _OPTIONS)) for group in groups]
    except re2.error:
        return None


def _shown(c: str) -> str:
    return c if c.isprintable() else ascii(c)[1:-1]


def _class(body: str, negate: bool) -> str:
    """A `[...]` body (after any `!`/`^`) as an RE2 class: every character is itself (a backslash
    too), `x-y` a range; a negated class never matches `/`. ValueError for a backward range."""
    out, k = [], 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            lo, hi = body[k], body[k + 2]
            if lo > hi:
                lo, hi = _shown(lo), _shown(hi)
                raise ValueError(f"the range {lo}-{hi} runs backwards: write it low to high ([{hi}-{lo}])")
            out.append(f"{_char(lo)}-{_char(hi)}")
            k += 3
        else:
            out.append(_char(body[k]))
            k += 1
    return ("[^/" if negate else "[") + "".join(out) + "]"


def _translate(pattern: str) -> str:
    """A gitignore glob as an RE2 expression over a `/`-separated path (no anchors). ValueError
    for what cannot be a pattern."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**", i) and (i == 0 or pattern[i - 1] == "/"):
            if i + 2 == n:
                out.append(".*")
                i += 2
                continue
            if pattern[i + 2] == "/":
                out.append("(?:.*/)?")
                i += 3
                continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(_char(pattern[i]))
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] in "!^":
                j += 1
            if j < n and pattern[j] == "]":  # a ] first is a member, not the end
                j += 1
            j = pattern.find("]", j)
            if j < 0:
                raise ValueError("a [ has no closing ]: close the class, or write \\[ for a [ itself")
            body = pattern[i + 1:j]
            negate = body[:1] in ("!", "^")
            out.append(_class(body[1:] if negate else body, negate))
            i = j
        else:
            out.append(_char(c))
        i += 1
    return "".join(out)


class IgnoreRules:
    """The patterns of a `.smignore` file: gitignore syntax (`#` comments, `!` negation, `dir/`
    for directories only, `/x` or `a/b` anchored at the top, `*`, `?`, `[...]`, `**`); the last
    pattern that matches a path decides. A directory left out takes all it holds with it.
    `shown` names the file in errors (IgnoreError)."""

    def __init__(self, lines: Iterable[str] = (), shown: str = IGNORE_FILE):
        self.rules: list[tuple[Callable[[bytes], bool], bool, bool]] = []  # (matches, negated, directories only)
        sources = []
        for number, line in enumerate(lines, 1):
            line = line.rstrip("\r\n")
            while line.endswith(" ") and not line.endswith("\\ "):
                line = line[:-1]
            if not line or line.startswith("#"):
                continue
            where = f"{shown}, line {number}: {line if len(line) <= 80 else line[:77] + '...'!r}"
            if len(line) > MAX_PATTERN_CHARS:
                raise IgnoreError(f"{shown}, line {number}: a pattern of {len(line):,} characters; at most "
                                  f"{MAX_PATTERN_CHARS:,}: shorten it (a * or a directory/ names many files)")
            if len(self.rules) == MAX_PATTERNS:
                raise IgnoreError(f"{shown} has more than {MAX_PATTERNS:,} patterns: name directories (dir/) and "
                                  "globs (*.ckpt) rather than every file")
            negate = line.startswith("!")
            if negate:
                line = line[1:]
            dir_only = line.endswith("/")
            line = line.rstrip("/")
            if not line:
                continue
            anchored = "/" in line
            try:
                body = _translate(line.lstrip("/"))
                source = ("" if anchored else "(?:.*/)?") + body
                regex = re2.compile(source, _OPTIONS)
            except ValueError as e:
                raise IgnoreError(f"{where} is not a pattern: {e}") from None
            except re2.error as e:
                raise IgnoreError(f"{where} cannot be matched ({e}): simplify it") from None
            self.rules.append((_fullmatch(regex), negate, dir_only))
            sources.append(source)
        self._any = _any_of(sources)

    @classmethod
    def read(cls, path: Path, shown: str = IGNORE_FILE) -> IgnoreRules:
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_BYTES + 1)
        except OSError as e:
            raise IgnoreError(f"{shown} cannot be read ({e.strerror or e}): make it readable or remove it") from None
        if len(data) > MAX_BYTES:
            raise IgnoreError(f"{shown} is over {MAX_BYTES >> 20} MiB, and sm_magic reads at most that: name "
                              "directories (dir/) and globs (*.ckpt) rather than every file")
        return cls(data.decode("utf-8", errors="replace").splitlines(), shown)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def match(self, rel: str, is_dir: bool) -> bool:
        """Whether the path (relative to the top, `/`-separated) is left out."""
        # A name that is not UTF-8 holds surrogates (os.fsdecode): each one is a character still.
        data = (rel if rel.isascii() else _SURROGATE.sub("\ufffd", rel)).encode("utf-8")
        if self._any is not None and not any(matches(data) for matches in self._any):
            return False
        ignored = False
        for matches, negate, dir_only in self.rules:
            if (is_dir or not dir_only) and matches(data):
                ignored = not negate
        return ignored
