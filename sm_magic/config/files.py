"""Where accelerate's config and sm_magic's cache live on this machine, and how a config file is
read and written. It imports no other sm_magic module (and no pydantic), so what needs only a path (the
wheel cache, downloaded inputs) does not load the config model."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path


def accelerate_default_config_path() -> Path:
    """Where `accelerate config` saves, computed as accelerate does (no accelerate import)."""
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(os.path.expanduser(home)) / "accelerate" / "default_config.yaml"


def cache_home() -> Path:
    """Where sm_magic keeps what it may fetch again (wheels, downloaded inputs): $SM_MAGIC_CACHE,
    else ~/.cache/sm_magic."""
    root = os.environ.get("SM_MAGIC_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache",
                                                             "sm_magic")
    return Path(os.path.expanduser(root))


def atomic_write(path: Path, text: str) -> None:
    """`text` written to `path` as UTF-8, whole or not at all: a reader (or `accelerate launch`)
    never sees half a file, and an interrupted save leaves the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class NotRegularFile(OSError):
    """A path that names a FIFO, a device or a socket where a file was expected."""


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def read_regular_file(path: "os.PathLike[str] | str", limit: int) -> bytes:
    """At most `limit` bytes of the regular file at `path`. Anything else is refused before a
    byte is read: IsADirectoryError for a directory, NotRegularFile for a FIFO (reading one
    waits for a writer, forever), a device or a socket. The file is opened without blocking and
    checked on the open descriptor, so nothing swapped in at `path` between a check and the
    open can slip past."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "something else")
            raise NotRegularFile(errno.EINVAL, f"not a regular file but {kind}: give the path of a file", os.fspath(path))
        return f.read(limit)


def read_text(path: "os.PathLike[str] | str", limit: int) -> str:
    """The UTF-8 text of the regular file at `path` (read_regular_file's refusals), at most `limit`
    bytes: a larger file is an OSError (EFBIG) saying so, not a file half read."""
    data = read_regular_file(path, limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit // 1024} KiB: check that this is the file you meant",
                      os.fspath(path))
    return data.decode("utf-8")
