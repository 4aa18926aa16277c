"""The `sm-magic` command on real jobs."""

import os
import subprocess
import sys

import pytest

import sm_magic
from sm_magic.cli.main import main

from helpers.jobscripts import EPOCHS_SCRIPT


@pytest.mark.jobs
def test_jobs_logs_and_wait(sm_env, capsys):
    job = sm_magic.launch(EPOCHS_SCRIPT, name="cli-1")
    assert main(["wait", "cli-1"]) == 0
    out = capsys.readouterr().out
    assert "epoch 2: {'accuracy': 0.7" in out and "Completed - Training job completed" in out
    assert main(["jobs"]) == 0
    assert "cli-1" in capsys.readouterr().out and job.status == "Completed"
    assert main(["logs", "cli-1", "--tail", "1"]) == 0
    assert capsys.readouterr().out.startswith("epoch 2:")


def test_unknown_job_is_a_clear_error_not_a_traceback(sm_env):
    out = subprocess.run([sys.executable, "-m", "sm_magic.cli.main", "logs", "nope"], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith("sm-magic: no job named nope in the registry")
    assert "Traceback" not in out.stderr


def test_usage_mistakes_and_runtime_problems_exit_2_and_1_with_one_line(sm_env):
    def run(*argv, **env):
        return subprocess.run([sys.executable, "-m", "sm_magic.cli.main", *argv], capture_output=True, text=True,
                              env={**os.environ, **env})

    out = run("jobs", "--limit", "-1")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == ("sm-magic: argument --limit: must be 1 or more, got -1 (`sm-magic jobs --help` lists "
                          "the options)\n")
    (sm_env / "registry-dir").mkdir()
    out = run("jobs", SM_MAGIC_REGISTRY=str(sm_env / "registry-dir"))
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and out.stderr.startswith("sm-magic: ")
    assert "Traceback" not in out.stderr
