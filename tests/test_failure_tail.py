"""A real failing job, as the user sees it: the log tail shows the script's own traceback (not
accelerate's wrapper printed after it), and with --wait the failure reason is said once."""

import subprocess

import nbformat
import pytest

import sm_magic
from sm_magic.cli.main import main
from sm_magic.jobs.job import JobFailedError
from sm_magic.widgets.text import render_text

from helpers.jobscripts import SM_MAGIC, script

pytestmark = pytest.mark.jobs


FAILING = script("""
    def load_batches(size):
        if size > 8:
            raise ValueError("bad batch size")
        return size

    def main():
        print("loading data", flush=True)
        load_batches(16)

    main()
""")

# Two processes in one gloo group: rank 1 raises, rank 0 then dies in the barrier.
FAILING_RANK = script("""
    from accelerate import Accelerator

    def load_batches(acc, size):
        if acc.process_index == 1:
            raise ValueError("bad batch size")
        acc.wait_for_everyone()

    def main():
        acc = Accelerator()
        load_batches(acc, 16)

    main()
""")

WRAPPERS = ("CalledProcessError", "ChildFailedError", "accelerate/commands/launch.py", "torch/distributed/run.py")


def assert_users_traceback(job, raised_at: str):
    snap = job.snapshot()
    tail = snap.log_tail
    text = "\n".join(tail)
    assert tail[-1].endswith("ValueError: bad batch size"), text
    assert any(line.endswith("Traceback (most recent call last):") for line in tail), text
    assert raised_at in text and 'train.py", line ' in text and ", in main" in text, text
    assert not any(w in text for w in WRAPPERS), text
    assert len(tail) <= 20
    # The text view shows the same lines, whole (its usual tail is shorter).
    shown = render_text(snap)
    assert all(line in shown for line in tail) and not any(w in shown for w in WRAPPERS), shown
    return tail


def test_wait_in_the_magic_says_the_reason_once_and_the_tail_is_the_users_traceback(ip, capsys):
    result = ip.run_cell("%%sagemaker_train --wait --name fail-tail-1 -o failed\n" + FAILING)
    assert isinstance(result.error_in_exec, JobFailedError)
    out = capsys.readouterr().out
    job = ip.user_ns["failed"]
    reason = job.failure_reason
    assert reason.startswith("AlgorithmError: ValueError: bad batch size [train.py, line 3]"), reason
    # The stream still shows the whole log, the traceback included; the reason itself once, where
    # the cell fails.
    assert "Failed - Training job failed" in out and 'line 3, in load_batches' in out
    assert out.count(reason) == 1 and out.count("bad batch size [train.py") == 1, out
    assert f"training job fail-tail-1 failed: {reason}" in out
    assert_users_traceback(job, "in load_batches")


def test_with_two_processes_the_tail_is_the_failing_ranks_traceback(sm_env):
    try:
        sm_magic.launch(FAILING_RANK, distributed_type="DATA_PARALLEL", wait=True)
    except JobFailedError as e:
        job = e.job
    assert "ValueError: bad batch size [train.py, line 5] on rank 1" in job.failure_reason
    tail = assert_users_traceback(job, "in load_batches")
    # Rank 0's own traceback (it lost rank 1 in the barrier) is not what the tail shows.
    assert not any("rank0" in line or "RuntimeError" in line for line in tail), tail


def test_cli_run_wait_says_the_reason_once_and_exits_1(sm_env):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%%sagemaker_train --name cli-fail-1\n" + FAILING)]
    nbformat.write(nb, sm_env / "fail.ipynb")
    assert main(["export", str(sm_env / "fail.ipynb"), "--out", "bundles"]) == 0
    done = subprocess.run([str(SM_MAGIC), "run", "bundles/cli-fail-1", "--wait"], capture_output=True, text=True,
                          cwd=sm_env, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    job = sm_magic.attach("cli-fail-1")
    reason = job.failure_reason
    assert 'line 3, in load_batches' in done.stdout and "Failed - Training job failed" in done.stdout
    assert done.stderr == f"sm-magic: training job cli-fail-1 failed: {reason}\n"
    both = done.stdout + done.stderr
    assert both.count(reason) == 1 and both.count("bad batch size [train.py") == 1, both
    assert_users_traceback(job, "in load_batches")
