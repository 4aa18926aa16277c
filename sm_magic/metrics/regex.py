"""The engines that run metric definition regexes, so that no log line can stall the kernel.

RE2 runs a definition when it can: linear time, and its search releases the GIL. A regex only
Python's ``re`` reads (backreferences, lookaround, ``\\Z``, verbose mode) runs in a worker process
(`Worker`) with a time budget per line: a C-level ``re`` search cannot be interrupted and holds the
GIL, so in the kernel it would freeze the main thread for as long as it backtracks.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence

import re2

# Definitions RE2 cannot run (Python's re, in the worker process): the CPU time one line may take
# before the definition is disabled, and how long the caller waits for a chunk of lines at most.
_FALLBACK_LINE_SECONDS = 0.1
_FALLBACK_CHUNK_LINES = 1_000
_FALLBACK_CHUNK_CHARS = 256 * 1024
_FALLBACK_CHUNK_SECONDS = 2.0   # plus the per-line allowance below (wall time; a backstop)
_FALLBACK_SECONDS_PER_LINE = 2e-4
_WORKER_START_SECONDS = 10.0


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is ours to report, not RE2's to print on stderr


class Regex:
    """A validated definition regex. ``engine`` is "re2" (``first_group(line)``, linear time, run
    where it is called) or "re" (syntax RE2 lacks: run by :class:`Worker` in another process)."""

    __slots__ = ("pattern", "engine", "first_group")

    def __init__(self, pattern: str, engine: str, first_group: Callable[[str], str | None] | None):
        self.pattern, self.engine, self.first_group = pattern, engine, first_group


def re2_first_group(compiled) -> Callable[[str], str | None]:
    """``line -> group 1 of the first match (None if no match)`` for an RE2 pattern."""
    try:  # the binding's own Match: a third of the public wrapper's cost per line
        match, anchor = compiled._regexp.Match, re2._Anchor.UNANCHORED
    except AttributeError:  # pragma: no cover - another google-re2 layout: the public API
        def searched(line: str) -> str | None:
            m = compiled.search(line)
            return m.group(1) if m else None
        return searched

    def first_group(line: str) -> str | None:
        data = line.encode("utf-8", "surrogatepass")
        start, end = match(anchor, data, 0, len(data))[1]  # spans in bytes; (-1, -1): no match
        return None if start < 0 else data[start:end].decode("utf-8", "replace")
    return first_group


def compile_regex(regex: str) -> tuple[int, Regex]:
    """(number of capture groups, the runnable regex); raises ``re.error`` (or RecursionError,
    OverflowError, ValueError from re's parser limits) when neither engine reads it."""
    try:
        compiled = re2.compile(regex, _RE2_OPTIONS)
    except re2.error:
        return re.compile(regex).groups, Regex(regex, "re", None)
    return compiled.groups, Regex(regex, "re2", re2_first_group(compiled))


# The worker: a bare child Python (-I -S: no site, no sm_magic, starts in ~20 ms) reading one JSON
# request a line, {"r": regex, "l": [lines]}, answering {"m": [[index, group 1], ...], "slow":
# index or null}. A per-line timer of CPU time (SIGVTALRM, so a busy machine's preemption does not
# count; re's matcher checks for signals as it backtracks) stops a line over the budget; where
# there is no such timer (Windows) the kernel's deadline for the chunk kills the worker.
_WORKER_SOURCE = r"""
import json, re, signal, sys
budget = float(sys.argv[1])
class Slow(Exception):
    pass
armed = False
def on_alarm(signum, frame):
    if armed:
        raise Slow
timer = getattr(signal, "setitimer", None)
if timer:
    signal.signal(signal.SIGVTALRM, on_alarm)
compiled = {}
sys.stdout.write("ready\n")
sys.stdout.flush()
for request in sys.stdin:
    request = json.loads(request)
    pattern = compiled.get(request["r"])
    if pattern is None:
        pattern = compiled[request["r"]] = re.compile(request["r"])
    found, slow = [], None
    for i, line in enumerate(request["l"]):
        m = None
        try:
            armed = True
            if timer:
                timer(signal.ITIMER_VIRTUAL, budget)
            m = pattern.search(line)
            armed = False
        except Slow:
            armed = False
            slow = i
        if timer:
            timer(signal.ITIMER_VIRTUAL, 0)
        if slow is not None:
            break
        if m:
            found.append((i, m.group(1)))
    sys.stdout.write(json.dumps({"m": found, "slow": slow}) + "\n")
    sys.stdout.flush()
"""


class Worker:
    """The child process that runs Python-``re`` definitions for this process (one, shared).

    A C-level ``re`` search cannot be interrupted and holds the GIL, so running a backtracking
    regex in the kernel would freeze its main thread for as long as the search takes. Here the
    calling thread waits on a queue (the GIL is free) while another process searches."""

    def __init__(self):
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._replies: queue.Queue | None = None
        self._pid = 0

    def _ensure(self) -> tuple[subprocess.Popen, queue.Queue]:
        if self._proc is not None and self._replies is not None and self._pid == os.getpid() \
                and self._proc.poll() is None:
            return self._proc, self._replies
        if self._pid == os.getpid():
            self._kill()
        self._proc = None  # a forked child does not touch its parent's worker
        if not sys.executable:
            raise OSError("no Python executable to start it with (sys.executable is empty)")
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _WORKER_SOURCE, str(_FALLBACK_LINE_SECONDS)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=os.name == "posix",  # a Ctrl-C in the terminal is not the worker's
        )
        replies: queue.Queue = queue.Queue()

        def read(stream=proc.stdout):
            try:
                for reply in stream:
                    replies.put(reply)
            except Exception:  # pragma: no cover - the pipe broke: same as the worker ending
                pass
            finally:
                replies.put(None)
                stream.close()

        threading.Thread(target=read, name="sm_magic-regex-worker", daemon=True).start()
        self._proc, self._replies, self._pid = proc, replies, os.getpid()
        try:
            ready = replies.get(timeout=_WORKER_START_SECONDS)
        except queue.Empty:
            ready = None
        if ready != b"ready\n":
            self._kill()
            raise OSError("the regex worker process did not start")
        return proc, replies

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and self._pid == os.getpid():
            try:
                proc.kill()
                proc.wait(timeout=5)
            except Exception:
                pass
            try:
                if proc.stdin is not None:
                    proc.stdin.close()  # stdout is the reader thread's to close, at its EOF
            except Exception:
                pass

    def close(self) -> None:
        with self._lock:
            self._kill()

    def search(self, regex: str, lines: Sequence[str]) -> tuple[list[tuple[int, str | None]], str | None]:
        """(index, group 1) of the lines ``regex`` matches, and why the definition must be
        disabled (None while it is fine): a line over the budget, a chunk over its deadline,
        or a worker that cannot run. Matches found before the failure are kept."""
        found: list[tuple[int, str | None]] = []
        with self._lock:
            start = 0
            while start < len(lines):
                end, chars = start, 0
                while end < len(lines) and end - start < _FALLBACK_CHUNK_LINES and chars < _FALLBACK_CHUNK_CHARS:
                    chars += len(lines[end])
                    end += 1
                chunk = lines[start:end]
                deadline = _FALLBACK_CHUNK_SECONDS + len(chunk) * _FALLBACK_SECONDS_PER_LINE
                try:
                    proc, replies = self._ensure()
                    if proc.stdin is None:
                        raise OSError("the worker's stdin is closed")
                    proc.stdin.write(json.dumps({"r": regex, "l": chunk}).encode("ascii") + b"\n")
                    proc.stdin.flush()
                    reply = replies.get(timeout=deadline)
                except queue.Empty:
                    self._kill()  # stuck in one search: only ending the process ends it
                    return found, f"it took over {deadline:.1f} s on {len(chunk)} log lines"
                except (OSError, ValueError) as exc:
                    self._kill()
                    return found, f"the regex worker process could not run it ({exc})"
                if reply is None:
                    self._kill()
                    return found, "the regex worker process ended"
                try:
                    answer = json.loads(reply)
                    found.extend((start + i, group) for i, group in answer["m"])
                    slow = answer["slow"]
                except (ValueError, KeyError, TypeError):
                    self._kill()
                    return found, "the regex worker process answered nonsense"
                if slow is not None:
                    return found, f"it took over {_FALLBACK_LINE_SECONDS:g} s on one log line"
                start = end
        return found, None


worker = Worker()
atexit.register(worker.close)
