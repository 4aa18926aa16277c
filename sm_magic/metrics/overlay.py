"""One metric of several jobs in one plot: each job a line (sm_magic.compare.plot, and any view of
many jobs, such as a sweep's widget, which keeps its `PlotSeries` across redraws).

Each job's rows are thinned by series.PlotSeries (at most PLOT_POINTS points a line, keeping
spikes and dips), so a job of 40,000 rows costs a drawing what one of 300 does, and a display
that keeps `series` between redraws thins only the rows new since the last. matplotlib's Agg
canvas, no pyplot: nothing global changes and no GUI backend is touched. Job names, labels and the
metric's name are drawn as they are (literal.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..display.literal import figure, legend, png, shown
from .series import PlotSeries, spans_decades

LEGEND_JOBS = 12   # more lines than this get no legend (it would hide the plot); the title says how many


def overlay_lines(runs: Mapping[str, Sequence[dict]], metric: str,
                  series: dict[str, PlotSeries] | None = None) -> tuple[str | None, dict[str, tuple[list, list]]]:
    """(the x key shared by the jobs, or None when they differ or have none; {job: (xs, ys)} of
    `metric`, thinned, for each job that logged it, in the order of `runs`). `series`: job name
    -> PlotSeries, kept by a display across calls (filled here as jobs appear)."""
    series = {} if series is None else series
    keys, lines = set(), {}
    for name, rows in runs.items():
        thinner = series.setdefault(name, PlotSeries())
        key, drawn = thinner.update(rows)
        if metric in drawn and drawn[metric][0]:
            keys.add(key)
            lines[name] = drawn[metric]
    return (keys.pop() if len(keys) == 1 else None), lines


def overlay_png(runs: Mapping[str, Sequence[dict]], metric: str, series: dict[str, PlotSeries] | None = None,
                best: str | None = None) -> bytes:
    """`metric` of each job in `runs` (job name -> its metric rows, as `job.metric_rows()` or a
    snapshot's `metrics` give them) as one line each, PNG bytes; b"" when no job logged it.
    `best` ("max" or "min") says so in the axis label."""
    key, lines = overlay_lines(runs, metric, series)
    if not lines:
        return b""
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

    fig = figure(6.5, 3.2)
    ax = fig.add_subplot()
    handles: list = []
    values: list[float] = []
    for xs, ys in lines.values():
        handles += ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, markersize=3, linewidth=1.2)
        values += ys
    if spans_decades(values):  # losses falling over decades read better on a log scale
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # mathtext labels cost a third
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(key or "epoch or step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    name = shown(metric)
    ax.set_ylabel(f"{name} ({'higher' if best == 'max' else 'lower'} is better)" if best else name)
    ax.grid(alpha=0.3)
    if len(lines) <= LEGEND_JOBS:
        legend(ax, handles, list(lines), fontsize="small", loc="best")
    else:
        ax.set_title(f"{name}: {len(lines)} jobs", fontsize="small")
    fig.subplots_adjust(left=0.12, right=0.97, top=0.92, bottom=0.16)  # tight_layout costs 40% more
    return png(fig)


__all__ = ["overlay_lines", "overlay_png", "LEGEND_JOBS"]
