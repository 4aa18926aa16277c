"""The same words for the same states everywhere (sm_magic/jobs/states.py), and no state shown that a
job is no longer in: the sweep widget, `sm-magic wait`, the magics, `Sweep.counts()` and
`Job.status` name the points of real local sweeps alike, whichever process looks."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest

import sm_magic
from sm_magic.jobs import states
from sm_magic.sweeps import sweep as sweeps
from sm_magic.sweeps.points import LAUNCH_FAILED, NOT_STARTED, QUEUED
from sm_magic.widgets.sweep_widget import SweepWidget

from helpers.html_tables import Tables
from helpers.jobscripts import EPOCHS_SCRIPT, SM_MAGIC, script, wait_until

WORDS = {states.IN_PROGRESS, states.STOPPING, states.COMPLETED, states.FAILED, states.STOPPED, states.UNKNOWN,
         states.QUEUED, states.LAUNCHING, states.CANCELLED, states.LAUNCH_FAILED}
# `[lrs-1] lr=0.01: Completed` (a note may follow in parentheses)
SAID = re.compile(r"^\[(?P<job>[^\]]+)\] .*?: (?P<word>[A-Za-z]+)")

ENDS_SOON = script("""
    import argparse, time
    p = argparse.ArgumentParser(); p.add_argument("--lr")
    p.parse_args()
    print("started", flush=True)
    time.sleep(4)
    print("epoch 0: {'loss': 0.5}")
""")
SLOW = script("""
    import argparse, time
    p = argparse.ArgumentParser(); p.add_argument("--lr")
    p.parse_args()
    print("started", flush=True)
    time.sleep(600)
""")


def sm_magic_command(*argv: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([str(SM_MAGIC), *argv], capture_output=True, text=True, timeout=timeout)


def said_last(out: str) -> dict[str, str]:
    """The last word `sm-magic wait` (or a terminal's sweep display) said for each job."""
    words: dict[str, str] = {}
    for line in out.splitlines():
        m = SAID.match(line)
        if m:
            words[m["job"]] = m["word"]
    return words


def said_all(out: str) -> list[str]:
    return [m["word"] for m in map(SAID.match, out.splitlines()) if m]


def widget_words(sweep) -> dict[str, str]:
    """What the sweep widget's table says of each point, once every point has ended."""
    widget = SweepWidget(sweep, interval=0.05).start()
    try:
        def words() -> dict[str, str]:
            shown = Tables(widget.table.value).column("status")
            return {job: text.split(" ")[0] for job, text in shown.items()}

        wait_until(lambda: len(words()) == len(sweep.entries) and set(words().values()) <= states.ENDED, 60,
                   "every row of the widget to show its final state")
        return words()
    finally:
        widget.close()


def test_one_vocabulary_names_the_states_and_a_point_that_never_launched_is_cancelled():
    assert states.JOB_ENDED == {"Completed", "Failed", "Stopped"} and states.IN_PROGRESS == "InProgress"
    assert NOT_STARTED == states.CANCELLED and QUEUED == "Queued" and LAUNCH_FAILED == "LaunchFailed"
    assert states.ENDED == states.JOB_ENDED | {states.CANCELLED, states.LAUNCH_FAILED}


@pytest.mark.jobs
def test_sm_magic_wait_on_an_ended_sweep_says_each_jobs_real_state_and_never_in_progress(ip, live_sweeps, capsys):
    sweep = sm_magic.sweep(EPOCHS_SCRIPT, grid={"lr": ["0.01", "0.1"]}, name="lrs", max_parallel=2)
    sweep.wait(timeout=120)
    assert sweep.counts() == {states.COMPLETED: 2}

    wait = sm_magic_command("wait", "lrs")
    assert wait.returncode == 0, wait.stderr
    assert "InProgress" not in wait.stdout, wait.stdout
    assert said_all(wait.stdout) == [states.COMPLETED, states.COMPLETED], wait.stdout
    assert "Sweep lrs: 2 jobs: 2 Completed" in wait.stdout
    job = sm_magic_command("wait", "lrs-1")  # one job: its stream, then its end
    assert job.returncode == 0 and "InProgress" not in job.stdout, job.stdout

    sweeps._live.clear()  # as another kernel finds it: `%sagemaker_attach NAME --wait` in a terminal
    capsys.readouterr()
    ip.run_line_magic("sagemaker_attach", "lrs --wait")
    out = capsys.readouterr().out
    assert "InProgress" not in out and said_last(out) == {"lrs-1": states.COMPLETED, "lrs-2": states.COMPLETED}, out


@pytest.mark.jobs
def test_a_stopped_sweeps_points_have_the_same_words_in_the_widget_the_cli_and_counts(live_sweeps):
    sweep = sm_magic.sweep(SLOW, grid={"lr": ["1", "2", "3"]}, name="halted", max_parallel=1, backend="local")
    wait_until(lambda: "started" in sweep[0].logs(), 60, "the first job to start")
    sweep.stop()
    sweep.wait(timeout=60)
    in_widget = widget_words(sweep)
    assert in_widget == {"halted-1": states.STOPPED, "halted-2": states.CANCELLED, "halted-3": states.CANCELLED}
    wait = sm_magic_command("wait", "halted")
    assert wait.returncode == 0, wait.stderr
    assert said_last(wait.stdout) == in_widget, wait.stdout
    assert sweep.counts() == {states.STOPPED: 1, states.CANCELLED: 2} and sweep[0].status == states.STOPPED
    assert set(said_all(wait.stdout)) <= WORDS


LAUNCHER = script("""
    import json, sys
    import sm_magic

    source, name = json.loads(sys.argv[1])
    sweep = sm_magic.sweep(source, grid={"lr": ["1", "2", "3"]}, name=name, max_parallel=1, backend="local")
    print("launched", sweep[0].name, flush=True)
    input()  # the kernel stays up until it is killed
""")


@pytest.mark.jobs
def test_points_a_killed_kernel_never_launched_are_cancelled_in_the_cli_and_in_another_kernels_widget(sm_env):
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, json.dumps([ENDS_SOON, "orphan"])],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert launcher.stdout.readline().split() == ["launched", "orphan-1"]
        wait_until(lambda: "started" in sm_magic.attach("orphan-1").logs(), 60, "the first job to start")
    finally:
        launcher.send_signal(signal.SIGKILL)  # the kernel dies with two points queued
        launcher.wait(30)
    wait = sm_magic_command("wait", "orphan", "--timeout", "120")
    assert wait.returncode == 1, (wait.stdout, wait.stderr)
    assert "is gone: 2 of its 3 points never launched (orphan-2, orphan-3)" in wait.stderr
    words = said_last(wait.stdout)
    assert words == {"orphan-1": states.COMPLETED, "orphan-2": states.CANCELLED, "orphan-3": states.CANCELLED}, \
        wait.stdout
    assert "never launched: the process that launched the sweep" in wait.stdout  # the note says why
    assert "Sweep orphan: 3 jobs: 1 Completed, 2 Cancelled" in wait.stdout
    assert "NotStarted" not in wait.stdout + wait.stderr and set(said_all(wait.stdout)) <= WORDS

    found = sm_magic.attach("orphan")  # another kernel: its widget and its counts say the same
    assert widget_words(found) == words
    assert found.counts() == {states.COMPLETED: 1, states.CANCELLED: 2}
    assert found.launcher_gone is not None and found.status == states.STOPPED
