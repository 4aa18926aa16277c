"""The progress widget under a `%%sagemaker_train` cell, and the static summary it leaves.

Core ipywidgets only (HTML, Image, Button, VBox/HBox), so it renders in JupyterLab, Notebook 7,
VS Code and Colab. Created on the main thread; `update()` may be called from the monitor
thread and holds every child's sync, so one update sends at most one message per child whose
value changed. When the job ends, `summary_html()` is what replaces the widget: plain HTML with
an inline PNG plot, which survives saving and reopening the notebook.
"""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack

from ..backends.sagemaker.pricing import cost_text, money
from ..backends.sagemaker.warm_pool import status_line
from ..display.literal import drawn, figure, legend, png, shown
from ..jobs.artifacts import READY, model_note
from ..jobs.eta import Estimate, clock, describe
from ..jobs.job import Job, Snapshot
from ..metrics.row_kinds import is_schedule, is_timing
from ..metrics.series import Means, PlotSeries, spans_decades, window
from ..metrics.terminal import render
from .companion import Companion, note
from .text import LATEST, best_note, hidden_note, means_title, metric_columns, render_text, secondary_status, table_cell

LOG_TAIL = 12
# While a job runs, the table and the plot are redrawn when rows arrive, no sooner than
# MIN_REDRAW seconds and REDRAW_FACTOR times the last drawing's cost after the last one, and no
# later than MAX_REDRAW seconds.
MIN_REDRAW = {"table": 0.0, "plot": 2.0}
MAX_REDRAW = 5.0
REDRAW_FACTOR = 20
STATUS_COLORS = {"Completed": "#2e7d32", "Failed": "#c62828", "Stopped": "#ef6c00", "Stopping": "#ef6c00"}


def _esc(value) -> str:
    return html.escape(str(value))


def _clock(t: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if t else ""


def status_html(snap: Snapshot) -> str:
    s = snap.state
    color = STATUS_COLORS.get(s.status, "#1565c0")
    secondary = f" &middot; {_esc(secondary_status(s))}" if secondary_status(s) else ""
    return f'<span style="font-weight:bold;color:{color}">{_esc(s.status)}</span>{secondary}'



def header_html(snap: Snapshot) -> str:
    s = snap.state
    end = s.training_end_time or time.time()
    elapsed = max(0.0, end - s.creation_time) if s.creation_time else 0.0
    billable = f" &middot; billable {clock(s.billable_seconds)}" if s.billable_seconds is not None else ""
    cost = s.extra.get("cost") or {}
    if cost.get("usd") is not None:  # SageMaker's billable seconds at the instance's price: an estimate
        billable += (f' &middot; <span title="{_esc(cost_text(cost))}">&asymp; {_esc(money(cost["usd"]))}'
                     "</span>")
    hps = " ".join(f"{k}={v}" for k, v in s.hyperparameters.items())
    warm = status_line(s.extra.get("warm_pool"))
    return (f"<b>{_esc(s.name)}</b> &middot; {_esc(snap.backend)} &middot; {_esc(s.instance_type)}"
            f" &times; {s.instance_count} &middot; elapsed {clock(elapsed)}{billable}"
            + (f'<br><span style="color:#666">{_esc(warm)}</span>' if warm else "")
            + (f'<br><span style="color:#666">{_esc(hps)}</span>' if hps else ""))


def timeline_title(snap: Snapshot) -> str:
    """'Timeline: Training since 21:04:05', what the folded timeline still says. No running
    clock (the header has one), so it changes only with the status."""
    if not snap.state.transitions:
        return "Timeline"
    t = snap.state.transitions[-1]
    return f"Timeline: {t.status} since {_clock(t.start)}"


def timeline_html(snap: Snapshot) -> str:
    """Each transition's start, status, duration and message. The current one reads "running"
    (the header's clock moves), so the table changes only when the status does."""
    rows = []
    for t in snap.state.transitions:
        took = clock(t.end - t.start) if t.end is not None else "running"
        rows.append(f"<tr><td>{_clock(t.start)}</td><td><b>{_esc(t.status)}</b></td>"
                    f"<td style='text-align:right'>{took}</td><td style='text-align:left'>{_esc(t.message)}</td></tr>")
    return ('<table class="sm-magic-timeline-table" style="font-size:0.9em">'
            "<thead><tr><th>start</th><th>status</th><th>took</th><th>message</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def metrics_html(rows: Sequence[dict], means: Means | None = None) -> str:
    """The metrics table (series.window): every row while there are few; one row per epoch when
    steps' rows belong to epochs, with the running epoch's latest steps; a per-step job's step
    range means and latest steps. The best row is marked, and a line says what is not shown."""
    if not rows:
        return "<i>no metrics yet</i>"
    w = window(rows, means=means)
    columns = metric_columns(w.summaries + w.rows)

    def cell(r: dict, c: str, first: bool) -> str:
        # The best row: its epoch marked, it and its best value in bold (class sm-magic-best).
        if r is w.best and (first or c == w.best_metric):
            return f'<td class="sm-magic-best" style="font-weight:bold">{_esc(table_cell(w, r, c, first))}</td>'
        return f"<td>{_esc(table_cell(w, r, c, first))}</td>"

    def body(rows: list[dict]) -> str:
        return "".join("<tr>" + "".join(cell(r, c, i == 0) for i, c in enumerate(columns)) + "</tr>" for r in rows)

    def title(text: str) -> str:
        return f'<tr class="sm-magic-section"><th colspan="{len(columns)}" style="text-align:left">{_esc(text)}</th></tr>'

    head = "".join(f"<th>{_esc(shown(c))}</th>" for c in columns)
    summary = (f'<tbody class="sm-magic-means">{title(means_title(w))}{body(w.summaries)}</tbody>'
               if w.summaries else "")
    latest = title(LATEST) if w.summaries and w.rows else ""
    notes = " &middot; ".join(_esc(n) for n in (best_note(w), hidden_note(w)) if n)
    note = (f'<tr class="sm-magic-hidden-rows"><td colspan="{len(columns)}" style="color:#666">{notes}</td></tr>'
            if notes else "")
    # The notes in a footer: the table's bodies hold its rows and their titles only.
    return (f'<table class="sm-magic-metrics" style="font-size:0.9em"><thead><tr>{head}</tr></thead>'
            f"{summary}<tbody>{latest}{body(w.rows)}</tbody>{f'<tfoot>{note}</tfoot>' if note else ''}</table>")


def plot_lines(rows: Sequence[dict], series: PlotSeries | None = None) -> tuple[str | None, dict]:
    """(the x axis, "epoch" or "step"; {metric: (xs, ys)}) as the plot draws them: each metric
    thinned (series.PlotSeries); timing, throughput and learning-rate metrics left out where
    others remain (eval_runtime, eval_samples_per_second and a learning rate of 1e-5 are on
    scales of their own, and would squash the losses; the table has them)."""
    key, lines = (series if series is not None else PlotSeries()).update(rows)
    kept = {name: line for name, line in lines.items() if not is_timing(name) and not is_schedule(name)}
    return key, kept or lines


def plot_png(rows: Sequence[dict], series: PlotSeries | None = None) -> bytes:
    """One line per metric over epochs or steps (plot_lines), as PNG bytes; b"" when there is
    nothing to plot. A display that redraws keeps `series` across calls, so each call thins only
    the rows new since the last."""
    if not rows:
        return b""
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

    key, lines = plot_lines(rows, series)
    fig = figure(5.5, 2.6)
    ax = fig.add_subplot()
    handles, values, distinct = [], [], set()
    for name, (xs, ys) in lines.items():
        handles += ax.plot(xs, ys, marker="o" if len(xs) <= 50 else None)
        values += ys
        distinct.update(xs)
    if spans_decades(values):  # a loss falling over decades reads better on a log scale
        ax.set_yscale("log")
        # Plain tick labels: matplotlib's 10^x ones go through mathtext, a third of the drawing.
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(key or "step")
    # Epochs and steps are whole numbers. A few whole points get a tick each (MaxNLocator falls
    # back to fractions when fewer than two whole numbers are in view, as with one point);
    # Trainer's fractions of an epoch get whole-epoch ticks.
    if len(distinct) <= 10 and all(float(x).is_integer() for x in distinct):
        ax.set_xticks(sorted(distinct))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if lines:
        legend(ax, handles, list(lines), fontsize="small", loc="best")
    fig.subplots_adjust(left=0.1, right=0.97, top=0.95, bottom=0.2)  # tight_layout costs 40% more
    return png(fig)


def log_html(lines: list[str]) -> str:
    """The log tail as a <pre>. Job.snapshot renders it as a terminal shows it; rendered again
    here (a no-op on rendered rows) so raw lines from elsewhere never put `ESC[A`, colour codes or
    "\r" redraw fragments into the HTML."""
    text = "\n".join(render(lines[-LOG_TAIL:]))
    return (f'<pre style="max-height:14em;overflow:auto;font-size:0.85em;margin:0">{_esc(text)}</pre>'
            if text else "")


def plot_note_html(note: str) -> str:
    """What stands in the plot's place when it could not be drawn."""
    return f'<div class="sm-magic-plot-note" style="color:#666"><i>{_esc(note)}</i></div>' if note else ""


def summary_html(snap: Snapshot) -> str:
    """The finished job as static HTML: status, timeline, metrics table and plot (or the note
    saying why it could not be drawn), reason, model."""
    s = snap.state
    series = PlotSeries()   # kept for the axis's name: the second look reads only the latest rows
    image, note = drawn(lambda: plot_png(snap.metrics, series))
    axis = plot_lines(snap.metrics, series)[0] if image else None
    parts = [f'<div class="sm-magic-summary" style="border-left:3px solid '
             f'{STATUS_COLORS.get(s.status, "#1565c0")};padding-left:8px">', overview_html(snap),
             f'<details class="sm-magic-timeline"><summary>{_esc(timeline_title(snap))}</summary>'
             f"{timeline_html(snap)}</details>"]
    if s.model_artifacts and s.status in READY:
        parts.append(model_get_html(s.name, s.model_artifacts))
    if snap.metrics:
        parts.append(metrics_html(snap.metrics))
    if image:
        parts.append(f'<img class="sm-magic-plot" alt="metrics per {axis}" '
                     f'src="data:image/png;base64,{base64.b64encode(image).decode()}"/>')
    parts.append(plot_note_html(note))
    if snap.log_tail:
        parts.append(f"<details><summary>log tail</summary>{log_html(snap.log_tail)}</details>")
    parts.append("</div>")
    return "".join(parts)


def model_get_html(name: str, model: str) -> str:
    """How to get the model into the notebook: 'model.tar.gz (3 files, 12 KB): job.download()
    unpacks it into ./NAME-model/'."""
    return (f'<div class="sm-magic-model-get">{_esc(model_note(model))}: <code>job.download()</code> unpacks it '
            f"into <code>./{_esc(name)}-model/</code>; <code>job.output_files()</code> lists what the job wrote</div>")


def estimate_html(e: Estimate) -> str:
    """A progress bar and `step 450/1000 (45%) · 0:10 elapsed < 0:12 left · 45 steps/s`."""
    return ('<div class="sm-magic-eta"><span style="display:inline-block;width:14em;height:0.8em;background:#e0e0e0;'
            'border-radius:3px;vertical-align:middle;margin-right:0.5em"><span style="display:block;height:100%;'
            f'width:{100 * e.fraction:.1f}%;background:#1565c0;border-radius:3px"></span></span>'
            f"{_esc(describe(e))}</div>")


def overview_html(snap: Snapshot) -> str:
    """Header, status, failure reason, progress bar and model location: the part that changes
    as the job moves. One HTML value, so a status change costs one widget message."""
    s = snap.state
    parts = [f'<div class="sm-magic-header">{header_html(snap)}</div>',
             f'<div class="sm-magic-status">{status_html(snap)}</div>']
    connection = s.extra.get("connection")
    if connection and not s.done:  # the backend cannot be reached right now; the monitor retries
        since = s.extra.get("connection_since")
        since = f" (since {_clock(since)})" if since else ""
        parts.append(f'<div class="sm-magic-connection" style="color:#ef6c00">&#8635; {_esc(connection)}{since}</div>')
    if s.failure_reason:
        parts.append(f'<div class="sm-magic-failure" style="color:#c62828"><b>FailureReason:</b> '
                     f"{_esc(s.failure_reason)}</div>")
    if snap.estimate is not None:
        parts.append(estimate_html(snap.estimate))
    if s.model_artifacts:
        parts.append(f'<div class="sm-magic-model">model: <code>{_esc(s.model_artifacts)}</code></div>')
    return "".join(parts)


class ProgressWidget:
    """Live view of one job. `.box` is the widget to display; `update(snapshot)` refreshes it;
    `on_done(snapshot)` is called once, after the update that shows the job ended.

    Five values change as a job runs (overview, timeline, metrics table, plot, log tail), so one
    update sends at most five messages (six when the note in place of a plot that could not be
    drawn comes or goes). The table and the plot are redrawn when a metric row arrives, no more
    often than REDRAW_FACTOR times what the last drawing cost, so a job that logs thousands of
    rows a second costs the kernel a bounded share of a core."""

    def __init__(self, job: Job, on_done: Callable[[Snapshot], None] | None = None):
        import ipywidgets as w

        self.job = job
        self.on_done = on_done
        self._finished = False
        self._training_seen = False
        self._shown = {"table": (0, 0), "plot": (0, 0)}  # (rows, changes) each last drew
        self._drawn_at = {"table": 0.0, "plot": 0.0}
        self._cost = {"table": 0.0, "plot": 0.0}
        self._means = Means()         # a per-step job's means, summed as rows arrive
        self._series = PlotSeries()   # the plot's points, thinned as rows arrive
        # Classes and layout given at construction travel in each widget's comm_open; set
        # afterwards, each would cost an update message of its own.
        self.overview = w.HTML(f'<div class="sm-magic-header"><b>{_esc(job.name)}</b> &middot; starting</div>',
                               layout=w.Layout(flex="1 1 auto"), _dom_classes=("sm-magic-overview",))
        # An accordion keeps its open/closed state across updates (an HTML <details> would not).
        self.timeline_table = w.HTML("")
        self.timeline = w.Accordion([self.timeline_table], titles=("Timeline",), selected_index=0,
                                    _dom_classes=("sm-magic-timeline",))
        self.metrics = w.HTML("<i>no metrics yet</i>", _dom_classes=("sm-magic-metrics",))
        # flex-start: beside a tall table, the image keeps its own height instead of stretching.
        self.plot = w.Image(value=b"", format="png", layout=w.Layout(display="none", align_self="flex-start"),
                            _dom_classes=("sm-magic-plot",))
        # In the plot's place while it cannot be drawn: the note saying why.
        self.plot_note = w.HTML("", layout=w.Layout(display="none"), _dom_classes=("sm-magic-plot-note",))
        self.log = w.HTML("", _dom_classes=("sm-magic-log",))
        self.stop_button = w.Button(description="Stop", button_style="danger", icon="stop",
                                    tooltip=f"Stop {job.name}", _dom_classes=("sm-magic-stop",))
        self.stop_button.on_click(self._stop)
        # What stands in for this widget once its kernel is gone (companion.py): the widget's
        # class, and its style that hides the companion while the widget is connected.
        self.companion = Companion(*note("job", job.name, "keeps running without it"))
        self.style = w.HTML(self.companion.widget_style(), layout=w.Layout(display="none"))
        # Stop beside the overview: within reach however tall the table and the log grow.
        # The style last: the widget's text (its repr, in a saved notebook) starts as before.
        self.box = w.VBox([w.HBox([self.overview, self.stop_button]), self.timeline,
                           w.HBox([self.metrics, self.plot, self.plot_note]), self.log, self.style],
                          _dom_classes=("sm-magic-progress", self.companion.live_class))

    def _children(self) -> tuple:
        return (self.overview, self.timeline_table, self.timeline, self.metrics, self.plot, self.plot_note,
                self.log, self.stop_button)

    def close(self) -> None:
        """Close this widget's comms (after the summary replaced it)."""
        for child in (*self._children(), *self.box.children):
            child.close()
        self.box.close()

    def _stop(self, _button=None) -> None:
        self.stop_button.disabled = True
        self.stop_button.description = "Stopping"
        self.job.stop()

    def _due(self, part: str, rows: tuple, done: bool) -> bool:
        """Whether the table or the plot should be redrawn now for rows (count, changes)."""
        if rows == self._shown[part]:
            return False
        wait = min(MAX_REDRAW, max(MIN_REDRAW[part], REDRAW_FACTOR * self._cost[part]))
        return done or time.monotonic() - self._drawn_at[part] >= wait

    def _drawn(self, part: str, rows: tuple, started: float) -> None:
        # The first drawing's cost includes importing matplotlib: not a measure of the next.
        if self._shown[part][0] > 0:
            self._cost[part] = time.perf_counter() - started
        self._shown[part] = rows
        self._drawn_at[part] = time.monotonic()

    def update(self, snap: Snapshot) -> None:
        if self._finished:
            return
        s = snap.state
        # Rows are added and replaced (metrics.Rows counts both); a plain list only grows.
        rows = (len(snap.metrics), getattr(snap.metrics, "changes", len(snap.metrics)))
        with ExitStack() as stack:
            for child in self._children():
                stack.enter_context(child.hold_sync())
            self.overview.value = overview_html(snap)
            self.timeline_table.value = timeline_html(snap)
            self.timeline.set_title(0, timeline_title(snap))
            # Open while the job starts, closed once it trains (once: a user may open it again).
            if not self._training_seen and any(t.status == "Training" for t in s.transitions):
                self._training_seen = True
                self.timeline.selected_index = None
            if self._due("table", rows, s.done):
                started = time.perf_counter()
                self.metrics.value = metrics_html(snap.metrics, self._means)
                self._drawn("table", rows, started)
            if self._due("plot", rows, s.done):
                started = time.perf_counter()
                # A drawing that fails is a note in the plot's place; the log, the status and
                # the Stop button go on, and the next rows try again.
                image, note = drawn(lambda: plot_png(snap.metrics, self._series))
                if image:
                    self.plot.value = image
                    self.plot.layout.display = None
                elif note:
                    self.plot.layout.display = "none"
                self.plot_note.value = plot_note_html(note)
                self.plot_note.layout.display = None if note else "none"
                self._drawn("plot", rows, started)
            self.log.value = log_html(snap.log_tail)
            if s.done:
                self.stop_button.disabled = True
                self.stop_button.description = s.status
        if s.done:
            self._finished = True
            if self.on_done:
                self.on_done(snap)


class CellDisplay:
    """A live widget displayed under the current cell, followed by its companion (the note that
    shows in its place once its kernel is gone: companion.py), and replaced in place by static
    output (HTML, plus text for frontends without HTML) when its work ends, so a saved notebook
    keeps that."""

    def __init__(self) -> None:
        self._handle = None
        self._companion: Companion | None = None

    def show(self, box, companion: Companion | None = None) -> None:
        """Display the widget and, right after it, its companion."""
        from IPython.display import display

        self._handle = display(box, display_id=True)
        if companion is not None:
            companion.show()
            self._companion = companion

    def replace(self, html_text: str, plain: str, widget) -> None:
        """Put the static output in the widget's place and close the widget's comms. The
        companion goes first: were the widget replaced first, the note would show (the widget it
        stands in for being gone) until the companion's update arrived."""
        assert self._handle is not None
        if self._companion is not None:
            self._companion.end()
        self._handle.update({"text/html": html_text, "text/plain": plain}, raw=True)
        widget.close()


def show_progress(job: Job) -> ProgressWidget:
    """Display a ProgressWidget for `job` under the current cell, with its companion; when the
    job ends the display is replaced by the static summary and the companion leaves nothing."""
    cell = CellDisplay()
    widget = ProgressWidget(job, on_done=lambda snap: cell.replace(summary_html(snap), render_text(snap), widget))
    cell.show(widget.box, widget.companion)
    return widget


__all__ = ["CellDisplay", "ProgressWidget", "show_progress", "summary_html", "plot_lines", "plot_png"]
