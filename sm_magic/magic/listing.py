"""`%sagemaker_jobs`: the known jobs as a table, or with `--compare` some of them side by side
and a plot of one metric. The magic parses its line; this makes what the cell shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..jobs.lookup import list_jobs
from . import follow

if TYPE_CHECKING:
    import pandas as pd


def jobs_table(limit: int | None = None) -> pd.DataFrame:
    """The known jobs, newest first, with their current status, duration and final metrics.

    Args:
        limit: only the newest `limit` jobs (None: all).

    Returns:
        A DataFrame shown compact in a notebook, every column a click away; the cost, sweep
        and note columns only where some job has one.
    """
    import pandas as pd

    from ..display.table_text import clock
    from ..display.table_view import jobs_frame
    from ..jobs.final_metrics import compact

    found = list_jobs(limit=limit)
    rows = [{"name": row.record.name, "backend": row.record.backend, "status": row.status,
             "instance": f"{row.record.instance_type} x{row.record.instance_count}",
             "created": pd.Timestamp(row.record.created, unit="s").floor("s"),
             "duration": clock(row.duration) if row.duration is not None else "",
             "cost_usd": row.cost,
             "metrics": compact(row.metrics),
             "hyperparameters": " ".join(f"{k}={v}" for k, v in row.record.hyperparameters.items()),
             "sweep": row.sweep, "note": row.note}
            for row in found]
    columns = ["name", "backend", "status", "instance", "created", "duration", "metrics", "hyperparameters"]
    if any(row.cost is not None for row in found):  # a column only where a price is known (SageMaker)
        columns.insert(columns.index("duration") + 1, "cost_usd")
    if any(row.sweep for row in found):  # a column only when some job is a sweep's
        columns.append("sweep")
    if any(row.note for row in found):  # a column only when some job has something wrong
        columns.append("note")
    return jobs_frame(pd.DataFrame(rows, columns=columns))


def compare_jobs(shell, names: list[str], sort: str | None, metric: str | None) -> pd.DataFrame:
    """`%sagemaker_jobs --compare NAME ...`: the plot is shown (in a kernel; a terminal is told
    where it is), the table is returned as the cell's value (so `df = _` keeps it).

    Args:
        shell: the running InteractiveShell.
        names: the jobs to compare (a sweep's name stands for its jobs).
        sort: the metric (or column) to sort by, best first; None: the first metric.
        metric: the metric the plot overlays; None: the sort metric.

    Returns:
        The comparison's DataFrame, one row per job.
    """
    from ..sweeps.compare import comparison

    result = comparison(names, sort_by=sort)
    shown = result.metric(metric)
    if shown is not None:
        if follow.in_kernel(shell):
            from IPython.display import Image

            follow.display(Image(data=result.png(shown), format="png"))
        else:
            print(f"(The plot of {shown} across these jobs shows in a notebook; "
                  f"sm_magic.compare.plot(names, {shown!r}) returns it as PNG bytes.)")
    return result.frame
