"""A long job's metrics under a cell: a bounded table, a thinned plot, a summary whose size
does not grow with the number of rows (job.metrics keeps every row)."""

import math

from test_widgets import _snap

from sm_magic.metrics import series
from sm_magic.widgets.progress import metrics_html, plot_png, summary_html
from sm_magic.widgets.text import render_text

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


def epoch_rows(n):
    """One row per epoch: the best accuracy early (epoch 3), the lowest loss the latest."""
    return [{"epoch": e, "loss": 1.0 / (e + 1), "accuracy": 0.99 if e == 3 else 0.5 + e / (4 * n)}
            for e in range(n)]


def test_a_few_rows_are_all_shown():
    rows = step_rows(10)
    assert series.window(rows) == series.Window(rows, total=10)
    assert "not shown" not in metrics_html(rows)


def test_many_epochs_show_the_latest_and_each_metrics_best_and_say_how_many_are_not_shown():
    rows = epoch_rows(100)
    w = series.window(rows)
    epochs = [r["epoch"] for r in w.rows]
    assert epochs == [3] + list(range(100 - series.TABLE_ROWS, 100))   # the best accuracy, long ago
    assert w.summaries == [] and w.hidden == 100 - len(w.rows)
    html = metrics_html(rows)
    assert f"{w.hidden} more rows not shown" in html and html.count("<tr>") == len(w.rows) + 1
    assert "each metric&#x27;s best" in html


def test_many_steps_show_the_latest_and_the_mean_of_each_step_range():
    rows = step_rows()
    w = series.window(rows)
    assert [r["step"] for r in w.rows] == list(range(STEPS - series.STEP_ROWS, STEPS))
    assert w.summary_of == "steps" and len(w.summaries) == series.SUMMARY_ROWS
    first, size = w.summaries[0], 16 * series.Means.BLOCK       # 157 blocks of 256: 16 per range
    assert first["step"] == f"0\u2013{size - 1}"
    assert math.isclose(first["loss"], sum(r["loss"] for r in rows[:size]) / size)
    assert w.summaries[-1]["step"] == f"{9 * size}\u2013{STEPS - 1}"
    assert w.hidden == STEPS - series.STEP_ROWS
    html = metrics_html(rows)
    assert "mean per step range" in html and f"{w.hidden:,} more rows not shown" in html
    assert html.count("<tr") < 30 and len(html) < 5_000
    text = render_text(_snap(metrics=rows))
    assert f"{w.hidden:,} more rows not shown" in text and "mean per step range:" in text and len(text) < 5_000


def test_steps_that_carry_epochs_are_summarised_per_epoch_latest_epochs_first_kept():
    rows = [dict(r, epoch=r["step"] // 1000) for r in step_rows()]   # 40 epochs of 1,000 steps
    w = series.window(rows)
    assert w.summary_of == "epoch"
    assert [s["epoch"] for s in w.summaries] == list(range(40 - series.SUMMARY_ROWS, 40))
    last = w.summaries[-1]
    assert last["step"] == "39000\u201339999"
    assert math.isclose(last["loss"], sum(r["loss"] for r in rows[39000:]) / 1000)
    assert "mean per epoch" in metrics_html(rows)


def test_means_kept_across_redraws_sum_only_the_new_rows_and_match_a_fresh_count(monkeypatch):
    rows = [dict(r, epoch=r["step"] // 1000) for r in step_rows()]
    means, summed, before = series.Means(), [], 0
    real_add = series._Sums.add
    monkeypatch.setattr(series._Sums, "add", lambda self, row: summed.append(row) or real_add(self, row))
    for n in (5_000, 5_000, 20_000, STEPS):
        summed.clear()
        w = series.window(rows[:n], means=means)
        assert len(summed) == n - before              # each new row once, into its epoch
        before = n
        monkeypatch.setattr(series._Sums, "add", real_add)
        assert w == series.window(rows[:n])            # the same as summing every row afresh
        monkeypatch.setattr(series._Sums, "add", lambda self, row: summed.append(row) or real_add(self, row))


def test_a_snapshot_holds_the_rows_without_copying_and_no_row_added_later():
    from sm_magic.metrics.parser import MetricsParser

    parser = MetricsParser()
    parser.feed(['{"epoch": 0, "loss": 0.5}', '{"epoch": 1, "loss": 0.4}'])
    view = parser.view()
    first = view[0]
    parser.feed(['{"epoch": 1, "accuracy": 0.9}', '{"epoch": 2, "loss": 0.3}'])
    assert len(view) == 2 and list(view) == [view[0], view[1]] == view[:5]   # no row added later
    assert view[1] == {"epoch": 1, "loss": 0.4, "accuracy": 0.9}       # a changed row: a new dict
    later = parser.view()
    assert later[0] is first                                          # unchanged rows are shared
    assert list(later) == [{"epoch": 0, "loss": 0.5}, {"epoch": 1, "loss": 0.4, "accuracy": 0.9},
                           {"epoch": 2, "loss": 0.3}] == parser.rows


def test_thinning_keeps_the_shape_spikes_included_as_rows_arrive():
    rows = step_rows()
    ps = series.PlotSeries()
    for n in (5, 1_000, 25_000, STEPS):        # as a display polls a running job
        key, lines = ps.update(rows[:n])
    assert key == "step" and list(lines) == ["loss", "accuracy"]
    xs, ys = lines["loss"]
    assert len(xs) <= series.PLOT_POINTS + series.PlotSeries.RECHECK
    assert xs == sorted(xs) and (xs[0], xs[-1]) == (0, STEPS - 1)
    assert max(ys) == max(r["loss"] for r in rows) and 20_000 in xs   # the spike at step 20,000
    assert min(ys) == min(r["loss"] for r in rows)
    acc_x, acc_y = lines["accuracy"]
    assert 1234 in acc_x and 0.99 in acc_y                             # the best accuracy, early
    assert series.PlotSeries().update(rows[:2])[1]["loss"] == ([0, 1], [rows[0]["loss"], rows[1]["loss"]])


def test_a_metric_joining_a_recent_row_is_drawn():
    rows = [{"epoch": e, "loss": 1 / (e + 1)} for e in range(30)]
    ps = series.PlotSeries()
    ps.update(rows)
    rows[-1] = dict(rows[-1], val_loss=0.5)            # replaced, as the parser does
    key, lines = ps.update(rows)
    assert key == "epoch" and lines["val_loss"] == ([29], [0.5]) and len(lines["loss"][0]) == 30


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
