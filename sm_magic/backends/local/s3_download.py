"""An s3:// input channel for a local job, as SageMaker's File mode gives one: every object under
the prefix, each at its key's part after the prefix, in a directory that is the job's own.

- Every key is checked before anything is written: it must name a file strictly inside the
  channel (no `..`, `.` or empty segment, no NUL byte, no name over NAME_MAX bytes), and no key
  may be both a file and a directory (`a` beside `a/b`). One such key refuses the channel,
  naming the key: a bucket others can write to cannot place a file anywhere else.
- Objects are kept in a cache (`$SM_MAGIC_CACHE/s3/<bucket>/<prefix hash>/`, a manifest of ETags
  beside it): an object whose ETag and size did not change is not downloaded again. A file lock
  serialises the processes that fill one entry, and each download lands in a scratch directory
  before it is renamed into place, so launches at once share one fill.
- Each host of each job gets its own copy of the entry (a reflink where the file system shares
  blocks copy-on-write, else a plain copy), as each SageMaker instance downloads its own: what a
  job writes into its channel reaches neither the cache nor the next job.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ...config.files import cache_home
from ..base import BackendError

NAME_MAX = 255         # bytes in one file name on Linux's file systems (ext4, XFS, btrfs, tmpfs)
_FICLONE = 0x40049409  # ioctl(dst, FICLONE, src): dst shares src's blocks until either is written

Log = Callable[[str], None] | None


def cache_root() -> Path:
    return cache_home() / "s3"


def fetch(s3, channel: str, uri: str, targets: list[Path], *, log: Log = None) -> None:
    """Every object under `uri` into each of `targets` (directories made here), through the cache.
    Raises BackendError, before anything is written, for a key that cannot be a file in it."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    wanted = channel_layout(channel, uri, prefix, _list(s3, channel, uri, bucket, prefix))
    entry = cache_root() / bucket / hashlib.sha256(prefix.encode()).hexdigest()[:16]
    try:
        with _locked(entry, f"{uri} (input channel {channel})", log):
            _fill(s3, channel, uri, entry, wanted, log)
            for target in targets:
                try:
                    _copy_out(entry, wanted, target)
                except OSError as e:
                    raise BackendError(f"input channel {channel}: cannot copy {uri} into the job's {target} "
                                       f"({e.strerror or e}); free some space or choose another jobs directory"
                                       ) from None
    except OSError as e:
        raise BackendError(f"input channel {channel}: cannot use the download cache {entry.parent} "
                           f"({e.strerror or e}); set SM_MAGIC_CACHE to a writable directory") from None


def _list(s3, channel: str, uri: str, bucket: str, prefix: str) -> list[dict]:
    try:
        objects = [o for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                   for o in page.get("Contents", []) if not o["Key"].endswith("/")]
    except Exception as e:
        from botocore.exceptions import NoCredentialsError

        why = "no AWS credentials found" if isinstance(e, NoCredentialsError) else str(e)
        raise BackendError(f"input channel {channel}: cannot list {uri} ({why}); the local backend downloads s3:// "
                           "inputs with your AWS credentials (`aws configure`, AWS_PROFILE or `profile` in the "
                           "config), or give a local path") from None
    if not objects:
        raise BackendError(f"input channel {channel}: no objects under {uri}")
    return objects


# --- where each key goes -------------------------------------------------------------------------

def channel_layout(channel: str, uri: str, prefix: str, objects: list[dict]) -> dict[str, tuple[str, str, int]]:
    """Path in the channel -> (key, ETag, size) for each object, every path checked."""
    files: dict[str, tuple[str, str, int]] = {}
    for o in objects:
        key = o["Key"]
        rel = key[len(prefix):]
        if prefix and not prefix.endswith("/"):
            rel = rel.removeprefix("/")  # the separator after the prefix, and only that one
        rel = rel or key.rsplit("/", 1)[-1]  # the URI names the object itself
        why = _unsafe(rel)
        if why:
            raise BackendError(f"input channel {channel}: the S3 object {key!r} under {uri} cannot be a file in the "
                               f"channel: {why}. Rename or delete it, or give a prefix without it; nothing was "
                               "downloaded")
        files[rel] = (key, str(o.get("ETag", "")), int(o.get("Size", -1)))
    for rel, (key, _, _) in files.items():
        parts = rel.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in files:
                raise BackendError(f"input channel {channel}: the S3 objects {files[parent][0]!r} and {key!r} under "
                                   f"{uri} would make {parent!r} both a file and a directory in the channel. "
                                   "Rename or delete one of them; nothing was downloaded")
    return files


def _unsafe(rel: str) -> str | None:
    """Why `rel` names no file strictly inside a directory, or None."""
    if "\0" in rel:
        return "it holds a NUL byte"
    for part in rel.split("/"):
        if part == "..":
            return "a '..' segment would put it outside the channel's directory"
        if part in ("", "."):
            return "an empty or '.' segment ('//' or '/./' in the key) names no file"
        size = len(part.encode())
        if size > NAME_MAX:
            return (f"its name {part[:24]!r}... is {size} bytes, longer than the {NAME_MAX} bytes a file system "
                    "takes in one name")
    return None


# --- the cache -----------------------------------------------------------------------------------

@contextmanager
def _locked(entry: Path, what: str, log: Log) -> Iterator[None]:
    """The cache entry to this process alone (until the block ends, or the process does)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    with open(entry.with_name(entry.name + ".lock"), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if log:
                log(f"waiting for another process downloading {what}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _fill(s3, channel: str, uri: str, entry: Path, wanted: dict[str, tuple[str, str, int]], log: Log) -> None:
    """Make the entry hold every wanted object at its path (the lock is held)."""
    bucket = uri.removeprefix("s3://").partition("/")[0]
    manifest_path = entry.with_name(entry.name + ".json")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        manifest = {}
    if not isinstance(manifest, dict):
        manifest = {}
    for rel in [r for r in manifest if r not in wanted]:  # deleted in S3 since: not part of the channel
        if _unsafe(rel) is None:
            try:
                (entry / rel).unlink(missing_ok=True)
            except OSError:  # a directory there now, or under a file: _make_room clears the way
                pass
        del manifest[rel]
    stale = [rel for rel, (_, etag, size) in wanted.items()
             if manifest.get(rel) != etag or not _is_file_of(entry / rel, size)]
    if stale and log:
        log(f"downloading input channel {channel}: {len(stale)} of {len(wanted)} objects from {uri}")
    entry.mkdir(exist_ok=True)
    scratch = entry.with_name(entry.name + ".parts")
    shutil.rmtree(scratch, ignore_errors=True)  # left by a process killed mid-fill
    scratch.mkdir()
    try:
        for n, rel in enumerate(stale):
            key, etag, _ = wanted[rel]
            part = scratch / str(n)
            try:
                s3.download_file(bucket, key, str(part))
            except Exception as e:
                raise BackendError(f"input channel {channel}: downloading s3://{bucket}/{key} failed: {e}") from None
            try:
                _make_room(entry, rel)
                os.replace(part, entry / rel)
            except OSError as e:
                raise BackendError(f"input channel {channel}: cannot write s3://{bucket}/{key} into the cache "
                                   f"{entry} ({e.strerror or e})") from None
            manifest[rel] = etag
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        tmp = manifest_path.with_name(f".{manifest_path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(manifest))
        os.replace(tmp, manifest_path)


def _is_file_of(path: Path, size: int) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and (size < 0 or st.st_size == size)


def _make_room(entry: Path, rel: str) -> None:
    """Directories for `rel`'s parents, and nothing but a file at `rel`: a path that held a file
    may now be a directory, and the other way round."""
    path = entry
    for part in rel.split("/")[:-1]:
        path = path / part
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            path.unlink()
        path.mkdir(exist_ok=True)
    target = entry / rel
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)


# --- the job's own copy --------------------------------------------------------------------------

def _copy_out(entry: Path, wanted: dict[str, tuple[str, str, int]], target: Path) -> None:
    """The wanted files of the entry as new files under `target` (only they: nothing else the
    entry may hold)."""
    target.mkdir(parents=True)
    for rel in sorted(wanted):
        dst = target / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        _clone(entry / rel, dst)


def _clone(src: Path, dst: Path) -> None:
    """`dst`, a new file, with `src`'s bytes: shared blocks where the file system has reflinks
    (btrfs, XFS), else a copy in the kernel (copy_file_range), else through this process."""
    with open(src, "rb") as s, open(dst, "xb") as d:
        try:
            fcntl.ioctl(d.fileno(), _FICLONE, s.fileno())
            return
        except OSError:
            pass
        try:
            while os.copy_file_range(s.fileno(), d.fileno(), 1 << 30):
                pass
        except OSError:  # not between these two file systems
            s.seek(0)
            d.seek(0)
            d.truncate()
            shutil.copyfileobj(s, d, 1 << 20)
