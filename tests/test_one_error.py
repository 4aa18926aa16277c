"""A failed job says its error once, where it helps: the user's traceback once, not the launcher's
wrapper around it (accelerate's CalledProcessError traceback and its copy of the script's stderr,
torch's ChildFailedError and its table), in the `--wait` stream, `sm-magic wait`, `sm-magic logs`
and `job.logs()`; the log on disk keeps every line, and one flag shows them. A line missing the
`--` before the script's arguments says where they go."""

import re
import subprocess

import pytest
from IPython.core.error import UsageError

import sm_magic
from sm_magic.jobs.job import JobFailedError
from sm_magic.jobs.log_folding import FoldedStream, fold

from helpers.jobscripts import SM_MAGIC, script

FAILING = script("""
    import sys

    def load_batches(size):
        if size > 8:
            raise ValueError("bad batch size")
        return size

    def main():
        print("loading data", flush=True)
        print("a warning on stderr", file=sys.stderr, flush=True)
        load_batches(16)

    main()
""")

# The user's own RuntimeError, chained: every line of it is the user's, none is hidden.
CHAINED = script("""
    def read(path):
        try:
            open(path)
        except OSError as e:
            raise RuntimeError("no data at " + path) from e

    read("/nonexistent/data.csv")
""")

LAUNCHER = ("CalledProcessError", "ChildFailedError", "<frozen runpy>", "accelerate/commands/launch.py",
            "torch/distributed/run.py", "Root Cause", "RuntimeError: ")
TRACEBACK = "Traceback (most recent call last):"
RAISED = 'raise ValueError("bad batch size")'


def assert_once(text: str, hosts=("",)):
    """The user's traceback once per host, the launcher's not at all, and the note that says how
    to see it."""
    for host in hosts:
        prefix = f"{host} | " if host else ""
        assert text.count(prefix + TRACEBACK) == 1, text
        assert text.splitlines().count(prefix + "ValueError: bad batch size") == 1, text
        assert sum(RAISED in line for line in text.splitlines() if line.startswith(prefix)) == 1, text
        assert text.count(f"{prefix}(accelerate's launcher traceback: ") == 1, text
    assert text.count(TRACEBACK) == len(hosts), text
    assert not [w for w in LAUNCHER if w in text], text
    hint = re.search(r"lines hidden; `job\.logs\(full=True\)`, `%sagemaker_logs (\S+) --full` or "
                     r"`sm-magic logs \1 --full` shows them\)", text)
    assert hint and hint.group(1).startswith("one-error-"), text  # the job's own name, ready to copy


def assert_everything(text: str, raised: int = 2, wrapper: str = "CalledProcessError"):
    """The whole log: the user's traceback (`raised` copies of its last frame: one host's own and
    accelerate's copy of it), the launcher's traceback."""
    assert text.count(RAISED) == raised and wrapper in text, text
    assert "lines hidden" not in text


def cli(*argv, cwd, timeout=120):
    return subprocess.run([str(SM_MAGIC), *argv], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def assert_streamed_in_any_pieces(raw: list[str]):
    folded = fold(raw)
    for size in (1, 2, 3, 7, 1000):
        stream = FoldedStream()
        out = []
        for i in range(0, len(raw), size):
            out += stream.feed(raw[i:i + size])
        out += stream.feed([], done=True)
        assert out == folded, size


@pytest.mark.jobs
def test_a_failed_job_shows_the_users_traceback_once_on_every_surface(ip, sm_env, capsys):
    result = ip.run_cell("%%sagemaker_train --wait --name one-error-1 -o failed\n" + FAILING)
    assert isinstance(result.error_in_exec, JobFailedError)
    out = capsys.readouterr().out
    assert_once(out)
    assert "a warning on stderr" in out and out.count("a warning on stderr") == 1, out
    assert out.index("ValueError: bad batch size") < out.index("lines hidden") < out.index("Failed - Training job failed")

    job = ip.user_ns["failed"]
    assert_once(job.logs())
    # A tail ends with the user's error and the note, not the launcher's.
    tail = job.logs(tail=3).splitlines()
    assert tail[:2] == ['    raise ValueError("bad batch size")', "ValueError: bad batch size"], tail
    assert tail[2].startswith("(accelerate's launcher traceback: ") and tail[2].endswith("--full` shows them)")
    assert_everything(job.logs(full=True))
    assert_everything(job.logs(raw=True))
    capsys.readouterr()
    ip.run_line_magic("sagemaker_logs", "one-error-1")
    assert_once(capsys.readouterr().out)
    ip.run_line_magic("sagemaker_logs", "one-error-1 --full")
    assert_everything(capsys.readouterr().out)
    # The log on disk is untouched.
    on_disk = (sm_env / "sm_jobs" / "one-error-1" / "logs" / "algo-1.log").read_text()
    assert_everything(on_disk)
    assert_streamed_in_any_pieces(job.logs(raw=True).splitlines())

    shown = cli("logs", "one-error-1", cwd=sm_env)
    assert shown.returncode == 0 and shown.stderr == "", shown.stderr
    assert_once(shown.stdout)
    assert_everything(cli("logs", "one-error-1", "--full", cwd=sm_env).stdout)
    assert_everything(cli("logs", "one-error-1", "--raw", cwd=sm_env).stdout)

    waited = cli("wait", "one-error-1", cwd=sm_env)
    assert waited.returncode == 1
    assert_once(waited.stdout)
    assert waited.stderr == f"sm-magic: training job one-error-1 failed: {job.failure_reason}\n"


@pytest.mark.jobs
def test_two_hosts_each_show_their_traceback_once(ip, sm_env, capsys, monkeypatch):
    monkeypatch.setenv("SM_MAGIC_CPU_PROCESSES", "1")  # one process per host, two in all
    (sm_env / "two.yaml").write_text("compute_environment: AMAZON_SAGEMAKER\nec2_instance_type: local\n"
                                     "num_machines: 2\ndistributed_type: DATA_PARALLEL\n")
    result = ip.run_cell("%%sagemaker_train --wait --config two.yaml --name one-error-2 -o failed\n" + FAILING)
    assert isinstance(result.error_in_exec, JobFailedError)
    hosts = ("algo-1", "algo-2")
    assert_once(capsys.readouterr().out, hosts)
    job = ip.user_ns["failed"]
    assert_once(job.logs(), hosts)
    assert_everything(job.logs(full=True), raised=2, wrapper="ChildFailedError")
    for host in hosts:
        assert_everything((sm_env / "sm_jobs" / "one-error-2" / "logs" / f"{host}.log").read_text(), raised=1,
                          wrapper="ChildFailedError")
    assert_streamed_in_any_pieces(job.logs(raw=True).splitlines())
    assert_once(cli("logs", "one-error-2", cwd=sm_env).stdout, hosts)
    waited = cli("wait", "one-error-2", cwd=sm_env)
    assert waited.returncode == 1
    assert_once(waited.stdout, hosts)


@pytest.mark.jobs
def test_the_users_own_chained_runtime_error_is_never_hidden(sm_env):
    job = sm_magic.launch(CHAINED, name="one-error-3")
    with pytest.raises(JobFailedError):
        job.wait(timeout=120)
    text = job.logs()
    assert "FileNotFoundError: [Errno 2]" in text and "RuntimeError: no data at /nonexistent/data.csv" in text
    assert "The above exception was the direct cause of the following exception:" in text
    assert text.count(TRACEBACK) == 2, text  # the user's two, chained; the launcher's is folded
    assert "CalledProcessError" not in text and "lines hidden" in text, text


CAUGHT = script("""
    import traceback
    for epoch in range(3):
        try:
            {}["missing"]
        except KeyError:
            traceback.print_exc()
        print(f"epoch {epoch}: {{'accuracy': 0.5}}", flush=True)
""")


@pytest.mark.jobs
def test_a_job_that_prints_caught_tracebacks_keeps_them_all_and_streams_them_at_once(sm_env):
    job = sm_magic.launch(CAUGHT, name="one-error-4", wait=True)
    assert job.status == "Completed"
    assert job.logs() == job.logs(full=True) and job.logs().count(TRACEBACK) == 3
    # Streamed a line at a time, in order and whole; a caught traceback is out once its error line
    # is and the next epoch's line is. (stderr and stdout reach the log through two pipes: the
    # error line may come after the epoch line printed after it.)
    raw = job.logs(raw=True).splitlines()
    stream, out = FoldedStream(), []
    for n, line in enumerate(raw):
        out += stream.feed([line])
        assert out == raw[:len(out)], (n, out)
        if line.startswith("epoch "):
            ended = [i for i in range(n) if raw[i].startswith("KeyError")]
            assert not ended or len(out) > ended[-1], (n, out)
    assert out + stream.feed([], done=True) == raw


def test_script_arguments_without_the_dashes_say_where_they_go(ip, sm_env):
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("sagemaker_train", "--epochs 3", "print(1)")
    message = str(err.value)
    assert "unrecognized arguments: --epochs 3" in message
    assert "script arguments go after a bare `--`: `%%sagemaker_train [FLAGS] -- --epochs 3`" in message
    assert "\n" not in message
    assert not (sm_env / "sm_jobs").exists()


def test_cli_run_without_the_dashes_says_where_they_go(sm_env, capsys):
    from sm_magic.cli.main import main

    assert main(["run", "bundles/x", "--wait", "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert err == ("sm-magic: unrecognized arguments: --epochs 3: script arguments go after a bare `--`: "
                   "sm-magic run BUNDLE_DIR [--wait ...] -- --epochs 3\n"), err
