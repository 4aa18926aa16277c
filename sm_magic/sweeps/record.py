"""A sweep's own record, beside its jobs' in the registry's SQLite file: who launches its points,
whether it was stopped, which point is being launched, and whether its launcher is done.

A sweep's queue lives in the process that started it (a kernel, a script), but its stop may be
given anywhere: that kernel, another, `sm-magic stop` in a shell. So the stop is written here in
a transaction, and the launcher claims each point in a transaction that reads it first: once the
stop is recorded no point is claimed, so none starts. A point claimed just before (being launched
as the stop comes) is stopped by its launcher as soon as it has started.

Whoever looks from elsewhere tells from the launcher's identity (pid, start time, boot: a pid
alone may be reused) whether the points still queued may start: a launcher that ended (`ended`)
or died (a killed kernel) leaves them unlaunched for good.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..backends.local import procs as local_procs
from ..jobs.registry import JobRecord, Registry, storable
from ..plan.checks import LaunchError

_TABLE = """
CREATE TABLE IF NOT EXISTS sweeps (
    name          TEXT PRIMARY KEY,
    created       REAL NOT NULL,
    backend       TEXT NOT NULL DEFAULT '',
    size          INTEGER NOT NULL,
    max_parallel  INTEGER NOT NULL DEFAULT 1,
    grid          TEXT NOT NULL DEFAULT '[]',
    launcher      TEXT NOT NULL DEFAULT '{}',
    claimed       INTEGER NOT NULL DEFAULT 0,
    launching     INTEGER,
    stopped       REAL,
    ended         REAL,
    failed        TEXT NOT NULL DEFAULT '{}'
)
"""
_COLUMNS = ("name", "created", "backend", "size", "max_parallel", "grid", "launcher", "claimed", "launching",
            "stopped", "ended", "failed")

ALIVE, ENDED, GONE = "alive", "ended", "gone"  # what became of a sweep's launcher

_made: set[str] = set()  # registry files whose table this process has made sure of


@dataclass
class SweepRow:
    """A sweep as recorded. `claimed`: the highest point index ever claimed (points are claimed
    in order, so no later one has a job); `launching`: the point claimed and being launched now."""

    name: str
    created: float
    backend: str
    size: int
    max_parallel: int
    grid: list
    launcher: dict
    claimed: int = 0
    launching: int | None = None
    stopped: float | None = None
    ended: float | None = None
    failed: dict[int, str] = field(default_factory=dict)

    def launcher_state(self) -> str:
        """ENDED (it has nothing left to launch), ALIVE (it may still launch), or GONE (it died)."""
        if self.ended is not None:
            return ENDED
        return ALIVE if launcher_alive(self.launcher) else GONE

    def launcher_text(self) -> str:
        pid = self.launcher.get("pid")
        host = self.launcher.get("host")
        where = f" on {host}" if host and host != socket.gethostname() else ""
        return f"pid {pid}{where}" if pid else "unknown"


def identity() -> dict:
    """This process, as a sweep's launcher: pid, start time and boot (local_procs.identity), host."""
    me = local_procs.identity(os.getpid()) or {"pid": os.getpid()}
    return {**me, "host": socket.gethostname()}


def launcher_alive(launcher: dict) -> bool:
    """Is the recorded launcher still running? One on another host cannot be seen from here: it
    counts as alive (a wait then ends at its timeout, not at a guess)."""
    if launcher.get("host") not in (None, socket.gethostname()):
        return True
    if launcher.get("start_time") is not None:
        return local_procs.alive(launcher)
    pid = launcher.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # no /proc (not Linux): the pid alone is all there is
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _connect(registry: Registry):
    """The registry's own connection (its busy timeout, its errors as RegistryError), with the
    table made once per file and process."""
    with registry._connect() as con:
        if str(registry.path) not in _made:
            con.execute(_TABLE)
            _made.add(str(registry.path))
        yield con


def _row(values) -> SweepRow:
    row = dict(zip(_COLUMNS, values))
    for name, empty in (("grid", []), ("launcher", {}), ("failed", {})):
        try:
            row[name] = json.loads(row[name])
        except (TypeError, ValueError, RecursionError):
            row[name] = empty
        if not isinstance(row[name], type(empty)):
            row[name] = empty
    row["failed"] = {int(k): str(v) for k, v in row["failed"].items() if str(k).isdigit()}
    return SweepRow(**row)


def _select(con, name: str) -> SweepRow | None:
    found = con.execute(f"SELECT {', '.join(_COLUMNS)} FROM sweeps WHERE name = ?", (name,)).fetchone()
    return None if found is None else _row(found)


def begin(registry: Registry, name: str, backend: str, grid: list, size: int, max_parallel: int) -> None:
    """Record a sweep this process launches; LaunchError when a sweep of that name is recorded."""
    with _connect(registry) as con:
        try:
            con.execute("INSERT INTO sweeps (name, created, backend, size, max_parallel, grid, launcher) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (name, time.time(), backend, size, max_parallel, json.dumps(grid), json.dumps(identity())))
        except sqlite3.IntegrityError:
            raise LaunchError(f"a sweep named {name} is already in the registry ({registry.path}): choose another "
                              "--name") from None


def forget(registry: Registry, name: str) -> None:
    """Remove the record of a sweep that started nothing (its first launch was refused)."""
    with _connect(registry) as con:
        con.execute("DELETE FROM sweeps WHERE name = ?", (name,))


def read(registry: Registry, name: str) -> SweepRow | None:
    if not storable(name):  # undecodable bytes (argv's lone surrogates) name no sweep
        return None
    with _connect(registry) as con:
        return _select(con, name)


def claim(registry: Registry, name: str, index: int) -> bool:
    """The launcher's claim on point `index`, before it launches it: False (nothing claimed)
    once the sweep's stop is recorded. Read and written under the write lock, so a stop
    recorded by another process comes either before (refused) or after (its launch is seen)."""
    with _connect(registry) as con:
        con.execute("BEGIN IMMEDIATE")
        row = _select(con, name)
        if row is None:
            return True  # not recorded (removed by hand): nothing here can refuse it
        if row.stopped is not None:
            return False
        con.execute("UPDATE sweeps SET launching = ?, claimed = MAX(claimed, ?) WHERE name = ?", (index, index, name))
        return True


def launched(registry: Registry, name: str, index: int, error: str | None = None) -> bool:
    """Point `index`'s launch is over (`error`: why it did not start). True when the sweep's stop
    is recorded by now: the job just started is to be stopped."""
    with _connect(registry) as con:
        con.execute("BEGIN IMMEDIATE")
        row = _select(con, name)
        if row is None:
            return False
        if error is not None:
            row.failed[index] = error
        con.execute("UPDATE sweeps SET failed = ?, launching = CASE WHEN launching = ? THEN NULL ELSE launching END "
                    "WHERE name = ?", (json.dumps(row.failed), index, name))
        return row.stopped is not None


def stop(registry: Registry, name: str) -> SweepRow | None:
    """Record the sweep's stop (the first one's time is kept); the row as it is now, None if none."""
    with _connect(registry) as con:
        con.execute("BEGIN IMMEDIATE")
        con.execute("UPDATE sweeps SET stopped = COALESCE(stopped, ?) WHERE name = ?", (time.time(), name))
        return _select(con, name)


def end(registry: Registry, name: str) -> None:
    """The launcher has nothing left to launch: the points without a job never will have one."""
    with _connect(registry) as con:
        con.execute("UPDATE sweeps SET ended = COALESCE(ended, ?), launching = NULL WHERE name = ?", (time.time(), name))


def sweep_info(extra: dict) -> dict:
    """The sweep a job record belongs to (name, index, values), from its `extra`; {} for none."""
    info = extra.get("sweep")
    return info if isinstance(info, dict) else {}


def sweep_records(name: str, registry: Registry) -> list[JobRecord]:
    """The registry's records of the jobs of the sweep called `name`, in the grid's order."""
    records = [r for r in registry.list() if sweep_info(r.extra).get("name") == name]
    return sorted(records, key=lambda r: sweep_info(r.extra).get("index") or 0)


def sweep_records_named(name: str, registry: Registry) -> list[str]:
    """The names of the jobs of the sweep called `name`, in the grid's order."""
    return [r.name for r in sweep_records(name, registry)]
