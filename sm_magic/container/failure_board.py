"""The first failure of a multi-host job, told to every host.

When one rank fails, its peers on the other hosts fail next with what losing it caused (gloo's
"Connection closed by peer", an NCCL timeout), and SageMaker shows one host's failure file as the
job's FailureReason: maybe the one that names only the consequence. So the first host's entry
command keeps a board (a TCP listener on the main address, the port after the rendezvous port):
every host's entry command, once its launcher failed, reports its reason there and learns the
first failure that is not such a consequence; each host's failure file then names that first
failure, and a host that failed of it says so.

Standard library only: the bundle carries this file, beside failure.py, for its entry command.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from typing import Optional

# What a rank prints when another rank (on this host or another) went away first.
_CONSEQUENCE = re.compile(
    r"Connection (?:closed|reset|refused) by peer|Broken pipe|ProcessGroup(?:Gloo|NCCL)|NCCL (?:error|communicator)"
    r"|Watchdog caught collective operation timeout|Socket Timeout|DistBackendError|DistNetworkError"
    r"|DistStoreError|SIGTERM|SignalException|killed by signal")
# How long a host that failed of a consequence waits for the first failure's report, and how long
# the board outlives its own host's failure for the others' reports. The failing host reports once
# its launcher has ended, which can take torch's elastic agent 30 s (it TERMs the host's other
# ranks, then KILLs them): a wait shorter than that named only the consequence on a busy machine.
WAIT_SECONDS = 60.0
LINGER_SECONDS = 60.0
_IO_SECONDS = 2.0


def consequence(reason: str) -> bool:
    """Whether a failure reason reads as caused by another rank's failure."""
    return bool(_CONSEQUENCE.search(reason))


class Board:
    """The main host's board: reports in, the first failure out."""

    def __init__(self, job: str, hosts: list[str], port: int):
        self.job, self.hosts = job, list(hosts)
        self.reports: dict[str, dict] = {}
        self.first: Optional[dict] = None
        self.reported_here = False  # this host failed on its own: the others may fail of it next
        self._lock = threading.Condition()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("", port))  # an OSError here: the caller goes on without a board
        self._sock.listen(16)
        threading.Thread(target=self._serve, daemon=True).start()

    def record(self, report: dict) -> Optional[dict]:
        """Take a host's report; the first failure so far (a consequence never is one)."""
        with self._lock:
            self.reports.setdefault(report["host"], report)
            if self.first is None and not report.get("consequence"):
                self.first = report
            self._lock.notify_all()
            return self.first

    def wait_first(self, timeout: float) -> Optional[dict]:
        with self._lock:
            self._lock.wait_for(lambda: self.first is not None, timeout)
            return self.first

    def linger(self, timeout: float = LINGER_SECONDS) -> None:
        """Stay up until every host reported, or `timeout`."""
        with self._lock:
            self._lock.wait_for(lambda: len(self.reports) >= len(self.hosts), timeout)

    def close(self) -> None:
        self._sock.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(_IO_SECONDS)
            try:
                message = json.loads(conn.makefile("r", encoding="utf-8").readline())
                if message.get("job") != self.job:
                    return  # another job's host, on a port this one took over
                first = self.record(message["report"]) if message.get("report") else self.first
                conn.sendall((json.dumps({"first": first}) + "\n").encode())
            except (OSError, ValueError, KeyError, TypeError):
                pass


def tell(addr: str, port: int, job: str, report: Optional[dict]) -> Optional[dict]:
    """Report to (or, with None, ask) the board at addr:port; the first failure it knows."""
    try:
        with socket.create_connection((addr, port), timeout=_IO_SECONDS) as conn:
            conn.sendall((json.dumps({"job": job, "report": report}) + "\n").encode())
            answer = json.loads(conn.makefile("r", encoding="utf-8").readline() or "{}")
            return answer.get("first")
    except (OSError, ValueError):
        return None


def first_failure(report: dict, board: Optional[Board], addr: str, port: int, job: str,
                  wait: float = WAIT_SECONDS) -> Optional[dict]:
    """Report this host's failure and return the job's first failure: at once for a failure of
    its own, after up to `wait` seconds for one that reads as a consequence of another's."""
    deadline = time.monotonic() + (wait if report.get("consequence") else 0)
    first = board.record(report) if board is not None else tell(addr, port, job, report)
    while first is None and time.monotonic() < deadline:
        if board is not None:
            first = board.wait_first(min(0.5, max(0.0, deadline - time.monotonic())))
        else:
            time.sleep(0.5)
            first = tell(addr, port, job, None)
    return first


def reason_with_first(reason: str, host: str, first: Optional[dict]) -> str:
    """This host's failure reason, led by the job's first failure when another host had it."""
    if not first or first.get("host") == host:
        return reason
    if consequence(reason):
        return f"{first['reason']} (on {first['host']}, the first failure; {host} then failed of it: {reason})"
    return f"{reason} (after the first failure, on {first['host']}: {first['reason']})"
