"""Sweeps stopped from anywhere, probed as an adversary and a careless user would: issue 23,
finding 2 (severe).

A sweep's queue lives in the process that started it, but a stop may be given from anywhere: that
kernel, another kernel, `sm-magic stop` in a shell. Before the fix, a stop given between two
launches (every launched job ended, points still queued) or before the first launch found the
sweep "already ended" (or no sweep at all), recorded nothing, and the launching kernel went on to
start every queued point: on SageMaker, billable jobs. `sm-magic wait` returned 0 while the sweep
was still launching, and would have waited for nothing once the launching kernel was killed.

Each probe runs the sweep's launcher as a real process (a Python script calling
`sm_magic.sweep`, as a notebook kernel does), gives the stop or the wait from other real
processes (`sm-magic` as a user types it, `sm_magic.attach(...).stop()` as another kernel runs
it) and checks what a user would: the command's output and exit status, the jobs that exist
afterwards, what the launcher itself reports. SageMaker is a moto server on 127.0.0.1 playing
the service's part: a job is InProgress when created, ends when the test drives it, and
CreateTrainingJob answers ResourceLimitExceeded while the account's quota is full.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sm_magic.jobs.registry import Registry

from helpers.aws_moto import ROLE_NAME
from helpers.jobscripts import SM_MAGIC, script, wait_until

pytestmark = pytest.mark.jobs

SAGEMAKER = {"backend": "sagemaker", "instance_type": "ml.g5.xlarge", "iam_role_name": ROLE_NAME}
START = 120  # s: a launcher process imports sm_magic, the SageMaker SDK and uploads its first bundle

# What a notebook kernel does: start the sweep, then block until it has ended, and say how it ended.
LAUNCHER = script("""
    import json, sys
    import sm_magic

    source, grid, keywords = json.loads(sys.argv[1])
    sweep = sm_magic.sweep(source, grid=grid, **keywords)
    print("started", flush=True)
    sweep.wait()
    print("counts " + json.dumps(sweep.counts()), flush=True)
""")

SHORT = script("""
    import argparse
    p = argparse.ArgumentParser(); p.add_argument("--lr")
    p.parse_args()
    print("epoch 0: {'loss': 1.0}", flush=True)
""")


class Service:
    """CreateTrainingJob as the service answers it: a new job is InProgress (moto's are born
    Completed), and while `full` is set the account's quota refuses it. Every call is logged."""

    def __init__(self, aws):
        self.aws = aws
        self.full = False
        self.calls: list[tuple[float, str, bool]] = []  # (time, job name, refused)
        self.lost = None  # called with the job's name as a CreateTrainingJob arrives: True, it never did

    def created(self) -> list[str]:
        return [name for _, name, refused in self.calls if not refused]


@pytest.fixture
def service(aws, monkeypatch):
    from moto.sagemaker.responses import SageMakerResponse

    played = Service(aws)
    original = SageMakerResponse.create_training_job

    def create_training_job(self):
        name = json.loads(self.body)["TrainingJobName"]
        lost = played.lost is not None and played.lost(name)
        played.calls.append((time.time(), name, played.full or lost))
        if lost:
            return 500, {"status": 500}, json.dumps({"__type": "InternalFailure", "message": "connection lost"})
        if played.full:
            return 400, {"status": 400}, json.dumps({
                "__type": "ResourceLimitExceeded",
                "message": "The account-level service limit 'ml.g5.xlarge for training job usage' is 0 Instances, "
                           "with current utilization of 0 Instances and a request delta of 1 Instances."})
        answer = original(self)
        played.aws.start_lifecycle(name)
        return answer

    monkeypatch.setattr(SageMakerResponse, "create_training_job", create_training_job)
    return played


class Launcher:
    """The process that starts a sweep and holds its queue (a notebook kernel, as far as the sweep knows)."""

    def __init__(self, name: str, points: int, source: str = SHORT, **keywords):
        grid = {"lr": [str(i) for i in range(1, points + 1)]}
        spec = json.dumps([source, grid, {"name": name, "max_parallel": 1, **keywords}])
        self.out = Path(os.environ["SM_MAGIC_JOBS_DIR"]).parent / f"launcher-{name}.out"
        with open(self.out, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, spec], stdout=out, stderr=subprocess.STDOUT,
                                         env=os.environ.copy())

    def output(self) -> str:
        return self.out.read_text()

    def started(self, timeout: float = START) -> None:
        wait_until(lambda: "started" in self.output() or self.proc.poll() is not None, timeout, "the sweep to start")
        assert "started" in self.output(), self.output()

    def counts(self, timeout: float = 60) -> dict:
        """How the launcher saw the sweep end (it must end: its queue obeyed the stop)."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the launcher still runs {timeout} s later: {self.output()}") from None
        line = next((line for line in self.output().splitlines() if line.startswith("counts ")), None)
        assert line is not None, self.output()
        return json.loads(line.split(" ", 1)[1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)


@pytest.fixture
def launchers():
    started: list[Launcher] = []

    def start(*args, **kw) -> Launcher:
        started.append(Launcher(*args, **kw))
        return started[-1]

    yield start
    for launcher in started:
        launcher.kill()


def between_launches(service: Service, sweep: str) -> None:
    """Hold the sweep between its first and second launch: its first job ends, and the account's
    quota refuses the second (the launcher keeps it queued, to try again), as on the service."""
    service.full = True
    service.aws.drive(f"{sweep}-1", "Training")
    service.aws.drive(f"{sweep}-1", "Completed")
    wait_until(lambda: any(name == f"{sweep}-2" and refused for _, name, refused in service.calls), 60,
               "the second launch to be refused for the quota")
    # The launcher has taken the refusal: the job it registered for the launch is removed again.
    wait_until(lambda: registered(sweep) == [f"{sweep}-1"], 60, "the refused launch to be unregistered")


def sm_magic(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(SM_MAGIC), *argv], capture_output=True, text=True, timeout=timeout)


def registered(prefix: str) -> list[str]:
    return sorted(r.name for r in Registry().list() if r.name.startswith(prefix))


def test_sm_magic_stop_between_two_launches_stops_the_sweep_and_no_further_job_is_created(service, launchers):
    launcher = launchers("gap", 4, **SAGEMAKER)
    launcher.started()
    assert service.created() == ["gap-1"]
    between_launches(service, "gap")
    stop = sm_magic("stop", "gap")
    stopped_at = time.time()
    assert stop.returncode == 0, stop.stderr
    assert "already ended" not in stop.stdout
    assert stop.stdout.strip() == ("Stopping sweep gap: 0 running jobs, the kernel that started it launches none of "
                                   "its queued jobs (3 cancelled)")
    service.full = False  # the quota frees up: nothing may be created now
    assert launcher.counts() == {"Completed": 1, "Cancelled": 3}
    assert service.created() == ["gap-1"] and registered("gap") == ["gap-1"]
    assert not [c for c in service.calls if c[0] > stopped_at]
    again = sm_magic("stop", "gap")
    assert again.returncode == 0 and again.stdout.strip() == "Sweep gap already ended: 4 jobs: 1 Completed, 3 Cancelled"


def test_sm_magic_stop_before_the_first_launch_cancels_the_queue_and_creates_no_job(service, launchers):
    service.full = True  # the first point waits for the quota: the sweep has no job yet
    launcher = launchers("first", 3, **SAGEMAKER)
    launcher.started()
    wait_until(lambda: service.calls, 30, "the first CreateTrainingJob")
    stop = sm_magic("stop", "first")
    assert stop.returncode == 0, stop.stderr
    assert stop.stdout.startswith("Stopping sweep first: 0 running jobs"), stop.stdout
    stopped_at = time.time()
    service.full = False  # the quota frees up: nothing may be created now
    assert launcher.counts() == {"Cancelled": 3}
    assert service.created() == [] and registered("first") == []
    assert not [c for c in service.calls if c[0] > stopped_at]


def test_sm_magic_wait_does_not_return_while_the_sweep_still_has_points_to_launch(service, launchers):
    launcher = launchers("still", 4, **SAGEMAKER)
    launcher.started()
    between_launches(service, "still")
    wait = sm_magic("wait", "still", "--timeout", "3")
    assert wait.returncode == 1, wait.stdout
    assert wait.stderr.strip().startswith("sm-magic: sweep still has not ended after 3.0 s (4 jobs: 1 Completed, "
                                          "3 Queued)"), wait.stderr
    assert "Traceback" not in wait.stderr
    assert sm_magic("stop", "still").returncode == 0
    service.full = False
    assert launcher.counts() == {"Completed": 1, "Cancelled": 3}


def test_sm_magic_wait_says_the_launcher_is_gone_when_its_kernel_was_killed(service, launchers):
    launcher = launchers("orphan", 4, **SAGEMAKER)
    launcher.started()
    between_launches(service, "orphan")
    launcher.proc.send_signal(signal.SIGKILL)  # the kernel is killed with 3 points queued
    launcher.proc.wait(30)
    began = time.monotonic()
    wait = sm_magic("wait", "orphan", "--timeout", "600", timeout=700)
    assert time.monotonic() - began < 300, (wait.stdout, wait.stderr)  # it says so; it does not wait out its timeout
    assert wait.returncode == 1, wait.stdout
    err = wait.stderr.strip()
    assert err.startswith("sm-magic: sweep orphan: the process that launched it (pid "), err
    assert "is gone: 3 of its 4 points never launched (orphan-2, orphan-3, orphan-4)" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "Sweep orphan: 4 jobs: 1 Completed, 3 Cancelled" in wait.stdout
    assert service.created() == ["orphan-1"]


def test_sm_magic_wait_ends_when_the_kernel_was_killed_in_the_middle_of_a_launch(service, launchers):
    launcher = launchers("cut", 3, **SAGEMAKER)
    launcher.started()
    # The kernel dies as its CreateTrainingJob for cut-2 is on the wire: the job is registered,
    # claimed by the sweep, and never created.
    service.lost = lambda name: launcher.proc.kill() or True
    service.aws.drive("cut-1", "Completed")
    launcher.proc.wait(60)
    assert registered("cut") == ["cut-1", "cut-2"] and service.created() == ["cut-1"]
    wait = sm_magic("wait", "cut", "--timeout", "60")
    assert wait.returncode == 1, wait.stdout
    assert "is gone: 2 of its 3 points never launched (cut-2, cut-3)" in wait.stderr, (wait.stdout, wait.stderr)
    assert "Sweep cut: 3 jobs: 1 Completed, 2 Cancelled" in wait.stdout


def test_a_stop_from_another_kernel_is_obeyed_by_the_kernel_that_launches(service, launchers):
    launcher = launchers("kern", 5, **SAGEMAKER)
    launcher.started()
    between_launches(service, "kern")
    other = subprocess.run([sys.executable, "-c", "import sm_magic; s = sm_magic.attach('kern'); s.stop(); "
                            "print(s.summary())"], capture_output=True, text=True, timeout=120)
    assert other.returncode == 0, other.stderr
    assert other.stdout.strip() == "5 jobs: 1 Completed, 4 Cancelled"
    service.full = False
    assert launcher.counts() == {"Completed": 1, "Cancelled": 4}
    assert service.created() == ["kern-1"]


def test_two_shells_stopping_one_sweep_at_once_both_succeed_and_nothing_more_launches(service, launchers):
    launcher = launchers("both", 6, **SAGEMAKER)
    launcher.started()
    between_launches(service, "both")
    stops = [subprocess.Popen([str(SM_MAGIC), "stop", "both"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [(p.wait(120), *p.communicate()) for p in stops]
    assert [rc for rc, _, _ in results] == [0, 0], results
    assert all(err == "" for _, _, err in results), results
    service.full = False
    assert launcher.counts() == {"Completed": 1, "Cancelled": 5}
    assert service.created() == ["both-1"]


def test_a_stop_from_the_launching_kernel_shows_its_queue_cancelled_in_a_shell(service):
    stops_itself = script("""
        import json, sys
        import sm_magic

        source, grid, keywords = json.loads(sys.argv[1])
        sm_magic.sweep(source, grid=grid, **keywords).stop()
        print("stopped", flush=True)
        input()  # the kernel stays up
    """)
    spec = json.dumps([SHORT, {"lr": ["1", "2", "3"]}, {"name": "self", "max_parallel": 1, **SAGEMAKER}])
    proc = subprocess.Popen([sys.executable, "-c", stops_itself, spec], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        said = []  # the launch's own lines (its cost) come first
        for line in proc.stdout:
            said.append(line.strip())
            if said[-1] == "stopped":
                break
        assert said[-1:] == ["stopped"], said
        service.aws.drive("self-1", "Stopped")  # the service ends the job it was asked to stop
        wait = sm_magic("wait", "self", "--timeout", "60")
        assert wait.returncode == 0, wait.stderr
        assert "Sweep self: 3 jobs: 1 Stopped, 2 Cancelled" in wait.stdout
    finally:
        proc.kill()
        proc.wait(30)
