"""A local job owns its processes, all of them, and signals no other.

Real processes throughout: the runner, accelerate's launcher, torch's elastic agent and ranks it
starts in sessions of their own, and daemons the script starts. What is alive is read from /proc
(every process carrying the job's token), never from the job's own bookkeeping.
"""

import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time

import pytest

import sm_magic
from sm_magic.backends.base import JobState
from sm_magic.backends.local.backend import LocalBackend
from sm_magic.backends.local.procs import alive, identity, new_token, proven_signal, token_pids
from sm_magic.backends.local.state import (
    JobFiles,
    enter,
    job_token,
    read_exit_record,
    read_runner,
    read_state,
    write_json,
    write_state,
)
from sm_magic.cli import main as cli
from sm_magic.jobs.registry import JobRecord, Registry

from helpers.jobscripts import script, wait_until

# Each rank ignores SIGTERM, starts a daemon in a session of its own (which ignores SIGTERM too),
# and records both pids in the checkpoint directory (one for every host).
STUBBORN_RANK = script("""
    import json, os, signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    daemon = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                               "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"],
                              start_new_session=True)
    rank = os.environ["RANK"]
    path = os.path.join(os.environ["SM_CHECKPOINT_DIR"], f"rank-{rank}.json")
    with open(path + ".tmp", "w") as f:
        json.dump({"rank": os.getpid(), "daemon": daemon.pid, "sid": os.getsid(0)}, f)
    os.replace(path + ".tmp", path)
    print(f"rank {rank} running", flush=True)
    time.sleep(600)
""")


def job_files(sm_env, job) -> JobFiles:
    return JobFiles(sm_env / "sm_jobs" / job.name)


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def launch_two_ranks(monkeypatch, source, **options):
    """The cheapest real multi-rank job: two hosts, one CPU rank each (torch elastic starts
    each rank in a session of its own)."""
    monkeypatch.setenv("SM_MAGIC_CPU_PROCESSES", "1")
    return sm_magic.launch(source, instance_count=2, distributed_type="DATA_PARALLEL", **options)


def rank_records(files: JobFiles) -> dict:
    checkpoints = files.opt_ml("algo-1", ["algo-1"]) / "checkpoints"
    return {p.name: json.loads(p.read_text()) for p in checkpoints.glob("rank-*.json")}


def wait_for_ranks(files: JobFiles, job) -> tuple[str, dict]:
    records = wait_until(lambda: (lambda r: r if len(r) == 2 else None)(rank_records(files)), 120,
                         f"both ranks to start; log:\n{job.logs()}")
    token = job_token(read_state(files.state))
    found = set(token_pids(token))
    pids = {pid for r in records.values() for pid in (r["rank"], r["daemon"])}
    assert pids <= found, "the scan for the job's token misses a rank or a daemon"
    entries = set(read_state(files.state).extra["pgids"].values())
    assert {r["sid"] for r in records.values()}.isdisjoint(entries), \
        "the ranks were expected in sessions of their own (outside the entry commands' sessions)"
    return token, records


@pytest.mark.jobs
def test_stop_ends_stubborn_ranks_and_their_daemons_before_stopped(sm_env, monkeypatch):
    job = launch_two_ranks(monkeypatch, STUBBORN_RANK)
    files = job_files(sm_env, job)
    token, records = wait_for_ranks(files, job)
    reader = LocalBackend(sm_env / "sm_jobs")
    started = time.monotonic()
    job.stop()
    gone_at = []

    def ended():
        done = reader.describe(job.name).done  # read first: processes found after it were alive at Stopped
        live = token_pids(token)
        if not live and not gone_at:
            gone_at.append(time.monotonic())
        if done:
            assert live == [], f"the job reported its end with processes {live} still running"
        return done

    wait_until(ended, 90, "the stopped job to end")
    latency = gone_at[0] - started
    print(f"\nstop latency (2 hosts, SIGTERM ignored, daemons): {latency:.2f} s to the last process gone, "
          f"{time.monotonic() - started:.2f} s to Stopped observed")
    assert job.refresh().status == "Stopped"
    assert not any(running(pid) for r in records.values() for pid in (r["rank"], r["daemon"]))
    assert latency < 40


# Each rank records (attempt, pid, start time) for itself and its daemon; a rank of the second
# run looks at every process of the first run and records any that still runs.
ATTEMPT_RANK = script("""
    import json, os, signal, subprocess, sys, time

    def started(pid):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ckpt, rank = os.environ["SM_CHECKPOINT_DIR"], os.environ["RANK"]
    mine = os.path.join(ckpt, f"started-{rank}")
    attempt = 2 if os.path.exists(mine) else 1
    open(mine, "a").close()
    daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    record = {"attempt": attempt, "rank": rank,
              "procs": [[p, started(p)[1]] for p in (os.getpid(), daemon.pid)]}
    if attempt == 2:
        alive = []
        with open(os.path.join(ckpt, "runs.jsonl")) as f:
            for line in f:
                earlier = json.loads(line)
                for pid, start in earlier["procs"] if earlier["attempt"] == 1 else []:
                    try:
                        state, now_start = started(pid)
                    except OSError:
                        continue
                    if now_start == start and state != "Z":
                        alive.append(pid)
        record["first_run_alive"] = alive
    with open(os.path.join(ckpt, "runs.jsonl"), "a") as f:
        f.write(json.dumps(record) + "\\n")
    print(f"rank {rank} attempt {attempt}", flush=True)
    if attempt == 1:
        time.sleep(600)
""")


@pytest.mark.jobs
def test_an_interrupted_run_is_gone_before_the_restart_begins(sm_env, monkeypatch):
    job = launch_two_ranks(monkeypatch, ATTEMPT_RANK, simulate_interruptions=[4])
    files = job_files(sm_env, job)
    runs = files.opt_ml("algo-1", ["algo-1"]) / "checkpoints" / "runs.jsonl"
    # Hold the runner (and with it the interruption) until both ranks of the first run are up.
    wait_until(lambda: read_state(files.state).extra.get("attempts") == 1, 60, "the first run to start")
    runner = read_runner(files)
    assert proven_signal(runner["pid"], signal.SIGSTOP, ident=runner)
    try:
        wait_until(lambda: runs.exists() and len(runs.read_text().splitlines()) == 2, 120,
                   f"both ranks of the first run; log:\n{job.logs()}")
    finally:
        proven_signal(runner["pid"], signal.SIGCONT, ident=runner)
    job.wait(timeout=120)
    assert job.status == "Completed"
    assert [t.status for t in job.transitions].count("Interrupted") == 1
    records = [json.loads(line) for line in runs.read_text().splitlines()]
    assert sorted((r["attempt"], r["rank"]) for r in records) == [(1, "0"), (1, "1"), (2, "0"), (2, "1")]
    second = [r for r in records if r["attempt"] == 2]
    assert all(r["first_run_alive"] == [] for r in second), f"the two runs overlapped: {second}"
    assert token_pids(job_token(read_state(files.state))) == []  # the second run's daemons too
    assert not any(running(pid) for r in records for pid, _ in r["procs"])


@pytest.mark.jobs
def test_a_reader_ends_every_process_of_a_job_whose_runner_was_killed(sm_env, monkeypatch):
    job = launch_two_ranks(monkeypatch, STUBBORN_RANK)
    files = job_files(sm_env, job)
    token, records = wait_for_ranks(files, job)
    runner = read_runner(files)
    assert proven_signal(runner["pid"], signal.SIGKILL, ident=runner)
    wait_until(lambda: not alive(runner), 30, "the killed runner to be gone")
    # Three readers at once, none of them the kernel that started the job: one recovers the
    # job, the others wait for it and read what it recorded.
    results = []
    readers = [threading.Thread(target=lambda: results.append(LocalBackend(sm_env / "sm_jobs").describe(job.name)))
               for _ in range(3)]
    for t in readers:
        t.start()
    for t in readers:
        t.join(60)
    assert [s.status for s in results] == ["Failed"] * 3
    assert "runner" in results[0].failure_reason and "ended before the job did" in results[0].failure_reason
    assert token_pids(token) == []
    assert not any(running(pid) for r in records.values() for pid in (r["rank"], r["daemon"]))
    state = read_state(files.state)
    assert state.status == "Failed" and [t.status for t in state.transitions].count("Failed") == 1
    assert job.refresh().status == "Failed"


@pytest.mark.jobs
def test_a_run_that_finished_before_its_runner_was_killed_is_completed_with_its_model(sm_env):
    go = sm_env / "go"
    job = sm_magic.launch(script(f"""
        import os, time
        open(os.path.join(os.environ["SM_MODEL_DIR"], "model.pt"), "w").write("weights")
        print("model written", flush=True)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.05)
    """))
    files = job_files(sm_env, job)
    wait_until(lambda: "model written" in job.logs(), 60, "the model to be written")
    runner = read_runner(files)
    assert proven_signal(runner["pid"], signal.SIGSTOP, ident=runner)  # it sees nothing from here on
    go.touch()
    wait_until(lambda: read_exit_record(files, "algo-1") == 0, 60, "the host's exit record")
    assert proven_signal(runner["pid"], signal.SIGKILL, ident=runner)
    wait_until(lambda: not alive(runner), 30, "the killed runner to be gone")
    state = LocalBackend(sm_env / "sm_jobs").describe(job.name)
    assert state.status == "Completed", state.failure_reason
    assert "exit status 0" in state.transitions[-2].message
    with tarfile.open(state.model_artifacts) as tar:
        assert tar.getnames() == ["model.pt"]
    assert read_state(files.state).status == "Completed"


def forge_job(jobs_dir, name: str, runner: dict, victim: int) -> JobFiles:
    """A job record as a runner that is long gone left it, whose recorded pids now belong to
    `victim`, a process that is not the job's."""
    files = JobFiles(jobs_dir / name)
    (files.dir / "logs").mkdir(parents=True)
    (files.dir / "logs" / "algo-1.log").write_text("epoch 0: {'loss': 1.0}\n")
    state = JobState(name=name, creation_time=time.time() - 3600, instance_type="local")
    state.extra = {"runner_pid": victim, "pgids": {"algo-1": victim}, "attempts": 1,
                   "local": {"token": new_token(), "entry_command": ["python", "sm_entry.py"],
                             "host_env": {"algo-1": {}}, "interruptions": []}}
    enter(state, "Training", "Training in progress", status="InProgress", now=state.creation_time)
    write_state(files.state, state)
    write_json(files.runner_record, runner)
    Registry().add(JobRecord(name=name, backend="local", created=state.creation_time, instance_type="local",
                             location=str(files.dir)))
    return files


def test_a_reused_pid_is_never_signalled_and_the_job_ends(sm_env, capsys):
    # Not the job's: a session leader of ours (the old code killed recorded sessions, and
    # signalled the recorded runner pid).
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    try:
        me = identity(victim.pid)
        jobs = sm_env / "sm_jobs"
        reused = forge_job(jobs, "reused-in-this-boot", {**me, "start_time": me["start_time"] - 1}, victim.pid)

        assert cli.main(["jobs"]) == 0
        listing = capsys.readouterr().out
        assert victim.poll() is None and running(victim.pid)
        assert any("reused-in-this-boot" in line and "Failed" in line for line in listing.splitlines()), listing

        backend = LocalBackend(jobs)
        state = backend.describe("reused-in-this-boot")
        assert state.status == "Failed" and "ended before the job did" in state.failure_reason
        backend.stop("reused-in-this-boot")  # already ended: nothing to do
        assert read_state(reused.state).status == "Failed"

        # Another job, from a previous boot, stopped before anything described it.
        rebooted = forge_job(jobs, "from-a-previous-boot", {**me, "boot_id": "0" * 32}, victim.pid)
        LocalBackend(jobs).stop("from-a-previous-boot")
        assert cli.main(["stop", "from-a-previous-boot"]) == 0
        state = LocalBackend(jobs).describe("from-a-previous-boot")
        assert state.status == "Failed" and "ended before the job did" in state.failure_reason
        assert read_state(rebooted.state).status == "Failed"

        assert victim.poll() is None and running(victim.pid), "a process that is not the job's was signalled"
    finally:
        victim.kill()
        victim.wait()


def test_a_recorded_identity_is_proof_and_a_number_alone_is_not(sm_env):
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        me = identity(victim.pid)
        token = new_token()
        assert not proven_signal(victim.pid, signal.SIGTERM, token=token)        # does not carry it
        assert not proven_signal(victim.pid, signal.SIGTERM, ident={**me, "start_time": me["start_time"] + 1})
        assert not proven_signal(victim.pid, signal.SIGTERM, ident={**me, "boot_id": "f" * 32})
        with pytest.raises(ValueError):
            proven_signal(victim.pid, signal.SIGTERM)
        assert victim.poll() is None
        assert proven_signal(victim.pid, signal.SIGTERM, ident=me)
        assert victim.wait(10) == -signal.SIGTERM
        assert not proven_signal(victim.pid, signal.SIGTERM, ident=me)           # ended: a zombie no more
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()


@pytest.mark.jobs
def test_the_runner_does_not_carry_its_jobs_token(sm_env):
    job = sm_magic.launch(script("""
        import time
        print("up", flush=True)
        time.sleep(600)
    """))
    files = job_files(sm_env, job)
    wait_until(lambda: "up" in job.logs(), 60, "the script to start")
    token = job_token(read_state(files.state))
    runner = read_runner(files)
    holders = token_pids(token)
    assert holders and runner["pid"] not in holders
    with open(f"/proc/{runner['pid']}/environ", "rb") as f:
        assert token.encode() not in f.read()
    job.stop().wait(timeout=60)
    assert job.status == "Stopped" and token_pids(token) == []
    assert os.path.exists(job.model_data)
