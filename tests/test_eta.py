"""How far along a job is and how long it has left: from tqdm bars, `step N/M` lines and the
script's --epochs, shown in the widget, the text output and the static summary."""

import pytest

import sm_magic
from sm_magic.eta import Tracker, clock
from sm_magic.widgets.progress import summary_html
from sm_magic.widgets.text import render_text

from helpers.jobscripts import EPOCHS_SCRIPT, script


def test_durations_read_as_clocks():
    assert [clock(s) for s in (0, 5, 62, 3723, None)] == ["0:00", "0:05", "1:02", "1:02:03", "?"]


def test_a_tqdm_line_of_carriage_return_updates_gives_its_last_position_and_time_left():
    tracker = Tracker()
    line = "".join(f"\r{10 * i}%|{'#' * i}{' ' * (10 - i)}| {45 * i}/450 [00:{i:02d}<00:{10 - i:02d}, 45.00it/s]"
                   for i in range(1, 5))
    tracker.feed(["loading data", line])
    e = tracker.estimate([], started=100.0, now=104.5)
    assert (e.done, e.total, e.unit, e.remaining, e.rate) == (180, 450, "step", 6, 45.0)
    assert e.fraction == 0.4


def test_step_n_of_m_lines_give_an_estimate_from_the_rate():
    tracker = Tracker()
    tracker.feed(["Step 25/100 loss=0.3", "nothing here"])
    e = tracker.estimate([], started=0.0, now=10.0)
    assert (e.done, e.total, e.unit) == (25, 100, "step")
    assert e.rate == 2.5 and e.remaining == 30.0


def test_epochs_come_from_the_scripts_argument_against_the_metric_rows():
    tracker = Tracker({"epochs": "4", "lr": "0.1"})
    assert tracker.estimate([], started=0.0, now=1.0).done == 0
    e = tracker.estimate([{"epoch": 0, "acc": 0.5}, {"epoch": 1, "acc": 0.6}], started=0.0, now=20.0)
    assert (e.done, e.total, e.unit, e.remaining) == (2, 4, "epoch", 20.0)
    counted_from_one = tracker.estimate([{"epoch": 1}, {"epoch": 2}, {"epoch": 3}], started=0.0, now=30.0)
    assert counted_from_one.done == 3


def test_an_epoch_total_the_script_prints_is_used():
    tracker = Tracker()
    tracker.feed(["Epoch 3/10 starting"])
    assert (tracker.estimate([], 0.0, 10.0).done, tracker.estimate([], 0.0, 10.0).total) == (2, 10)


def test_no_total_means_no_bar():
    tracker = Tracker({"lr": "0.1"})
    tracker.feed(["epoch 0: {'acc': 0.5}", "loss=0.3 at 12/2026"])
    assert tracker.estimate([{"epoch": 0, "acc": 0.5}], 0.0, 5.0) is None


@pytest.mark.jobs
def test_a_finished_job_shows_its_epochs_done_in_the_summary_and_the_text(sm_env):
    job = sm_magic.launch(EPOCHS_SCRIPT, args=["--epochs", "3"], wait=True)
    snap = job.snapshot()
    assert (snap.estimate.done, snap.estimate.total, snap.estimate.unit) == (3, 3, "epoch")
    assert "epoch 3/3 (100%)" in summary_html(snap) and 'class="sm-magic-eta"' in summary_html(snap)
    assert "[####################] epoch 3/3 (100%)" in render_text(snap)
    summary = summary_html(snap)
    assert " left" not in summary.split('class="sm-magic-eta"')[1].split("</div>")[0]  # nothing is left
    status = summary.split('class="sm-magic-status">')[1].split("</div>")[0]
    assert status.count("Completed") == 1  # not "Completed · Completed"


@pytest.mark.jobs
def test_a_running_job_with_a_tqdm_bar_shows_how_far_it_is(sm_env):
    job = sm_magic.launch(script("""
        import sys
        sys.stdout.write("".join(f"\\r{i}0%|| {i}/10 [00:{i:02d}<00:{10 - i:02d}, 1.00it/s]" for i in range(1, 6)))
        sys.stdout.write("\\n")
    """), wait=True)
    snap = job.snapshot()
    assert (snap.estimate.done, snap.estimate.total, snap.estimate.remaining) == (5, 10, 5)
    assert "step 5/10 (50%)" in summary_html(snap) and "0:05 left" in summary_html(snap)


def test_the_latest_progress_line_of_each_kind_wins_however_many_lines_follow():
    t = Tracker({})
    t.feed(["step 5/10", " 45%|####5     | 450/1000 [00:10<00:12, 45.0it/s]", "epoch 1/5", "epoch 2/5"])
    assert t.steps == (450, 1000) and t.tqdm_times == (10, 12) and (t.epoch_line, t.epoch_total) == (2, 5)
    t.feed(["step 7/10", "epoch 3 of 5"] + [f"step {i} loss=0.5 of a flood of log lines" for i in range(20_000)])
    assert t.steps == (7, 10) and t.tqdm_times is None and (t.epoch_line, t.epoch_total) == (3, 5)
    t.feed(["nothing new"])
    assert t.steps == (7, 10) and t.epoch_line == 3
