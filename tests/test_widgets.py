"""Widget state: the progress widget fed snapshots and real jobs, the form field by field,
and the number of widget messages under a flood of log lines, counted at the comm."""

import threading
import time

import pytest
import yaml

import sm_magic
from sm_magic.backends.base import JobState, Transition
from sm_magic.config.model import TrainConfig
from sm_magic.jobs.job import Snapshot
from sm_magic.jobs.monitor import Monitor
from sm_magic.widgets.form import ConfigForm
from sm_magic.widgets.progress import ProgressWidget, summary_html

from helpers.jobscripts import script, wait_until


class _Job:
    """Just enough of a Job for feeding snapshots by hand (no backend is involved)."""

    name = "unit-1"
    backend = "local"
    stopped = False

    def stop(self):
        self.stopped = True


def _snap(status="InProgress", secondary="Training", metrics=(), reason=None, model=None, lines=()):
    t0 = 1_700_000_000.0
    transitions = [Transition("Starting", t0, t0 + 2, "Preparing the instances for training"),
                   Transition("Downloading", t0 + 2, t0 + 3, "Downloading input data"),
                   Transition("Training", t0 + 3, None if status == "InProgress" else t0 + 30, "Training in progress")]
    if status != "InProgress":
        transitions.append(Transition(secondary, t0 + 30, t0 + 30, f"Training job {secondary.lower()}"))
    state = JobState(name="unit-1", status=status, secondary_status=secondary, transitions=transitions,
                     failure_reason=reason, model_artifacts=model, creation_time=t0, instance_type="local",
                     training_start_time=t0 + 3, billable_seconds=27 if status != "InProgress" else None,
                     hyperparameters={"epochs": "3"})
    return Snapshot(state=state, metrics=[dict(m) for m in metrics], log_tail=list(lines), backend="local")


ROWS = [{"epoch": 0, "accuracy": 0.76, "f1": 0.82}, {"epoch": 1, "accuracy": 0.84, "f1": 0.88}]


def test_progress_widget_follows_snapshots_to_completion():
    done = []
    widget = ProgressWidget(_Job(), on_done=done.append)
    widget.update(_snap(lines=["epoch 0: {...}"]))
    overview = widget.overview.value
    assert 'class="sm-magic-status"' in overview and "InProgress</span> &middot; Training" in overview
    assert "unit-1" in overview and "local" in overview and "epochs=3" in overview
    assert widget.timeline_table.value.count("<tr>") == 4  # header row + 3 transitions
    assert "no metrics yet" in widget.metrics.value and bytes(widget.plot.value) == b""
    assert "epoch 0: {...}" in widget.log.value
    assert not widget.stop_button.disabled and not done

    widget.update(_snap(metrics=ROWS))
    assert widget.metrics.value.count("<tr>") == 3  # header + one row per epoch
    assert "0.84" in widget.metrics.value
    assert bytes(widget.plot.value).startswith(b"\x89PNG") and widget.plot.layout.display is None

    final = _snap("Completed", "Completed", metrics=ROWS, model="/jobs/unit-1/output/model.tar.gz")
    widget.update(final)
    assert "Completed</span>" in widget.overview.value and "billable 0:27" in widget.overview.value
    assert 'class="sm-magic-model"' in widget.overview.value and "model.tar.gz" in widget.overview.value
    assert widget.stop_button.disabled and widget.stop_button.description == "Completed"
    assert done == [final]
    widget.update(final)
    assert len(done) == 1, "on_done must run once"


def test_the_timeline_is_open_while_the_job_starts_and_closes_once_it_trains(monkeypatch):
    widget = ProgressWidget(_Job())
    starting = _snap()
    starting.state.transitions = starting.state.transitions[:1]
    starting.state.transitions[0].end = None
    widget.update(starting)
    assert widget.timeline.selected_index == 0
    assert widget.timeline.titles[0].startswith("Timeline: Starting since ")
    widget.update(_snap())
    assert widget.timeline.selected_index is None             # collapsed once training
    assert widget.timeline.titles[0].startswith("Timeline: Training since ")
    widget.timeline.selected_index = 0                        # the user opens it again
    widget.update(_snap())
    assert widget.timeline.selected_index == 0
    html = summary_html(_snap("Completed", "Completed"))
    assert '<details class="sm-magic-timeline"><summary>Timeline: Completed since' in html


def test_the_plot_follows_each_new_row_but_a_flood_redraws_it_every_few_seconds(monkeypatch):
    from sm_magic.widgets import progress

    now = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    widget = ProgressWidget(_Job())
    widget.update(_snap(metrics=ROWS[:1]))
    first = bytes(widget.plot.value)
    assert first.startswith(b"\x89PNG")
    now[0] += 0.5
    widget.update(_snap(metrics=ROWS))                        # a row 0.5 s later: the table only
    assert widget.metrics.value.count("<tr>") == 3 and bytes(widget.plot.value) == first
    now[0] += 60                                              # later: the plot too
    widget.update(_snap(metrics=ROWS))
    assert bytes(widget.plot.value) != first
    second = bytes(widget.plot.value)
    widget.update(_snap(metrics=ROWS))                        # nothing new: nothing redrawn
    assert bytes(widget.plot.value) == second
    rows = ROWS + [{"epoch": 2, "accuracy": 0.9, "f1": 0.9}]
    widget.update(_snap("Completed", "Completed", metrics=rows))  # the end is always drawn
    assert bytes(widget.plot.value) != second and widget.metrics.value.count("<tr>") == 4


@pytest.mark.parametrize("epochs", [1, 2, 7, 40])
def test_epoch_axes_have_whole_numbers_only(monkeypatch, epochs):
    from matplotlib.figure import Figure

    from sm_magic.widgets.progress import plot_png

    ticks, savefig = [], Figure.savefig

    def grab(fig, *args, **kwargs):
        ticks.extend(fig.axes[0].get_xticks())
        return savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", grab)
    plot_png([{"epoch": e + 1, "loss": 1 / (e + 1)} for e in range(epochs)])
    shown = [t for t in ticks if 0.5 <= t <= epochs + 0.5]
    assert shown and all(float(t).is_integer() for t in shown), ticks


def test_a_terminal_prints_each_row_once_and_again_when_it_changes():
    import io

    from sm_magic.metrics.parser import MetricsParser
    from sm_magic.widgets.text import TerminalLines

    out, parser = io.StringIO(), MetricsParser()
    lines = TerminalLines(out)

    def poll(*log):
        parser.feed(list(log))
        lines(Snapshot(state=_snap().state, metrics=parser.view(), log_tail=[]))

    poll(*(f'{{"step": {i}, "loss": {1 / (i + 1)}}}' for i in range(20)))
    poll('{"step": 20, "loss": 0.01}')
    poll()
    poll('{"step": 20, "accuracy": 0.5}')   # a metric joins the latest row
    rows = [line for line in out.getvalue().splitlines() if "step=" in line]
    assert len(rows) == 22 and rows[0] == "[unit-1] step=0 loss=1"
    assert rows[-2:] == ["[unit-1] step=20 loss=0.01", "[unit-1] step=20 loss=0.01 accuracy=0.5"]


def test_a_slow_plot_is_still_redrawn_every_few_seconds_and_a_changed_row_redraws(monkeypatch):
    from sm_magic.metrics.parser import MetricsParser
    from sm_magic.widgets import progress

    now, drawn = [1000.0], []

    def slow_plot(rows, series=None):  # a drawing that costs 2 s of the (fake) clock
        drawn.append(len(rows))
        now[0] += 2.0
        return b"\x89PNG" + bytes([len(drawn)])

    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(progress, "plot_png", slow_plot)
    parser = MetricsParser()
    widget = ProgressWidget(_Job())

    def update(*lines):
        parser.feed(list(lines))
        widget.update(Snapshot(state=_snap().state, metrics=parser.view(), log_tail=[]))

    update('{"epoch": 0, "loss": 0.5}')                  # the first (importing matplotlib) is not
    now[0] += progress.MIN_REDRAW["plot"]                # a measure of the next
    update('{"epoch": 1, "loss": 0.4}')                  # this one costs 2 s, a measure
    assert drawn == [1, 2]
    now[0] += 4.0
    update('{"epoch": 2, "loss": 0.3}')                  # 40 s by its cost, but at most 5 s
    assert drawn == [1, 2]
    now[0] += 1.0
    update()
    assert drawn == [1, 2, 3]
    now[0] += progress.MAX_REDRAW
    update('{"epoch": 2, "val_loss": 0.35}')             # no new row, but a changed one
    assert drawn == [1, 2, 3, 3] and "val_loss" in widget.metrics.value


def test_failed_job_shows_its_reason_and_summary_keeps_it():
    widget = ProgressWidget(_Job())
    assert "sm-magic-failure" not in widget.overview.value
    snap = _snap("Failed", "Failed", reason="AlgorithmError: ValueError: bad batch size (exit code 1)")
    widget.update(snap)
    assert 'class="sm-magic-failure"' in widget.overview.value
    assert "ValueError: bad batch size" in widget.overview.value
    html = summary_html(snap)
    assert 'class="sm-magic-summary"' in html and "ValueError: bad batch size" in html and "Failed" in html


def test_summary_is_static_html_with_table_and_inline_plot():
    html = summary_html(_snap("Completed", "Completed", metrics=ROWS, model="/m/model.tar.gz"))
    assert html.count("<tr>") >= 2 + 5  # metric rows plus timeline rows
    assert '<img class="sm-magic-plot"' in html and "data:image/png;base64," in html
    assert "/m/model.tar.gz" in html


@pytest.mark.jobs
def test_stop_button_stops_a_real_job(sm_env):
    job = sm_magic.launch(script("""
        import time
        print("working", flush=True)
        time.sleep(600)
    """))
    widget = ProgressWidget(job)
    widget.stop_button.click()
    assert widget.stop_button.disabled and widget.stop_button.description == "Stopping"
    assert job.wait(timeout=60).status == "Stopped"


# -- the form ----------------------------------------------------------------------------------

NEW_VALUES = {  # a valid value different from the default, for fields whose type needs one
    "ec2_instance_type": "ml.g5.xlarge", "base_job_name": "my-run", "region": "eu-west-1",
    "gpu_ids": "0,1", "pytorch_version": "2.1.0", "transformers_version": "4.36.0", "py_version": "py310",
    "max_run": "3600", "max_wait": "7200", "keep_alive_period_in_seconds": "1800", "num_machines": "3", "fsdp_min_num_params": "1000000",
    "deepspeed_zero_stage": "3", "deepspeed_gradient_accumulation_steps": "4", "max_cost": "25.5",
    "additional_args": "enable_network_isolation: true\ntags:\n  team: ml",
    "dynamo_config": "dynamo_backend: INDUCTOR",
}


def _new_value(name, control):
    if name in NEW_VALUES:
        return NEW_VALUES[name]
    if hasattr(control, "options") and control.options:  # a Dropdown's (label, value) pairs, a Combobox's names
        values = [o[1] if isinstance(o, tuple) else o for o in control.options]
        return next(v for v in values if v is not None and v != control.value)
    if isinstance(control.value, bool):
        return not control.value
    return f"value-of-{name}"


def test_every_field_has_a_grouped_control_with_help():
    form = ConfigForm(TrainConfig(), None)
    expected = {n for n, f in TrainConfig.model_fields.items() if not f.exclude}
    assert set(form.controls) == expected
    distributed = form.controls["distributed_type"]
    assert [value for _, value in distributed.options] == [None, "NO", "DATA_PARALLEL", "FSDP", "DEEPSPEED",
                                                          "MODEL_PARALLEL"]
    assert distributed.label == "(not set)" and distributed.value is None  # unset: every GPU trains
    assert form.controls["fsdp_sharding_strategy"].options[0] == ("FULL_SHARD", "FULL_SHARD")
    assert [value for _, value in form.controls["mixed_precision"].options] == ["no", "fp16", "bf16", "fp8"]
    text = str([c.value for c in form.box.children if hasattr(c, "value")])
    for group in ("Compute", "Distributed", "Spot &amp; checkpoints", "Software versions", "Advanced"):
        assert group in text


@pytest.mark.parametrize("name", [n for n, f in TrainConfig.model_fields.items() if not f.exclude])
def test_form_round_trip_field_by_field(tmp_path, name):
    path = tmp_path / "cfg.yaml"
    form = ConfigForm(TrainConfig(), path)
    if name == "max_wait":  # spot only
        form.controls["use_spot_instances"].value = True
    control = form.controls[name]
    fixed = len(getattr(control, "options", ())) == 1  # e.g. compute_environment: one choice only
    if not fixed:
        control.value = _new_value(name, control)
    assert form.save(), form.message.value
    assert "Saved to" in form.message.value
    saved = TrainConfig.from_yaml(path)
    assert getattr(saved, name) == getattr(form.config, name)
    if not fixed:
        assert getattr(saved, name) != getattr(TrainConfig(), name)


def test_invalid_value_shows_beside_the_field_and_nothing_is_saved(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("compute_environment: AMAZON_SAGEMAKER\nnum_machines: 2\n")
    form = ConfigForm(TrainConfig.from_yaml(path), path)
    form.controls["num_machines"].value = "0"
    error = form.errors["num_machines"]
    assert error.layout.display is None and "greater than or equal to 1" in error.value
    assert "Fix Number of machines (<code>num_machines</code>)" in form.message.value
    assert not form.save() and "Not saved" in form.message.value
    assert yaml.safe_load(path.read_text())["num_machines"] == 2
    form.controls["additional_args"].value = "a: [1"
    assert "not valid YAML" in form.errors["additional_args"].value
    form.controls["num_machines"].value = "4"
    form.controls["additional_args"].value = "enable_network_isolation: true"
    assert form.errors["num_machines"].layout.display == "none"
    assert form.save() and yaml.safe_load(path.read_text())["num_machines"] == 4


def test_spot_rule_error_lands_on_max_wait(tmp_path):
    form = ConfigForm(TrainConfig(), tmp_path / "c.yaml")
    form.controls["max_wait"].value = "600"
    assert "spot jobs only" in form.errors["max_wait"].value
    form.controls["use_spot_instances"].value = True
    assert form.errors["max_wait"].layout.display == "none" and form.save()
    saved = yaml.safe_load((tmp_path / "c.yaml").read_text())
    assert saved["additional_args"] == {"use_spot_instances": True, "max_wait": 600}


def test_launch_button_passes_the_edited_config(tmp_path):
    launched = []
    form = ConfigForm(TrainConfig(), tmp_path / "c.yaml", on_launch=launched.append)
    form.controls["distributed_type"].value = "DATA_PARALLEL"
    form.launch_button.click()
    assert [c.distributed_type for c in launched] == ["DATA_PARALLEL"]
    form.controls["num_machines"].value = "zero"
    form.launch_button.click()
    assert len(launched) == 1 and "Not launched" in form.message.value


# -- message rate under a flood ------------------------------------------------------------------

@pytest.mark.jobs
def test_a_flood_of_log_lines_sends_a_bounded_number_of_messages(sm_env, comm_messages):
    flood = script("""
        import sys, time
        end = time.time() + 4
        i = 0
        while time.time() < end:  # about 50,000 lines a second
            sys.stdout.write("".join(f"step {i + k} of a flood of log lines\\n" for k in range(500)))
            i += 500
            if i % 50_000 == 0:
                print(f"epoch {i // 50_000}: {{'loss': {1 / (i + 1)}}}")
            time.sleep(0.01)
        print("epoch 99: {'loss': 0.0}")
    """)
    job = sm_magic.launch(flood)
    done = []
    widget = ProgressWidget(job, on_done=done.append)
    closing = []  # when the update that shows the end began

    def update(snap):
        if snap.state.done and not closing:
            closing.append(time.monotonic())
        widget.update(snap)

    monitor = Monitor()
    start = time.monotonic()
    monitor.watch(job, update, min_interval=1.0)
    wait_until(lambda: done, 120, "the widget's last update")
    elapsed = time.monotonic() - start
    assert done[0].state.status == "Completed"
    lines = job.logs().count("of a flood of log lines")
    assert lines > 100_000, f"the flood was too small to mean anything ({lines} lines)"
    # Per whole second while it runs, and overall: at most 10 update messages per second. The closing
    # update redraws every part once (at most a message per child), whenever in a second it falls.
    per_second = {}
    for t, _ in comm_messages:
        if t < closing[0]:
            per_second[int(t - start)] = per_second.get(int(t - start), 0) + 1
    assert max(per_second.values()) <= 10, per_second
    assert sum(t >= closing[0] for t, _ in comm_messages) <= len(widget._children())
    assert len(comm_messages) / elapsed <= 10
    assert "epoch" in widget.metrics.value and "99" in widget.metrics.value


@pytest.mark.jobs
def test_one_monitor_thread_follows_every_job(sm_env):
    from sm_magic.jobs.monitor import get_monitor

    jobs = [sm_magic.launch(script(f"""
        import time
        time.sleep(1)
        print("epoch 0: {{'loss': {i}}}")
    """)) for i in range(3)]
    seen = {job.name: [] for job in jobs}
    monitors = lambda: [t for t in threading.enumerate() if t.name == "sm_magic-monitor"]  # noqa: E731
    before = monitors()
    for job in jobs:
        get_monitor().watch(job, seen[job.name].append, min_interval=0.2)
    assert len(set(monitors()) - set(before)) <= 1, "three jobs must share the kernel's one monitor thread"
    assert get_monitor()._thread in monitors()
    wait_until(lambda: not any(job in get_monitor().watched() for job in jobs), 60, "every job's last snapshot")
    for i, job in enumerate(jobs):
        final = seen[job.name][-1]
        assert final.state.status == "Completed" and final.metrics == [{"epoch": 0, "loss": float(i)}]
    # Nothing left to watch: the thread ends instead of idling.
    wait_until(lambda: get_monitor()._thread is None, 10, "the idle monitor thread to end")


def test_a_backend_that_cannot_be_reached_shows_reconnecting():
    widget = ProgressWidget(_Job())
    snap = _snap()
    snap.state.extra["connection"] = "reconnecting (attempt 3): connection refused"
    widget.update(snap)
    assert 'class="sm-magic-connection"' in widget.overview.value
    assert "reconnecting (attempt 3)" in widget.overview.value
    snap = _snap()
    widget.update(snap)
    assert "sm-magic-connection" not in widget.overview.value


@pytest.mark.jobs
def test_a_quiet_job_still_refreshes_its_display_about_once_a_second():
    """The elapsed clock moves while the job prints nothing (it read 'elapsed 0 s' 3 s in)."""

    class Quiet:
        name = "quiet"
        poll_interval = 0.05

        def snapshot(self):
            return _snap()

    calls, got = [], threading.Event()

    def delivered(snap):
        calls.append(time.monotonic())
        if len(calls) >= 4:
            got.set()

    monitor = Monitor(poll=0.05)
    watch = monitor.watch(Quiet(), delivered, min_interval=0.5)
    try:
        assert got.wait(60), f"{len(calls)} refreshes"
    finally:
        monitor.unwatch(watch)
    gaps = sorted(b - a for a, b in zip(calls, calls[1:]))
    assert gaps[0] >= 0.9 and gaps[len(gaps) // 2] < 2.0, gaps
