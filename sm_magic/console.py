"""Lines about slow work before a job starts (an upload, a download, a cost), printed where the
user launched it: the cell's output, or the shell of `sm-magic run`. Standard library only, so every
layer may print one."""

from __future__ import annotations


def progress(text: str) -> None:
    """Print one `sm_magic: ...` line and flush it, so it shows before the slow work it announces.

    Args:
        text: the line, without the `sm_magic:` prefix.
    """
    print(f"sm_magic: {text}", flush=True)
