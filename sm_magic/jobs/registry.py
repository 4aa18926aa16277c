"""A persisted index of the training jobs sm_magic started (one SQLite file).

Several notebook kernels, and background threads inside each, may use the same
file at once: every call opens its own short-lived connection (so no connection
is ever shared between threads), the journal is WAL so readers do not block the
writer, and a busy timeout makes writers queue instead of failing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import RuntimeProblem

__all__ = ["JobRecord", "Registry", "RegistryError", "ENV_VAR"]

ENV_VAR = "SM_MAGIC_REGISTRY"
_BUSY_TIMEOUT_S = 10.0
# How long a new job's registration waits for a registry another process holds locked; the
# job is started only once it is registered, so waiting longer costs nothing but time.
ADD_WAIT_S = 60.0
# Bump together with a migration in _create_schema when the table changes.
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    name            TEXT PRIMARY KEY,
    backend         TEXT NOT NULL,
    created         REAL NOT NULL,
    status          TEXT NOT NULL,
    instance_type   TEXT NOT NULL DEFAULT '',
    instance_count  INTEGER NOT NULL DEFAULT 1,
    location        TEXT NOT NULL DEFAULT '',
    hyperparameters TEXT NOT NULL DEFAULT '{}',
    extra           TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created);
CREATE TABLE IF NOT EXISTS name_stamps (
    prefix  TEXT PRIMARY KEY,
    last    INTEGER NOT NULL
);
"""
# name_stamps is new beside jobs, not a change to it: an older sm_magic reads the file as before.
_MAX_ROWS = 2**63 - 1  # SQLite's largest integer: a limit past it is no limit
# name identifies the row and backend/created describe its origin; the rest evolves.
_UPDATABLE = ("status", "instance_type", "instance_count", "location", "hyperparameters", "extra")
_JSON_FIELDS = ("hyperparameters", "extra")
_TERMINAL = ["Completed", "Failed", "Stopped"]  # a job's status never leaves these


@dataclass
class JobRecord:
    """One training job as the registry stores it."""

    name: str
    backend: str  # "local", "sagemaker", ...
    created: float  # unix time
    status: str = "InProgress"  # SageMaker's TrainingJobStatus words
    instance_type: str = ""
    instance_count: int = 1
    location: str = ""  # local job directory (absolute path) or a job ARN
    hyperparameters: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


_COLUMNS = tuple(f.name for f in fields(JobRecord))


class RegistryError(RuntimeProblem, RuntimeError):
    """The registry file cannot be used; the message names the path and what to do."""

    locked = False  # True when another process held it locked past the busy timeout


def _default_path() -> Path:
    configured = os.environ.get(ENV_VAR, "").strip()
    if configured:
        return Path(configured)
    return Path.home() / ".sm_magic" / "registry.sqlite3"


def storable(name) -> bool:
    """Whether ``name`` is text SQLite can hold: a name with undecodable bytes (argv's lone
    surrogates) names no job."""
    if not isinstance(name, str):
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _to_json(value: dict, what: str) -> str:
    if not isinstance(value, dict):
        raise TypeError(f"{what} must be a dict, got {type(value).__name__}")
    # default=str: a Path or datetime in extra should not make recording a job fail.
    return json.dumps(value, default=str, sort_keys=True)


class Registry:
    """The job index stored at ``path`` (default: ``$SM_MAGIC_REGISTRY``, else
    ``~/.sm_magic/registry.sqlite3``). Creating it creates the file if needed and
    raises :class:`RegistryError` at once if the file is unusable."""

    def __init__(self, path=None):
        self.path: Path = Path(path if path is not None else _default_path()).expanduser().absolute()
        if self.path.is_dir():
            raise RegistryError(
                f"the job registry path {self.path} is a directory; point {ENV_VAR} at a file path"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._unwritable(exc) from None
        self._create_schema()

    def _unwritable(self, exc) -> RegistryError:
        return RegistryError(
            f"cannot write the job registry at {self.path} ({exc}); "
            f"set {ENV_VAR} to a writable file path"
        )

    def _translate(self, exc: sqlite3.Error) -> RegistryError:
        code = getattr(exc, "sqlite_errorname", "")  # Python 3.11+
        text = str(exc)
        if code in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or "not a database" in text or "malformed" in text:
            return RegistryError(
                f"{self.path} is not a usable sm_magic job registry ({text}). Move it aside "
                f"(e.g. rename it to {self.path.name}.broken) and a new one will be created; "
                f"sm_magic never deletes it for you"
            )
        if code.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM")) or (
            "unable to open" in text or "readonly" in text
        ):
            return self._unwritable(exc)
        if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
            error = RegistryError(
                f"the job registry {self.path} stayed locked by another process for "
                f"{_BUSY_TIMEOUT_S:g} s ({text}); try again"
            )
            error.locked = True
            return error
        return RegistryError(f"job registry {self.path}: {text}")

    @contextmanager
    def _connect(self, timeout: float = _BUSY_TIMEOUT_S):
        """A fresh connection for one call: committed on success, always closed."""
        try:
            con = sqlite3.connect(self.path, timeout=timeout)
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
        try:
            with con:  # commits, or rolls back if the block raised
                yield con
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
        finally:
            con.close()

    def _create_schema(self) -> None:
        with self._connect() as con:
            self._enable_wal(con)
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise RegistryError(
                    f"the job registry {self.path} was written by a newer sm_magic "
                    f"(schema {version}); upgrade sm_magic or set {ENV_VAR} to another file"
                )
            con.executescript(_SCHEMA)
            if version < _SCHEMA_VERSION:
                con.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    @staticmethod
    def _enable_wal(con) -> None:
        """WAL mode is persistent per file. Switching to it needs an exclusive lock, and SQLite
        answers "locked" at once rather than waiting on the busy timeout, so it is retried here:
        several kernels may open a new registry at the same moment."""
        deadline = time.monotonic() + _BUSY_TIMEOUT_S
        while True:
            try:
                if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    con.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def add(self, record: JobRecord, wait: float | None = None, on_wait=None) -> None:
        """Store a new job; :class:`RegistryError` if a job with that name exists, or if another
        process keeps the registry locked for `wait` seconds (`on_wait(text)` hears once that
        it is waiting; default: ADD_WAIT_S)."""
        wait = ADD_WAIT_S if wait is None else wait
        deadline = time.monotonic() + wait
        told = False
        while True:
            # A short first try, so that a wait is reported as soon as it begins.
            budget = 0.5 if not told else min(_BUSY_TIMEOUT_S, deadline - time.monotonic())
            try:
                return self._insert(record, max(0.05, budget))
            except RegistryError as exc:
                if not exc.locked or time.monotonic() >= deadline:
                    if exc.locked:
                        raise RegistryError(
                            f"the job registry {self.path} stayed locked by another process for "
                            f"{wait:g} s. Find the process holding it "
                            f"(e.g. `fuser {self.path}`) or set {ENV_VAR} to another file, "
                            "then run again") from None
                    raise
                if on_wait is not None and not told:
                    on_wait(f"the job registry {self.path} is locked by another process; "
                            f"waiting up to {wait:g} s for it")
                told = True

    def remove(self, name: str) -> None:
        """Forget job ``name`` (a launch that failed before its job started)."""
        with self._connect() as con:
            con.execute("DELETE FROM jobs WHERE name = ?", (name,))

    def _insert(self, record: JobRecord, timeout: float) -> None:
        row = asdict(record)
        for name in _JSON_FIELDS:
            row[name] = _to_json(row[name], name)
        placeholders = ", ".join("?" for _ in _COLUMNS)
        with self._connect(timeout) as con:
            try:
                con.execute(
                    f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({placeholders})",
                    [row[c] for c in _COLUMNS],
                )
            except sqlite3.IntegrityError:
                raise RegistryError(
                    f"a job named {record.name!r} is already in the registry {self.path}; "
                    f"choose another job name"
                ) from None

    def next_stamp(self, prefix: str, at_least: int) -> int:
        """A number for job names starting with ``prefix``: ``at_least``, or one more than the
        last given out for it if that is larger. Read and written in one transaction, so threads
        and processes that name jobs at the same moment (a millisecond stamp) get different ones."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")  # the write lock first: no other writer between read and write
            row = con.execute("SELECT last FROM name_stamps WHERE prefix = ?", (prefix,)).fetchone()
            stamp = max(at_least, row[0] + 1) if row else at_least
            con.execute("INSERT INTO name_stamps (prefix, last) VALUES (?, ?) "
                        "ON CONFLICT (prefix) DO UPDATE SET last = excluded.last", (prefix, stamp))
        return stamp

    def get(self, name: str) -> JobRecord | None:
        """The job called ``name``, or None if there is none."""
        if not storable(name):
            return None
        with self._connect() as con:
            row = con.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE name = ?", (name,)
            ).fetchone()
        return None if row is None else self._record(row)

    def list(self, limit: int | None = None) -> list[JobRecord]:
        """Jobs newest first (by ``created``; ties: most recently added first),
        at most ``limit`` of them when given."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit}")
        sql = f"SELECT {', '.join(_COLUMNS)} FROM jobs ORDER BY created DESC, rowid DESC"
        params: tuple = ()
        if limit is not None and limit < _MAX_ROWS:
            sql += " LIMIT ?"
            params = (limit,)
        with self._connect() as con:
            rows = con.execute(sql, params).fetchall()
        return [self._record(row) for row in rows]

    def update(self, name: str, **fields) -> None:
        """Replace the given fields of job ``name`` (status, instance_type,
        instance_count, location, hyperparameters, extra; dicts are replaced whole).
        ValueError for any other field; :class:`RegistryError` if there is no such job."""
        unknown = sorted(set(fields) - set(_UPDATABLE))
        if unknown:
            raise ValueError(
                f"cannot update {', '.join(unknown)}; updatable fields: {', '.join(_UPDATABLE)}"
            )
        if not fields:
            return
        values = {
            k: _to_json(v, k) if k in _JSON_FIELDS else v for k, v in fields.items()
        }
        assignments = ", ".join(f"{k} = ?" for k in values)
        where, params = "name = ?", [*values.values(), name]
        if "status" in values and values["status"] not in _TERMINAL:
            # A handle that read the job before it ended must not undo another's "Completed".
            where += f" AND status NOT IN ({', '.join('?' * len(_TERMINAL))})"
            params += _TERMINAL
        with self._connect() as con:
            cursor = con.execute(f"UPDATE jobs SET {assignments} WHERE {where}", params)
            if cursor.rowcount == 0 and con.execute("SELECT 1 FROM jobs WHERE name = ?", (name,)).fetchone() is None:
                raise RegistryError(f"no job named {name!r} in the registry {self.path}")

    def merge_extra(self, name: str, values: dict) -> None:
        """Set keys of job ``name``'s ``extra`` and keep the others: read and written in one
        transaction, so a writer in another kernel loses nothing. An ``extra`` that cannot be
        read is left as it is (its job is listed with a note); :class:`RegistryError` if there
        is no such job."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")  # the write lock first: no other writer between read and write
            row = con.execute("SELECT extra FROM jobs WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise RegistryError(f"no job named {name!r} in the registry {self.path}")
            try:
                extra = json.loads(row[0])
            except (TypeError, ValueError, RecursionError):
                return
            if isinstance(extra, dict):
                extra.update(values)
                con.execute("UPDATE jobs SET extra = ? WHERE name = ?", (_to_json(extra, "extra"), name))

    def _record(self, row) -> JobRecord:
        """A row as a JobRecord; a column that cannot be read is left empty and named in
        ``extra["unreadable"]``, so one damaged row never hides the others."""
        values = dict(zip(_COLUMNS, row))
        problems = []
        for name in _JSON_FIELDS:
            try:
                values[name] = json.loads(values[name])
                if not isinstance(values[name], dict):
                    raise ValueError(f"a JSON {type(values[name]).__name__}, not an object")
            except (TypeError, ValueError, RecursionError) as exc:
                values[name] = {}
                problems.append(f"its {name} column is unreadable ({exc})")
        if problems:
            values["extra"]["unreadable"] = "; ".join(problems)
        return JobRecord(**values)
