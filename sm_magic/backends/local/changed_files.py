"""Files read again only when they changed: what lets one monitor poll follow many local jobs by
stat() calls alone while nothing happens.

A file counts as unchanged when its inode, size and modification time are those seen when it was
last read, and that time is at least RACY_SECONDS old. The age rule is git's "racily clean"
rule: a file written twice within the file system's timestamp granularity, to the same size and
(after a replace) a recycled inode, would otherwise look unchanged; a file that recent is read
every time instead.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

RACY_SECONDS = 1.0

_T = TypeVar("_T")


def _key(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_size, st.st_mtime_ns


class ChangedFiles(Generic[_T]):
    """`read(path, parse)`: parse(path)'s value, parsed again only when the file changed."""

    def __init__(self) -> None:
        self._seen: dict[Path, tuple[tuple[int, int, int], _T]] = {}
        self._lock = threading.Lock()

    def read(self, path: Path, parse: Callable[[Path], _T]) -> _T:
        """FileNotFoundError (or another OSError) from stat() or parse() as they raise it."""
        st = os.stat(path)
        key = _key(st)
        with self._lock:
            seen = self._seen.get(path)
        if seen is not None and seen[0] == key and time.time() - st.st_mtime_ns / 1e9 >= RACY_SECONDS:
            return seen[1]
        value = parse(path)
        with self._lock:
            self._seen[path] = (key, value)
        return value


def unchanged_since(path: Path, size: int) -> bool:
    """Is the file still `size` bytes long (an appended log that nothing was added to)? A missing
    file counts as changed: the caller finds out why."""
    try:
        return os.stat(path).st_size == size
    except OSError:
        return False
