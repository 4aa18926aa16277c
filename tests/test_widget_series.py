"""A long job's metrics under a cell: a bounded table, a downsampled plot, a summary whose size
does not grow with the number of rows (job.metrics keeps every row)."""

import math

from sm_magic.widgets import series
from sm_magic.widgets.progress import metrics_html, plot_png, summary_html
from sm_magic.widgets.text import render_text

from test_widgets import _snap

STEPS = 40_000


def step_rows(n=STEPS):
    """One row per step, as custom training loops log them: a loss falling over decades with a
    spike, an accuracy rising, and the best accuracy early (step 1234)."""
    rows = []
    for i in range(n):
        loss = 10.0 * math.exp(-i / 4000) + (50.0 if i == 20_000 else 0.0)
        acc = 0.99 if i == 1234 else min(0.9, 0.1 + i / n)
        rows.append({"step": i, "loss": round(loss, 6), "accuracy": acc})
    return rows


def test_a_few_rows_are_all_shown():
    rows = step_rows(10)
    assert series.window(rows) == (rows, 0)
    assert "not shown" not in metrics_html(rows)


def test_many_rows_show_the_latest_and_each_metrics_best_and_say_how_many_are_not_shown():
    rows = step_rows()
    shown, hidden = series.window(rows)
    steps = [r["step"] for r in shown]
    assert steps[-series.TABLE_ROWS:] == list(range(STEPS - series.TABLE_ROWS, STEPS))
    assert 1234 in steps                      # the best accuracy, long ago
    assert STEPS - 1 in steps                 # the lowest loss is the latest
    assert hidden == STEPS - len(shown)
    html = metrics_html(rows)
    assert f"{hidden} more rows not shown" in html and html.count("<tr>") == len(shown) + 1
    text = render_text(_snap(metrics=rows))
    assert f"{hidden} more rows not shown" in text and len(text) < 5_000


def test_downsampling_keeps_the_shape_spikes_included():
    rows = step_rows()
    xs = [r["step"] for r in rows]
    ys = [r["loss"] for r in rows]
    dx, dy = series.downsample(xs, ys)
    assert len(dx) <= series.PLOT_POINTS
    assert dx == sorted(dx) and (dx[0], dx[-1]) == (0, STEPS - 1)
    assert max(dy) == max(ys) and min(dy) == min(ys)   # the spike at step 20,000 and the end
    assert 20_000 in dx
    assert series.downsample([1, 2], [3, 4]) == ([1, 2], [3, 4])


def test_the_plot_of_a_long_job_draws_a_few_hundred_points_on_a_log_scale(monkeypatch):
    from matplotlib.axes import Axes

    drawn, scales = [], []
    plot, set_yscale = Axes.plot, Axes.set_yscale
    monkeypatch.setattr(Axes, "plot", lambda self, x, y, **kw: drawn.append(len(x)) or plot(self, x, y, **kw))
    monkeypatch.setattr(Axes, "set_yscale", lambda self, v, **kw: scales.append(v) or set_yscale(self, v, **kw))
    png = plot_png(step_rows())
    assert png.startswith(b"\x89PNG") and len(png) < 100_000
    assert drawn and all(n <= series.PLOT_POINTS for n in drawn)
    assert scales == ["log"]
    drawn.clear(), scales.clear()
    plot_png(step_rows(5))
    assert drawn == [5, 5] and scales == []


def test_the_summary_of_a_40000_row_job_stays_small():
    snap = _snap(status="Completed", secondary="Completed", metrics=step_rows())
    html = summary_html(snap)
    assert len(html.encode()) < 300_000, len(html)
    assert "more rows not shown" in html
    assert len(render_text(snap).encode()) < 10_000
