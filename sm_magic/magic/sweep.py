"""The magics' side of sweeps: `%%sagemaker_train --sweep ...` and `%sagemaker_attach SWEEP`.

IPython glue only (magic.py calls in here, so that file keeps one line per sweep feature); the
checks and the queue are sweep_launch.py's and sweeps.py's, the live widget widgets/sweep_widget.py's.
"""

from __future__ import annotations

from .magics import WIDGET_INTERVAL, _in_kernel
from ..plan.request import LaunchRequest
from ..sweeps.grid import parse_flags, values_text
from ..sweeps.launch import dry_run_sweep, start_sweep
from ..sweeps.sweep import Sweep, find_sweep
from ..plan.train_line import PROG, LineError, MagicFlags


def sweep_cell(shell, request: LaunchRequest, flags: MagicFlags) -> Sweep | None:
    """The cell with --sweep: its grid checked, every point planned, then the Sweep started and
    followed (or, with --dry-run, shown)."""
    grid = parse_flags(flags.sweep)
    if flags.edit:
        raise LineError(f"{PROG}: --edit does not go with --sweep yet (the form launches one job): edit the config "
                        "with `%sagemaker_config --edit [--config FILE]`, then run the sweep with --config FILE")
    if flags.dry_run:
        print(dry_run_sweep(request, grid, max_parallel=flags.sweep_max_parallel, yes=flags.yes))
        return None
    sweep = start_sweep(request, grid, max_parallel=flags.sweep_max_parallel, yes=flags.yes)
    if flags.out:
        shell.user_ns[flags.out] = sweep
    return _show(shell, sweep, flags.wait)


def attached_sweep(shell, name: str, wait: bool) -> Sweep | None:
    """`%sagemaker_attach NAME [--wait]` for a sweep's name: the Sweep, followed; None for a job's name."""
    sweep = find_sweep(name)
    return None if sweep is None else _show(shell, sweep, wait)


def _show(shell, sweep: Sweep, wait: bool) -> Sweep:
    follow(shell, sweep)
    if wait:
        _wait(sweep)
    return sweep.shown_in(shell.execution_count) if _in_kernel(shell) else sweep


def follow(shell, sweep: Sweep) -> None:
    """The one place a sweep is displayed: the sweep widget in a kernel (replaced by its static
    summary once every point has ended), a line per status change in a terminal."""
    if _in_kernel(shell):
        from ..widgets.sweep_widget import show_sweep_widget

        show_sweep_widget(sweep, interval=WIDGET_INTERVAL)
    else:
        from ..widgets.sweep_table import print_sweep

        print(f"Sweep {sweep.name}: {len(sweep.entries)} jobs on the {sweep.backend} backend, at most "
              f"{sweep.max_parallel} at a time (`%sagemaker_attach {sweep.name} --wait` blocks until it ends).")
        print_sweep(sweep, interval=WIDGET_INTERVAL)


def _wait(sweep: Sweep) -> None:
    """Block until every point has ended, then one line per job: its name, values and status."""
    try:
        sweep.wait()
    except KeyboardInterrupt:
        print(f"\nStopped waiting; sweep {sweep.name} goes on. `sm_magic.attach({sweep.name!r}).stop()` ends it.")
        return
    width = max(len(p.name) for p in sweep.entries)
    print(f"Sweep {sweep.name}: {sweep.summary()}")
    for p in sweep.entries:
        note = f"  ({p.error})" if p.error else ""
        print(f"{p.name.ljust(width)}  {values_text(p.values)}  {p.status}{note}")
    names = tuple(p.name for p in sweep.entries)
    for error in sweep.errors:
        if not error.startswith(names):  # a point's own error is on its line
            print(f"! {error}")


def _display_sweep(sweep: Sweep) -> bool:
    """Sweep.display_hook: a sweep as a cell's value in a kernel shows the sweep widget."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None or not _in_kernel(shell):
        return False
    follow(shell, sweep)
    return True


def install() -> None:
    Sweep.display_hook = _display_sweep
