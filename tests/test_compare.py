"""Which run was best: sm_magic.compare's table and overlay plot, `%sagemaker_jobs --compare`,
`sm-magic jobs --compare`, and the final metrics and duration in the job listings.

Fast: jobs are recorded ones (a local job directory with its state file and log, as a finished job
leaves it, registered as usual) or Jobs over a fake backend; only the last test runs real jobs."""

import json
import math
import time

import pandas as pd
import pytest
from IPython.core.error import UsageError

import sm_magic
from sm_magic.backends.base import BackendError, JobState, Transition
from sm_magic.cli.main import main as cli
from sm_magic.jobs import final_metrics, lookup
from sm_magic.jobs.job import Job
from sm_magic.jobs.registry import JobRecord, Registry
from sm_magic.metrics import series
from sm_magic.metrics.direction import MetricDirectionError, check_overrides, direction
from sm_magic.metrics.overlay import overlay_lines, overlay_png
from sm_magic.sweeps.compare import CompareError, compare, comparison, plot

from helpers.jobscripts import EPOCHS_SCRIPT

PNG = b"\x89PNG\r\n\x1a\n"
T0 = 1_700_000_000.0


# -- which way is better ----------------------------------------------------------------------

@pytest.mark.parametrize("name, way", [
    ("accuracy", "max"), ("val_acc", "max"), ("eval/accuracy", "max"), ("valAccuracy", "max"), ("f1", "max"),
    ("macro_f1", "max"), ("precision", "max"), ("recall", "max"), ("auc", "max"), ("bleu", "max"),
    ("rouge1", "max"), ("rougeL", "max"), ("mAP", "max"), ("map@50", "max"), ("miou", "max"), ("iou", "max"),
    ("eval_score", "max"), ("top1_acc", "max"), ("eval_samples_per_second", "max"), ("throughput", "max"),
    ("loss", "min"), ("train_loss", "min"), ("eval/loss", "min"), ("trainLoss", "min"), ("error", "min"),
    ("top1_err", "min"), ("perplexity", "min"), ("ppl", "min"), ("mse", "min"), ("val_mae", "min"),
    ("rmse", "min"), ("wer", "min"), ("cer", "min"), ("iou_loss", "min"), ("epoch_time", "min"),
    ("train_runtime", "min"), ("mape", "min"),
    # Neither: the documented default.
    ("grad_norm", "min"), ("lr", "min"), ("heatmap", "min"),
])
def test_best_direction_follows_the_name(name, way):
    assert direction(name) == way


def test_best_direction_overrides_and_their_mistakes():
    assert direction("grad_norm", {"grad_norm": "max"}) == "max"
    assert direction("loss", {"loss": "max"}) == "max"
    assert check_overrides({"loss": "MAX"}, ["loss"]) == {"loss": "max"}
    assert check_overrides(None, ["loss"]) == {}
    with pytest.raises(MetricDirectionError, match="say 'max' .* or 'min'"):
        check_overrides({"loss": "lowest"}, ["loss"])
    with pytest.raises(MetricDirectionError, match="names val_los, which none of these jobs logs; their metrics: loss"):
        check_overrides({"val_los": "min"}, ["loss"])
    assert check_overrides({"val_loss": "min"}, []) == {"val_loss": "min"}   # no metrics yet: nothing to check
    with pytest.raises(MetricDirectionError, match="takes a dict"):
        check_overrides("min", ["loss"])  # type: ignore[arg-type]


def test_the_progress_tables_best_row_follows_the_same_rule():
    assert series.lower_is_better("val_loss") and not series.lower_is_better("val_acc")
    assert series.lower_is_better("grad_norm") == (direction("grad_norm") == "min")


# -- jobs to compare ------------------------------------------------------------------------------

def _epochs(accuracy: list[float], loss: list[float] | None = None) -> list[str]:
    lines = ["starting"]
    for epoch, acc in enumerate(accuracy):
        metrics = {"accuracy": acc, **({"loss": loss[epoch]} if loss else {})}
        lines.append(f"epoch {epoch}: {metrics!r}")
    return lines + ["done"]


def _state(name: str, status="Completed", created=T0, seconds=60.0, hyperparameters=None) -> JobState:
    done = status in ("Completed", "Failed", "Stopped")
    transitions = [Transition("Starting", created, created + 5, "Preparing the instances for training"),
                   Transition("Training", created + 5, created + 5 + seconds if done else None, "Training in progress")]
    if done:
        end = created + 5 + seconds
        transitions.append(Transition(status, end, end, f"Training job {status.lower()}"))
    return JobState(name=name, status=status, secondary_status=status if done else "Training", transitions=transitions,
                    creation_time=created, training_start_time=created + 5,
                    training_end_time=created + 5 + seconds if done else None,
                    training_seconds=int(seconds) if done else None, billable_seconds=int(seconds) if done else None,
                    instance_type="local", hyperparameters=dict(hyperparameters or {}))


def _recorded(sm_env, name: str, lines: list[str], hyperparameters=None, status="Completed", created=T0,
              seconds=60.0, registry_status=None) -> None:
    """A local job as a finished one leaves its directory (state file and log), registered as
    launches register them; the registry last saw it `registry_status` (default: its status)."""
    job_dir = sm_env / "sm_jobs" / name
    (job_dir / "logs").mkdir(parents=True)
    state = _state(name, status, created, seconds, hyperparameters)
    (job_dir / "state.json").write_text(json.dumps(state.to_dict()))
    (job_dir / "logs" / "algo-1.log").write_text("".join(f"{line}\n" for line in lines))
    Registry().add(JobRecord(name=name, backend="local", created=created, status=registry_status or status,
                             instance_type="local", location=str(job_dir),
                             hyperparameters=dict(hyperparameters or {})))


class FakeBackend:
    """The Backend protocol over states and log lines held in memory (no processes)."""

    name = "fake"
    poll_interval = 0.01
    simulates_interruptions = False

    def __init__(self):
        self.states: dict[str, JobState] = {}
        self.lines: dict[str, list[str]] = {}
        self.broken: set[str] = set()
        self.reads = 0

    def add(self, state: JobState, lines: list[str]) -> "FakeBackend":
        self.states[state.name], self.lines[state.name] = state, lines
        return self

    def describe(self, name: str) -> JobState:
        if name in self.broken:
            raise BackendError(f"fake job {name}: its state is unreadable")
        return JobState.from_dict(self.states[name].to_dict())

    def logs(self, name: str, cursor=None):
        self.reads += 1
        start = cursor or 0
        chunk = self.lines[name][start:start + 5000]
        return chunk, start + len(chunk)

    def stop(self, name: str) -> None:
        pass


@pytest.fixture
def three(sm_env):
    """Three finished jobs of a learning-rate sweep: the middle one is the most accurate."""
    _recorded(sm_env, "lr-small", _epochs([0.5, 0.6, 0.7], [1.0, 0.8, 0.6]), {"lr": "0.01", "epochs": "3"},
              created=T0, seconds=30)
    _recorded(sm_env, "lr-mid", _epochs([0.6, 0.9, 0.8], [0.9, 0.3, 0.4]), {"lr": "0.05", "epochs": "3"},
              created=T0 + 1, seconds=40)
    _recorded(sm_env, "lr-big", _epochs([0.4, 0.5], [2.0, 1.5]), {"lr": "0.5", "warmup": "10"},
              status="Failed", created=T0 + 2, seconds=20)
    return ["lr-small", "lr-mid", "lr-big"]


def test_one_row_per_job_with_hyperparameters_seconds_and_last_and_best_metrics(three):
    df = compare(three)
    assert list(df.columns) == ["name", "status", "lr", "epochs", "warmup", "billable_s", "duration_s", "cost_usd",
                                "accuracy_last", "accuracy_best", "loss_last", "loss_best", "created"]
    # Sorted by the first metric's best value, best first.
    assert list(df["name"]) == ["lr-mid", "lr-small", "lr-big"]
    mid = df.iloc[0]
    assert mid["status"] == "Completed" and mid["accuracy_last"] == 0.8 and mid["accuracy_best"] == 0.9
    assert mid["loss_last"] == 0.4 and mid["loss_best"] == 0.3          # loss: the lowest is best
    assert mid["billable_s"] == 40 and mid["duration_s"] == 45           # 5 s starting, 40 s training
    assert mid["created"] == pd.Timestamp(T0 + 1, unit="s").floor("s")
    # Hyperparameters are numbers where every value reads as one; a job without one has NaN.
    assert df["lr"].dtype == float and list(df["lr"]) == [0.05, 0.01, 0.5]
    assert math.isnan(df.set_index("name").loc["lr-small", "warmup"])
    assert df.set_index("name").loc["lr-big", "status"] == "Failed"


def test_sort_by_a_metric_a_metric_column_or_any_column(three):
    assert list(compare(three, sort_by="loss")["name"]) == ["lr-mid", "lr-small", "lr-big"]    # lowest loss first
    assert list(compare(three, sort_by="loss_last")["name"]) == ["lr-mid", "lr-small", "lr-big"]
    assert list(compare(three, sort_by="accuracy_last")["name"]) == ["lr-mid", "lr-small", "lr-big"]
    assert list(compare(three, sort_by="lr")["name"]) == ["lr-small", "lr-mid", "lr-big"]      # ascending
    assert list(compare(three, sort_by="duration_s")["name"]) == ["lr-big", "lr-small", "lr-mid"]
    # best= turns a direction round: the highest loss is now "best", so first.
    flipped = compare(three, sort_by="loss", best={"loss": "max"})
    assert list(flipped["name"]) == ["lr-big", "lr-small", "lr-mid"] and flipped.iloc[0]["loss_best"] == 2.0
    with pytest.raises(CompareError, match=r"cannot sort by acc: .*these jobs' metrics: accuracy, loss; columns: name, "):
        compare(three, sort_by="acc")


def test_without_metrics_jobs_are_in_launch_order_and_a_hyperparameter_never_hides_a_column(sm_env):
    _recorded(sm_env, "b-later", ["no metrics here"], {"name": "x", "status": "y"}, created=T0 + 5)
    _recorded(sm_env, "a-first", ["nothing"], {"name": "z"}, created=T0)
    df = compare(["b-later", "a-first"])
    assert list(df["name"]) == ["a-first", "b-later"]
    assert list(df.columns) == ["name", "status", "hp.name", "hp.status", "billable_s", "duration_s", "cost_usd", "created"]
    assert list(df["hp.name"]) == ["z", "x"] and df["hp.status"].isna().tolist() == [True, False]
    with pytest.raises(CompareError, match="no metric named loss to plot; these jobs log no metrics"):
        plot(["a-first"], "loss")


def test_jobs_and_names_mixed_and_a_broken_job_never_hides_the_others(sm_env):
    fake = FakeBackend()
    fake.add(_state("fake-1", hyperparameters={"lr": "0.1"}), _epochs([0.2, 0.95]))
    fake.add(_state("fake-broken"), [])
    fake.broken.add("fake-broken")
    _recorded(sm_env, "rec-1", _epochs([0.5]), {"lr": "0.2"})
    _recorded(sm_env, "rec-deleted", _epochs([0.9]), created=T0 + 9)
    (sm_env / "sm_jobs" / "rec-deleted" / "state.json").unlink()
    (sm_env / "sm_jobs" / "rec-deleted" / "logs" / "algo-1.log").unlink()
    (sm_env / "sm_jobs" / "rec-deleted" / "logs").rmdir()
    (sm_env / "sm_jobs" / "rec-deleted").rmdir()
    jobs = [Job("fake-1", fake), "rec-1", Job("fake-broken", fake), "rec-deleted", "rec-1"]  # a repeat is one row
    df = compare(jobs).set_index("name")
    assert list(df.index) == ["fake-1", "rec-1", "fake-broken", "rec-deleted"]
    assert df.loc["fake-1", "accuracy_best"] == 0.95 and df.loc["rec-1", "accuracy_best"] == 0.5
    assert (df.loc[["fake-broken", "rec-deleted"], "status"] == "Unknown").all()
    assert df.loc["fake-broken", "note"] == "fake job fake-broken: its state is unreadable"
    assert "no longer exists" in df.loc["rec-deleted", "note"] and df.loc["fake-1", "note"] == ""
    # What the registry knows of a job whose files are gone is still shown.
    assert df.loc["rec-deleted", "created"] == pd.Timestamp(T0 + 9, unit="s").floor("s")
    # One Job alone, and the module itself called as the function (sm_magic.compare is both).
    assert list(compare(Job("fake-1", fake))["name"]) == ["fake-1"]
    assert list(sm_magic.compare(["rec-1"])["name"]) == ["rec-1"]


def test_an_unknown_name_or_no_job_is_a_clear_error_and_reads_no_log(sm_env):
    _recorded(sm_env, "known", _epochs([0.5]))
    fake = FakeBackend().add(_state("fake-1"), _epochs([0.1]))
    with pytest.raises(CompareError, match=r"no job or sweep named nope, nada in the registry \(.*\); `%sagemaker_jobs` "
                                           r"\(or `sm-magic jobs`\) lists the known jobs"):
        compare([Job("fake-1", fake), "known", "nope", "nada"])
    assert fake.reads == 0
    with pytest.raises(CompareError, match="no jobs to compare"):
        compare([])
    with pytest.raises(CompareError, match="not int"):
        compare([3])


# -- the overlay plot -----------------------------------------------------------------------------

def test_the_overlay_plot_has_one_line_per_job_that_logged_the_metric(three):
    key, lines = overlay_lines({"a": [{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.5}],
                                "b": [{"epoch": 0, "loss": 2.0}], "c": [{"epoch": 0, "acc": 1.0}]}, "loss")
    assert key == "epoch" and lines == {"a": ([0, 1], [1.0, 0.5]), "b": ([0], [2.0])}
    assert overlay_lines({"a": [{"epoch": 0, "loss": 1.0}], "b": [{"step": 5, "loss": 1.0}]}, "loss")[0] is None
    png = plot(three, "accuracy")
    assert png.startswith(PNG)
    assert overlay_png({"a": [{"epoch": 0, "acc": 1.0}]}, "loss") == b""
    many = {f"job-{i}": [{"epoch": 0, "loss": 1.0 + i}, {"epoch": 1, "loss": 0.5 + i}] for i in range(30)}
    assert overlay_png(many, "loss").startswith(PNG)   # no legend past LEGEND_JOBS; the title says how many


def test_the_overlay_plot_of_40000_rows_draws_a_bounded_number_of_points():
    rows = [{"step": i, "loss": 10 * math.exp(-i / 4000) + (50 if i == 20_000 else 0)} for i in range(40_000)]
    small = [{"step": i, "loss": 10 * math.exp(-i / 40)} for i in range(300)]
    keep: dict = {}
    key, lines = overlay_lines({"long": rows, "short": small}, "loss", keep)
    xs, ys = lines["long"]
    assert key == "step" and len(xs) <= series.PLOT_POINTS + 2 and 50 + 10 * math.exp(-5) in ys  # the spike is kept
    assert xs[0] == 0 and xs[-1] == 39_999
    started = time.process_time()  # this process's CPU, not the wall clock that a busy machine stretches
    png = overlay_png({"long": rows, "short": small}, "loss", keep)   # kept series: only new rows are thinned
    redraw = time.process_time() - started
    assert png.startswith(PNG) and len(png) < 200_000 and redraw < 5


def test_a_long_job_over_a_backend_is_plotted_from_its_whole_log():
    fake = FakeBackend()
    fake.add(_state("long"), [json.dumps({"step": i, "loss": 1 / (i + 1)}) for i in range(40_000)])
    fake.add(_state("short"), [json.dumps({"step": i, "loss": 2 / (i + 1)}) for i in range(40)])
    result = comparison([Job("long", fake), Job("short", fake)])
    assert list(result.frame["name"]) == ["long", "short"] and result.frame.iloc[0]["loss_best"] == 1 / 40_000
    assert result.png().startswith(PNG)


# -- %sagemaker_jobs --compare and sm-magic jobs --compare ------------------------------------------

def test_the_magic_compares_named_jobs(ip, three, capsys, monkeypatch):
    from sm_magic.magic import follow

    df = ip.run_line_magic("sagemaker_jobs", "--compare lr-small lr-mid lr-big --sort loss")
    assert isinstance(df, pd.DataFrame) and list(df["name"]) == ["lr-mid", "lr-small", "lr-big"]
    # A terminal shell shows no image; it says where the plot is.
    assert "The plot of loss across these jobs shows in a notebook" in capsys.readouterr().out
    # In a kernel, the plot of the chosen metric is displayed above the table.
    shown = []
    monkeypatch.setattr(follow, "in_kernel", lambda shell: True)
    monkeypatch.setattr(follow, "display", shown.append)
    df = ip.run_line_magic("sagemaker_jobs", "--compare lr-small lr-mid --metric loss")
    assert list(df["name"]) == ["lr-mid", "lr-small"] and len(shown) == 1 and shown[0].data.startswith(PNG)
    assert shown[0].data == plot(["lr-small", "lr-mid"], "loss")


def test_a_sweeps_name_compares_its_jobs_in_the_grids_order(three, ip, capsys):
    from sm_magic.sweeps.sweep import grid_record

    grid = {"lr": ["0.01", "0.05", "0.5"]}
    # Recorded as a sweep's launches record them, listed newest first by the registry.
    for index, name in [(3, "lr-big"), (1, "lr-small"), (2, "lr-mid")]:
        Registry().merge_extra(name, {"sweep": {"name": "lrs", "index": index, "size": 3,
                                                "values": {"lr": grid["lr"][index - 1]}, "grid": grid_record(grid)}})
    assert list(compare("lrs", sort_by="lr")["name"]) == ["lr-small", "lr-mid", "lr-big"]
    assert list(compare(["lrs", "lr-mid"])["name"]) == ["lr-mid", "lr-small", "lr-big"]  # each job once
    df = ip.run_line_magic("sagemaker_jobs", "--compare lrs --sort loss")
    assert list(df["name"]) == ["lr-mid", "lr-small", "lr-big"]
    capsys.readouterr()
    assert cli(["jobs", "--compare", "lrs", "--sort", "lr"]) == 0
    assert [line.lstrip("* ").split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == \
        ["lr-small", "lr-mid", "lr-big"]
    # The listings say which sweep each job is a point of (`--wide`: the compact one fits 100 columns).
    assert cli(["jobs", "--wide"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    column = header.index("SWEEP")
    assert len(lines) == 3 and all(line[column:].split()[0] == "lrs" for line in lines), lines
    assert set(ip.run_line_magic("sagemaker_jobs", "")["sweep"]) == {"lrs"}


@pytest.mark.parametrize("line, message", [
    ("--compare", r"--compare NAME \[NAME ...\]: name the jobs to compare \(`%sagemaker_jobs` lists them\)"),
    ("--compare lr-mid nope", r"no job or sweep named nope in the registry .*`%sagemaker_jobs` \(or `sm-magic jobs`\) lists"),
    ("--compare lr-mid --sort acc", r"cannot sort by acc: .*these jobs' metrics: accuracy, loss"),
    ("--compare lr-mid --metric acc", r"no metric named acc to plot; these jobs' metrics: accuracy, loss"),
    ("--sort loss", r"--sort and --metric go with --compare"),
    ("3 --compare lr-mid", r"--compare takes job names only"),
    ("zero", r"N is how many of the newest jobs to list"),
])
def test_the_magics_compare_mistakes_are_usage_errors(ip, three, line, message):
    with pytest.raises(UsageError, match=message):
        ip.run_line_magic("sagemaker_jobs", line)


def test_the_command_compares_named_jobs_and_says_mistakes_in_one_line(three, capsys):
    assert cli(["jobs", "--compare", "lr-small", "lr-mid", "--sort", "lr"]) == 0
    out = capsys.readouterr().out.splitlines()
    # Compact: the best row marked, name, status, the first metric's best, the arguments that differ, duration.
    assert out[0].split() == ["name", "status", "accuracy", "(max)", "lr", "duration"], out
    assert out[1].lstrip("* ").split()[:2] == ["lr-small", "Completed"] and out[2].lstrip("* ").split()[0] == "lr-mid"
    assert [line.startswith("*") for line in out[1:]].count(True) == 1 and max(map(len, out)) <= 100
    assert cli(["jobs", "--compare", "lr-small", "lr-mid", "--sort", "lr", "--wide"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["name", "status", "lr", "epochs"]
    assert out[1].split()[:3] == ["lr-small", "Completed", "0.01"] and out[2].split()[0] == "lr-mid"
    for argv, message in [(["jobs", "--compare"], "--compare NAME [NAME ...]: name the jobs to compare"),
                          (["jobs", "--compare", "nope"], "no job or sweep named nope in the registry"),
                          (["jobs", "--compare", "lr-mid", "--sort", "acc"], "cannot sort by acc"),
                          (["jobs", "--sort", "acc"], "--sort goes with --compare")]:
        assert cli(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.startswith(f"sm-magic: {message}") and err.count("\n") == 1, err


# -- the listings: final metrics and duration -------------------------------------------------------

def test_a_job_seen_ending_records_its_final_metrics_and_later_listings_read_no_log(sm_env, ip, capsys):
    # Seen running by the registry; it has ended since.
    _recorded(sm_env, "ended-since", _epochs([0.5, 0.75], [0.5, 0.25]), {"lr": "0.1"}, seconds=65,
              registry_status="InProgress")
    # Ended before sm_magic recorded final metrics: it shows none, and its log is not read.
    _recorded(sm_env, "ended-before", _epochs([0.9]), created=T0 - 100)
    rows = {row.record.name: row for row in lookup.list_jobs()}
    assert rows["ended-since"].status == "Completed" and rows["ended-since"].metrics == {"accuracy": 0.75, "loss": 0.25}
    assert rows["ended-since"].duration == 70
    assert rows["ended-before"].metrics == {} and rows["ended-before"].duration is None
    record = Registry().get("ended-since")
    assert record.status == "Completed" and final_metrics.read(record.extra).metrics == {"accuracy": 0.75, "loss": 0.25}
    assert record.extra["final"]["billable"] == 65 and "location" not in record.extra  # merged, nothing else lost
    # From now on the record answers: the log may even be gone.
    (sm_env / "sm_jobs" / "ended-since" / "logs" / "algo-1.log").unlink()
    table = ip.run_line_magic("sagemaker_jobs", "")
    by_name = table.set_index("name")
    assert list(table.columns) == ["name", "backend", "status", "instance", "created", "duration", "metrics",
                                   "hyperparameters"]
    assert by_name.loc["ended-since", "metrics"] == "accuracy=0.75 loss=0.25"
    assert by_name.loc["ended-since", "duration"] == "1:10" and by_name.loc["ended-before", "duration"] == ""
    assert by_name.loc["ended-before", "metrics"] == ""
    capsys.readouterr()
    assert cli(["jobs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "BACKEND", "STATUS", "CREATED", "DURATION", "METRICS"]
    line = next(l for l in lines if l.startswith("ended-since"))
    assert line.split()[2] == "Completed" and line.endswith("1:10     accuracy=0.75 loss=0.25")
    assert cli(["jobs", "--wide"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "BACKEND", "STATUS", "CREATED", "INSTANCE", "DURATION", "COST", "METRICS"]
    line = next(l for l in lines if l.startswith("ended-since"))
    assert line.split()[2] == "Completed" and line.endswith("1:10      -         accuracy=0.75 loss=0.25")  # a local job: no price


def test_a_running_job_is_listed_with_its_time_so_far_and_no_metrics(sm_env, monkeypatch):
    from sm_magic.backends.local.backend import LocalBackend

    _recorded(sm_env, "running", _epochs([0.5]), status="InProgress", created=time.time() - 125)
    with monkeypatch.context() as patched:  # only while listing: the teardown's end_jobs must see it has no runner
        patched.setattr(LocalBackend, "_runner_alive", lambda self, name, files, state: True)  # no runner to prove
        (row,) = lookup.list_jobs()
    assert row.status == "InProgress" and row.metrics == {} and 124 <= row.duration <= 140


def test_compact_metrics_are_few_and_width_bounded():
    assert final_metrics.compact({}) == ""
    assert final_metrics.compact({"loss": 0.123456, "acc": 0.93}) == "loss=0.1235 acc=0.93"
    assert final_metrics.compact({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": float("nan")}) == "a=1 b=2 c=3 (+2)"
    text = final_metrics.compact({"a_very_long_metric_name_indeed": 0.5, "another_long_metric_name_x": 1.5})
    assert text == "a_very_long_metric_\u2026=0.5 (+1)" and len(text) <= 40
    assert final_metrics.last_values([{"epoch": 0, "loss": 1.0, "acc": 0.5}, {"epoch": 1, "loss": float("nan")}]) \
        == pytest.approx({"loss": float("nan"), "acc": 0.5}, nan_ok=True)
    assert final_metrics.read({"final": "damaged"}) == final_metrics.Final()


def test_a_stream_misses_no_line_that_the_ending_hook_read_first():
    """The status hook reads an ended job's log to record its final metrics; the snapshot right
    after still hands every line to the printer (SDK-style streams, the monitor)."""
    fake = FakeBackend().add(_state("hooked"), _epochs([0.5, 0.6]))
    seen = []
    job: Job

    def hook(state):
        if state.done:
            seen.append(dict(final_metrics.last_values(job.metric_rows())))

    job = Job("hooked", fake, on_status=hook)
    snap = job.snapshot()
    assert seen == [{"accuracy": 0.6}] and snap.new_lines == _epochs([0.5, 0.6])
    assert job.snapshot().new_lines == []
    job.logs()  # read by someone else: nothing new to report, and nothing lost
    assert job.snapshot().new_lines == []


# -- real jobs --------------------------------------------------------------------------------------

@pytest.mark.jobs
def test_two_real_local_jobs_compared_after_they_end(sm_env, ip):
    short = sm_magic.launch(EPOCHS_SCRIPT, args=["--epochs", "2", "--lr", "0.1"], name="real-short")
    longer = sm_magic.launch(EPOCHS_SCRIPT, args=["--epochs", "3", "--lr", "0.05"], name="real-long")
    short.wait(timeout=120)
    longer.wait(timeout=120)
    df = sm_magic.compare(["real-short", longer])
    assert list(df["name"]) == ["real-long", "real-short"]           # the best accuracy first
    assert list(df["accuracy_best"]) == [pytest.approx(0.7), pytest.approx(0.6)]
    assert list(df["lr"]) == [0.05, 0.1] and list(df["epochs"]) == [3, 2]
    assert (df["status"] == "Completed").all() and (df["billable_s"] >= 0).all() and (df["duration_s"] > 0).all()
    assert sm_magic.compare.plot(["real-short", "real-long"], "f1").startswith(PNG)
    # The handles that saw the jobs end recorded their final metrics: the listing reads no log.
    table = ip.run_line_magic("sagemaker_jobs", "").set_index("name")
    assert table.loc["real-long", "metrics"] == "accuracy=0.7 f1=0.65"
    assert table.loc["real-short", "duration"] != ""
