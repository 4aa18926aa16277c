"""Sweeps: `--sweep NAME=V1,V2` and `sm_magic.sweep(...)`: the grid, every refusal (nothing
launched, nothing written), each job's arguments and name, the queue that runs at most K at once
(with a fake launcher: fast and deterministic), and real local jobs (tests/conftest.py's JOBS_TESTS)."""

import io
import json
import time

import nbformat
import pytest
from IPython.core.error import UsageError

import sm_magic
from sm_magic.backends import BackendError
from sm_magic.backends.base import JobState
from sm_magic.bundle.build import hyperparameters_from_args
from sm_magic.cli.main import main
from sm_magic.config.model import TrainConfig
from sm_magic.jobs.job import Snapshot
from sm_magic.jobs.registry import JobRecord, Registry
from sm_magic.plan.checks import LaunchError
from sm_magic.plan.train_line import LineError
from sm_magic.sweeps import grid as sweep_grid
from sm_magic.sweeps import sweep as sweeps
from sm_magic.sweeps.launch import _parallel, default_parallel
from sm_magic.sweeps.sweep import CANCELLED, LAUNCH_FAILED, NOT_STARTED, QUEUED, Point, Sweep, quota_refused
from sm_magic.widgets.sweep_table import print_sweep, sweep_text

from helpers.jobscripts import script, wait_until

PRINT_ARGS = script("""
    import argparse, json, sys, time
    p = argparse.ArgumentParser()
    p.add_argument("--lr", type=float); p.add_argument("--epochs", type=int); p.add_argument("--tag")
    a = p.parse_args()
    print("argv " + json.dumps(sys.argv[1:]), flush=True)
    time.sleep(2)
    print(f"epoch 0: {{'loss': {a.lr * 10}}}")
""")

SLOW = script("""
    import argparse, time
    p = argparse.ArgumentParser()
    p.add_argument("--lr")
    p.parse_args()
    print("started", flush=True)
    time.sleep(600)
""")


def _nothing_written(sm_env):
    jobs = sm_env / "sm_jobs"
    return Registry().list() == [] and (not jobs.exists() or not any(jobs.iterdir()))


# -- the grid -------------------------------------------------------------------------------------

def test_flags_make_the_grid_in_order_and_its_points_vary_the_last_name_fastest():
    grid = sweep_grid.check_grid(sweep_grid.parse_flags(["lr=0.01,0.05,0.1", "batch-size=32,64"]))
    assert grid == {"lr": ["0.01", "0.05", "0.1"], "batch-size": ["32", "64"]}
    points = sweep_grid.points(grid)
    assert len(points) == 6 == sweep_grid.size(grid)
    assert points[:3] == [{"lr": "0.01", "batch-size": "32"}, {"lr": "0.01", "batch-size": "64"},
                          {"lr": "0.05", "batch-size": "32"}]


@pytest.mark.parametrize("flags, message", [
    (["lr="], "no values after `=`"),
    (["=1,2"], "no name before `=`"),
    (["lr"], "expected NAME=V1,V2"),
    (["lr=1,,2"], "an empty value"),
    (["lr=1,2,"], "an empty value"),
    (["lr=1", "lr=2"], "lr is swept twice"),
])
def test_a_malformed_sweep_flag_is_refused_saying_what_to_write(flags, message):
    with pytest.raises(LineError, match=message):
        sweep_grid.parse_flags(flags)


@pytest.mark.parametrize("grid, message", [
    ({}, "the sweep has no grid"),
    ([("lr", [1])], "the sweep has no grid"),
    ({"--lr": [1]}, "name without its dashes"),
    ({"lr rate": [1]}, "give the script argument's name"),
    ({"lr": "0.1,0.2"}, "give its values as a list"),
    ({"lr": 0.1}, "give its values as a list"),
    ({"lr": []}, "no values"),
    ({"lr": [0.1, 0.1]}, "0.1 is given twice"),
    ({"lr": ["0.1", "0.10"]}, "0.10 is the same number as 0.1"),
    ({"lr": [0.1, " "]}, "an empty value"),
    ({"fp16": [True, False]}, "is a Python bool"),
    ({"lr": [None]}, "not a string or a number"),
    ({"batch-size": [1], "batch_size": [2]}, "batch-size and batch_size set the same script argument"),
])
def test_a_malformed_grid_is_refused(grid, message):
    with pytest.raises(LaunchError, match=message):
        sweep_grid.check_grid(grid)


def test_python_values_become_the_text_the_script_gets():
    assert sweep_grid.check_grid({"lr": [1e-5, 0.1], "layers": [2], "opt": ["adam"]}) == \
        {"lr": ["1e-05", "0.1"], "layers": ["2"], "opt": ["adam"]}


def test_more_than_100_jobs_need_yes_and_10000_is_the_most():
    grid = {"a": list(range(11)), "b": list(range(10))}
    with pytest.raises(LaunchError, match=r"110 jobs \(11 a x 10 b\), more than 100: add --yes"):
        sweep_grid.check_size(grid, yes=False)
    assert sweep_grid.check_size(grid, yes=True) == 110
    with pytest.raises(LaunchError, match="at most 10,000"):
        sweep_grid.check_size({"a": list(range(101)), "b": list(range(100))}, yes=True)


def test_each_point_gets_its_values_before_the_sweeps_own_arguments_and_as_hyperparameters():
    args = sweep_grid.point_args({"lr": "0.01", "batch-size": "32"}, ["--epochs", "3", "--fp16"])
    assert args == ["--lr", "0.01", "--batch-size", "32", "--epochs", "3", "--fp16"]
    assert hyperparameters_from_args(args) == {"lr": "0.01", "batch-size": "32", "epochs": "3", "fp16": "True"}
    # A value that starts with `-` goes in one token, which argparse never takes for an option.
    assert sweep_grid.point_args({"offset": "-1", "mode": "-x"}, []) == ["--offset=-1", "--mode=-x"]


@pytest.mark.parametrize("args", [["--lr", "0.1"], ["--lr=0.1"], ["--epochs", "2", "--lr", "1"]])
def test_a_swept_name_the_scripts_arguments_also_set_is_refused_naming_both(args):
    with pytest.raises(LaunchError, match=r"--sweep lr=\.\.\. and the script argument --lr(=0\.1)? \(after --\) both set lr"):
        sweep_grid.check_args_free({"lr": ["0.01"]}, args)


def test_the_other_spelling_of_a_swept_name_is_the_same_argument():
    with pytest.raises(LaunchError, match="--batch_size"):
        sweep_grid.check_args_free({"batch-size": ["32"]}, ["--batch_size", "8"])
    sweep_grid.check_args_free({"lr": ["0.01"]}, ["--lr-decay", "0.5", "--", "--lr"])  # other names, positional


def test_jobs_are_named_after_the_sweep_padded_to_the_grid_size():
    assert sweep_grid.job_names("lr-sweep", 6) == [f"lr-sweep-{i}" for i in range(1, 7)]
    assert sweep_grid.job_names("s", 12)[:2] == ["s-01", "s-02"] and sweep_grid.job_names("s", 100)[-1] == "s-100"
    with pytest.raises(LaunchError, match="its last job would be .*-10, 64 characters.*choose a shorter --name"):
        sweep_grid.check_sweep_name("a" * 61, 10, given=True)
    with pytest.raises(LaunchError, match="is not a valid sweep name"):
        sweep_grid.check_sweep_name("bad_name", 2, given=True)


# -- every refusal before anything launches, through the magic and sm_magic.sweep -------------

@pytest.mark.parametrize("line, message", [
    ("--sweep lr=", "no values after `=`"),
    ("--sweep =1,2", "no name before `=`"),
    ("--sweep lr", "expected NAME=V1,V2"),
    ("--sweep lr=1 --sweep lr=2", "lr is swept twice"),
    ("--sweep lr=0.1,0.1", "0.1 is given twice"),
    ("--sweep lr=0.01,0.1 -- --epochs 2 --lr 0.1", r"--sweep lr=\.\.\. and the script argument --lr \(after --\) both set lr"),
    ("--sweep a=" + ",".join(map(str, range(11))) + " --sweep b=" + ",".join(map(str, range(10))),
     "110 jobs .* more than 100: add --yes"),
    ("--sweep lr=1,2 --sweep-max-parallel 0", r"--sweep-max-parallel \(max_parallel\) 0: give a whole number"),
    ("--sweep-max-parallel 2", "--sweep-max-parallel goes with --sweep"),
    ("--yes", "--yes goes with --sweep"),
    ("--sweep lr=1,2 --edit", "--edit does not go with --sweep yet"),
    ("--sweep lr=1,2 --name " + "n" * 62, "its last job would be"),
    ("--backend local --sweep-max-parallel 65 --sweep a=" + ",".join(map(str, range(70))),
     "give --sweep-max-parallel .* or fewer"),  # the local backend runs at most 64 hosts at once
    ("--sweep lr=1,2 --metric loss", "NAME=REGEX"),  # a point's own plan refuses it
])
def test_a_refused_sweep_launches_nothing_and_writes_nothing(ip, sm_env, line, message):
    with pytest.raises(UsageError, match=message):
        ip.run_cell_magic("sagemaker_train", line, "print(1)\n")
    assert _nothing_written(sm_env)


def test_a_sweep_name_that_is_already_a_job_or_a_sweep_is_refused(ip, sm_env):
    registry = Registry()
    registry.add(JobRecord(name="taken", backend="local", created=time.time()))
    registry.add(JobRecord(name="old-1", backend="local", created=time.time(),
                           extra={"sweep": {"name": "old", "index": 1, "size": 1, "values": {"lr": "1"}}}))
    with pytest.raises(UsageError, match="a job named taken is already in the registry.*another --name"):
        ip.run_cell_magic("sagemaker_train", "--name taken --sweep lr=1,2", "print(1)\n")
    with pytest.raises(UsageError, match=r"a sweep named old is already in the registry \(its jobs old-1\)"):
        ip.run_cell_magic("sagemaker_train", "--name old --sweep lr=1,2,3", "print(1)\n")
    # A point whose job name is taken is refused by that point's own plan, before any point starts.
    registry.add(JobRecord(name="grid-2", backend="local", created=time.time()))
    with pytest.raises(UsageError, match="a job named grid-2 is already in the registry"):
        ip.run_cell_magic("sagemaker_train", "--name grid --sweep lr=1,2", "print(1)\n")
    assert [r.name for r in registry.list()] == ["grid-2", "old-1", "taken"]
    assert not (sm_env / "sm_jobs").exists() or not any((sm_env / "sm_jobs").iterdir())


def test_python_refusals_are_launch_errors_and_start_nothing(sm_env):
    with pytest.raises(LaunchError, match="no grid"):
        sm_magic.sweep("print(1)\n", grid={})
    with pytest.raises(LaunchError, match="add --yes"):
        sm_magic.sweep("print(1)\n", grid={"a": list(range(101))})
    with pytest.raises(LaunchError, match="max_parallel"):
        sm_magic.sweep("print(1)\n", grid={"a": [1, 2]}, max_parallel=0)
    with pytest.raises(LaunchError, match="both set lr"):
        sm_magic.sweep("print(1)\n", grid={"lr": [1, 2]}, args=["--lr=3"])
    with pytest.raises(Exception, match="syntax error in the cell"):
        sm_magic.sweep("def f(:\n", grid={"lr": [1, 2]})
    assert _nothing_written(sm_env)


def test_dry_run_shows_every_job_and_the_first_ones_plan_and_launches_nothing(ip, sm_env, capsys):
    ip.run_cell_magic("sagemaker_train", "--dry-run --name grid --backend local --sweep lr=0.01,0.1 "
                      "--sweep batch-size=32,64 --sweep-max-parallel 2 -- --epochs 3", "print(1)\n")
    out = capsys.readouterr().out
    assert "Dry run: nothing started. Sweep grid: 4 jobs on the local backend, at most 2 at a time." in out
    assert "  grid-1  --lr 0.01 --batch-size 32 --epochs 3" in out
    assert "  grid-4  --lr 0.1 --batch-size 64 --epochs 3" in out
    assert "The first job:\nDry run: nothing started. Job grid-1 on the local backend." in out
    assert '"lr": "0.01", "batch-size": "32", "epochs": "3"' in out
    assert _nothing_written(sm_env)


def test_export_refuses_a_sweep_cell(sm_env, capsys):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%%sagemaker_train --sweep lr=1,2\nprint(1)\n")]
    nbformat.write(nb, sm_env / "sweep.ipynb")
    assert main(["export", str(sm_env / "sweep.ipynb"), "--out", "out"]) == 2
    assert "cell 1: a --sweep cell cannot be exported yet" in capsys.readouterr().err


@pytest.mark.jobs
def test_a_sweep_from_a_branch_fetches_once_and_every_job_runs_that_commit(sm_env, tmp_dir, monkeypatch):
    from sm_magic.bundle import git_source

    from helpers.gitrepos import Repo

    repo = Repo(sm_env / "repos" / "proj")
    fetches = []
    real_fetch = git_source.fetch
    monkeypatch.setattr(git_source, "fetch", lambda *a, **k: fetches.append(a) or real_fetch(*a, **k))
    sweep = sm_magic.sweep(None, grid={"lr": [1, 2, 3]}, git_repo=repo.url, git_branch="main", backend="local",
                           name="g", max_parallel=1)
    repo.write("helper.py", 'VERSION = "moved"\n')  # the branch moves while the sweep runs
    repo.commit("moved")
    sweep.wait(timeout=240)
    assert sweep.status == "Completed" and len(fetches) == 1
    for i, job in enumerate(sweep, start=1):
        assert f"entry=train.py helper=main-2 argv=['--lr', '{i}']" in job.logs()
        origin = Registry().get(job.name).extra["git"]
        assert (origin["commit"], origin["branch"]) == (repo.second, "main")
    assert not any(tmp_dir.iterdir())  # the one checkout removed once the last point launched


def test_the_function_sm_magic_sweep_outlives_the_import_of_its_modules():
    import sm_magic.sweeps.launch  # noqa: F401
    import sm_magic.sweeps.sweep  # noqa: F401

    assert callable(sm_magic.sweep) and sm_magic.sweep.__module__ == "sm_magic.sweeps.launch"
    assert sm_magic.Sweep is Sweep and sm_magic.attach is sweeps.attach


# -- how many at once -------------------------------------------------------------------------------

def test_the_default_parallelism_is_one_host_per_cpu_locally_one_with_gpus_and_all_on_sagemaker(monkeypatch):
    import sm_magic.backends.local.backend as lb
    import sm_magic.sweeps.launch as sl

    monkeypatch.setattr(lb, "gpu_count", lambda: 0)
    monkeypatch.setattr(sl.os, "cpu_count", lambda: 8)
    assert default_parallel("local", TrainConfig()) == 8
    assert default_parallel("local", TrainConfig(num_machines=2, distributed_type="DATA_PARALLEL")) == 4
    assert default_parallel("sagemaker", TrainConfig()) is None
    assert _parallel(None, "sagemaker", TrainConfig(), 30) == 30 and _parallel(5, "sagemaker", TrainConfig(), 30) == 5
    assert _parallel(None, "local", TrainConfig(), 3) == 3  # never more than the points
    monkeypatch.setattr(lb, "gpu_count", lambda: 2)
    assert default_parallel("local", TrainConfig()) == 1
    assert default_parallel("local", TrainConfig(use_cpu=True)) == 8
    monkeypatch.setattr(lb, "max_local_hosts", lambda: 8)
    with pytest.raises(LaunchError, match="at most 8 hosts at once .* give --sweep-max-parallel 8 or fewer"):
        _parallel(9, "local", TrainConfig(), 20)


# -- the queue, with a fake launcher -------------------------------------------------------------

class FakeJob:
    poll_interval = 0.01

    def __init__(self, name):
        self.name, self.status, self.stopped = name, "InProgress", False

    @property
    def done(self):
        return self.status in ("Completed", "Failed", "Stopped")

    def stop(self):
        self.stopped, self.status = True, "Stopped"

    def finish(self, status="Completed"):
        self.status = status

    def snapshot(self, tail=20):  # what the monitor asks of a job it follows
        return Snapshot(state=JobState(name=self.name, status=self.status, secondary_status=self.status),
                        metrics=[], log_tail=[])


class FakeLauncher:
    """Starts FakeJobs, recording how many of its jobs ran when each started."""

    def __init__(self, refuse=None):
        self.jobs: dict[str, FakeJob] = {}
        self.running_at_start: list[int] = []
        self.refuse = refuse or {}   # name -> [exceptions to raise, one per try]

    def __call__(self, point):
        errors = self.refuse.get(point.name)
        if errors:
            raise errors.pop(0)
        self.running_at_start.append(sum(not j.done for j in self.jobs.values()))
        job = self.jobs[point.name] = FakeJob(point.name)
        return job


def _sweep(launcher, n=5, max_parallel=2, **kw) -> Sweep:
    grid = {"lr": [str(i) for i in range(n)]}
    names = sweep_grid.job_names("fake", n)
    entries = [Point(i, names[i - 1], v) for i, v in enumerate(sweep_grid.points(grid), start=1)]
    return Sweep("fake", grid, entries, launcher=launcher, max_parallel=max_parallel, backend="fake", poll=0.01, **kw)


def test_the_queue_runs_at_most_k_at_once_and_starts_the_next_as_one_ends():
    launcher = FakeLauncher()
    sweep = _sweep(launcher).start()
    assert [j.name for j in sweep.jobs][:1] == ["fake-1"]  # the first starts before start() returns
    wait_until(lambda: len(sweep.jobs) == 2, 10, "the second job")
    assert sweep.counts() == {"InProgress": 2, QUEUED: 3} and sweep.status == "InProgress"
    for n in range(1, 6):
        launcher.jobs[f"fake-{n}"].finish("Failed" if n == 4 else "Completed")
        wait_until(lambda: len(sweep.jobs) == min(5, n + 2), 10, f"job {n + 2} to start once job {n} ended")
    assert sweep.wait(timeout=10) is sweep
    assert max(launcher.running_at_start) <= 1  # each started with at most one other running
    assert [j.name for j in sweep] == [f"fake-{i}" for i in range(1, 6)] and len(sweep) == 5
    assert sweep[0].name == "fake-1" and [j.name for j in sweep[-2:]] == ["fake-4", "fake-5"]
    assert sweep.points == [{"lr": str(i)} for i in range(5)]
    assert sweep.counts() == {"Completed": 4, "Failed": 1} and sweep.status == "Failed"
    assert [p.name for p in sweep.failed] == ["fake-4"]
    assert repr(sweep) == "<Sweep fake 5 jobs: 4 Completed, 1 Failed>"


def test_stop_cancels_the_queued_points_and_stops_the_running_jobs():
    launcher = FakeLauncher()
    sweep = _sweep(launcher, n=4).start()
    wait_until(lambda: len(sweep.jobs) == 2, 10, "two jobs")
    assert sweep.stop() is sweep
    assert all(j.stopped for j in launcher.jobs.values())
    assert sweep.wait(timeout=10).counts() == {"Stopped": 2, CANCELLED: 2}
    assert sweep.status == "Stopped" and len(launcher.jobs) == 2


def test_a_quota_refusal_waits_and_is_tried_again_when_a_job_ends():
    refusal = BackendError("SageMaker refused training job fake-2: ResourceLimitExceeded: The account-level "
                           "service limit 'ml.p3.2xlarge for training job usage' is 1 Instances")
    launcher = FakeLauncher(refuse={"fake-2": [refusal]})
    sweep = _sweep(launcher, n=3, max_parallel=3, quota_retry=600).start()
    wait_until(lambda: sweep.entries[1].error and "ResourceLimitExceeded" in sweep.entries[1].error, 10,
               "the refusal to be noted")
    assert sweep.entries[1].state == QUEUED and len(sweep.jobs) == 1  # held: fake-3 waits behind it too
    assert any("fake-2: waiting: the account's quota refused it" in e for e in sweep.errors)
    launcher.jobs["fake-1"].finish()
    wait_until(lambda: len(sweep.jobs) == 3, 10, "fake-2 and fake-3 to start once fake-1 ended")
    assert sweep.entries[1].error is None and [j.name for j in sweep.jobs] == ["fake-1", "fake-2", "fake-3"]


def test_a_quota_refusal_is_tried_again_after_a_while_even_when_no_job_ends():
    refusal = BackendError("ResourceLimitExceeded: quota")
    launcher = FakeLauncher(refuse={"fake-1": [refusal]})
    sweep = _sweep(launcher, n=2, max_parallel=2, quota_retry=0.05).start()  # the first point refused: no raise
    wait_until(lambda: len(sweep.jobs) == 2, 10, "both jobs")
    assert [j.name for j in sweep.jobs] == ["fake-1", "fake-2"]


def test_quota_refusals_are_recognised_in_client_errors_and_their_causes():
    class ClientError(Exception):
        response = {"Error": {"Code": "ResourceLimitExceeded", "Message": "quota"}}

    assert quota_refused(ClientError("An error occurred"))
    try:
        try:
            raise ClientError("x")
        except ClientError as e:
            raise RuntimeError("launch failed") from e
    except RuntimeError as wrapped:
        assert quota_refused(wrapped)
    assert not quota_refused(BackendError("SageMaker refused training job x: AccessDenied: no"))


def test_a_failed_launch_is_recorded_and_the_others_go_on():
    launcher = FakeLauncher(refuse={"fake-2": [LaunchError("a job named fake-2 is already in the registry")]})
    sweep = _sweep(launcher, n=3, max_parallel=1).start()
    launcher.jobs["fake-1"].finish()
    wait_until(lambda: "fake-3" in launcher.jobs, 10, "fake-3")
    launcher.jobs["fake-3"].finish()
    sweep.wait(timeout=10)
    assert sweep.entries[1].state == LAUNCH_FAILED and "already in the registry" in sweep.entries[1].error
    assert sweep.errors == ["fake-2 (lr=1) did not start: a job named fake-2 is already in the registry"]
    assert sweep.status == "Failed" and [p.name for p in sweep.failed] == ["fake-2"]


def test_a_refused_first_launch_raises_and_starts_nothing_else():
    launcher = FakeLauncher(refuse={"fake-1": [BackendError("no usable AWS credentials")]})
    sweep = _sweep(launcher, n=3)
    with pytest.raises(BackendError, match="credentials"):
        sweep.start()
    assert launcher.jobs == {} and sweep._thread is None
    assert {p.state for p in sweep.entries} == {CANCELLED}


def test_the_queue_thread_never_dies_silently():
    class Broken(FakeJob):
        @property
        def poll_interval(self):
            raise RuntimeError("the backend is gone")

    class BrokenLauncher(FakeLauncher):
        def __call__(self, point):
            job = self.jobs[point.name] = Broken(point.name)
            return job

    sweep = _sweep(BrokenLauncher(), n=3, max_parallel=1).start()
    wait_until(lambda: sweep.errors, 10, "the error to be recorded")
    assert sweep.errors == ["the sweep's queue stopped: RuntimeError: the backend is gone"]
    assert [p.state for p in sweep.entries[1:]] == [LAUNCH_FAILED, LAUNCH_FAILED]
    assert sweep.entries[2].error == "the sweep's queue stopped: RuntimeError: the backend is gone"
    assert "1 error (sweep.errors)" in repr(sweep)


def test_wait_times_out_and_the_sweep_goes_on():
    sweep = _sweep(FakeLauncher(), n=1).start()
    with pytest.raises(TimeoutError, match="sweep fake has not ended after 0.05 s .*sweep.stop"):
        sweep.wait(timeout=0.05)


def test_stop_during_a_launch_stops_that_job_once_it_has_started():
    import threading

    release = threading.Event()

    class SlowLauncher(FakeLauncher):
        def __call__(self, point):
            if point.name == "fake-2":
                release.wait(10)
            return super().__call__(point)

    launcher = SlowLauncher()
    sweep = _sweep(launcher, n=3, max_parallel=3).start()
    wait_until(lambda: sweep.entries[1].state == sweeps.LAUNCHING, 10, "fake-2 to be launching")
    sweep.stop()
    release.set()
    wait_until(lambda: "fake-2" in launcher.jobs and launcher.jobs["fake-2"].stopped, 10, "fake-2 to be stopped")
    assert sweep.wait(timeout=10).counts() == {"Stopped": 2, CANCELLED: 1}


# -- attach, from the registry's records ----------------------------------------------------------

def test_a_sweep_is_found_again_from_its_records_with_the_points_that_never_started(sm_env):
    registry = Registry()
    grid = [["lr", ["0.1", "0.2"]], ["bs", ["8", "16"]]]  # as recorded: in order
    for index, values in ((1, {"lr": "0.1", "bs": "8"}), (3, {"lr": "0.2", "bs": "8"})):
        registry.add(JobRecord(name=f"old-{index}", backend="local", created=time.time(),
                               location=str(sm_env / "sm_jobs" / f"old-{index}"),
                               extra={"sweep": {"name": "old", "index": index, "size": 4, "values": values,
                                                "grid": grid}}))
    found = sm_magic.attach("old")
    assert isinstance(found, Sweep) and found.name == "old"
    assert [j.name for j in found] == ["old-1", "old-3"]
    assert [(p.name, p.state) for p in found.entries] == [("old-1", sweeps.STARTED), ("old-2", NOT_STARTED),
                                                          ("old-3", sweeps.STARTED), ("old-4", NOT_STARTED)]
    assert found.points[1] == {"lr": "0.1", "bs": "16"} and list(found.points[1]) == ["lr", "bs"]
    assert sm_magic.attach("old-3").name == "old-3"  # a job's name still gives its Job
    with pytest.raises(LaunchError, match="no job or sweep named nothing"):
        sm_magic.attach("nothing")


# -- the text of a sweep (the widget's tests: tests/test_sweep_widget.py) ----------------------

def test_the_text_shows_each_point_with_its_values_status_and_latest_metrics():
    launcher = FakeLauncher()
    sweep = _sweep(launcher, n=3, max_parallel=1).start()
    state = JobState(name="fake-1", status="InProgress", secondary_status="Training", creation_time=100.0,
                     training_start_time=100.0)
    snaps = {"fake-1": Snapshot(state=state, metrics=[{"epoch": 0, "loss": 0.123456}], log_tail=[], taken_at=165.0)}
    text = sweep_text(sweep, snaps)
    assert text.splitlines()[0] == "Sweep fake: 1 InProgress, 2 Queued"
    assert "  fake-1  lr=0  InProgress (Training)  1:05  epoch=0 loss=0.1235" in text
    sweep.stop()


def test_in_a_terminal_each_status_change_is_one_line():
    launcher = FakeLauncher(refuse={"fake-2": [LaunchError("refused")]})
    sweep = _sweep(launcher, n=3, max_parallel=1)
    out = io.StringIO()
    print_sweep(sweep, out=out, interval=0.0)
    sweep.start()
    launcher.jobs["fake-1"].finish()
    wait_until(lambda: "fake-3" in launcher.jobs, 10, "fake-3")
    sweep.stop()
    wait_until(lambda: "[fake-3] lr=2: InProgress" in out.getvalue(), 10, "fake-3's line")
    lines = out.getvalue().splitlines()
    assert "[fake-1] lr=0: InProgress" in lines and "[fake-2] lr=1: LaunchFailed (refused)" in lines
    assert not any("Queued" in line for line in lines)


# -- real local jobs (tests/conftest.py's JOBS_TESTS) ---------------------------------------------

def _peak_overlap(jobs) -> int:
    """The most jobs that ran at one moment, from their recorded creation and end times."""
    spans = []
    for job in jobs:
        state = job.describe()
        end = state.training_end_time or max(t.end or t.start for t in state.transitions)
        spans.append((state.creation_time, end))
    return max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)


@pytest.mark.jobs
def test_a_2x2_local_sweep_runs_every_point_with_its_values_at_most_2_at_once_and_attaches_by_name(live_sweeps):
    sweep = sm_magic.sweep(PRINT_ARGS, grid={"lr": [0.01, 0.05], "epochs": [1, 2]}, args=["--tag", "x"],
                           name="grid", max_parallel=2, backend="local")
    assert sweep.name == "grid" and sweep.max_parallel == 2
    assert sweep.wait(timeout=180) is sweep
    assert sweep.status == "Completed" and [j.status for j in sweep] == ["Completed"] * 4
    for i, (job, values) in enumerate(zip(sweep, sweep.points), start=1):
        assert job.name == f"grid-{i}"
        argv = ["--lr", values["lr"], "--epochs", values["epochs"], "--tag", "x"]
        assert "argv " + json.dumps(argv) in job.logs()
        assert job.hyperparameters == {"lr": values["lr"], "epochs": values["epochs"], "tag": "x"}
    assert _peak_overlap(sweep) == 2
    record = Registry().get("grid-3")
    assert record.extra["sweep"] == {"name": "grid", "index": 3, "size": 4, "values": {"lr": "0.05", "epochs": "1"},
                                     "grid": [["lr", ["0.01", "0.05"]], ["epochs", ["1", "2"]]]}
    assert sm_magic.attach("grid") is sweep  # this kernel's own
    sweeps._live.clear()  # as another kernel would find it: from the registry
    again = sm_magic.attach("grid")
    assert again is not sweep and [j.name for j in again] == [j.name for j in sweep]
    assert again.points == sweep.points and again.status == "Completed"


@pytest.mark.jobs
def test_stop_cancels_the_queued_points_of_a_local_sweep(live_sweeps):
    sweep = sm_magic.sweep(SLOW, grid={"lr": [1, 2, 3]}, name="slow", max_parallel=1, backend="local")
    wait_until(lambda: "started" in sweep[0].logs(), 60, "the first job to start")
    sweep.stop()
    assert sweep.wait(timeout=60).counts() == {"Stopped": 1, CANCELLED: 2}
    assert [r.name for r in Registry().list()] == ["slow-1"]  # the cancelled points never launched
    sweeps._live.clear()
    again = sm_magic.attach("slow")  # as another kernel finds it: the stop is in the sweep's record
    assert [(p.name, p.status) for p in again.entries] == [("slow-1", "Stopped"), ("slow-2", CANCELLED),
                                                          ("slow-3", CANCELLED)]


@pytest.mark.jobs
def test_sagemaker_stop_with_a_sweeps_name_stops_its_job_and_cancels_the_queue(ip, live_sweeps, capsys):
    sweep = sm_magic.sweep(SLOW, grid={"lr": [1, 2, 3]}, name="slow", max_parallel=1, backend="local")
    wait_until(lambda: "started" in sweep[0].logs(), 60, "the first job to start")
    ip.run_line_magic("sagemaker_stop", "slow")
    assert "Stopping sweep slow: 1 running job, 2 queued cancelled" in capsys.readouterr().out
    assert sweep.wait(timeout=60).counts() == {"Stopped": 1, CANCELLED: 2}
    ip.run_line_magic("sagemaker_stop", "slow")
    assert "Sweep slow already ended: 3 jobs: 1 Stopped, 2 Cancelled" in capsys.readouterr().out


@pytest.mark.jobs
def test_a_sweep_stopped_from_another_process_launches_none_of_its_queued_jobs(live_sweeps, capsys):
    sweep = sm_magic.sweep(SLOW, grid={"lr": [1, 2, 3]}, name="slow", max_parallel=1, backend="local")
    wait_until(lambda: "started" in sweep[0].logs(), 60, "the first job to start")
    with sweeps._live_lock:  # `sm-magic stop` in a shell knows the sweep from the registry only
        sweeps._live.clear()
    assert main(["stop", "slow"]) == 0
    assert ("Stopping sweep slow: 1 running job, the kernel that started it launches none of its queued jobs"
            in capsys.readouterr().out)
    assert sweep.wait(timeout=60).counts() == {"Stopped": 1, CANCELLED: 2}
    assert [r.name for r in Registry().list()] == ["slow-1"]


@pytest.mark.jobs
def test_sm_magic_wait_follows_a_sweep_by_name_and_fails_when_a_job_failed(live_sweeps, capsys):
    fails_on_2 = script("""
        import argparse, sys
        p = argparse.ArgumentParser(); p.add_argument("--lr", type=int)
        a = p.parse_args()
        print(f"epoch 0: {{'loss': {a.lr}}}", flush=True)
        if a.lr == 2:
            sys.exit("lr 2 diverged")
    """)
    sm_magic.sweep(fails_on_2, grid={"lr": [1, 2]}, name="w", max_parallel=2, backend="local")
    with sweeps._live_lock:  # a shell knows the sweep from the registry only
        sweeps._live.clear()
    assert main(["wait", "w", "--timeout", "120"]) == 1
    out, err = capsys.readouterr()
    assert "[w-1] lr=1: Completed" in out and "[w-2] lr=2: Failed (" in out
    assert "Sweep w: 2 jobs: 1 Completed, 1 Failed" in out
    assert err.strip() == "sm-magic: sweep w: 1 of its jobs failed: w-2"


@pytest.mark.jobs
def test_the_magic_with_wait_prints_one_line_per_job_and_stores_the_sweep(ip, live_sweeps, capsys):
    result = ip.run_cell_magic("sagemaker_train", "--name cell --sweep lr=0.01,0.05 --sweep-max-parallel 2 --wait "
                               "-o swept -- --epochs 1", PRINT_ARGS)
    assert isinstance(result, Sweep) and ip.user_ns["swept"] is result
    out = capsys.readouterr().out
    assert "Sweep cell: 2 jobs: 2 Completed" in out
    assert "cell-1  lr=0.01  Completed" in out and "cell-2  lr=0.05  Completed" in out
    ip.run_line_magic("sagemaker_attach", "cell")
    assert "Sweep cell: 2 jobs on the local backend, at most 2 at a time" in capsys.readouterr().out
