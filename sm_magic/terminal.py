"""A training log as a terminal shows it.

Progress bars (tqdm, Lightning, Hugging Face Trainer) redraw a line with carriage returns and move
the cursor between bars with escape sequences; a log file or CloudWatch keeps every redraw. The
backends split logs on "\\n" only, so a line may hold many "\\r"-separated redraws and escapes:
`redraws` gives the states a line went through, `strip_escapes` removes colours and cursor codes.
"""

from __future__ import annotations

import re

# CSI sequences (colours, cursor moves, erase: ESC [ params final) and the two-character ones.
_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")


def strip_escapes(text: str) -> str:
    """`text` without ANSI colour, cursor-movement and erase sequences."""
    return _ESCAPE.sub("", text) if "\x1b" in text else text


def redraws(line: str) -> list[str]:
    """The visible states of a line redrawn with carriage returns, oldest first, escapes removed
    and empty redraws dropped: the last is what a terminal shows at the end."""
    line = strip_escapes(line)
    if "\r" not in line:
        return [line]
    return [part for part in line.split("\r") if part.strip()] or [""]
