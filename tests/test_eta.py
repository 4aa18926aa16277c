"""How far along a job is and how long it has left (sm_magic/jobs/eta.py): every signal the log has
(tqdm bars, `step N/M`, epochs on any row or header, Lightning's 0-based epoch and its bar, the
script's --epochs), the final state of an ended job, and `Job.progress`, shown in the widget, the
text output and the static summary."""

from pathlib import Path

import pytest

import sm_magic
from sm_magic.display.table_text import clock
from sm_magic.jobs.eta import Tracker, describe
from sm_magic.jobs.job import JobFailedError
from sm_magic.metrics.parser import MetricsParser
from sm_magic.widgets.progress import summary_html
from sm_magic.widgets.text import render_text

from helpers.jobscripts import EPOCHS_SCRIPT, script

LOGS = Path(__file__).parent / "data" / "logs"


def progress(lines, hyperparameters=None, status=None, now=10.0):
    """The estimate after reading `lines` into both the parser (rows) and the tracker, as a job does."""
    parser, tracker = MetricsParser(), Tracker(hyperparameters)
    parser.feed(lines)
    tracker.feed(lines)
    return tracker.estimate(parser.view(), 0.0, now, status)


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
    rows = [{"epoch": 0, "acc": 0.5}, {"epoch": 1, "acc": 0.6}]
    e = tracker.estimate(rows, started=0.0, now=20.0)
    assert (e.done, e.total, e.unit, e.remaining) == (2, 4, "epoch", 20.0)
    counted_from_one = Tracker({"num-train-epochs": "4"})
    assert counted_from_one.estimate([{"epoch": 1}, {"epoch": 2}, {"epoch": 3}], 0.0, 30.0).done == 3


@pytest.mark.parametrize("argument", ["epochs", "max_epochs", "max-epochs", "num_train_epochs", "n_epochs"])
def test_the_scripts_epoch_argument_is_the_total(argument):
    assert Tracker({argument: "5"}).estimate([], 0.0, 1.0).total == 5
    assert Tracker({argument: '"5"'}).estimate([], 0.0, 1.0).total == 5  # JSON-quoted, as SageMaker may keep it


def test_a_step_row_after_epoch_rows_does_not_reset_the_epochs():
    # The browser's "epoch 0/5 (0%)" with 3 epochs done: the estimate read only the last row.
    lines = []
    for epoch in range(3):
        lines += [f"step {epoch * 10 + i} loss={1 / (i + 1)}" for i in range(10)]
        lines.append(f"epoch {epoch}: {{'val_loss': {0.5 - epoch / 10}}}")
    lines.append("step 30 loss=0.9")
    e = progress(lines, {"epochs": "5"})
    assert (e.done, e.total, e.unit) == (3, 5, "epoch")


def test_epoch_n_of_m_dict_lines_count_from_one():
    # A completed job read "epoch 38/40 (95%) < 0:02 left".
    lines = [f"epoch {e}/40: {{'loss': {1 / e}}}" for e in range(1, 41)]
    e = progress(lines)
    assert (e.done, e.total) == (40, 40) and e.fraction == 1.0
    assert " left" not in describe(e)


def test_an_epoch_total_the_script_prints_is_used():
    e = progress(["Epoch 3/10 starting"])
    assert (e.done, e.total) == (2, 10)  # epoch 3 has begun: 2 are done


def test_lightning_counts_epochs_from_zero_with_a_bar_per_epoch():
    # `Epoch 1: 50%| 4/8` with max_epochs 3 is 1.5 of 3 epochs, not step 4/8.
    bar = "".join(f"\rEpoch {e}: {100 * i // 8}%|{'█' * i}| {i}/8 [00:00<00:00, 9.9it/s, train_loss=0.5]"
                  for e, last in ((0, 8), (1, 4)) for i in range(1, last + 1))
    e = progress([bar], {"max_epochs": "3"})
    assert (e.done, e.total, e.unit) == (1.5, 3, "epoch")
    assert progress([bar]) is None  # no epoch total: no bar rather than a made-up one


def test_lightnings_rich_bar_says_its_total_counting_from_zero():
    e = progress(["Epoch 1/2  ━━━━━━━━ 4/8 0:00:00 • 0:00:01 40.10it/s train_loss: 0.5"])
    assert (e.done, e.total) == (1.5, 3)


def test_a_per_epoch_step_position_counts_within_its_epoch():
    e = progress(["Epoch [3/10], Step [300/600], Loss: 0.4123"])
    assert (e.done, e.total, e.unit) == (2.5, 10, "epoch")
    timm = progress(["Train: 0 [   0/500 (  0%)]  Loss: 0.9", "Train: 1 [ 250/500 ( 50%)]  Loss: 0.41"], {"epochs": "4"})
    assert (timm.done, timm.total) == (1.5, 4)


def test_keras_batches_under_an_epoch_header():
    e = progress(["Epoch 1/3", "63/63 - 1s - loss: 0.5", "Epoch 2/3", "32/63 [=========>....] - ETA: 0s - loss: 0.4"])
    assert e.total == 3 and 1.5 <= e.done < 1.52


@pytest.mark.parametrize("first, second", [("1/3", "2/3"), ("0/2", "1/2")])  # YOLOv8 from 1, YOLOv5 from 0
def test_yolos_epoch_column_and_bar(first, second):
    def bar(epoch, last):
        return "".join(f"\r        {epoch}         0G      1.234      2.345      1.456         40        640: "
                       f"{i * 100 // 8}%|██  | {i}/8 [00:05<00:00,  1.52it/s]" for i in range(1, last + 1))
    lines = ["      Epoch    GPU_mem   box_loss   cls_loss   dfl_loss  Instances       Size", bar(first, 8),
             "                 Class     Images  Instances      Box(P          R      mAP50  mAP50-95): 100%|██████████| "
             "4/4 [00:01<00:00,  2.41it/s]",
             "                   all        128        929      0.641      0.534      0.612      0.451", bar(second, 4)]
    e = progress(lines)
    assert (e.done, e.total, e.unit) == (1.5, 3, "epoch")


def test_nested_and_evaluation_bars_are_not_the_jobs_own():
    lines = [" 33%|███▎      | 8/24 [00:04<00:08,  1.79it/s]",
             "\r 50%|█████     | 2/4 [00:00<00:00, 423.36it/s]\x1b[A",           # nested (cursor up)
             "\rValidation DataLoader 0:  50%|█████     | 4/8 [00:00<00:00, 111.51it/s]",
             "\r100%|██████████| 4/4 [00:00<00:00, 417.28it/s]"]                # a shorter bar after
    e = progress(lines)
    assert (e.done, e.total, e.unit) == (8, 24, "step")


def test_a_bar_that_restarts_each_epoch_gives_way_to_the_epochs():
    lines = ["".join(f"\r{i * 10}%|| {i}/10 [00:0{i}<00:00, 9.9it/s]" for i in range(1, 11)),
             "epoch 0: {'acc': 0.5}",
             "".join(f"\r{i * 10}%|| {i}/10 [00:0{i}<00:00, 9.9it/s]" for i in range(1, 4))]
    e = progress(lines, {"epochs": "4"})
    assert (e.unit, e.done, e.total) == ("epoch", 1, 4)


def test_step_rows_with_a_validation_metric_count_epochs_when_nothing_else_does():
    # TensorBoard scalars: train/loss each step, val/accuracy at each epoch's last step.
    rows = [{"step": s, "train/loss": 1 / s} for s in range(1, 65)]
    rows[31] = {**rows[31], "val/accuracy": 0.7}
    rows[63] = {**rows[63], "val/accuracy": 0.8}
    e = Tracker({"epochs": "3"}).estimate(rows, 0.0, 10.0)
    assert (e.done, e.total, e.unit) == (2, 3, "epoch")


def test_an_echoed_flag_is_not_an_epoch():
    t = Tracker({"epochs": "5"})
    t.feed(["launching train.py --epoch=3 --max_epoch 4"])
    assert t.estimate([], 0.0, 1.0).done == 0


def test_no_total_means_no_bar():
    assert progress(["epoch 0: {'acc': 0.5}", "loss=0.3 at 12/2026"], {"lr": "0.1"}) is None


def test_a_completed_job_is_full_and_a_failed_one_stays_where_it_stopped():
    lines = ["epoch 0: {'acc': 0.5}", "Step 38/40", " 95%|█████████▌| 38/40 [00:38<00:02, 1.00it/s]"]
    running = progress(lines, {"epochs": "3"})
    assert (running.done, running.remaining) == (38, 2)
    done = progress(lines, {"epochs": "3"}, status="Completed")
    assert (done.done, done.total, done.fraction, done.remaining) == (40, 40, 1.0, 0.0)
    assert "(100%)" in describe(done) and " left" not in describe(done)
    for status in ("Failed", "Stopped"):
        ended = progress(lines, {"epochs": "3"}, status=status)
        assert (ended.done, ended.total, ended.remaining) == (38, 40, None)
        assert "(95%)" in describe(ended) and " left" not in describe(ended)


@pytest.mark.parametrize("name, hyperparameters, expected", [
    ("hf_trainer.log", {"num_train_epochs": "3"}, [(8, 24), (16, 24), (24, 24)]),
    ("lightning_bar.log", {"epochs": "3"}, [(1, 3), (2, 3), (3, 3)]),
    ("lightning_rich.tty.log", {}, [(1, 3), (2, 3), (3, 3)]),
    ("tqdm_postfix.log", {"epochs": "3"}, [(1, 3), (2, 3), (3, 3)]),
    ("epoch_dict.log", {}, [(1, 3), (2, 3), (3, 3)]),
    ("keras_style.log", {}, [(1, 3), (2, 3), (3, 3)]),
])
def test_real_logs_read_as_they_come_move_forward_epoch_by_epoch(name, hyperparameters, expected):
    """Each real log fed as a job reads it (line by line, a long line of redraws in slices): the
    estimate never goes back, passes each epoch's end, and ends full."""
    parser, tracker = MetricsParser(), Tracker(hyperparameters)
    seen = []
    for line in (LOGS / name).read_text(encoding="utf-8").split("\n"):
        parts = line.split("\r")
        for i in range(0, len(parts), 10):
            piece = "\r".join(parts[i:i + 10])
            parser.feed([piece])
            tracker.feed([piece])
            e = tracker.estimate(parser.view(), 0.0, 10.0)
            if e is not None:
                seen.append((e.done, e.total))
    assert seen == sorted(seen), "the estimate went back"
    for point in expected:
        assert point in seen
    assert seen[-1] == expected[-1]


def test_the_latest_progress_line_of_each_kind_wins_however_many_lines_follow():
    t = Tracker({})
    t.feed(["step 5/10", " 45%|####5     | 450/1000 [00:10<00:12, 45.0it/s]", "epoch 1/5", "epoch 2/5"])
    assert t.steps == (450, 1000) and t.tqdm_times == (10, 12) and (t.epoch_line, t.epoch_total) == (2, 5)
    t.feed(["step 7/10", "epoch 3 of 5"] + [f"step {i} loss=0.5 of a flood of log lines" for i in range(20_000)])
    assert t.steps == (7, 10) and t.tqdm_times is None and (t.epoch_line, t.epoch_total) == (3, 5)
    t.feed(["nothing new"])
    assert t.steps == (7, 10) and t.epoch_line == 3


# --- jobs --------------------------------------------------------------------------------------

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
    # It ended Completed after 5 of 10: the job says so, the bar is full and nothing is left.
    assert (snap.estimate.done, snap.estimate.total, snap.estimate.remaining) == (10, 10, 0)
    assert "step 10/10 (100%)" in summary_html(snap) and " left" not in summary_html(snap)


# A script that does 2 of its --epochs, then fails or completes as told.
TWO_EPOCHS_THEN = script("""
    import argparse
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--fail", action="store_true")
    args = parser.parse_args()
    for epoch in range(2):
        print(f"Epoch {epoch + 1}/{args.epochs}", flush=True)
        print(f"63/63 - 1s - loss: {1 / (epoch + 1)} - accuracy: {0.5 + epoch / 10}", flush=True)
    if args.fail:
        raise SystemExit("out of memory, say")
""")


@pytest.mark.jobs
def test_job_progress_of_a_completed_and_a_failed_job(sm_env):
    completed = sm_magic.launch(TWO_EPOCHS_THEN, args=["--epochs", "2"], wait=True)
    p = completed.progress
    assert (p.done, p.total, p.unit, p.fraction, p.remaining) == (2, 2, "epoch", 1.0, 0.0)
    assert list(completed.metrics.index) == [1, 2]

    failed = sm_magic.launch(TWO_EPOCHS_THEN, args=["--epochs", "4", "--fail"])
    with pytest.raises(JobFailedError):
        failed.wait(timeout=120)
    p = failed.progress
    assert (p.done, p.total, p.unit, p.fraction, p.remaining) == (2, 4, "epoch", 0.5, None)
    assert " left" not in describe(p)


@pytest.mark.jobs
def test_job_progress_is_none_without_a_total(sm_env):
    job = sm_magic.launch(script("""
        print("epoch 0: {'acc': 0.5}")
    """), wait=True)
    assert job.progress is None
    assert list(job.metrics["acc"]) == [0.5]
