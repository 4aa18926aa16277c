"""TensorBoard event files as metric rows (sm_magic/metrics/tensorboard_events.py), written by the real
writers scripts use: torch's SummaryWriter, Lightning's TensorBoardLogger, accelerate's tracker.
Read incrementally: only what was appended, a record cut anywhere is read once it is whole, and a
file read while another thread writes it gives every scalar exactly once."""

from __future__ import annotations

import builtins
import math
import shutil
import threading

import pytest

from sm_magic.backends.base import BackendError, JobState
from sm_magic.jobs.job import Job
from sm_magic.metrics.tensorboard_events import Columns, ScalarReader, TensorBoardMissing, run_label

SummaryWriter = pytest.importorskip("torch.utils.tensorboard").SummaryWriter


def event_file(directory):
    (path,) = [p for p in directory.rglob("*") if "tfevents" in p.name]
    return path


def test_a_poll_reads_only_what_was_appended(tmp_path):
    writer = SummaryWriter(tmp_path)
    reader = ScalarReader(tmp_path)
    assert reader.read() == []  # the file holds only its version record
    writer.add_scalar("train/loss", 0.5, 1)
    writer.add_scalar("train/loss", 0.25, 2)
    writer.add_scalar("val/accuracy", 0.75, 2)
    writer.flush()
    assert reader.read() == [(1, {"train/loss": 0.5}), (2, {"train/loss": 0.25, "val/accuracy": 0.75})]
    assert reader.read() == []
    writer.add_scalar("train/loss", 0.125, 3)
    writer.flush()
    assert reader.read() == [(3, {"train/loss": 0.125})]
    writer.close()


def test_a_read_stops_after_a_bounded_number_of_events_and_the_next_goes_on(tmp_path, monkeypatch):
    import sm_magic.metrics.tensorboard_events as tbe

    monkeypatch.setattr(tbe, "MAX_EVENTS_PER_READ", 4)
    with SummaryWriter(tmp_path) as writer:
        for step in range(10):
            writer.add_scalar("loss", step / 10, step)
    reader = ScalarReader(tmp_path)
    reads = []
    while not reads or reader.pending:
        reads.append([step for step, _ in reader.read()])
    assert reads == [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9]]  # the first 4 events: the file's version record and 3
    assert reader.read() == []


def test_other_summaries_are_not_metrics_and_nan_stays_nan(tmp_path):
    import numpy as np

    writer = SummaryWriter(tmp_path)
    writer.add_histogram("weights", np.arange(10.0), 1)
    writer.add_text("note", "epoch 1: loss=0.3", 1)
    writer.add_scalar("loss", float("nan"), 1)
    writer.add_scalar("loss", float("inf"), 2)
    # New-style scalars (a tensor with the scalars plugin's metadata), float and double.
    writer.add_scalar("acc", 0.7, 3, new_style=True)
    writer.add_scalar("acc", 0.123456789012, 4, new_style=True, double_precision=True)
    writer.close()
    rows = ScalarReader(tmp_path).read()
    assert [step for step, _ in rows] == [1, 2, 3, 4]
    assert all(set(values) == {"loss"} and math.isnan(values["loss"]) for _, values in rows[:2])
    assert rows[2:] == [(3, {"acc": 0.7}), (4, {"acc": 0.123456789012})]


def test_a_record_cut_anywhere_is_read_once_whole(tmp_path):
    """The file as a reader may find it while the writer is in the middle of a record: at every
    byte of the last record, the rows before it come, then the last row once the rest is there."""
    src = tmp_path / "src"
    writer = SummaryWriter(src)
    writer.add_scalar("loss", 0.5, 1)
    writer.flush()
    before = event_file(src).stat().st_size
    writer.add_scalar("loss", 0.25, 2)
    writer.close()
    data = event_file(src).read_bytes()
    assert len(data) > before
    for cut in range(before, len(data)):
        run = tmp_path / f"cut{cut}"
        run.mkdir()
        target = run / event_file(src).name
        target.write_bytes(data[:cut])
        reader = ScalarReader(run)
        assert reader.read() == [(1, {"loss": 0.5})], cut
        assert reader.read() == [], cut
        with open(target, "ab") as f:
            f.write(data[cut:])
        assert reader.read() == [(2, {"loss": 0.25})], cut
        shutil.rmtree(run)


def test_a_file_read_while_it_is_written(tmp_path):
    steps = 400
    writer = SummaryWriter(tmp_path, max_queue=1)
    written = threading.Event()

    def write():
        for step in range(steps):
            writer.add_scalar("loss", step / steps, step)
            if step % 7 == 0:
                writer.flush()
        writer.close()
        written.set()

    thread = threading.Thread(target=write)
    reader = ScalarReader(tmp_path)
    seen: list = []
    thread.start()
    reads = 0
    while not written.is_set():
        seen.extend(reader.read())
        reads += 1
    thread.join()
    seen.extend(reader.read())
    assert [step for step, _ in seen] == list(range(steps))  # each once, in order
    assert all(values == {"loss": pytest.approx(step / steps)} for step, values in seen)
    assert reads > 1


def test_lightning_and_accelerate_layouts_keep_their_tag_names(tmp_path):
    pl_loggers = pytest.importorskip("pytorch_lightning.loggers")
    tracking = pytest.importorskip("accelerate.tracking")
    root = tmp_path / "tensorboard"
    # Lightning: <root>/lightning_logs/version_0, a restart's version_1 continues the same columns.
    for version, step in ((0, 1), (1, 2)):
        logger = pl_loggers.TensorBoardLogger(save_dir=root, version=version)
        logger.log_metrics({"train_loss": 1.0 / step, "epoch": step - 1}, step=step)
        logger.finalize("success")
    # accelerate: <root>/<project>, a dict value as add_scalars series directories.
    tracker = tracking.TensorBoardTracker("my_project", root)
    tracker.start()
    tracker.log({"lr": 0.01, "loss": {"train": 0.3, "val": 0.4}}, step=3)
    tracker.finish()
    rows = dict(ScalarReader(root).read())
    # Lightning's "epoch" scalar comes as a value (the parser keeps no value named like a row key).
    assert rows[1] == {"train_loss": 1.0, "epoch": 0.0}
    assert rows[2] == {"train_loss": 0.5, "epoch": 1.0}
    assert rows[3] == {"lr": 0.01, "loss/train": 0.3, "loss/val": 0.4}


def test_two_writers_with_one_tag_do_not_overwrite_each_other(tmp_path):
    for run, value in (("train", 0.5), ("val", 0.7)):
        with SummaryWriter(tmp_path / run) as writer:
            writer.add_scalar("loss", value, 1)
    assert ScalarReader(tmp_path).read() == [(1, {"loss": 0.5, "val/loss": 0.7})]  # first found keeps "loss"


def test_column_names():
    assert run_label("lightning_logs/version_3") == ""
    assert run_label("mymodel/version_0") == "mymodel"
    assert run_label(".") == ""
    columns = Columns()
    assert columns.name(".", "loss") == "loss"
    assert columns.name("lightning_logs/version_1", "loss") == "loss"  # same series, restarted
    assert columns.name("acc_top1", "acc") == "acc/top1"
    assert columns.name("train_loss_a", "train/loss") == "train/loss/a"
    assert columns.name("eval", "loss") == "eval/loss"
    assert columns.name("eval", "loss") == "eval/loss"  # fixed once given


def test_other_hosts_files_can_be_left_out(tmp_path):
    with SummaryWriter(tmp_path, filename_suffix=".x") as writer:
        writer.add_scalar("loss", 0.5, 1)
    name = event_file(tmp_path).name
    assert ScalarReader(tmp_path, skip=lambda n: n == name).read() == []


def test_no_tensorboard_is_one_clear_error_only_when_there_are_event_files(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("tensorboard"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    with SummaryWriter(tmp_path / "tb") as writer:
        writer.add_scalar("loss", 0.5, 1)
    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    assert ScalarReader(tmp_path / "none").read() == []
    with pytest.raises(TensorBoardMissing, match=r"install tensorboard to read the TensorBoard event files"):
        ScalarReader(tmp_path / "tb").read()


class Backend:
    """A backend whose scalars() answers what the test sets (a list of rows, or an error)."""

    name, poll_interval = "fake", 0.01

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = 0

    def describe(self, name):
        return JobState(name=name, status="InProgress", secondary_status="Training")

    def logs(self, name, cursor=None):
        return [], cursor

    def scalars(self, name, cursor=None):
        self.calls += 1
        answer = self.answers.pop(0) if self.answers else []
        if isinstance(answer, Exception):
            raise answer
        return answer, (cursor or 0) + 1


def test_a_job_takes_the_backends_scalars_as_step_rows():
    backend = Backend([[(1, {"train/loss": 0.5, "epoch": 0.0})], [], [(2, {"train/loss": 0.25}), (1, {"lr": 0.1})]])
    job = Job("tb", backend)
    assert list(job.metrics["train/loss"]) == [0.5]
    job.snapshot()
    frame = job.metrics
    assert frame.index.name == "step" and list(frame.index) == [1, 2]
    assert frame.loc[1, "lr"] == 0.1 and frame.loc[2, "train/loss"] == 0.25
    assert "epoch" not in frame.columns  # Lightning's epoch scalar: a row key is no metric
    assert job.logs() == ""


@pytest.mark.parametrize("error, note", [
    (TensorBoardMissing(), "[sm_magic] install tensorboard to read the TensorBoard event files"),
    (BackendError("cannot read s3://b/x: AccessDenied"),
     "[sm_magic] the job's TensorBoard scalars are not read: cannot read s3://b/x: AccessDenied"),
])
def test_scalars_that_cannot_be_read_are_one_note_in_the_log(error, note):
    backend = Backend([error])
    job = Job("tb", backend)
    snap = job.snapshot()
    assert [line for line in snap.new_lines if line.startswith(note)] == snap.new_lines and len(snap.new_lines) == 1
    job.snapshot()
    assert job.metrics.empty
    assert job.logs().count("[sm_magic]") == 1 and backend.calls == 1  # said once, not tried again
