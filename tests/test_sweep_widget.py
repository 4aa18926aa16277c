"""The sweep widget (widgets/sweep_widget.py): what its table, header, dropdown, plot, Stop button
and static summary show, followed through real `Job`s on a simulated backend (the test says what
each job logs and when it ends; the job's own parser, tracker and the kernel's monitor do the
rest), and the number of widget messages over a busy 20-job sweep, counted at the comm. One test
runs a real local sweep."""

from __future__ import annotations

import dataclasses
import threading
import time
from html.parser import HTMLParser

import pytest

import sm_magic
from sm_magic.backends.base import JobState
from sm_magic.jobs.job import Job
from sm_magic.plan.checks import LaunchError
from sm_magic.sweeps import grid as sweep_grid
from sm_magic.sweeps.sweep import CANCELLED, Point, Sweep
from sm_magic.widgets import sweep_widget
from sm_magic.widgets.sweep_widget import MAX_ROWS, SweepWidget, default_metric, show_sweep_widget

from helpers.jobscripts import EPOCHS_SCRIPT, wait_until


class SimBackend:
    """A backend whose jobs log what the test says and end when it says (no process)."""

    name = "sim"
    poll_interval = 0.05

    def __init__(self):
        self.states: dict[str, JobState] = {}
        self.lines: dict[str, list[str]] = {}
        self.stopped: list[str] = []
        self.sweeps: list[Sweep] = []
        self.lock = threading.Lock()

    def add(self, name: str, hyperparameters: dict) -> None:
        now = time.time()
        with self.lock:
            self.states[name] = JobState(name=name, status="InProgress", secondary_status="Training",
                                         creation_time=now, training_start_time=now,
                                         hyperparameters=dict(hyperparameters))
            self.lines[name] = []

    def describe(self, name: str) -> JobState:
        with self.lock:
            return dataclasses.replace(self.states[name])

    def logs(self, name: str, cursor=None):
        cursor = cursor or 0
        with self.lock:
            new = self.lines[name][cursor:cursor + 1000]
        return new, cursor + len(new)

    def say(self, name: str, *lines: str) -> None:
        with self.lock:
            self.lines[name].extend(lines)

    def end(self, name: str, status: str = "Completed", reason: str | None = None) -> None:
        with self.lock:
            state = self.states[name]
            state.status = state.secondary_status = status
            state.failure_reason = reason
            state.training_end_time = time.time()

    def stop(self, name: str) -> None:
        self.stopped.append(name)
        self.end(name, "Stopped")


class SimLauncher:
    """Starts each point as a Job on the SimBackend, with `--epochs` among its hyperparameters
    (so the job's tracker knows the total, as for a real script's arguments)."""

    def __init__(self, backend: SimBackend, epochs: int = 3, refuse: dict | None = None):
        self.backend, self.epochs, self.refuse = backend, epochs, refuse or {}

    def __call__(self, point: Point) -> Job:
        if point.name in self.refuse:
            raise self.refuse[point.name]
        self.backend.add(point.name, {**point.values, "epochs": str(self.epochs)})
        return Job(point.name, self.backend)


def _sweep(backend, grid=None, max_parallel=None, **kw) -> Sweep:
    grid = grid or {"lr": ["0.1", "0.2", "0.3"]}
    combos = sweep_grid.points(grid)
    names = sweep_grid.job_names("sim", len(combos))
    entries = [Point(i, names[i - 1], v) for i, v in enumerate(combos, start=1)]
    sweep = Sweep("sim", grid, entries, launcher=SimLauncher(backend, **kw), max_parallel=max_parallel,
                  backend="sim", poll=0.01)
    backend.sweeps.append(sweep)
    return sweep


def epoch(n: int, **metrics) -> str:
    return f"epoch {n}: {metrics!r}"


class _Table(HTMLParser):
    """The table as a person reads it: header texts, and each row's cell texts."""

    def __init__(self, markup: str):
        super().__init__()
        self.head: list[str] = []
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None
        self._in_head = self._in_style = False
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        if tag == "thead":
            self._in_head = True
        elif tag == "style":
            self._in_style = True
        elif tag == "tr" and not self._in_head:
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag):
        if tag == "thead":
            self._in_head = False
        elif tag == "style":
            self._in_style = False
        elif tag in ("td", "th") and self._cell is not None:
            text = " ".join("".join(self._cell).split())
            (self.head if self._in_head else self.rows[-1]).append(text)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None and not self._in_style:
            self._cell.append(data)

    def row(self, job: str) -> dict[str, str]:
        """The row of `job` as {column: text}."""
        for cells in self.rows:
            if cells and cells[0] == job:
                return dict(zip(self.head, cells))
        raise AssertionError(f"no row for {job} in {self.rows}")


def table(widget: SweepWidget) -> _Table:
    return _Table(widget.table.value)


def cell(widget: SweepWidget, job: str, column: str) -> str | None:
    """What the table shows for `job` under `column` now (None before the row is there)."""
    try:
        return table(widget).row(job).get(column)
    except AssertionError:
        return None


@pytest.fixture
def sim():
    """The simulated backend; what a test left running is stopped after it (its widgets end)."""
    backend = SimBackend()
    yield backend
    for sweep in backend.sweeps:
        sweep.stop()
    for name, state in list(backend.states.items()):
        if not state.done:
            backend.end(name, "Stopped")
    # The widgets see the end and their threads finish (a plot drawn while the interpreter exits aborts it).
    for thread in threading.enumerate():
        if thread.name.startswith("sm_magic-sweep-widget-"):
            thread.join(timeout=30)


def _followed(sweep: Sweep, interval: float = 0.05) -> tuple[SweepWidget, list]:
    done: list = []
    widget = SweepWidget(sweep, on_done=done.append, interval=interval)
    widget.start()
    return widget, done


# -- what the table shows --------------------------------------------------------------------------

def test_each_point_is_a_row_with_its_values_status_progress_latest_and_best_metrics(sim):
    sweep = _sweep(sim, grid={"lr": ["0.1", "0.2", "0.3"], "bs": ["8"]}, max_parallel=2).start()
    widget, _ = _followed(sweep)
    wait_until(lambda: len(sweep.jobs) == 2, 10, "two jobs to start")
    sim.say("sim-1", epoch(0, loss=1.0, accuracy=0.5), epoch(1, loss=0.5, accuracy=0.8),
            epoch(2, loss=0.7, accuracy=0.6))
    sim.say("sim-2", epoch(0, loss=2.0, accuracy=0.4))
    wait_until(lambda: [cell(widget, n, "loss last / min") for n in ("sim-1", "sim-2")] == ["0.7 / 0.5", "2 / 2"],
               20, "both jobs' rows")
    t = table(widget)
    assert t.head == ["job", "lr", "bs", "status", "progress", "loss last / min", "accuracy last / max",
                      "elapsed", ""]
    assert [cells[0] for cells in t.rows] == ["sim-1", "sim-2", "sim-3"]
    one, two, three = t.row("sim-1"), t.row("sim-2"), t.row("sim-3")
    assert (one["lr"], one["bs"], two["lr"], three["lr"]) == ("0.1", "8", "0.2", "0.3")
    assert one["status"] == two["status"] == "InProgress (Training)" and three["status"] == "Queued"
    # --epochs 3: three epochs logged is 100%, one is 33%; a queued point has no progress yet.
    assert (one["progress"], two["progress"], three["progress"]) == ("100%", "33%", "")
    assert one["loss last / min"] == "0.7 / 0.5" and one["accuracy last / max"] == "0.6 / 0.8"
    assert two["loss last / min"] == "2 / 2" and two["accuracy last / max"] == "0.4 / 0.4"
    assert three["loss last / min"] == "" and three["elapsed"] == ""
    assert one["elapsed"] == "0:00"
    # The best across the sweep is in bold: sim-1's loss and accuracy.
    assert "<b>0.5</b>" in widget.table.value and "<b>0.8</b>" in widget.table.value
    assert "<b>2</b>" not in widget.table.value
    header = widget.header.value
    assert "Sweep sim" in header and "sim &middot; 3 jobs, at most 2 at a time" in header
    assert "2 InProgress" in header and "1 Queued" in header
    sweep.stop()


def test_statuses_are_colored_and_a_failed_launch_and_a_failure_say_why(sim):
    refused = LaunchError("a job named sim-2 is already in the registry")
    sweep = _sweep(sim, max_parallel=3, refuse={"sim-2": refused}).start()
    widget, done = _followed(sweep)
    wait_until(lambda: len(sweep.jobs) == 2, 10, "sim-1 and sim-3")
    sim.end("sim-1", "Completed")
    sim.end("sim-3", "Failed", reason="AlgorithmError: ValueError: bad batch size")
    wait_until(lambda: done, 20, "the sweep's end")
    t = table(widget)
    assert [t.row(n)["status"] for n in ("sim-1", "sim-2", "sim-3")] == ["Completed", "LaunchFailed", "Failed"]
    assert t.row("sim-2")[""] == "a job named sim-2 is already in the registry"
    assert t.row("sim-3")[""] == "AlgorithmError: ValueError: bad batch size"
    assert 'style="color:#2e7d32">Completed<' in widget.table.value
    assert 'style="color:#c62828">LaunchFailed<' in widget.table.value
    assert 'style="color:#c62828">Failed<' in widget.table.value
    assert "sim-2 (lr=0.2) did not start: a job named sim-2 is already in the registry" in widget.errors.value
    assert widget.stop_button.disabled and widget.stop_button.description == "Failed"


def test_a_large_sweeps_table_is_bounded_and_says_what_it_leaves_out(sim):
    grid = {"learning_rate_of_the_optimizer": [f"{i / 1000:.3f}{'x' * 60}" for i in range(150)]}
    sweep = _sweep(sim, grid=grid, max_parallel=150).start()
    widget = SweepWidget(sweep)
    wait_until(lambda: len(sweep.jobs) == 150, 30, "150 jobs")
    metrics = {f"a_rather_long_metric_name_{k}": 1.23456789 for k in range(9)}
    for job in sweep.jobs:
        sim.say(job.name, *(epoch(e, **metrics) for e in range(3)))
    for job in sweep.jobs[:120]:
        sim.end(job.name)
    for job in sweep.jobs:
        widget.update(job.snapshot())
    widget.render()
    t = table(widget)
    body = [cells for cells in t.rows if len(cells) > 1]
    assert len(body) == MAX_ROWS
    # The 30 running jobs are all shown, then completed ones in order.
    assert [cells[0] for cells in body][-30:] == [f"sim-{i}" for i in range(121, 151)]
    assert t.rows[-1] == ["50 more jobs not shown (50 Completed; sweep.entries has them all); "
                          "3 more metrics (sweep.compare() has them all)"]
    assert len(t.head) == 1 + 1 + 2 + 6 + 2  # job, the value, status, progress, 6 metrics, elapsed, note
    assert t.row("sim-121")["learning_rate_of_the_optimizer"] == ("0.120" + "x" * 60)[:39] + "\u2026"  # cut short
    assert len(widget.table.value) < 64_000, len(widget.table.value)
    sweep.stop()


# -- the plot and its dropdown ---------------------------------------------------------------------

def test_the_dropdown_offers_every_metric_defaults_to_a_loss_and_picking_one_redraws_the_plot(sim, monkeypatch):
    drawn = []
    original = sweep_widget.overlay_png

    pngs = []

    def spy(runs, metric, series=None, best=None):
        drawn.append((metric, sorted(runs), best))
        pngs.append(original(runs, metric, series=series, best=best))
        return pngs[-1]

    monkeypatch.setattr(sweep_widget, "overlay_png", spy)
    sweep = _sweep(sim, max_parallel=3).start()
    widget, _ = _followed(sweep)
    wait_until(lambda: len(sweep.jobs) == 3, 10, "three jobs")
    for i, job in enumerate(sweep.jobs):
        sim.say(job.name, epoch(0, accuracy=0.5 + i / 10, train_loss=1.0 - i / 10, val_loss=1.1 - i / 10))
    wait_until(lambda: widget.metric.options == ("accuracy", "train_loss", "val_loss"), 20, "the metrics")
    assert widget.metric.value == "val_loss"   # a validation loss first
    # One line per job, by its values (the jobs' rows may reach the widget in two renders).
    wait_until(lambda: len(pngs) == len(drawn) > 0 and drawn[-1] == ("val_loss", ["lr=0.1", "lr=0.2", "lr=0.3"], "min")
               and bytes(widget.plot.value) == pngs[-1], 20, "the plot")
    assert pngs[-1].startswith(b"\x89PNG")
    assert widget.plot.layout.display is None
    before = bytes(widget.plot.value)
    widget.metric.value = "accuracy"           # as a person picks it
    wait_until(lambda: bytes(widget.plot.value) != before, 20, "the plot of accuracy")
    assert drawn[-1][0] == "accuracy" and drawn[-1][2] == "max"
    assert table(widget).head[4] == "accuracy last / max"  # the chosen metric's column first
    # Later rows do not take the choice back.
    sim.say("sim-1", epoch(1, accuracy=0.9, train_loss=0.2, val_loss=0.3, lr_now=0.01))
    wait_until(lambda: "lr_now" in widget.metric.options, 20, "the new metric")
    assert widget.metric.value == "accuracy"
    sweep.stop()


def test_default_metric_prefers_a_validation_loss_then_any_loss_then_the_first():
    assert default_metric(["accuracy", "loss", "eval_loss"]) == "eval_loss"
    assert default_metric(["accuracy", "train_loss"]) == "train_loss"
    assert default_metric(["accuracy", "f1"]) == "accuracy"
    assert default_metric([]) is None


def test_the_plot_is_redrawn_when_rows_arrive_paced_as_the_single_job_plot(sim, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(sweep_widget.time, "monotonic", lambda: now[0])
    sweep = _sweep(sim, grid={"lr": ["0.1"]}).start()
    job = sweep.jobs[0]
    widget = SweepWidget(sweep)
    sim.say(job.name, epoch(0, loss=1.0))
    widget.update(job.snapshot())
    widget.render()
    first = bytes(widget.plot.value)
    assert first.startswith(b"\x89PNG")
    now[0] += 0.5
    sim.say(job.name, epoch(1, loss=0.5))
    widget.update(job.snapshot())
    widget.render()                                 # a row 0.5 s later: the table only
    assert cell(widget, "sim-1", "loss last / min") == "0.5 / 0.5" and bytes(widget.plot.value) == first
    now[0] += 2.0                                   # past the plot's 2 s: drawn
    widget.render()
    second = bytes(widget.plot.value)
    assert second != first
    now[0] += 60
    widget.render()                                 # no new row: not drawn again
    assert bytes(widget.plot.value) == second and widget._plot_at == 1002.5
    sim.say(job.name, epoch(2, loss=0.2))
    sim.end(job.name)
    widget.update(job.snapshot())
    widget.render()                                 # the end is always drawn
    assert bytes(widget.plot.value) != second and widget.finished


def test_costs_follow_the_new_rows_not_all_of_them(sim, monkeypatch):
    from sm_magic.jobs.job import Snapshot
    from sm_magic.metrics.parser import Rows

    class Counted(Rows):
        reads = 0

        def __getitem__(self, i):
            Counted.reads += 1
            return super().__getitem__(i)

    now = [1000.0]
    monkeypatch.setattr(sweep_widget.time, "monotonic", lambda: now[0])
    sweep = _sweep(sim, grid={"lr": ["0.1"]}).start()
    job = sweep.jobs[0]
    rows = [{"step": i, "loss": 1.0 / (i + 1)} for i in range(20_010)]
    state = job.snapshot().state
    widget = SweepWidget(sweep)
    widget.update(Snapshot(state=state, metrics=Counted(rows, 20_000, 20_000), log_tail=[]))
    widget.render()
    assert Counted.reads >= 20_000  # the first look reads every row once
    Counted.reads = 0
    now[0] += 10
    widget.update(Snapshot(state=state, metrics=Counted(rows, 20_010, 20_010), log_tail=[]))
    widget.render()                 # 10 new rows: the table and the plot (its 300 points) only
    assert bytes(widget.plot.value).startswith(b"\x89PNG") and widget._plot_at == 1010.0
    assert Counted.reads < 1_000, Counted.reads
    assert table(widget).row("sim-1")["loss last / min"] == "4.998e-05 / 4.998e-05"
    sweep.stop()


# -- Stop, and the end ------------------------------------------------------------------------------

def test_stop_cancels_the_queued_points_and_stops_the_running_jobs_then_the_summary_follows(sim):
    sweep = _sweep(sim, grid={"lr": ["0.1", "0.2", "0.3", "0.4"]}, max_parallel=2).start()
    widget, done = _followed(sweep)
    wait_until(lambda: len(sweep.jobs) == 2, 10, "two jobs")
    sim.say("sim-1", epoch(0, loss=0.5))
    wait_until(lambda: "2 Queued" in widget.header.value, 20, "the header")
    assert not widget.stop_button.disabled
    widget.stop_button.click()
    assert widget.stop_button.disabled and widget.stop_button.description == "Stopping"
    assert "Stopped the sweep: 2 queued jobs cancelled, 2 running jobs asked to stop" in widget.stop_note.value
    assert sorted(sim.stopped) == ["sim-1", "sim-2"]
    wait_until(lambda: done, 20, "the sweep's end")
    t = table(widget)
    assert [t.row(f"sim-{i}")["status"] for i in range(1, 5)] == ["Stopped", "Stopped", CANCELLED, CANCELLED]
    assert widget.stop_button.description == "Stopped"
    assert sweep.counts() == {"Stopped": 2, CANCELLED: 2}
    summary = widget.summary_html()
    assert "Stopped the sweep: 2 queued jobs cancelled" in summary and ">Cancelled<" in summary


def test_at_the_end_the_widget_is_replaced_by_a_static_summary(sim, monkeypatch):
    import IPython.display

    shown, updates, companions = [], [], []

    class Handle:
        def update(self, data, raw=False):
            updates.append(data)

    def display(obj, display_id=None, **kw):
        shown.append((obj, display_id))
        return Handle()

    monkeypatch.setattr(IPython.display, "display", display)
    monkeypatch.setattr(IPython.display, "update_display",
                        lambda obj, display_id=None, **kw: companions.append((obj, display_id, len(updates))))
    sweep = _sweep(sim, max_parallel=3).start()
    widget = show_sweep_widget(sweep, interval=0.05)
    # The widget, then its companion under it.
    assert shown[0] == (widget.box, True) and shown[1][1] == widget.companion.id
    assert "%sagemaker_attach sim" in shown[1][0]["text/html"] and "sweep <code>sim</code>" in shown[1][0]["text/html"]
    assert {"sm-magic-sweep", widget.companion.live_class} <= set(widget.box._dom_classes)
    wait_until(lambda: len(sweep.jobs) == 3, 10, "three jobs")
    for i, job in enumerate(sweep.jobs):
        sim.say(job.name, *(epoch(e, loss=(i + 1) / (e + 1)) for e in range(3)))
        sim.end(job.name)
    wait_until(lambda: updates, 20, "the summary")
    assert len(updates) == 1
    # The companion left nothing, before the summary took the widget's place.
    assert companions == [(widget.companion.ended_bundle(), widget.companion.id, 0)]
    html, text = updates[0]["text/html"], updates[0]["text/plain"]
    assert html.startswith('<div class="sm-magic-sweep-summary"') and "3 Completed" in html
    summary = _Table(html)
    assert [summary.row(f"sim-{i}")["status"] for i in (1, 2, 3)] == ["Completed"] * 3
    assert summary.row("sim-2")["loss last / min"] == "0.6667 / 0.6667"
    assert '<img class="sm-magic-sweep-plot" alt="loss of each job of the sweep" src="data:image/png;base64,' in html
    assert "ipywidget" not in html and "<script" not in html
    assert text.splitlines()[0] == "Sweep sim: 3 Completed"
    assert widget.box.comm is None and widget.table.comm is None  # its comms are closed


def test_follow_shows_the_widget_in_a_kernel(sim, monkeypatch):
    import IPython.display

    from sm_magic.magic import follow

    shown = []
    monkeypatch.setattr(follow, "in_kernel", lambda shell: True)
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append(obj) or None)
    sweep = _sweep(sim).start()
    follow.follow(None, sweep)
    # The widget, then its companion (the note shown in its place once the kernel is gone).
    assert len(shown) == 2 and "sm-magic-sweep" in shown[0]._dom_classes
    assert "Disconnected from the kernel" in shown[1]["text/html"]
    sweep.stop()


# -- messages -------------------------------------------------------------------------------------

@pytest.mark.jobs
def test_a_busy_20_job_sweep_sends_no_more_messages_than_the_single_job_widget(sim, comm_messages):
    grid = {"lr": [str(i) for i in range(20)]}
    sweep = _sweep(sim, grid=grid, max_parallel=20, epochs=400).start()
    widget, done = _followed(sweep, interval=1.0)
    wait_until(lambda: len(sweep.jobs) == 20, 10, "20 jobs")
    start = time.monotonic()
    step = 0
    while step < 250:  # each job: up to 50 rows a second, 1,000 log lines a second (fewer on a busy machine)
        for job in sweep.jobs:
            noise = [f"step {step + k} of a flood of log lines" for k in range(20)]
            sim.say(job.name, *noise, epoch(step, loss=1 / (step + 1), accuracy=step / 400))
        step += 1
        time.sleep(0.02)
    for job in sweep.jobs:
        # Stopped, not Completed: a stopped job's progress stays where it stopped (a completed
        # one reads 100%), so the last check below sees every row reach the estimate.
        sim.end(job.name, "Stopped")
    wait_until(lambda: done, 30, "the sweep's end")
    elapsed = time.monotonic() - start
    assert all(len(job.metric_rows()) == step for job in sweep.jobs)
    per_second: dict[int, int] = {}
    for t, _ in comm_messages:
        per_second[int(t - start)] = per_second.get(int(t - start), 0) + 1
    # As the single-job widget (tests/test_widgets.py): at most 10 update messages in any second.
    assert max(per_second.values()) <= 10, per_second
    assert len(comm_messages) / elapsed <= 10
    # The plot: drawn no more than every 2 s while rows arrive (and once more at the end).
    plots = [t for t, comm_id in comm_messages if comm_id == widget.plot.model_id and t >= start]
    assert 2 <= len(plots) <= elapsed / 2 + 2, plots
    assert all(b - a >= 1.9 for a, b in zip(plots, plots[1:-1])), plots
    assert widget.renders <= elapsed / 1.0 + 3
    assert table(widget).row("sim-20")["progress"] == f"{100 * min(step, 400) / 400:.0f}%"


# -- a real local sweep -------------------------------------------------------------------------------

@pytest.mark.jobs
def test_a_local_sweep_is_followed_to_its_summary(live_sweeps):
    sweep = sm_magic.sweep(EPOCHS_SCRIPT, grid={"lr": [0.1, 0.2]}, args=["--epochs", "3"], name="w",
                           max_parallel=2, backend="local")
    widget, done = _followed(sweep, interval=0.2)
    wait_until(lambda: done, 180, "the sweep's end")
    t = table(widget)
    for name, lr in (("w-1", "0.1"), ("w-2", "0.2")):
        row = t.row(name)
        assert row["lr"] == lr and row["status"] == "Completed" and row["progress"] == "100%"
        assert row["accuracy last / max"] == "0.7 / 0.7" and row["f1 last / max"] == "0.65 / 0.65"
    assert widget.metric.options == ("accuracy", "f1") and widget.metric.value == "accuracy"
    summary = widget.summary_html()
    assert "2 Completed" in summary and "data:image/png;base64," in summary
