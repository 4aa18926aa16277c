"""The `sm-magic` command on real jobs."""

import subprocess
import sys

import sm_magic
from sm_magic.cli import main

from jobscripts import EPOCHS_SCRIPT


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
    out = subprocess.run([sys.executable, "-m", "sm_magic.cli", "logs", "nope"], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith("sm-magic: no job named nope in the registry")
    assert "Traceback" not in out.stderr
