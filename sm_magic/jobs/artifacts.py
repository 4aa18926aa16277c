"""A job's model and output files, back on this machine: `Job.download()` and `Job.output_files()`.

- The model is model.tar.gz: a path on this machine (local backends) or an S3 URI (SageMaker,
  fetched through the backend's `fetch_object`, with the job's credentials). What the job wrote
  to $SM_OUTPUT_DATA_DIR is SageMaker's output.tar.gz beside it, or a local job's
  opt_ml/output/data directory.
- The archive comes from the training script, which anyone may have written: every member is
  checked before anything is written (no absolute name, no `..`, no link that is absolute or
  climbs, no device or FIFO), one refused member refuses the archive, naming it; then tarfile's
  "data" filter extracts, where this Python has it.
- Sizes are bounded before anything is written, by what the members' headers declare: a tar bomb
  (a few MB of gzip that unpack to terabytes of zeros) is refused as soon as the running total
  passes the room on the target's disk (its free space less KEEP_FREE) or a caller's `max_bytes`,
  before the rest of the stream is even decompressed, and so is an archive of more than
  MAX_MEMBERS members (inodes run out before bytes do). Headers that lie cannot write more:
  tarfile copies exactly the declared size of each member and stops at the first header that
  does not parse, and one that declares more than the stream holds fails ("unexpected end of
  data") with the scratch directory removed.
- It is unpacked into a scratch directory beside the target and moved into place, so a refused
  or broken archive leaves nothing behind, and a directory that holds files is never written
  into unless asked (`overwrite=True` replaces the entries of the same names, keeps the rest).
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from ..errors import UsageProblem

READY = ("Completed", "Stopped")
NOTE_MAX_BYTES = 64 << 20  # a summary lists the members of a model.tar.gz up to this size
KEEP_FREE = 1 << 30  # an unpacked model leaves this much free on its disk: the kernel still has to run
MAX_MEMBERS = 100_000  # a checkpoint is tens of files; a million empty ones would exhaust inodes


class DownloadError(UsageProblem, ValueError):
    """The job's model cannot be brought here as asked; the message says what to do."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows this line instead of a traceback: the message is the whole story.
        return [f"\x1b[31mDownloadError\x1b[0m: {self}"]


class OutputFile(NamedTuple):
    """One file a job wrote: `model/...` (in model.tar.gz) or `output/...` ($SM_OUTPUT_DATA_DIR)."""

    path: str
    size: int


def default_target(name: str) -> Path:
    """`./<job name>-model/`: beside the notebook, where a kernel starts."""
    return Path.cwd() / f"{name}-model"


class Bounds(NamedTuple):
    """How much an archive may unpack to: `max_bytes` (None: no fixed cap), whatever the target's
    disk has free less `keep_free`, and at most `max_members` members."""

    max_bytes: int | None = None
    keep_free: int = KEEP_FREE
    max_members: int = MAX_MEMBERS


def download(name: str, backend: Any, status: str, model: str | None, path: str | os.PathLike | None,
             overwrite: bool, *, max_bytes: int | None = None, max_members: int = MAX_MEMBERS,
             keep_free: int = KEEP_FREE) -> Path:
    """Bring job `name`'s model.tar.gz here and unpack it: what `Job.download()` does.

    The target is checked before a download that may take minutes; an S3 archive is fetched
    beside the target (through the backend's `fetch_object`, with the job's credentials) and
    removed afterwards; then `unpack` checks every member and bound before writing anything.

    Args:
        name: the job's name, as messages name it.
        backend: the job's Backend; an S3 archive needs one with `fetch_object` (SageMaker).
        status: the job's TrainingJobStatus: only a Completed or Stopped job has a model.
        model: where its model.tar.gz is (a local path or an S3 URI; the state's
            `model_artifacts`), or None when it saved none.
        path: the directory to unpack into (default: `./<job name>-model/`).
        overwrite: unpack into a directory that already holds files, replacing the entries of
            the same names and keeping the rest.
        max_bytes: refuse an archive whose members declare more in all (None: no fixed cap).
        max_members: refuse an archive with more members than this.
        keep_free: bytes the target's disk keeps free after unpacking.

    Returns:
        The target directory, absolute.

    Raises:
        DownloadError: the job is not ended, failed or saved no model; the model is gone from
            its path or S3; the target is a file or holds files (without `overwrite`); or the
            archive is refused or unreadable. Nothing is left behind.

    Example:
        target = download(job.name, backend, state.status, state.model_artifacts, "model", False)
    """
    archive = model_archive(name, status, model)
    target = (default_target(name) if path is None else Path(path)).expanduser().absolute()
    check_target(target, overwrite)  # before a download that may take minutes
    what = f"job {name}'s model.tar.gz"
    with local_copy(name, backend, archive, target.parent) as local:
        return unpack(local, target, overwrite, what, max_bytes=max_bytes, max_members=max_members,
                      keep_free=keep_free)


def output_files(name: str, backend: Any, status: str, model: str | None) -> list[OutputFile]:
    """What job `name` wrote to $SM_MODEL_DIR (`model/...`) and $SM_OUTPUT_DATA_DIR (`output/...`)."""
    if status not in READY and status != "Failed":
        raise DownloadError(f"job {name} is {status}: its files are complete when it ends; job.wait() first")
    files: list[OutputFile] = []
    if model and model.startswith("s3://"):
        output = model.rsplit("/", 1)[0] + "/output.tar.gz"  # SageMaker puts it beside the model
        with tempfile.TemporaryDirectory(prefix="sm-magic-") as scratch:
            with local_copy(name, backend, model, Path(scratch)) as local:
                files += archive_files(local, "model")
            with local_copy(name, backend, output, Path(scratch), missing_ok=True) as local:
                if local is not None:
                    files += archive_files(local, "output")
        return files
    if model:
        files += archive_files(Path(model), "model")
    job_dir = getattr(backend, "job_dir", None)  # the local backends: opt_ml/ as in the container
    if job_dir is not None:
        files += directory_files(Path(job_dir(name)) / "opt_ml" / "output" / "data", "output")
    return files


@contextmanager
def local_copy(name: str, backend: Any, uri: str, scratch: Path, missing_ok: bool = False) -> Iterator[Any]:
    """`uri` as a file on this machine: a local path as it is, an S3 object downloaded into
    `scratch` (removed afterwards). None for a missing object when `missing_ok`."""
    if not uri.startswith("s3://"):
        if not Path(uri).is_file():
            if missing_ok:
                yield None
                return
            raise DownloadError(f"job {name}'s {Path(uri).name} is gone from {uri}: nothing to unpack")
        yield Path(uri)
        return
    fetch = getattr(backend, "fetch_object", None)
    if fetch is None:
        raise DownloadError(f"the {backend.name} backend cannot download {uri}: copy it with `aws s3 cp`")
    try:
        scratch.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot write in {scratch} ({e.strerror or e}): pass path= a writable directory") from None
    part = scratch / f".{name}.{uuid.uuid4().hex[:8]}.tar.gz.part"
    try:
        if not fetch(name, uri, part):
            if missing_ok:
                yield None
                return
            raise DownloadError(f"job {name}'s model is not at {uri} (deleted from S3?): nothing to unpack")
        yield part
    finally:
        part.unlink(missing_ok=True)


def check_target(target: Path, overwrite: bool) -> None:
    """Refuse a target that is a file, or a directory that holds files (unless `overwrite`)."""
    if target.exists() and not target.is_dir():
        raise DownloadError(f"{target} is a file, not a directory: pass path= a directory to unpack the model into")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise DownloadError(f"{target} already holds files: pass overwrite=True to replace the ones the "
                            "model has, or path= another directory")


def model_archive(name: str, status: str, model: str | None) -> str:
    """The job's model.tar.gz location, or DownloadError saying why there is none yet."""
    if status not in READY:
        if status == "Failed":
            raise DownloadError(f"job {name} failed: it wrote no model (job.failure_reason says why)")
        raise DownloadError(f"job {name} is {status}: its model is written when it ends; job.wait() first")
    if not model:
        raise DownloadError(f"job {name} is {status} and saved no model (nothing in $SM_MODEL_DIR)")
    return model


def refusal(member: tarfile.TarInfo) -> str | None:
    """Why `member` may not be unpacked, or None."""
    name = member.name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "climbs out of the directory with '..'"
    if member.ischr() or member.isblk() or member.isfifo():
        return "is a device or FIFO"
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        return "is not a file, directory or link"
    if member.issym() or member.islnk():
        # Links may point only down from where they are: with no `..` in any link, no chain of
        # links can climb out either.
        link = member.linkname.replace("\\", "/")
        if link.startswith("/") or ".." in PurePosixPath(link).parts:
            return f"links out of the directory (to {member.linkname!r})"
    return None


def _declared(member: tarfile.TarInfo) -> int:
    """Bytes `member` may write: its size, or for a sparse member the data of its chunks if more
    (tarfile writes each chunk, then truncates to the size)."""
    sparse: list[tuple[int, int]] = getattr(member, "sparse", None) or []  # typeshed: an int
    chunks = sum(size for _, size in sparse)
    return max(member.size, chunks) if member.isfile() else 0


def _checked(tar: tarfile.TarFile, what: str, bounds: Bounds, room: int, where: Path) -> list[tarfile.TarInfo]:
    """The members of `tar`, each checked, read header by header: the first one past a bound
    refuses the archive before its data (perhaps gigabytes of zeros) is decompressed."""
    members: list[tarfile.TarInfo] = []
    total = 0
    for member in tar:
        why = refusal(member)
        if why:
            raise DownloadError(f"{what}: member {member.name!r} {why}; nothing was unpacked. "
                                "An archive from an unknown script can write anywhere: unpack it by hand "
                                "only if you trust it")
        members.append(member)
        if len(members) > bounds.max_members:
            raise DownloadError(f"{what} has more than {bounds.max_members:,} members; nothing was unpacked. "
                                "So many files are more likely a bomb than a model: unpack it by hand only "
                                "if you trust it")
        total += _declared(member)
        if bounds.max_bytes is not None and total > bounds.max_bytes:
            raise DownloadError(f"{what} unpacks to {size_text(total)} or more (member {member.name!r} "
                                f"reaches it), over max_bytes={bounds.max_bytes} ({size_text(bounds.max_bytes)}); "
                                "nothing was unpacked. Pass a larger max_bytes= if the model is that big")
        if total > room:
            raise DownloadError(f"{what} unpacks to {size_text(total)} or more (member {member.name!r} "
                                f"reaches it), more than the {size_text(max(room, 0))} the disk of {where} can "
                                f"take ({size_text(room + bounds.keep_free)} free, {size_text(bounds.keep_free)} "
                                "kept free); nothing was unpacked. Free some space, or pass path= a directory "
                                "on a larger disk")
    return members


def unpack(archive: Path, target: Path, overwrite: bool, what: str, *, max_bytes: int | None = None,
           max_members: int = MAX_MEMBERS, keep_free: int = KEEP_FREE) -> Path:
    """Unpack a tar archive (any compression tarfile reads) into a directory, safely.

    Every member is checked first, header by header: an absolute name, `..`, a link that is
    absolute or climbs, a device or FIFO refuses the archive, and so does a running total of
    declared sizes past `max_bytes` or the disk's room (its free space less `keep_free`), or more
    than `max_members` members, before the rest of the stream is decompressed. The members are
    extracted into a scratch directory beside the target (with tarfile's "data" filter where this
    Python has it) and moved into place, so a refused or broken archive leaves nothing behind.

    Args:
        archive: the archive on this machine.
        target: the directory to unpack into, made if missing.
        overwrite: unpack into a directory that already holds files, replacing the entries of
            the same names and keeping the rest.
        what: how messages name the archive (`"job NAME's model.tar.gz"`).
        max_bytes: refuse an archive whose members declare more in all (None: no fixed cap).
        max_members: refuse an archive with more members than this.
        keep_free: bytes the target's disk keeps free after unpacking.

    Returns:
        `target`, absolute.

    Raises:
        DownloadError: the target is a file or holds files (without `overwrite`), a member or
            bound refuses the archive, it is not a readable tar archive, or the disk cannot take
            it; the message names the member and says what to do.

    Example:
        unpack(Path("model.tar.gz"), Path("model"), overwrite=False, what="model.tar.gz")
    """
    bounds = Bounds(max_bytes, keep_free, max_members)
    target = Path(target).expanduser().absolute()
    check_target(target, overwrite)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.part"
        scratch.mkdir()
    except OSError as e:
        raise DownloadError(f"cannot write in {target.parent} ({e.strerror or e}): pass path= a writable directory") from None
    try:
        room = shutil.disk_usage(scratch).free - bounds.keep_free  # an S3 copy is on disk already
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = _checked(tar, what, bounds, room, target.parent)
                if hasattr(tarfile, "data_filter"):  # Python 3.12, and 3.10.12 / 3.11.4 on
                    tar.extractall(scratch, members, filter="data")
                else:
                    tar.extractall(scratch, members)
        except (tarfile.TarError, EOFError) as e:
            member = getattr(e, "tarinfo", None)
            named = f"member {member.name!r}: " if member is not None else ""
            raise DownloadError(f"{what}: {named}{e}; nothing was unpacked") from None
        _move_in(scratch, target)
    except OSError as e:
        raise DownloadError(f"cannot unpack {what} into {target} ({e.strerror or e}): free some space "
                            "or pass path= another directory") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _move_in(scratch: Path, target: Path) -> None:
    if not target.exists():
        os.rename(scratch, target)
        return
    for entry in scratch.iterdir():
        dest = target / entry.name
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        elif dest.exists() or dest.is_symlink():
            dest.unlink()
        os.rename(entry, dest)


def archive_files(archive: Path, prefix: str) -> list[OutputFile]:
    """The regular files in a tar archive, as `prefix/name`."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            return [OutputFile(f"{prefix}/{_clean(m.name)}", m.size) for m in tar if m.isfile()]
    except (OSError, tarfile.TarError, EOFError) as e:
        raise DownloadError(f"cannot read {archive}: {e}") from None


def directory_files(root: Path, prefix: str) -> list[OutputFile]:
    """The regular files under `root` (links not followed), as `prefix/relative path`."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for file in sorted(files):
            path = Path(folder) / file
            if path.is_file() and not path.is_symlink():
                found.append(OutputFile(f"{prefix}/{path.relative_to(root).as_posix()}", path.stat().st_size))
    return found


def _clean(name: str) -> str:
    return str(PurePosixPath(name.replace("\\", "/"))).lstrip("/").removeprefix("./") or name


def size_text(size: int) -> str:
    """12 KB, 3.4 MB: a size as a person reads it."""
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit in ("bytes", "KB") or value >= 10 else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


def model_note(model: str) -> str:
    """'model.tar.gz (3 files, 12 KB)' for a model on this machine small enough to list at once
    (a gzip stream is read whole to count its members); else what is known without reading it."""
    if model.startswith("s3://"):
        return "model.tar.gz"  # not fetched for a summary
    try:
        packed = Path(model).stat().st_size
    except OSError:
        return "model.tar.gz"
    if packed > NOTE_MAX_BYTES:
        return f"model.tar.gz ({size_text(packed)} packed)"
    try:
        files = archive_files(Path(model), "model")
    except DownloadError:
        return "model.tar.gz"
    total = sum(f.size for f in files)
    return f"model.tar.gz ({len(files)} file{'s' if len(files) != 1 else ''}, {size_text(total)})"
