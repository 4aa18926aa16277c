"""Scalars from TensorBoard event files, read incrementally, as metric rows by step.

What a script writes with `torch.utils.tensorboard.SummaryWriter`, accelerate's TensorBoard
tracker or Lightning's `TensorBoardLogger` under `$SM_OUTPUT_DIR/tensorboard` is read here with
TensorBoard's own reader (`LegacyEventFileLoader`: record framing, CRC checks, Event protos);
nothing here parses protobuf. `ScalarReader(root).read()` returns the scalars added since its
last call (at most MAX_EVENTS_PER_READ events a call), as `(step, {column: value})` rows. Each
event file keeps its loader, which holds its position: a poll reads only the bytes appended since
the last, and a record the writer has half written is left for the next poll (the loader keeps
the partial bytes), never parsed.

Columns are the tags as written (`train/loss`, `val_loss`), from every directory under the root:
`version_N` directories (Lightning's restarts) and Lightning's default `lightning_logs` add
nothing to the name; the per-series directories of `add_scalars("loss", {"train": ...})`
(`loss_train`) give `loss/train`. When a second directory writes a tag another already holds,
its column is `<directory>/<tag>`, so neither overwrites the other.

The `tensorboard` package is imported only when an event file is found; without it the reader
raises TensorBoardMissing once, which the job shows as one note in its log.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from ..errors import RuntimeProblem

EVENT_FILE_MARK = "tfevents"  # events.out.tfevents.<time>.<host>.<pid>.<n>, whoever wrote it
INSTALL_HINT = ("install tensorboard to read the TensorBoard event files this job writes "
                "(pip install tensorboard): their scalars are not in the metrics")
_VERSION_DIR = re.compile(r"version_\d+")
_DEFAULT_ROOTS = ("lightning_logs",)  # Lightning's TensorBoardLogger name when none is given

Row = tuple[int, dict[str, float]]
_DATA_CLASS_SCALAR = 1  # tensorboard's summary_pb2.DATA_CLASS_SCALAR
MAX_EVENTS_PER_READ = 10_000  # a read stops there (about 0.6 s: a poll stays short); the next goes on


class TensorBoardMissing(RuntimeProblem, ImportError):
    """Event files were found but the tensorboard package, which reads them, is not installed."""

    def __init__(self, detail: str = ""):
        super().__init__(INSTALL_HINT + (f" ({detail})" if detail else ""))


def is_event_file(name: str) -> bool:
    """Whether a file name is a TensorBoard event file (the profiler's empty marker is not)."""
    return EVENT_FILE_MARK in name and not name.endswith(".profile-empty")


def require_tensorboard():
    """TensorBoard's event file loader class, or TensorBoardMissing. The one that yields the
    events as written: its subclass EventFileLoader rewrites every old-style scalar into a new
    tensor proto first, which costs more than reading the record."""
    try:
        from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
    except ImportError as e:
        raise TensorBoardMissing(str(e)) from None
    return LegacyEventFileLoader


def run_label(run_dir: str) -> str:
    """The part of an event file's directory (relative to the root, "/"-separated) that names
    its series: without `version_N` parts and a leading `lightning_logs`."""
    parts = [p for p in run_dir.split("/") if p not in ("", ".") and not _VERSION_DIR.fullmatch(p)]
    if parts and parts[0] in _DEFAULT_ROOTS:
        parts = parts[1:]
    return "/".join(parts)


class Columns:
    """The column each (directory, tag) goes to, fixed once given (a column never moves)."""

    def __init__(self):
        self._given: dict[tuple[str, str], str] = {}
        self._owner: dict[str, str] = {}  # column -> the run label that holds it

    def name(self, run_dir: str, tag: str) -> str:
        key = (run_dir, tag)
        column = self._given.get(key)
        if column is not None:
            return column
        label = run_label(run_dir)
        # add_scalars(main, {series: v}) writes tag `main` into a directory `<main>_<series>`
        # (with "/" in main written as "_"): one series of the chart `main`.
        leaf = label.rsplit("/", 1)[-1]
        prefix = tag.replace("/", "_") + "_"
        if leaf.startswith(prefix) and len(leaf) > len(prefix):
            tag = f"{tag}/{leaf[len(prefix):]}"
            label = label[:len(label) - len(leaf)].rstrip("/")
        column = tag
        owner = self._owner.setdefault(column, label)
        if owner != label:  # another directory's series holds the plain tag
            column = f"{label or '.'}/{tag}"
            self._owner.setdefault(column, label)
        self._given[key] = column
        return column


def _float32(number: float) -> float:
    """A float32 as the script wrote it (0.7, not 0.699999988079071): its shortest repr."""
    import numpy as np

    return float(str(np.float32(number)))


def _scalar(value, kinds: dict[str, bool]) -> float | None:
    """The value of a scalar summary value, else None. Old-style values (`simple_value`, what
    SummaryWriter writes) are scalars; a tensor value is one when its tag's metadata says so
    (TF 2 writers put it on a tag's first value only, so it is remembered per tag)."""
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        number = _float32(value.simple_value)
    elif kind == "tensor":
        meta = value.metadata
        if meta.plugin_data.plugin_name or meta.data_class:
            kinds[value.tag] = meta.plugin_data.plugin_name == "scalars" or meta.data_class == _DATA_CLASS_SCALAR
        tensor = value.tensor
        if not kinds.get(value.tag) or tensor.tensor_shape.dim:
            return None
        if len(tensor.float_val) == 1:
            number = _float32(tensor.float_val[0])
        elif len(tensor.double_val) == 1:
            number = float(tensor.double_val[0])
        else:  # packed bytes, halves, integers: TensorBoard's own conversion
            from tensorboard.util import tensor_util

            try:
                array = tensor_util.make_ndarray(tensor)
                if array.size != 1 or array.dtype.kind not in "fiub":
                    return None
                number = float(str(array.reshape(())[()]))
            except (TypeError, ValueError):
                return None
    else:
        return None
    return number if math.isfinite(number) else math.nan


class _File:
    """One event file: its loader (which holds the read position) and what it knows of tags."""

    def __init__(self, loader, run_dir: str):
        self.loader, self.run_dir = loader, run_dir
        self.size = 0
        self.pending = False  # a read stopped in it (MAX_EVENTS_PER_READ): more is there to read
        self.kinds: dict[str, bool] = {}


class ScalarReader:
    """Incremental reader of the event files under `root` (looked for at every read, however deep);
    `read()` returns the scalars new since the last call. Files are read in name order, so the
    column names (see Columns) do not depend on timing within one read."""

    def __init__(self, root: str | os.PathLike, skip=None):
        self.root = Path(root)
        self._skip = skip  # a file name predicate: files not to read (another host's)
        self._files: dict[Path, _File] = {}
        self._columns = Columns()

    def event_files(self) -> list[Path]:
        """The event files under the root now, in name order (none when it does not exist)."""
        found: list[Path] = []
        for top, dirs, names in os.walk(self.root):
            dirs.sort()
            found.extend(Path(top) / n for n in sorted(names)
                         if is_event_file(n) and not (self._skip and self._skip(n)))
        return found

    def read(self) -> list[Row]:
        """Scalars added since the last read, one `(step, {column: value})` per step, by step.
        Raises TensorBoardMissing when there are event files and no tensorboard to read them."""
        paths = self.event_files()
        new = [p for p in paths if p not in self._files]
        if new:
            loader_class = require_tensorboard()
            for path in new:
                run_dir = path.parent.relative_to(self.root).as_posix()
                self._files[path] = _File(loader_class(str(path)), run_dir)
        rows: dict[int, dict[str, float]] = {}
        budget = MAX_EVENTS_PER_READ
        for path, f in self._files.items():
            if budget <= 0:
                break  # the next read goes on (these files' sizes are not recorded yet)
            try:
                size = path.stat().st_size
            except OSError:
                continue  # gone: what it held was read
            if size == f.size and not f.pending:
                continue  # nothing appended: not opened
            f.size, f.pending = size, False
            # The loader's position is past each event it yielded, so stopping early loses none.
            for event in f.loader.Load():
                budget -= 1
                if event.HasField("summary"):
                    for value in event.summary.value:
                        number = _scalar(value, f.kinds)
                        if number is not None:
                            rows.setdefault(int(event.step), {})[self._columns.name(f.run_dir, value.tag)] = number
                if budget <= 0:
                    f.pending = True
                    break
        return sorted(rows.items())

    @property
    def pending(self) -> bool:
        """Whether the last read stopped before the end of what was there (read again now)."""
        return any(f.pending for f in self._files.values())

    def close(self) -> None:
        """Forget the loaders (their buffers); a later read starts the files from the beginning."""
        self._files.clear()
