""".smignore: a user's list of files to leave out of a bundle, in gitignore syntax."""

from __future__ import annotations

import re
from pathlib import Path
from collections.abc import Iterable

IGNORE_FILE = ".smignore"


def _translate(pattern: str) -> str:
    """A gitignore glob as a regular expression over a `/`-separated path (no anchors)."""
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
            out.append(re.escape(pattern[i]))
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] in "!^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j]
                negate = body[:1] in ("!", "^")
                body = body[1:] if negate else body
                body = body.replace("\\", "\\\\").replace("[", "\\[")
                out.append(f"[^/{body}]" if negate else f"[{body}]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


class IgnoreRules:
    """The patterns of a `.smignore` file: gitignore syntax (`#` comments, `!` negation, `dir/`
    for directories only, `/x` or `a/b` anchored at the top, `*`, `?`, `[...]`, `**`); the last
    pattern that matches a path decides. A directory left out takes all it holds with it."""

    def __init__(self, lines: Iterable[str] = ()):
        self.rules: list[tuple[re.Pattern, bool, bool]] = []  # (regex, negated, directories only)
        for line in lines:
            line = line.rstrip("\r\n")
            while line.endswith(" ") and not line.endswith("\\ "):
                line = line[:-1]
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            if negate:
                line = line[1:]
            dir_only = line.endswith("/")
            line = line.rstrip("/")
            if not line:
                continue
            anchored = "/" in line
            body = _translate(line.lstrip("/"))
            self.rules.append((re.compile(("^" if anchored else "^(?:.*/)?") + body + "$"), negate, dir_only))

    @classmethod
    def read(cls, path: Path) -> "IgnoreRules":
        return cls(path.read_text(encoding="utf-8", errors="replace").splitlines())

    def __bool__(self) -> bool:
        return bool(self.rules)

    def match(self, rel: str, is_dir: bool) -> bool:
        """Whether the path (relative to the top, `/`-separated) is left out."""
        ignored = False
        for regex, negate, dir_only in self.rules:
            if (is_dir or not dir_only) and regex.match(rel):
                ignored = not negate
        return ignored
