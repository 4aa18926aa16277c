"""Faults around a local job: a full disk, a read-only or deleted job directory, a missing state
file, more hosts than the machine can run.

The disk faults are real: each scenario runs in a mount namespace of its own (`unshare
--mount`), with a small tmpfs as the jobs directory, filled up or made read-only mid-job;
this test process and the machine's mounts are not touched. What runs is read from /proc (the
job's token), never from the job's own bookkeeping.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import sm_magic
from sm_magic.backends.base import BackendError
from sm_magic.backends.local.backend import JobMissingError, LocalBackend, max_local_hosts
from sm_magic.backends.local.procs import token_pids
from sm_magic.backends.local.state import JobFiles, job_token, read_state
from sm_magic.cli import main as cli
from sm_magic.jobs.registry import Registry

from helpers.jobscripts import EPOCHS_SCRIPT, script, wait_until

TESTS = Path(__file__).parent

# Run inside the namespace, with the tmpfs mounted at argv[1]; observations go to argv[3] (JSON).
SCENARIO = textwrap.dedent('''
    import io, json, os, shutil, subprocess, sys, tarfile, time
    from contextlib import redirect_stdout
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    import sm_magic
    from sm_magic.cli import main as cli
    from sm_magic.backends.local.backend import LocalBackend
    from sm_magic.backends.local.procs import token_pids
    from sm_magic.backends.local.state import JobFiles, job_token, read_state
    from sm_magic.jobs.job import JobFailedError
    from helpers.jobscripts import end_jobs, script, wait_until

    jobs, mode, out, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
    os.environ["SM_MAGIC_JOBS_DIR"] = str(jobs)
    seen = {{}}

    def remount(how):
        """Read-only: a read-only bind mount over the jobs directory (a remount of the tmpfs itself
        is refused while the job's logs are open for writing); read-write: that mount removed."""
        if how == "ro":
            subprocess.run(["mount", "--bind", str(jobs), str(jobs)], check=True)
            seen["read_only"] = True
            subprocess.run(["mount", "-o", "remount,bind,ro", str(jobs)], check=True)
        elif seen.pop("read_only", False):
            subprocess.run(["umount", str(jobs)], check=True)

    def fill():
        with open(jobs / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"x" * 65536)
                    f.flush()
            except OSError as e:
                seen["fill_error"] = e.strerror

    def readers(job):
        """What every reader shows now; none may raise anything but JobFailedError."""
        seen.setdefault("refresh", []).append(job.refresh().status)
        with redirect_stdout(io.StringIO()) as text:
            seen.setdefault("jobs_rc", []).append(cli.main(["jobs"]))
        seen["jobs_listing"] = text.getvalue()
        try:
            job.wait(timeout=1)
            seen["wait"] = "returned"
        except JobFailedError as e:
            seen["wait"] = "JobFailedError: " + e.reason
        except TimeoutError:
            seen["wait"] = "TimeoutError"

    # Writes its model, then waits for the test's go (outside the jobs directory), then exits 0.
    finisher = script(f"""
        import os, time
        open(os.path.join(os.environ["SM_MODEL_DIR"], "model.pt"), "w").write("weights")
        print("model saved", flush=True)
        while not os.path.exists({{str(go)!r}}):
            time.sleep(0.05)
    """)
    try:
        if mode == "full":
            os.environ["SM_MAGIC_STATE_RETRY_SECONDS"] = "1"
            job = sm_magic.launch(finisher)
            seen["token"] = job_token(read_state(jobs / job.name / "state.json"))
            wait_until(lambda: "model saved" in job.logs(), 90, "the model")
            fill()
            go.touch()
            state = wait_until(lambda: (lambda s: s if s.done else None)(job.refresh()), 90, "an ending")
            seen["full"] = [state.status, state.failure_reason]
            seen["on_disk"] = read_state(jobs / job.name / "state.json").status
            readers(job)
            (jobs / "filler").unlink()
            state = LocalBackend(jobs).describe(job.name)
            seen["recovered"] = [state.status, state.failure_reason, state.transitions[-2].message]
            with tarfile.open(state.model_artifacts) as tar:
                seen["model"] = tar.getnames()
        elif mode == "readonly-end":
            os.environ["SM_MAGIC_STATE_RETRY_SECONDS"] = "120"
            job = sm_magic.launch(finisher)
            seen["token"] = job_token(read_state(jobs / job.name / "state.json"))
            wait_until(lambda: "model saved" in job.logs(), 90, "the model")
            remount("ro")
            go.touch()
            wait_until(lambda: not token_pids(seen["token"]), 60, "the host to end")
            for _ in range(3):  # the runner keeps retrying meanwhile; readers must not crash
                readers(job)
            remount("rw")
            job.wait(timeout=60)
            seen["after"] = [job.status, job.failure_reason]
            seen["runner_log"] = (jobs / job.name / "runner.log").read_text()
            with tarfile.open(job.model_data) as tar:
                seen["model"] = tar.getnames()
        elif mode == "readonly-stop":
            os.environ["SM_MAGIC_STATE_RETRY_SECONDS"] = "1"
            job = sm_magic.launch(script("""
                import subprocess, sys, time
                subprocess.Popen([sys.executable, "-c", "import signal, time; "
                                  "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"],
                                 start_new_session=True)
                print("running", flush=True)
                time.sleep(600)
            """))
            files = JobFiles(jobs / job.name)
            seen["token"] = job_token(read_state(files.state))
            wait_until(lambda: "running" in job.logs() and "runner_pid" in read_state(files.state).extra, 90,
                       "the script")
            seen["holders_before"] = len(token_pids(seen["token"]))
            remount("ro")
            job.stop()
            wait_until(lambda: not token_pids(seen["token"]), 60, "every process of the job to end")
            state = wait_until(lambda: (lambda s: s if s.done else None)(job.refresh()), 90, "an ending")
            seen["ended"] = [state.status, state.failure_reason]
            seen["on_disk"] = read_state(files.state).status
            readers(job)
            remount("rw")
            seen["after"] = LocalBackend(jobs).describe(job.name).status
    finally:
        remount("rw")
        if (jobs / "filler").exists():
            (jobs / "filler").unlink()
        end_jobs(jobs)
        out.write_text(json.dumps(seen))
''').format(tests=str(TESTS))


def run_scenario(sm_env, mode: str) -> dict:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) to mount a tmpfs in a mount namespace of its own")
    jobs, out, go = sm_env / "mnt", sm_env / "seen.json", sm_env / "go"
    jobs.mkdir()
    (sm_env / "scenario.py").write_text(SCENARIO)
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         'mount -t tmpfs -o size=4m tmpfs "$1" && exec "$2" "$3" "$1" "$4" "$5" "$6"', "sh",
         str(jobs), sys.executable, str(sm_env / "scenario.py"), mode, str(out), str(go)],
        capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and "mount" in done.stderr and not out.exists():
        pytest.skip(f"mounting a tmpfs in a mount namespace is not permitted here: {done.stderr.strip()}")
    assert done.returncode == 0, f"the scenario failed:\n{done.stdout}\n{done.stderr}"
    seen = json.loads(out.read_text())
    assert seen.get("token") and token_pids(seen["token"]) == [], "a process of the job outlived it"
    return seen


@pytest.mark.jobs
def test_a_full_disk_ends_the_job_failed_and_a_freed_one_packs_the_successful_run(sm_env):
    seen = run_scenario(sm_env, "full")
    assert seen["fill_error"] == "No space left on device"
    status, reason = seen["full"]
    assert status == "Failed"
    assert "could not be written" in reason and "No space left on device" in reason
    assert seen["on_disk"] == "InProgress"  # nothing could be written; the readers said it anyway
    assert set(seen["refresh"]) == {"Failed"} and seen["jobs_rc"] == [0]
    assert seen["wait"].startswith("JobFailedError: InternalServerError")
    status, reason, message = seen["recovered"]
    assert status == "Completed" and reason is None
    assert "every host had finished with exit status 0" in message
    assert seen["model"] == ["model.pt"]


@pytest.mark.jobs
def test_a_read_only_job_directory_that_recovers_in_time_completes_with_the_model(sm_env):
    seen = run_scenario(sm_env, "readonly-end")
    assert set(seen["refresh"]) == {"InProgress"} and set(seen["jobs_rc"]) == {0}
    assert seen["wait"] == "TimeoutError"
    assert seen["after"] == ["Completed", None]
    assert "was written after all" in seen["runner_log"]  # the retry, not a first write, ended it
    assert seen["model"] == ["model.pt"]


@pytest.mark.jobs
def test_a_read_only_job_directory_ends_every_process_and_readers_say_why(sm_env):
    seen = run_scenario(sm_env, "readonly-stop")
    assert seen["holders_before"] >= 3  # entry command, launcher, script, its daemon
    status, reason = seen["ended"]
    assert status == "Failed" and "could not be written" in reason and "Read-only file system" in reason
    assert seen["on_disk"] == "InProgress"
    assert set(seen["refresh"]) == {"Failed"} and seen["jobs_rc"] == [0]
    assert "Read-only file system" in seen["wait"]
    assert seen["after"] == "Failed"


@pytest.mark.jobs
def test_a_deleted_job_directory_is_missing_and_takes_its_processes_along(sm_env):
    done = sm_magic.launch(EPOCHS_SCRIPT, wait=True)
    shutil.rmtree(sm_env / "sm_jobs" / done.name)
    with pytest.raises(JobMissingError, match="no longer exists"):
        LocalBackend().describe(done.name)
    with pytest.raises(JobMissingError):
        LocalBackend().logs(done.name)
    assert cli.main(["jobs"]) == 0

    running = sm_magic.launch(script("""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
        print("running", flush=True)
        time.sleep(600)
    """))
    files = JobFiles(sm_env / "sm_jobs" / running.name)
    token = job_token(read_state(files.state))
    wait_until(lambda: "running" in running.logs() and len(token_pids(token)) >= 3, 60, "the script")

    def delete():
        shutil.rmtree(files.dir, ignore_errors=True)
        return not files.dir.exists()

    wait_until(delete, 30, "the job directory to be deleted")
    wait_until(lambda: not token_pids(token), 60, "the job of a deleted directory to end its processes")
    with pytest.raises(JobMissingError):
        running.refresh()


@pytest.mark.jobs
def test_logs_are_read_without_the_state_file(sm_env, capsys):
    job = sm_magic.launch(EPOCHS_SCRIPT, wait=True)
    (sm_env / "sm_jobs" / job.name / "state.json").unlink()
    lines, _ = LocalBackend().logs(job.name)
    assert "epoch 2: {'accuracy': 0.7, 'f1': 0.6499999999999999}" in lines
    assert cli.main(["logs", job.name]) == 0
    assert "epoch 0:" in capsys.readouterr().out
    with pytest.raises(BackendError, match="no state file") as err:
        LocalBackend().describe(job.name)
    assert not isinstance(err.value, JobMissingError)


@pytest.mark.parametrize("count", [max_local_hosts() + 1, 100])
def test_more_hosts_than_the_machine_can_run_are_refused_before_anything_is_written(tmp_dir, count):
    with pytest.raises(BackendError, match="more than this machine can host") as err:
        sm_magic.launch(EPOCHS_SCRIPT, instance_count=count, distributed_type="DATA_PARALLEL", name="too-many")
    assert f"--instance-count {max_local_hosts()} or fewer" in str(err.value)
    jobs = tmp_dir.parent / "sm_jobs"
    assert not jobs.exists() or not any(jobs.iterdir())
    assert Registry().get("too-many") is None
    assert not any(tmp_dir.iterdir())
