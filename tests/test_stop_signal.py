"""A stop reaches the training script's SIGTERM handler exactly once, for one process and for
several, on both paths a stop takes: SageMaker signals the container's entry command alone
(StopTrainingJob, a spot reclaim), the local backend's Job.stop signals its runner, which signals
each host's entry command. A handler that saves a checkpoint must not be entered again while it
saves, and the job must still end with no process left (read from /proc, by the job's token).
"""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import sm_magic
from sm_magic.backends.local.procs import TOKEN_VAR, alive, end_token_processes, new_token, token_pids
from sm_magic.backends.local.state import JobFiles, job_token, read_runner, read_state
from sm_magic.bundle.build import BundleCode, JobSpec, build_bundle
from sm_magic.config.model import TrainConfig

from helpers.jobscripts import script, wait_until

# Long enough that a SIGTERM passed on twice (a launcher's and a process group's) lands inside the
# handler even when the machine is loaded; short of accelerate's 5 s between its launcher's TERM
# and KILL (_terminate_process_tree), so the save completes.
SAVE_SECONDS = 2.0

# Every rank records each SIGTERM its handler is entered for, then "saves" for SAVE_SECONDS and
# leaves, as a checkpoint-on-stop handler does.
CHECKPOINT_ON_STOP = script(f"""
    import os, signal, sys, time
    rank = os.environ.get("RANK", "0")
    where = os.environ["SM_CHECKPOINT_DIR"]

    def record(name, text=""):
        fd = os.open(os.path.join(where, name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(fd, text.encode())
        os.close(fd)

    def on_term(signum, frame):
        record(f"terms-{{rank}}", "TERM\\n")
        time.sleep({SAVE_SECONDS})
        record(f"saved-{{rank}}")
        sys.exit(143)

    signal.signal(signal.SIGTERM, on_term)
    record(f"ready-{{rank}}")
    while True:
        time.sleep(0.1)
""")

START_SECONDS = 120  # `import torch, accelerate` in the launcher and each rank, on a loaded machine
END_SECONDS = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_ranks(where: Path, processes: int, log) -> None:
    wait_until(lambda: all((where / f"ready-{rank}").exists() for rank in range(processes)), START_SECONDS,
               f"{processes} rank(s) to install their SIGTERM handler; log:\n{log()}")


def assert_each_rank_saved_once(where: Path, processes: int) -> None:
    terms = {rank: (where / f"terms-{rank}").read_text().splitlines() for rank in range(processes)}
    assert terms == {rank: ["TERM"] for rank in range(processes)}, "a rank's SIGTERM handler ran more than once"
    assert all((where / f"saved-{rank}").exists() for rank in range(processes))


def wait_for_no_process(token: str) -> None:
    wait_until(lambda: not token_pids(token), END_SECONDS, "every process of the job to end")



def _end(proc: subprocess.Popen, token: str) -> None:
    """Whatever a failed test left: the entry command, then every process of the job's token."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    end_token_processes(token, timeout=10)

@pytest.mark.jobs
@pytest.mark.parametrize("processes", [1, 2])
def test_sigterm_to_the_entry_command_alone_reaches_each_rank_once(tmp_path, processes):
    """SageMaker's path: the container's command alone gets SIGTERM; with two processes
    (--multi_gpu --num_processes 2, gloo on CPU) torch's elastic agent is the launcher."""
    config = {"distributed_type": "DATA_PARALLEL"} if processes > 1 else {}
    bundle = build_bundle(BundleCode(CHECKPOINT_ON_STOP), JobSpec(TrainConfig(**config), [], name="stop"), dest=tmp_path / "bundle")
    where = tmp_path / "checkpoints"
    where.mkdir()
    out = tmp_path / "output"
    out.mkdir()
    token = new_token()
    env = {**os.environ, "SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-1", "SM_NUM_GPUS": "0",
           "SM_OUTPUT_DIR": str(out), "SM_MODEL_DIR": str(tmp_path), "SM_CHECKPOINT_DIR": str(where),
           "SM_MAGIC_CPU_PROCESSES": str(processes), "SM_MAGIC_MAIN_ADDR": "127.0.0.1",
           "SM_MAGIC_MAIN_PORT": str(free_port()), "PYTHONUNBUFFERED": "1", TOKEN_VAR: token}
    log_path = tmp_path / "log.txt"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "sm_entry.py"], cwd=bundle.path, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_ranks(where, processes, log_path.read_text)
        os.kill(proc.pid, signal.SIGTERM)
        status = proc.wait(timeout=END_SECONDS)
        assert_each_rank_saved_once(where, processes)
        assert status != 0 and not (out / "failure").exists(), log_path.read_text()  # a stop is no failure
        wait_for_no_process(token)
    finally:
        _end(proc, token)


@pytest.mark.jobs
@pytest.mark.parametrize("processes", [1, 2])
def test_job_stop_reaches_each_rank_once_and_ends_every_process(sm_env, monkeypatch, processes):
    """The local backend's path: Job.stop -> the runner -> each host's entry command."""
    monkeypatch.setenv("SM_MAGIC_CPU_PROCESSES", str(processes))
    options = {"distributed_type": "DATA_PARALLEL"} if processes > 1 else {}
    job = sm_magic.launch(CHECKPOINT_ON_STOP, **options)
    files = JobFiles(sm_env / "sm_jobs" / job.name)
    where = files.opt_ml("algo-1", ["algo-1"]) / "checkpoints"
    wait_for_ranks(where, processes, job.logs)
    token = job_token(read_state(files.state))
    assert token and token_pids(token)

    job.stop().wait(timeout=END_SECONDS)
    assert job.status == "Stopped", job.logs()
    assert_each_rank_saved_once(where, processes)
    wait_for_no_process(token)
    wait_until(lambda: not alive(read_runner(files)), END_SECONDS, "the runner to end")


# Stand-ins for the launchers the entry command may find in a training image (their script is
# CHECKPOINT_ON_STOP, in the launcher's process group, as accelerate starts it).
LAUNCHERS = {
    # accelerate >= 1.16's plain launcher: SIGTERM ends it through a handler that terminates the
    # child's process tree first.
    "handles and passes on": """
        import signal, subprocess, sys
        child = subprocess.Popen([sys.executable, sys.argv[1]])
        terms = []
        def on_term(signum, frame):
            terms.append(signum)
            child.terminate()
        signal.signal(signal.SIGTERM, on_term)
        status = child.wait()
        sys.exit(128 + terms[0] if terms else status)
    """,
    # Older accelerate's plain launcher: no handler, so SIGTERM kills it and passes nothing on.
    "dies of it": """
        import subprocess, sys
        sys.exit(subprocess.Popen([sys.executable, sys.argv[1]]).wait())
    """,
    "ignores it": """
        import signal, subprocess, sys
        child = subprocess.Popen([sys.executable, sys.argv[1]])
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sys.exit(child.wait())
    """,
}

SUPERVISE = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
from sm_magic.container.entry import supervise
cmd = json.loads(sys.argv[2])
sys.exit(supervise(cmd, dict(os.environ), os.getcwd(), sys.stdout.buffer, lambda tail, status: None) & 255)
"""


@pytest.mark.jobs
@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_a_repeated_sigterm_reaches_the_script_once_whatever_its_launcher_does(tmp_path, launcher):
    """The launcher decides who else must be told: one that passes SIGTERM on is left to do it,
    one that dies of it or ignores it passes nothing on. A second SIGTERM to the entry command
    (a stop asked twice) is not passed on again."""
    (tmp_path / "train.py").write_text(CHECKPOINT_ON_STOP)
    (tmp_path / "launcher.py").write_text(script(LAUNCHERS[launcher]))
    where = tmp_path / "checkpoints"
    where.mkdir()
    token = new_token()
    env = {**os.environ, "SM_CHECKPOINT_DIR": str(where), TOKEN_VAR: token}
    cmd = [sys.executable, str(tmp_path / "launcher.py"), str(tmp_path / "train.py")]
    repo = str(Path(__file__).resolve().parent.parent)
    log_path = tmp_path / "log.txt"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", SUPERVISE, repo, json.dumps(cmd)], cwd=tmp_path, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_ranks(where, 1, log_path.read_text)
        os.kill(proc.pid, signal.SIGTERM)
        wait_until(lambda: (where / "terms-0").exists(), END_SECONDS, "the script's handler to start")
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=END_SECONDS)
        assert_each_rank_saved_once(where, 1)
        wait_for_no_process(token)
    finally:
        _end(proc, token)
