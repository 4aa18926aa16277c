"""A requirements.txt as pip reads it: `\\` continuation lines joined, ` #` comments dropped, each
line's requirement apart from its options (`--hash`, `-e`, `--index-url`, ...), and whether a
requirement installs from this machine's files. pip's own rules (pip/_internal/req/req_file.py
and req/constructors.py), restated here because pip has no API: a check that reads the file
otherwise than pip does is one a line can slip past."""

from __future__ import annotations

import optparse
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

_COMMENT = re.compile(r"(^|\s+)#.*$")
# The options pip accepts in a requirements file: (names, takes a value).
_OPTIONS = [(("-i", "--index-url", "--pypi-url"), True), (("--extra-index-url",), True), (("--no-index",), False),
            (("-c", "--constraint"), True), (("-r", "--requirement"), True), (("-e", "--editable"), True),
            (("-f", "--find-links"), True), (("--no-binary",), True), (("--only-binary",), True),
            (("--prefer-binary",), False), (("--require-hashes",), False), (("--no-require-hashes",), False),
            (("--pre",), False), (("--all-releases",), True), (("--only-final",), True), (("--trusted-host",), True),
            (("--use-feature",), True), (("--hash",), True), (("-C", "--config-settings"), True)]
# Where pip looks for packages: given to every pip run that fills the wheelhouse.
INDEX_OPTIONS = ("index_url", "extra_index_url", "no_index", "find_links", "trusted_host")
_ARCHIVES = (".whl", ".zip", ".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tlz", ".tar.lz",
             ".tar.lzma")
_URL_SCHEMES = re.compile(r"^(https?|file|ftp|(git|hg|svn|bzr)\+[a-z-]+|git|svn|bzr):", re.I)


class LineError(ValueError):
    """A line pip would not read (an unknown option, an option without its value)."""


@dataclass
class Entry:
    """One logical line: physical lines `first` to `last` (1-based), joined."""

    first: int
    last: int
    text: str                     # joined, comment dropped
    requirement: str = ""         # what is installed ("" for a line of options only)
    options: dict[str, list[str]] = field(default_factory=dict)  # dest -> values (flags: ["1"])

    def get(self, name: str) -> list[str]:
        return self.options.get(name, [])


class _Parser(optparse.OptionParser):
    def error(self, msg: str) -> NoReturn:  # optparse would print it and exit
        raise LineError(msg)


def _parser() -> optparse.OptionParser:
    parser = _Parser(add_help_option=False)
    for names, takes_value in _OPTIONS:
        dest = _dest(names)
        if takes_value:
            parser.add_option(*names, dest=dest, action="append")
        else:
            parser.add_option(*names, dest=dest, action="append_const", const="1")
    return parser


def entries(lines: Iterable[str]) -> list[Entry]:
    """The logical lines of a requirements file, as pip joins and splits them. An option pip
    would not read raises LineError (its message and the line number in `.args`)."""
    found: list[Entry] = []
    pending: list[str] = []
    first = 0
    for number, line in enumerate(lines, 1):
        if not pending:
            first = number
        if line.endswith("\\") and not _COMMENT.match(line):
            pending.append(line.strip("\\"))
            continue
        text = _COMMENT.sub("", "".join(pending) + (" " + line if _COMMENT.match(line) else line)).strip()
        pending = []
        if text:
            found.append(_entry(first, number, text))
    if pending:
        text = _COMMENT.sub("", "".join(pending)).strip()
        if text:
            found.append(_entry(first, first + len(pending) - 1, text))
    return found


def _entry(first: int, last: int, text: str) -> Entry:
    # As pip: the requirement is every space-separated token before the first that starts with
    # "-"; only what follows is split like a shell line (a marker may hold quotes).
    tokens = text.split(" ")
    at = next((i for i, t in enumerate(tokens) if t.startswith("-")), len(tokens))
    requirement, option_text = " ".join(tokens[:at]).strip(), " ".join(tokens[at:])
    try:
        values, rest = _parser().parse_args(shlex.split(option_text))
    except ValueError as e:  # shlex: an unclosed quote
        raise LineError(str(e), first) from None
    except LineError as e:
        raise LineError(e.args[0], first) from None
    if rest:
        raise LineError(f"unexpected {' '.join(rest)!r} after the options", first)
    options = {k: v for k, v in vars(values).items() if v}
    return Entry(first, last, text, requirement, options)


def line(entry: Entry, leave_out: Iterable[str] = (), requirement: str | None = None,
         only: Iterable[str] | None = None) -> str:
    """The entry as one requirements.txt line, less the options named in `leave_out` (dests) or
    with `only` those, and with `requirement` in place of its own when given."""
    requirement = entry.requirement if requirement is None else requirement
    only = None if only is None else set(only)
    flags = []
    for names, takes_value in _OPTIONS:
        dest = _dest(names)
        if dest in leave_out or (only is not None and dest not in only):
            continue
        for value in entry.get(dest):
            flags += [_long(names), *([value] if takes_value else [])]
    return " ".join([requirement] * bool(requirement) + [shlex.join(flags)] * bool(flags))


def _long(names: tuple[str, ...]) -> str:
    return next(n for n in names if n.startswith("--"))


def _dest(names: tuple[str, ...]) -> str:
    return _long(names)[2:].replace("-", "_")


def targets(entry: Entry) -> list[str]:
    """What the line installs: its requirement and each `-e` value."""
    return ([entry.requirement] if entry.requirement else []) + entry.get("editable")


def is_local(target: str) -> bool:
    """Whether pip installs `target` (a requirement as written) from files on this machine: a
    path, a bare archive name, a `file:` URL (`git+file:` too), or `name @` one of those."""
    text = target.strip()
    if _URL_SCHEMES.match(text):
        return _local_url(text.split("; ")[0])
    head = text.split(";")[0].strip()
    name, at, url = head.partition("@")
    if at and not _looks_like_path(name):
        # PEP 508 `name @ url`: the url decides.
        return _local_url(url.strip())
    return _looks_like_path(head) or head.startswith("~") or _archive(re.sub(r"\[.*\]$", "", head))


def _local_url(url: str) -> bool:
    scheme = url.split(":", 1)[0].lower() if _URL_SCHEMES.match(url) else ""
    return not scheme or scheme == "file" or scheme.endswith("+file")


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.startswith(".")


def _archive(text: str) -> bool:
    return text.lower().endswith(_ARCHIVES)


def project_name(entry: Entry) -> str | None:
    """The project a requirement line names, where it says (`name ...`, `name @ url`, a wheel
    file name, `#egg=name`)."""
    from packaging.requirements import InvalidRequirement, Requirement

    text = entry.requirement.split("; ")[0].strip()
    if not text:
        return None
    if not _URL_SCHEMES.match(text):
        try:
            return Requirement(entry.requirement).name
        except InvalidRequirement:
            return None
    path = urlsplit(text)
    egg = re.search(r"(?:^|&)egg=([A-Za-z0-9._-]+)", path.fragment)
    if egg:
        return egg.group(1)
    filename = path.path.rsplit("/", 1)[-1]
    return filename.split("-")[0] if filename.endswith(".whl") else None


def redact(text: str) -> str:
    """`text` with the password of every URL in it replaced by `****` (pip's own way of showing
    them): `https://user:****@host/simple`. A `${VARIABLE}` stays: it holds no secret."""
    def hide(m: re.Match) -> str:
        url = urlsplit(m.group(0))
        if "@" not in url.netloc:
            return m.group(0)
        user, _, host = url.netloc.rpartition("@")
        name, colon, password = user.partition(":")
        if re.fullmatch(r"\$\{[A-Z0-9_]+\}", password or name):
            return m.group(0)
        hidden = f"{name}:****" if colon else "****"
        return urlunsplit(url._replace(netloc=f"{hidden}@{host}"))

    return re.sub(r"[a-z][a-z0-9+.-]*://[^\s]+", hide, text, flags=re.I)
