"""The widget under a `%%sagemaker_train --sweep` cell, and the static summary it leaves.

Core ipywidgets only (HTML, Dropdown, Image, Button, VBox/HBox), as progress.py. It shows the
sweep's name, backend, counts by status and parallelism, a Stop button for the whole sweep, one
table row per point (job, swept values, status, progress, the latest and best value of each
metric, elapsed clock, why it waits or did not start), one metric of every job overlaid in a plot
(a Dropdown picks the metric) and the sweep's errors. When every point has ended, the widget is
replaced by `summary_html()`: plain HTML with the overlay as an inline PNG, which a saved notebook
keeps.

What it costs, as the single-job widget (progress.py):

* Snapshots of each started job come from the kernel's one monitor (a `SweepView`), at most one
  a second per job; the sweep's own events (a point started, failed, was cancelled) too. They
  only wake this widget's render thread, which renders at most once per `interval` seconds,
  however many jobs there are. A render holds every child's sync, so it sends at most one
  message per child whose value changed (header, table, dropdown, plot, errors, Stop).
* The plot is redrawn only when rows arrived (or another metric is chosen), no sooner than
  MIN_REDRAW seconds and REDRAW_FACTOR times the last drawing's cost after the last one, and no
  later than MAX_REDRAW seconds (progress.py's pacing). Each job's line is thinned as its rows
  arrive (overlay.py and series.PlotSeries: at most PLOT_POINTS points a line).
* Latest and best values are folded from the rows new since the last render (`Folded`), so no
  cost grows with a job's total rows; the table shows at most MAX_ROWS points and MAX_METRICS
  metrics, each value and note cut short, so its HTML stays bounded for 10,000 points.
"""

from __future__ import annotations

import base64
import math
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack

from ..display.literal import drawn, shown
from ..display.table_text import cut
from ..jobs.job import Snapshot
from ..metrics.direction import direction
from ..metrics.overlay import overlay_png
from ..metrics.series import PlotSeries
from ..sweeps.grid import values_text
from ..sweeps.sweep import QUEUED, Point, Sweep
from .companion import Companion, note
from .progress import MAX_REDRAW, MIN_REDRAW, REDRAW_FACTOR, STATUS_COLORS, CellDisplay
from .sweep_rows import ENDED, MAX_ROWS, MAX_TEXT, Folded, default_metric, esc, status_color, table_html
from .sweep_table import SweepView, point_row, status_counts, sweep_text

MAX_METRICS = 6       # metric columns at most (the chosen metric's first); a line says how many more
MAX_OPTIONS = 50      # metrics the dropdown offers at most
MAX_ERRORS = 5        # the sweep's latest errors shown


class SweepWidget:
    """Live view of a sweep. `.box` is the widget to display; `start()` follows the sweep (the
    monitor's snapshots of its jobs, its point events) from a render thread; `on_done(widget)` is
    called once, after the render that shows every point ended (`summary_html()` is then final).

    `update(snap)` records a job's snapshot and `render()` renders now (what the thread does at
    most once per `interval` seconds); both may be called directly, as the tests do."""

    def __init__(self, sweep: Sweep, on_done: Callable[[SweepWidget], None] | None = None, interval: float = 1.0):
        import ipywidgets as w

        self.sweep = sweep
        self.on_done = on_done
        self.interval = interval
        self.finished = False
        self.renders = 0
        self._snaps: dict[str, Snapshot] = {}
        self._snaps_lock = threading.Lock()   # taken by whichever thread delivers a snapshot
        self._render_lock = threading.RLock()  # one render at a time (the thread, Stop, a test)
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._view: SweepView | None = None
        self._rendered_at = -math.inf
        self._ways: dict[str, str] = {}
        self._folded: dict[str, Folded] = {}
        self._series: dict[str, PlotSeries] = {}   # plot label -> each job's thinned points
        self._labels: dict[str, str] = {}           # job name -> its label in the plot
        self._metrics: list[str] = []               # every metric seen, in order of first appearance
        self._chosen: str | None = None             # the metric someone picked in the dropdown
        self._setting = False                       # the dropdown is being set by a render, not a person
        self._plot_shown: tuple = (None, -1)        # (metric, rows) the plot last drew
        self._plot_at = -math.inf
        self._plot_cost = 0.0
        self._plot_png = b""
        self._plot_note = ""                        # why the plot could not be drawn, if it could not
        self._stopped_note = ""
        self._render_error = ""
        self._rows: list[dict] | None = None           # the last render's rows (the summary's)
        self._final_snaps: dict[str, Snapshot] = {}
        # Classes and layout given at construction travel in each widget's comm_open (progress.py).
        self.header = w.HTML(f'<div class="sm-magic-sweep-header"><b>Sweep {esc(sweep.name)}</b> &middot; '
                             f"starting</div>", layout=w.Layout(flex="1 1 auto"),
                             _dom_classes=("sm-magic-sweep-header",))
        self.stop_button = w.Button(description="Stop sweep", button_style="danger", icon="stop",
                                    tooltip=f"Cancel the queued jobs of {sweep.name} and stop the running ones",
                                    _dom_classes=("sm-magic-sweep-stop",))
        self.stop_button.on_click(self._stop)
        self.stop_note = w.HTML("", _dom_classes=("sm-magic-sweep-stop-note",))
        self.table = w.HTML("", _dom_classes=("sm-magic-sweep-table",))
        self.metric = w.Dropdown(options=[], value=None, description="plot", style={"description_width": "initial"},
                                 layout=w.Layout(display="none", width="max-content"),
                                 _dom_classes=("sm-magic-sweep-metric",))
        self.metric.observe(self._metric_picked, names="value")
        # flex-start: the image keeps its own size instead of stretching to the cell's width.
        self.plot = w.Image(value=b"", format="png", layout=w.Layout(display="none", align_self="flex-start"),
                            _dom_classes=("sm-magic-sweep-plot",))
        self.errors = w.HTML("", _dom_classes=("sm-magic-sweep-errors",))
        # What stands in for this widget once its kernel is gone (companion.py, as progress.py).
        # The queue of points not yet started lives in the kernel that started the sweep.
        self.companion = Companion(*note("sweep", sweep.name, "goes on without it: its started jobs keep "
                                         "running (its queued ones start only while the kernel that "
                                         "launched the sweep runs)"))
        self.style = w.HTML(self.companion.widget_style(), layout=w.Layout(display="none"))
        self.box = w.VBox([w.HBox([self.header, self.stop_note, self.stop_button]), self.table, self.metric,
                           self.plot, self.errors, self.style],
                          _dom_classes=("sm-magic-sweep", self.companion.live_class))

    # -- what it follows ------------------------------------------------------------------------

    def start(self) -> SweepWidget:
        """Follow the sweep: snapshots and point events wake the render thread."""
        self._thread = threading.Thread(target=self._run, name=f"sm_magic-sweep-widget-{self.sweep.name}",
                                        daemon=True)
        self._thread.start()
        # Every snapshot and event is passed on (interval 0: it only wakes the thread, which paces);
        # the monitor sends each job's snapshots at most once per `interval`.
        self._view = SweepView(self.sweep, self._seen, interval=0.0, watch_interval=self.interval).start()
        return self

    def _seen(self, _sweep: Sweep, snaps: Mapping[str, Snapshot]) -> None:
        with self._snaps_lock:
            self._snaps.update(snaps)
        self._wake.set()

    def update(self, snap: Snapshot) -> None:
        """Record a job's snapshot (shown at the next render)."""
        with self._snaps_lock:
            self._snaps[snap.state.name] = snap
        self._wake.set()

    def _run(self) -> None:
        while not self.finished:
            self._wake.wait()
            wait = self._rendered_at + self.interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # what arrives meanwhile goes into this one render
            self._wake.clear()
            try:
                self.render()
            except Exception as e:  # noqa: BLE001 - said under the widget; the next change renders again
                self._render_error = f"the sweep's display failed: {type(e).__name__}: {e}"
                try:
                    self.errors.value = f'<div style="color:#c62828">{esc(self._render_error)}</div>'
                except Exception:  # noqa: BLE001
                    pass

    # -- the parts ------------------------------------------------------------------------------

    def _label(self, point: Point) -> str:
        label = self._labels.get(point.name)
        if label is None:
            label = shown(values_text(point.values), MAX_TEXT) or point.name
            if label in self._labels.values():
                label = point.name
            self._labels[point.name] = label
        return label

    def _state(self) -> tuple[list[Point], dict[str, Snapshot], list[dict]]:
        """The points, the latest snapshot of each started job, and one row per point."""
        entries = self.sweep.entries
        with self._snaps_lock:
            snaps = dict(self._snaps)
        rows = []
        for p in entries:
            snap = snaps.get(p.name)
            row: dict = point_row(p, snap)
            latest: dict[str, float] = {}
            best: dict[str, float] = {}
            position: dict[str, object] = {}
            if snap is not None:
                folded = self._folded.setdefault(p.name, Folded(self._ways))
                latest, best, position = folded.update(snap.metrics)
                for name in latest:
                    if name not in self._metrics:
                        self._metrics.append(name)
            ended = row["status"].split(" ")[0] in ENDED and (p.job is None or (snap is not None and snap.state.done))
            row.update(point=p, snap=snap, latest=latest, best=best, position=position, ended=ended,
                       rows=(len(snap.metrics), getattr(snap.metrics, "changes", len(snap.metrics))) if snap else (0, 0))
            rows.append(row)
        return entries, snaps, rows

    def _columns(self) -> tuple[list[str], int]:
        """The metric columns (the chosen metric first) and how many metrics are left out."""
        chosen = self.metric.value if self.metric.value in self._metrics else None
        names = ([chosen] if chosen else []) + [m for m in self._metrics if m != chosen]
        return names[:MAX_METRICS], max(0, len(names) - MAX_METRICS)

    def header_html(self, rows: list[dict]) -> str:
        counts = status_counts(rows)
        n = len(rows)
        said = " &middot; ".join(f'<span style="color:{status_color(word)}">{count} {esc(word)}</span>'
                                 for word, count in counts.items())
        return (f'<div class="sm-magic-sweep-header"><b>Sweep {esc(self.sweep.name)}</b> &middot; '
                f"{esc(self.sweep.backend or '?')} &middot; {n} job{'s' if n != 1 else ''}, at most "
                f"{self.sweep.max_parallel} at a time<br>"
                f'<span class="sm-magic-sweep-counts">{said}</span></div>')

    def table_html(self, rows: list[dict]) -> str:
        return table_html(rows, *self._columns(), self._ways)

    def errors_html(self) -> str:
        errors = list(self.sweep.errors)
        if self._plot_note:
            errors.append(self._plot_note)
        if self._render_error:
            errors.append(self._render_error)
        if not errors:
            return ""
        earlier = len(errors) - MAX_ERRORS
        lines = [f'<div style="color:#c62828">{esc(cut(e, 300))}</div>' for e in errors[-MAX_ERRORS:]]
        if earlier > 0:
            lines.insert(0, f'<div style="color:#666">{earlier} earlier (sweep.errors has them all)</div>')
        return "".join(lines)

    def _options(self) -> None:
        """The dropdown: every metric seen (at most MAX_OPTIONS); the chosen one kept, else the default."""
        names = tuple(self._metrics[:MAX_OPTIONS])
        if self._chosen and self._chosen in self._metrics and self._chosen not in names:
            names += (self._chosen,)
        value = self._chosen if self._chosen in names else default_metric(names)
        # Names that would not show as they are get labels that do (literal.shown); ipywidgets
        # takes labels for all options or for none.
        labels = tuple(shown(n) for n in names)
        options: tuple = names if labels == names else tuple(zip(labels, names))
        if tuple(self.metric.options) == options and self.metric.value == value:
            return
        self._setting = True
        try:
            if tuple(self.metric.options) != options:
                self.metric.options = options
            self.metric.value = value
            if options:
                self.metric.layout.display = None
        finally:
            self._setting = False

    def _metric_picked(self, change) -> None:
        if self._setting or change["new"] is None:
            return
        self._chosen = change["new"]
        self._wake.set()  # the plot (and the table's columns) follow at the next render

    def _plot(self, rows: list[dict], ended: bool) -> None:
        """Redraw the overlay when rows arrived or the metric changed, paced as progress.py's plot
        (a metric someone picked is drawn at once; the default changing as metrics appear is paced)."""
        metric = self.metric.value
        if metric is None:
            return
        total = sum(r["rows"][1] for r in rows)
        if (metric, total) == self._plot_shown:
            return
        wait = min(MAX_REDRAW, max(MIN_REDRAW["plot"], REDRAW_FACTOR * self._plot_cost))
        picked = metric != self._plot_shown[0] and metric == self._chosen  # a person's choice: drawn at once
        if not picked and not ended and time.monotonic() - self._plot_at < wait:
            return
        started = time.perf_counter()
        # A drawing that fails is a note under the table; the rest of the widget goes on to its summary.
        self._plot_png, self._plot_note = drawn(lambda: self.overlay(rows, metric))
        if self._plot_shown[0] is not None:  # the first drawing's cost includes importing matplotlib
            self._plot_cost = time.perf_counter() - started
        self._plot_shown = (metric, total)
        self._plot_at = time.monotonic()
        if self._plot_png:
            self.plot.value = self._plot_png
            self.plot.layout.display = None
        else:
            self.plot.layout.display = "none"

    def overlay(self, rows: list[dict], metric: str) -> bytes:
        """`metric` of every job that logged it, one line each (labelled by its values), PNG bytes."""
        runs = {self._label(r["point"]): r["snap"].metrics for r in rows if r["snap"] is not None}
        return overlay_png(runs, metric, series=self._series, best=direction(metric, self._ways))

    # -- rendering ------------------------------------------------------------------------------

    def render(self) -> None:
        """Bring every child up to date: one message at most per child whose value changed."""
        with self._render_lock:
            if self.finished:
                return
            self._rendered_at = time.monotonic()
            self.renders += 1
            _, self._final_snaps, rows = self._state()
            ended = all(r["ended"] for r in rows)
            children = (self.header, self.table, self.metric, self.plot, self.errors, self.stop_button)
            with ExitStack() as stack:
                for child in children:
                    stack.enter_context(child.hold_sync())
                self.header.value = self.header_html(rows)
                self._options()
                self.table.value = self.table_html(rows)
                self._plot(rows, ended)
                self.errors.value = self.errors_html()
                if ended:
                    self.stop_button.disabled = True
                    self.stop_button.description = self.sweep.status
            self._rows = rows
            if ended:
                self.finished = True
                self._wake.set()  # the thread ends
        if ended and self.on_done is not None:
            self.on_done(self)

    def _stop(self, _button=None) -> None:
        """Stop for the whole sweep: the queued points are cancelled, the running jobs stopped."""
        with self._render_lock:
            if self.finished or self.stop_button.disabled:
                return
            self.stop_button.disabled = True
            self.stop_button.description = "Stopping"
            entries = self.sweep.entries
            with self._snaps_lock:
                snaps = dict(self._snaps)
            queued = sum(1 for p in entries if p.state == QUEUED)
            running = sum(1 for p in entries if p.job is not None
                          and not (p.name in snaps and snaps[p.name].state.done))
        try:
            self.sweep.stop()
        except Exception as e:  # noqa: BLE001 - said beside the button
            self._stopped_note = f"could not stop the sweep: {type(e).__name__}: {e}"
        else:
            self._stopped_note = (f"Stopped the sweep: {queued} queued job{'s' if queued != 1 else ''} cancelled, "
                                  f"{running} running job{'s' if running != 1 else ''} asked to stop")
        self.stop_note.value = f'<span style="color:#ef6c00">{esc(self._stopped_note)}</span>'
        self._wake.set()

    # -- the end --------------------------------------------------------------------------------

    def summary_html(self) -> str:
        """The ended sweep as static HTML: header, table, the chosen metric's overlay, errors."""
        rows = self._rows
        if rows is None:
            _, self._final_snaps, rows = self._state()
        metric = self.metric.value
        png = self._plot_png if self._plot_shown == (metric, sum(r["rows"][1] for r in rows)) else b""
        if metric and not png:
            png, self._plot_note = drawn(lambda: self.overlay(rows, metric))
        color = STATUS_COLORS.get(self.sweep.status, "#1565c0")
        parts = [f'<div class="sm-magic-sweep-summary" style="border-left:3px solid {color};padding-left:8px">',
                 self.header_html(rows)]
        if self._stopped_note:
            parts.append(f'<div style="color:#ef6c00">{esc(self._stopped_note)}</div>')
        parts.append(f'<div class="sm-magic-sweep-table">{self.table_html(rows)}</div>')
        if png:
            parts.append(f'<img class="sm-magic-sweep-plot" alt="{esc(metric)} of each job of the sweep" '
                         f'src="data:image/png;base64,{base64.b64encode(png).decode()}"/>')
        errors = self.errors_html()
        if errors:
            parts.append(f'<div class="sm-magic-sweep-errors">{errors}</div>')
        parts.append("</div>")
        return "".join(parts)

    def summary_text(self) -> str:
        return sweep_text(self.sweep, self._final_snaps, limit=MAX_ROWS)

    def close(self) -> None:
        """Close this widget's comms (after the summary replaced it)."""
        for child in (self.header, self.stop_note, self.stop_button, self.table, self.metric, self.plot,
                      self.errors, *self.box.children):
            child.close()
        self.box.close()


def show_sweep_widget(sweep: Sweep, interval: float = 1.0) -> SweepWidget:
    """Display a SweepWidget for `sweep` under the current cell; when every point has ended the
    display is replaced by the static summary, as progress.show_progress does for one job."""
    cell = CellDisplay()
    widget = SweepWidget(sweep, on_done=lambda w: cell.replace(w.summary_html(), w.summary_text(), w),
                         interval=interval)
    cell.show(widget.box, widget.companion)
    return widget.start()


__all__ = ["SweepWidget", "show_sweep_widget", "default_metric"]
