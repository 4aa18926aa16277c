"""Following a live handle (a Job or a Sweep) under a cell, once for both kinds: its widget in a
kernel, its lines in a terminal IPython, or a wait (`--wait`); and what the cell's value shows.
What differs between the kinds is views.py's.

`in_kernel` and `display` are the one place each decision is made, so a test that pretends to
be a kernel (or records what is displayed) patches this module alone.
"""

from __future__ import annotations

from .views import H, view_of


def in_kernel(shell) -> bool:
    """Does `shell` have a frontend that renders widgets and replaces a display in place?

    Args:
        shell: the running InteractiveShell (or None).

    Returns:
        True in a Jupyter kernel, False in a terminal IPython.
    """
    return type(shell).__name__ == "ZMQInteractiveShell"


def display(obj) -> None:
    """Display `obj` (a widget, an image) under the running cell.

    Args:
        obj: anything IPython.display.display takes.
    """
    from IPython.display import display as shown

    shown(obj)


def follow(shell, handle: H) -> None:
    """Follow `handle` without blocking: its live widget in a kernel, its lines in a terminal.

    Args:
        shell: the running InteractiveShell.
        handle: a Job or a Sweep.
    """
    view = view_of(handle)
    if in_kernel(shell):
        view.widget(handle)
    else:
        view.lines(handle)


def show(shell, handle: H, wait: bool = False) -> H:
    """Follow `handle` (or, with `wait`, block until it ends) and make it the cell's value.

    Args:
        shell: the running InteractiveShell.
        handle: a Job or a Sweep.
        wait: block until it ends (a failed Job raises JobFailedError).

    Returns:
        `handle`, marked as shown by this cell's live view where one shows it (so `job = _`
        keeps it without showing it twice).
    """
    if wait:
        view_of(handle).wait(handle, widget=in_kernel(shell))
    else:
        follow(shell, handle)
    if in_kernel(shell):
        handle.shown_in(shell.execution_count)
    return handle


def display_hook(handle: H) -> bool:
    """Job.display_hook and Sweep.display_hook: a handle as a cell's value in a kernel is
    followed with its live widget (its summary once it has ended).

    Args:
        handle: a Job or a Sweep.

    Returns:
        True when it was shown; False outside a kernel (its text repr is shown instead).
    """
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None or not in_kernel(shell):
        return False
    follow(shell, handle)
    return True
