"""Why a training job failed, in one line: the user's exception and the script line it came
from (and the rank that raised it), not the launcher's wrapper around it; and, for a failed job's
log tail, the traceback that line comes from (one parser for both, so they always agree).

Standard library only: the bundle carries this file (as sm_magic/container/failure.py) so that its entry
command can write the reason to /opt/ml/output/failure inside SageMaker's container, where it
becomes the job's FailureReason; the local job runner reads the same file, and falls back to
`error_summary` over the log when a host was killed before it could write one.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Optional

TAIL_BYTES = 65536   # how much of the end of a log the reason is looked for in
MAX_REASON = 1024    # SageMaker keeps FailureReason to 1024 characters; ours never pass it either
CUT = " ... "        # where a reason too long to keep whole lost its middle
# CSI sequences (colours, cursor moves, erase: ESC [ params final), OSC strings (ESC ] ... BEL or
# ESC \, e.g. rich's hyperlinks) and the two-character ones. Defined here, where the container's
# standard-library code can use it, and read by terminal.py too.
ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
# Escape sequences, then every other C0 and C1 control character, leave a reason: it is text the
# training script chose, and an escape in it would retitle, clear or redraw the terminal showing it.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_WRAPPER_ERRORS = ("CalledProcessError", "ChildFailedError", "SignalException")
# A merged log's line may carry its host (`algo-2 | `, several hosts) and torch's rank prefix.
_PREFIX = re.compile(r"^(?:(algo-\d+) \| )?(?:\[(?:rank|default)(\d+)\]:\s?)?")
_CHAINED = ("During handling of the above exception", "The above exception was the direct cause")


@dataclass
class _Traceback:
    """One traceback in a log: its line numbers there, from `Traceback (most recent call last):`
    (or the "During handling ..." line that chains it to the one before) to the exception line."""

    at: list[int]
    exc: str
    where: str              # the script line it came from: "train.py, line 5"
    rank: Optional[str]
    then: Optional["_Traceback"] = None  # the traceback chained after this one, if any

    @property
    def wrapper(self) -> bool:
        return any(w in self.exc for w in _WRAPPER_ERRORS)

    def summary(self) -> str:
        text = f"{self.exc} [{self.where}]" if self.where else self.exc
        return f"{text} on rank {self.rank}" if self.rank is not None else text


def _parse(raw_lines: list[str]) -> "tuple[list[str], list[_Traceback]]":
    """The log's lines without their host and rank prefixes, and its tracebacks in log order.
    Each host's and rank's lines are read apart: ranks that print at once do not mix."""
    lines: list[str] = []
    streams: dict[tuple[Optional[str], Optional[str]], list[int]] = {}
    for n, raw in enumerate(raw_lines):
        prefix = _PREFIX.match(raw)
        assert prefix is not None  # every part of the pattern is optional: it matches every line
        lines.append(raw[prefix.end():])
        streams.setdefault((prefix.group(1), prefix.group(2)), []).append(n)
    blocks: list[_Traceback] = []
    for (_, rank), nums in streams.items():
        i = 0
        last: Optional[tuple[_Traceback, int]] = None  # this stream's previous traceback, and its exception line
        while i < len(nums):
            if lines[nums[i]].startswith("Traceback (most recent call last):"):
                start, where = i, ""
                i += 1
                while i < len(nums) and (lines[nums[i]].startswith((" ", "\t")) or not lines[nums[i]].strip()):
                    frame = re.match(r'\s*File "([^"]+)", line (\d+)', lines[nums[i]])
                    if frame and not os.path.basename(frame.group(1)).startswith(("accelerate", "launch")) \
                            and "site-packages" not in frame.group(1) and "/lib/python" not in frame.group(1):
                        where = f"{os.path.basename(frame.group(1))}, line {frame.group(2)}"
                    i += 1
                if i < len(nums):
                    between = [lines[n].strip() for n in nums[last[1] + 1:start]] if last else []
                    chained = last is not None and any(between) and all(b.startswith(_CHAINED) for b in between if b)
                    block = _Traceback(nums[last[1] + 1 if last is not None and chained else start:i + 1],
                                       lines[nums[i]].strip(), where, rank)
                    if last is not None and chained:
                        last[0].then = block
                    blocks.append(block)
                    last = (block, i)
            i += 1
    return lines, sorted(blocks, key=lambda b: b.at[0])


def _user_traceback(blocks: list[_Traceback], reason: Optional[str] = None) -> Optional[_Traceback]:
    """The user's traceback: the first that is not the launcher's wrapper around it (the rank
    that failed first; the others die of losing it), or the one `reason` names."""
    user = [b for b in blocks if not b.wrapper]
    return next((b for b in user if reason and b.summary() in reason), user[0] if user else None)


def error_summary(text: str) -> str:
    """The user's exception from the end of a log: the first traceback that is not the
    launcher's own wrapper, with the script line it came from and the rank that printed it;
    else torch.distributed's "Root Cause" block; else the last lines."""
    lines, blocks = _parse(text.splitlines())
    user = _user_traceback(blocks)
    if user:
        return user.summary()
    root = _elastic_root_cause(lines)
    if root:
        return root
    if blocks:
        return re.sub(r"Command '\[.*?\]'", "the training script", blocks[-1].exc)
    tail = [l.strip() for l in lines if l.strip()][-3:]
    return " | ".join(tail) if tail else "the script printed nothing"


def error_tail(raw_lines: list[str], reason: Optional[str] = None, limit: int = 20) -> list[str]:
    """A failed job's log tail: the user's traceback the reason comes from (the one `reason`
    names, when several ranks or hosts raised), with the exceptions chained to it, as the log
    has it (prefixes kept), its last `limit` lines. Without one, the log's last `limit` lines
    less the launcher's wrapper tracebacks, which only say that the script failed."""
    _, blocks = _parse(raw_lines)
    block = _user_traceback(blocks, reason)
    if block is None:
        wrappers = {n for b in blocks if b.wrapper for n in b.at}
        kept = [line for n, line in enumerate(raw_lines) if n not in wrappers]
    else:
        kept = []
        while block is not None:
            kept += [raw_lines[n] for n in block.at]
            block = block.then
    return kept[-limit:] if limit > 0 else []


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
    fields: dict[str, str] = {}
    for line in lines[start + 1:start + 12]:
        key, _, value = line.strip().partition(":")
        if key.strip() in ("rank", "exitcode", "traceback") and value.strip():
            fields.setdefault(key.strip(), value.strip())
    if not fields:
        return None
    hint = next((l.strip() for l in lines if l.startswith("terminate called")), "")
    text = f"rank {fields.get('rank', '?')} failed, exitcode {fields.get('exitcode', '?')}: {fields.get('traceback', '')}"
    return f"{text} ({hint})" if hint else text


def clean_reason(text: str, limit: int = MAX_REASON) -> str:
    """`text` as a FailureReason is shown: one line (its lines joined with " | "), escape
    sequences and control characters removed, at most `limit` characters. A longer one loses its
    middle, not its end: the start says what failed, the end where (and the exit status)."""
    text = ESCAPE.sub("", text) if "\x1b" in text else text
    text = " | ".join(part for part in (_CONTROL.sub("", line.replace("\t", " ")).strip()
                                        for line in text.splitlines()) if part)
    if len(text) <= limit:
        return text
    keep = limit - len(CUT)
    end = keep // 4
    return text[:keep - end] + CUT + text[len(text) - end:]


def read_failure_file(path: "os.PathLike[str] | str") -> str | None:
    """What a failure file says, if it says anything."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read().strip()
    except OSError:
        return None
    return clean_reason(text) or None


def write_failure_file(path: "os.PathLike[str] | str", reason: str) -> bool:
    """Write `reason` unless the file already says something (the script's own reason wins).
    Returns whether it was written."""
    if read_failure_file(path):
        return False
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(clean_reason(reason) + "\n")
    return True
