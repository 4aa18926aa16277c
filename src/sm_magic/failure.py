"""Why a training job failed, in one line: the user's exception and the script line it came
from (and the rank that raised it), not the launcher's wrapper around it.

Standard library only: the bundle carries this file (as sm_magic/failure.py) so that its entry
command can write the reason to /opt/ml/output/failure inside SageMaker's container, where it
becomes the job's FailureReason; the local job runner reads the same file, and falls back to
`error_summary` over the log when a host was killed before it could write one.
"""

from __future__ import annotations

import os
import re

TAIL_BYTES = 65536   # how much of the end of a log the reason is looked for in
MAX_REASON = 1024    # SageMaker keeps FailureReason to 1024 characters
_WRAPPER_ERRORS = ("CalledProcessError", "ChildFailedError", "SignalException")
_RANK_PREFIX = re.compile(r"^\[(?:rank|default)(\d+)\]:\s?")


def error_summary(text: str) -> str:
    """The user's exception from the end of a log: the first traceback that is not the
    launcher's own wrapper, with the script line it came from and the rank that printed it;
    else torch.distributed's "Root Cause" block; else the last lines."""
    lines, ranks = [], []
    for raw in text.splitlines():
        m = _RANK_PREFIX.match(raw)
        ranks.append(m.group(1) if m else None)
        lines.append(raw[m.end():] if m else raw)
    blocks = []  # (exception line, script location, rank)
    i = 0
    while i < len(lines):
        if lines[i].startswith("Traceback (most recent call last):"):
            rank, where = ranks[i], ""
            i += 1
            while i < len(lines) and (lines[i].startswith((" ", "\t")) or not lines[i].strip()):
                m = re.match(r'\s*File "([^"]+)", line (\d+)', lines[i])
                if m and not os.path.basename(m.group(1)).startswith(("accelerate", "launch")) \
                        and "site-packages" not in m.group(1) and "/lib/python" not in m.group(1):
                    where = f"{os.path.basename(m.group(1))}, line {m.group(2)}"
                i += 1
            if i < len(lines):
                blocks.append((lines[i].strip(), where, rank))
        i += 1
    user = [b for b in blocks if not any(w in b[0] for w in _WRAPPER_ERRORS)]
    if user:
        exc, where, rank = user[0]
        text = f"{exc} [{where}]" if where else exc
        return f"{text} on rank {rank}" if rank is not None else text
    root = _elastic_root_cause(lines)
    if root:
        return root
    if blocks:
        return re.sub(r"Command '\[.*?\]'", "the training script", blocks[-1][0])
    tail = [l.strip() for l in lines if l.strip()][-3:]
    return " | ".join(tail) if tail else "the script printed nothing"


def log_summary(path: "os.PathLike[str] | str") -> str:
    """`error_summary` of the end of a log file."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - TAIL_BYTES))
            return error_summary(f.read().decode("utf-8", "replace"))
    except FileNotFoundError:
        return "the job wrote no log"


def _elastic_root_cause(lines: list[str]) -> str | None:
    """torch.distributed's "Root Cause" block: which rank died and how, when it left no traceback."""
    try:
        start = max(i for i, l in enumerate(lines) if l.startswith("Root Cause (first observed failure)"))
    except ValueError:
        return None
    fields = {}
    for line in lines[start + 1:start + 12]:
        key, _, value = line.strip().partition(":")
        if key.strip() in ("rank", "exitcode", "traceback") and value.strip():
            fields.setdefault(key.strip(), value.strip())
    if not fields:
        return None
    hint = next((l.strip() for l in lines if l.startswith("terminate called")), "")
    text = f"rank {fields.get('rank', '?')} failed, exitcode {fields.get('exitcode', '?')}: {fields.get('traceback', '')}"
    return f"{text} ({hint})" if hint else text


def read_failure_file(path: "os.PathLike[str] | str") -> str | None:
    """What a failure file says, if it says anything."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read().strip()
    except OSError:
        return None
    return text[:MAX_REASON] or None


def write_failure_file(path: "os.PathLike[str] | str", reason: str) -> bool:
    """Write `reason` unless the file already says something (the script's own reason wins).
    Returns whether it was written."""
    if read_failure_file(path):
        return False
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(reason[:MAX_REASON] + "\n")
    return True
