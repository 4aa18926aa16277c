"""How a live handle (a Job, a Sweep) shows as a cell's value in a notebook."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

_T = TypeVar("_T", bound="LiveDisplay")


class LiveDisplay:
    """A cell's value that follows live work: shown by the class's `display_hook` (set by the
    magics; it returns False where it cannot show it, and the text repr is shown), and not at all
    in the cell whose live view already shows it, where a repr frozen at launch would stay in the
    saved notebook after the work ended."""

    display_hook: ClassVar[Callable[[Any], bool] | None] = None
    _shown_in: int | None = None  # the cell whose live view already shows this

    def shown_in(self: _T, cell: int | None) -> _T:
        """Say that a live view under cell number `cell` already shows this, so that cell's value
        shows nothing more."""
        self._shown_in = cell
        return self

    def _ipython_display_(self) -> None:
        from IPython import get_ipython
        from IPython.display import display

        shell = get_ipython()
        if shell is not None and self._shown_in is not None and self._shown_in == shell.execution_count:
            return
        hook = type(self).display_hook
        if hook is None or not hook(self):
            display({"text/plain": repr(self)}, raw=True)
