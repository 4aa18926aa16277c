"""The training scripts people already have (tests/scripts/), each run as a real local job with no
`--metric` flags: the metric columns `job.metrics` has, where `job.progress` stands once an epoch
has ended and the job still runs, and where it stands when the job has completed.

Each script is the cell's source as it is, with the real framework (transformers, Lightning, tqdm,
TensorBoard). `--epoch-seconds` makes it pause after each epoch (after writing how many ended to
`$SM_OUTPUT_DIR/epochs_done`), so the test can look at a job between two epochs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import sm_magic

from helpers.jobscripts import wait_until

pytestmark = pytest.mark.jobs

SCRIPTS = Path(__file__).parent / "scripts"
EPOCHS = 3
PAUSE = 2.0  # seconds after each epoch: after the first, at least 3 pauses before the job ends
JOB_TIMEOUT = 240  # a job takes 8-26 s on a busy 2-core machine; this is a hang, not slowness


@dataclass(frozen=True)
class Expected:
    """What a user of the script looks for in `job.metrics`."""

    by_epoch: tuple[str, ...] = ()     # one value per epoch, in rows keyed by epoch
    by_step: dict[str, set[int]] | None = None  # the steps that have a value of the metric
    logged: tuple[str, ...] = ()       # columns with a value, however their rows are keyed


EXPECTED = {
    # {'loss': ..., 'epoch': '0.5'} every 4 steps (6 in all), {'eval_loss': ..., 'epoch': '1'} each epoch.
    "hf_trainer": Expected(by_epoch=("eval_loss",), logged=("loss", "eval_loss")),
    "lightning_bar": Expected(by_epoch=("train_loss", "val_loss", "val_acc")),
    # rich draws live only to a terminal: the job's environment says its log is one (sm_entry.launch_env).
    # It redraws once a second, so an epoch's validation values reach the log only when a redraw
    # falls between its validation and the next epoch's start: under load, not every epoch's does.
    "lightning_rich": Expected(by_epoch=("train_loss",), logged=("val_loss", "val_acc")),
    "tqdm_postfix": Expected(by_epoch=("loss", "lr")),
    "epoch_dict": Expected(by_epoch=("loss", "accuracy")),
    "keras_style": Expected(by_epoch=("loss", "accuracy", "val_loss", "val_accuracy")),
    # 32 steps per epoch; val/accuracy at each epoch's last step.
    "tensorboard_writer": Expected(by_step={"train/loss": set(range(1, 3 * 32 + 1)), "val/accuracy": {32, 64, 96}}),
}


def _values_by(frame, kind: str, column: str) -> dict[float, float]:
    """{epoch or step: value} of the rows keyed by `kind` that have a value of `column`. A frame of
    one kind of row is indexed by it; a frame of both has "epoch" and "step" columns."""
    if column not in frame.columns:
        return {}
    if frame.index.name == kind:
        keys = frame.index
    elif kind in frame.columns:
        keys = frame[kind]
    else:
        return {}
    return {float(k): float(v) for k, v in zip(keys, frame[column]) if not math.isnan(k) and not math.isnan(v)}


def _metric_problems(frame, expected: Expected) -> list[str]:
    problems = []
    columns = sorted(str(c) for c in frame.columns)
    for name in expected.logged:
        if name not in frame.columns or frame[name].isna().all():
            problems.append(f"no values of {name!r} (columns: {columns})")
    for name in expected.by_epoch:
        epochs = sorted(_values_by(frame, "epoch", name))
        want = EPOCHS
        # Counted from 0 (Lightning, the tqdm desc) or from 1 (`epoch 1/3`, Keras); the last one is there.
        consecutive = epochs == [float(e) for e in range(int(epochs[0]), int(epochs[0]) + len(epochs))] if epochs else False
        last = bool(epochs) and epochs[-1] in (EPOCHS - 1, EPOCHS)
        if len(epochs) < want or not consecutive or not last:
            problems.append(f"{name!r} by epoch: {epochs or 'none'}, expected {want} epoch row(s) ending at the "
                            f"last epoch (columns: {columns})")
    for name, steps in (expected.by_step or {}).items():
        found = set(_values_by(frame, "step", name))
        if found != {float(s) for s in steps}:
            problems.append(f"{name!r} by step: {len(found)} steps {sorted(found)[:5]}..., expected {len(steps)} "
                            f"steps {sorted(steps)[:5]}... (columns: {columns})")
    return problems


def _epochs_done(job, sm_env) -> int:
    marker = sm_env / "sm_jobs" / job.name / "opt_ml" / "output" / "epochs_done"
    try:
        return int(marker.read_text() or 0)
    except (OSError, ValueError):
        return 0


def _progress_text(p) -> str:
    if p is None:
        return "None"
    return f"{p.done}/{p.total} {p.unit} ({p.fraction:.0%}, remaining {p.remaining})"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_script_as_people_write_it_gives_its_metrics_and_progress(sm_env, name):
    source = (SCRIPTS / f"{name}.py").read_text()
    job = sm_magic.launch(source, args=["--epochs", str(EPOCHS), "--epoch-seconds", str(PAUSE)])
    problems: list[str] = []  # every check is made, so one run says all that is wrong
    if not hasattr(type(job), "progress"):
        problems.append("Job has no `progress`")

    # Mid-run: once the first epoch has ended (the script says so before its pause), the estimate
    # is above 0 while the job runs. Read again until it is, for as long as the job is mid-run.
    wait_until(lambda: _epochs_done(job, sm_env) >= 1 or job.done, JOB_TIMEOUT, f"{name}'s first epoch to end")
    seen = None
    while not problems and _epochs_done(job, sm_env) < EPOCHS and not job.done:
        progress = job.progress
        mid_run = _epochs_done(job, sm_env) < EPOCHS and job.status == "InProgress"  # after the read
        if mid_run:
            seen = progress
        if mid_run and progress is not None and 0 < progress.fraction < 1:
            break
        time.sleep(0.05)
    else:
        problems.append(f"mid-run progress after epoch 1 of {EPOCHS}: {_progress_text(seen)}, expected 0 < fraction < 1")

    job.wait(timeout=JOB_TIMEOUT)
    assert job.status == "Completed"
    problems += _metric_problems(job.metrics, EXPECTED[name])

    final = job.progress if hasattr(type(job), "progress") else None
    if final is None or final.fraction != 1.0 or final.remaining not in (None, 0):
        problems.append(f"final progress of the Completed job: {_progress_text(final)}, expected 100 %, nothing remaining")

    assert not problems, f"{name}:\n  " + "\n  ".join(problems)
