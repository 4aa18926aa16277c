"""`%%sagemaker_train --sweep ...`: the line's grid checked, every point planned, then the Sweep
started and followed as any live handle is (follow.py), or, with --dry-run, its plan printed.

The checks and the queue are sweeps/'s; the live widget widgets/sweep_widget.py's.
"""

from __future__ import annotations

from ..plan.request import LaunchRequest
from ..plan.train_line import PROG, LineError, MagicFlags
from ..sweeps.grid import parse_flags
from ..sweeps.launch import dry_run_sweep, start_sweep
from ..sweeps.sweep import Sweep
from . import follow


def sweep_cell(shell, request: LaunchRequest, flags: MagicFlags) -> Sweep | None:
    """Run the cell with --sweep.

    Args:
        shell: the running InteractiveShell (`-o VAR` binds the Sweep in its namespace).
        request: the cell's launch request, as the line made it.
        flags: the line's magic flags (--sweep, --sweep-max-parallel, --yes, --dry-run, --wait, ...).

    Returns:
        The started Sweep (the cell's value), or None with --dry-run.
    """
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
    return follow.show(shell, sweep, flags.wait)
