"""A local job's processes: found by the job's token, proven before they are signalled.

Every process a local job starts carries `SM_MAGIC_JOB_TOKEN=<128-bit hex>` in its environment:
the runner sets it in each host's environment, and every process the entry command, accelerate,
torch's elastic agent, the ranks and whatever they start (daemons in sessions of their own
included) inherits it. /proc/<pid>/environ shows the environment a process was started with; a
scan of /proc for the token finds the job's processes wherever they moved (another session,
another process group, reparented to init), so the job can end all of them. The runner itself
does not carry its job's token.

No signal goes to a number alone. A process is pinned first (`os.pidfd_open`), then proven to be
the one meant (its token, or its start time and the boot it started in), then signalled through
the pin (`signal.pidfd_send_signal`): a pid reused after the reads fails the send instead of
hitting a stranger. Where pidfds are missing (a kernel before 5.3), `os.kill` follows the proof.

Linux only (reads /proc); stdlib only: the job runner imports it.
"""

from __future__ import annotations

import os
import secrets
import signal
import time

TOKEN_VAR = "SM_MAGIC_JOB_TOKEN"
_HAS_PIDFD = hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal")


def new_token() -> str:
    return secrets.token_hex(16)


def boot_id() -> str:
    """This boot's id: a start time is only comparable within one boot."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on; None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot."""
    fields = proc_stat(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


def identity(pid: int) -> dict | None:
    """What proves later that a pid is still this process: pid, start time, boot id."""
    started = start_time(pid)
    return None if started is None else {"pid": pid, "start_time": started, "boot_id": boot_id()}


def _running(pid: int) -> bool:
    fields = proc_stat(pid)
    return fields is not None and bool(fields) and fields[0] not in ("Z", "X")


def _environ_has(pid: int, entry: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return entry in f.read().split(b"\0")
    except OSError:  # gone, a kernel thread, or not ours to read
        return False


def _is(pid: int, token: str | None, ident: dict | None) -> bool:
    """The proof: `pid` runs (a zombie does not), and carries `token` / matches `ident`."""
    if ident is not None:
        if ident.get("pid") != pid or not ident.get("boot_id") or ident.get("boot_id") != boot_id():
            return False
        if start_time(pid) != ident.get("start_time"):
            return False
    if token is not None and not _environ_has(pid, f"{TOKEN_VAR}={token}".encode()):
        return False
    return _running(pid)


def proven_signal(pid: int, sig: int, *, token: str | None = None, ident: dict | None = None) -> bool:
    """Send `sig` to `pid` only if it is proven to be the process meant: it carries `token`
    and/or matches `ident` (pid, start time, boot id). True when the signal was sent."""
    if token is None and ident is None:
        raise ValueError("a signal needs a proof: a token or an identity")
    if pid <= 0 or pid == os.getpid():
        return False
    fd = None
    if _HAS_PIDFD:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return False
        except OSError:
            fd = None  # no pidfd support after all: os.kill after the proof
    try:
        if not _is(pid, token, ident):
            return False
        # While the pinned process lives its pid cannot be reused, so what was read above was
        # about it; had it ended since, the send below fails instead of reaching another.
        if fd is not None:
            signal.pidfd_send_signal(fd, sig)
        else:
            os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
    finally:
        if fd is not None:
            os.close(fd)


def alive(ident: dict | None) -> bool:
    """True while the process `ident` recorded runs (not a zombie, not a reused pid)."""
    if not ident or not isinstance(ident.get("pid"), int):
        return False
    return _is(ident["pid"], None, ident)


def token_pids(token: str) -> list[int]:
    """Every running (non-zombie) process that carries `token`, but this one."""
    entry = f"{TOKEN_VAR}={token}".encode()
    me = os.getpid()
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        if _environ_has(pid, entry) and _running(pid):
            found.append(pid)
    return found


def signal_token(token: str, sig: int = signal.SIGKILL) -> list[int]:
    """`sig` to every running process that carries `token`, each proven through a pidfd.
    Returns the pids signalled: an empty list means none was left."""
    return [pid for pid in token_pids(token) if proven_signal(pid, sig, token=token)]


def end_token_processes(token: str, timeout: float = 30.0, poll: float = 0.05, reap=None) -> list[int]:
    """SIGKILL every process with `token` until a scan of /proc finds none running (zombies
    are ended), or `timeout` passes; `reap()` is called between scans (a parent reaps its own
    children there). Returns the pids still running at the timeout (normally none)."""
    deadline = time.monotonic() + timeout
    while True:
        signalled = signal_token(token, signal.SIGKILL)
        if reap is not None:
            reap()
        if not signalled:
            return []
        if time.monotonic() >= deadline:
            return token_pids(token)
        time.sleep(poll)
