"""TensorBoard scalars of a real local job: a script that writes them with torch's SummaryWriter
under $SM_OUTPUT_DIR/tensorboard and prints none of them has them in job.metrics while it runs
(each epoch waits for the test's go-ahead, so "while it runs" is a condition, not a timing), all
of them at the end, in the widget's rows and in compare()."""

from __future__ import annotations

import pytest

import sm_magic
from sm_magic.widgets.progress import ProgressWidget

from helpers.jobscripts import script, wait_until

pytestmark = pytest.mark.jobs
pytest.importorskip("torch.utils.tensorboard")

EPOCHS, STEPS = 3, 4

SUMMARY_WRITER_SCRIPT = script(f"""
    import os, time
    from torch.utils.tensorboard import SummaryWriter

    out = os.environ["SM_OUTPUT_DIR"]
    writer = SummaryWriter(os.path.join(out, "tensorboard"))
    print("training", flush=True)
    step = 0
    for epoch in range({EPOCHS}):
        for _ in range({STEPS}):
            step += 1
            writer.add_scalar("train/loss", 1.0 / step, step)
        writer.add_scalar("val/accuracy", 0.5 + 0.1 * epoch, step)
        writer.flush()
        deadline = time.time() + 120  # the test says go on (a file); never forever
        while epoch < {EPOCHS - 1} and not os.path.exists(os.path.join(out, f"go{{epoch}}")):
            if time.time() > deadline:
                raise SystemExit("the test never said go on")
            time.sleep(0.05)
    writer.close()
    print("done", flush=True)
""")


def steps_in(job) -> list[int]:
    frame = job.metrics
    return [] if frame.empty else [int(s) for s in frame.index]


def test_summary_writer_scalars_are_metrics_while_the_job_runs_and_after(sm_env):
    job = sm_magic.launch(SUMMARY_WRITER_SCRIPT)
    out = sm_env / "sm_jobs" / job.name / "opt_ml" / "output"
    for epoch in range(EPOCHS - 1):
        done = STEPS * (epoch + 1)
        wait_until(lambda: len(steps_in(job)) >= done, 120, f"epoch {epoch}'s scalars in job.metrics")
        assert job.status == "InProgress"  # it waits for go{epoch}
        frame = job.metrics
        assert frame.index.name == "step" and steps_in(job) == list(range(1, done + 1))
        assert frame.loc[done, "val/accuracy"] == pytest.approx(0.5 + 0.1 * epoch)
        snap = job.snapshot()
        assert snap.state.status == "InProgress" and snap.metrics[-1]["step"] == done
        (out / f"go{epoch}").touch()
    job.wait(timeout=120)

    frame = job.metrics
    assert steps_in(job) == list(range(1, EPOCHS * STEPS + 1))
    assert sorted(frame.columns) == ["train/loss", "val/accuracy"]
    assert frame.loc[3, "train/loss"] == pytest.approx(1 / 3)
    assert frame["val/accuracy"].dropna().tolist() == pytest.approx([0.5, 0.6, 0.7])
    widget = ProgressWidget(job)
    widget.update(job.snapshot())
    assert "val/accuracy" in widget.metrics.value and "0.7" in widget.metrics.value
    # A new handle (compare by name attaches from the registry) reads the files from the start.
    table = sm_magic.compare([job.name])
    assert table.loc[0, "val/accuracy_last"] == pytest.approx(0.7)
    assert table.loc[0, "train/loss_best"] == pytest.approx(1 / (EPOCHS * STEPS))
