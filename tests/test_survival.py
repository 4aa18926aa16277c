"""Jobs that survive: spot interruptions resumed from checkpoints, two hosts, time limits, stop.

Real processes throughout: the local backend's runner, accelerate, torch on CPU.
"""

import io
import re
import signal
import tarfile
import time

import pytest
import torch

import sm_magic
from sm_magic.backends.local.procs import proven_signal
from sm_magic.backends.local.runner import STOP_GRACE_SECONDS
from sm_magic.backends.local.state import JobFiles, live_session_members, read_runner, read_state

from helpers.jobscripts import script, wait_until

pytestmark = pytest.mark.jobs

# Deterministic: fixed seeds, each step's batch drawn from a generator seeded by (epoch, step),
# Accelerate's save_state/load_state for the model, optimizer and RNG states.
RESUME_SCRIPT = script("""
    import os, time
    import torch
    from accelerate import Accelerator
    from sm_magic.runtime import resume, save_checkpoint

    torch.manual_seed(0)
    accelerator = Accelerator()
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model, optimizer = accelerator.prepare(model, optimizer)
    x = torch.randn(256, 8, generator=torch.Generator().manual_seed(1))
    y = (x[:, :4].sum(1, keepdim=True) - x[:, 4:].prod(1, keepdim=True)).tanh()

    start = resume(accelerator)
    for epoch in range(start, 24):
        print(f"training epoch {epoch}", flush=True)
        for step in range(16):
            idx = torch.randint(0, 256, (32,), generator=torch.Generator().manual_seed(epoch * 1000 + step))
            loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
            optimizer.zero_grad()
            accelerator.backward(loss)
            optimizer.step()
        time.sleep(0.4)
        with torch.no_grad():
            full = torch.nn.functional.mse_loss(model(x), y).item()
        print(f"epoch {epoch}: {{'loss': {full!r}}}", flush=True)
        save_checkpoint(accelerator, epoch)
        print(f"checkpoint {epoch} saved", flush=True)
    torch.save(accelerator.unwrap_model(model).state_dict(), os.path.join(os.environ["SM_MODEL_DIR"], "model.pt"))
""")


def model_weights(job):
    with tarfile.open(job.model_data) as tar:
        return torch.load(io.BytesIO(tar.extractfile("model.pt").read()))


def attempts(log: str) -> list[str]:
    """The log split at each simulated interruption: one piece per run of the hosts."""
    return re.split(r"^sm_magic: simulated spot interruption.*$", log, flags=re.M)


def hold_runner(sm_env, job, run: int, until, what: str) -> float:
    """Hold the job's runner (SIGSTOP) from the start of run `run` of the hosts until `until()`
    is true; returns when it was let go (time.time()). max_run and simulated interruptions count
    from the start of a run, start-up included (as on SageMaker), and a held runner acts on
    neither: whatever limit is set then finds the script past `until`, however long this
    machine took to start it (torch and accelerate alone take seconds). The hosts run on."""
    files = JobFiles(sm_env / "sm_jobs" / job.name)
    wait_until(lambda: read_state(files.state).extra.get("attempts") == run, 300, f"run {run} to start")
    runner = read_runner(files)
    assert proven_signal(runner["pid"], signal.SIGSTOP, ident=runner)
    try:
        wait_until(until, 300, what)
    finally:
        proven_signal(runner["pid"], signal.SIGCONT, ident=runner)
    return time.time()


def test_interrupted_twice_resumes_to_the_same_model_as_an_uninterrupted_run(sm_env):
    plain = sm_magic.launch(RESUME_SCRIPT, name="plain", wait=True)
    job = sm_magic.launch(RESUME_SCRIPT, name="spot", use_spot_instances=True, max_wait=3600,
                          simulate_interruptions=[4, 4])
    # Each interrupted run is held until it has saved a checkpoint (the 4 s only need to outlast
    # this test's noticing that the run started): each restart has one to resume from.
    for run in (1, 2):
        hold_runner(sm_env, job, run, lambda: re.search(r"^checkpoint \d+ saved$", attempts(job.logs())[-1], re.M),
                    f"a checkpoint saved by run {run}")
    job.wait(timeout=300)

    statuses = [t.status for t in job.transitions]
    assert statuses == ["Starting", "Downloading", "Training", "Interrupted", "Restarting", "Training",
                        "Interrupted", "Restarting", "Training", "Uploading", "Completed"]
    assert job.status == "Completed"
    assert "Spot capacity reclaimed" in job.transitions[3].message

    # Same final metrics and bitwise the same weights.
    assert plain.metrics.equals(job.metrics) and len(job.metrics) == 24
    ours, theirs = model_weights(job), model_weights(plain)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)

    # Each restart picks up right after the last checkpoint of the run before: no checkpointed
    # epoch is trained again, and only the epoch in flight is redone.
    pieces = attempts(job.logs())
    assert len(pieces) == 3
    for before, after in zip(pieces, pieces[1:]):
        saved = [int(e) for e in re.findall(r"^checkpoint (\d+) saved$", before, re.M)]
        begun = [int(e) for e in re.findall(r"^training epoch (\d+)$", before, re.M)]
        resumed = re.search(r"^sm_magic: resumed from checkpoint (\d+)", after, re.M)
        assert resumed, "a restart did not resume from the checkpoint its run saved"
        start = int(resumed.group(1)) + 1
        first = int(re.search(r"^training epoch (\d+)$", after, re.M).group(1))
        assert first == start
        last_saved = max(saved, default=-1)
        # The checkpoint resumed from is the newest one written (one may have been renamed into
        # place just before the kill, before its "saved" line was printed).
        assert last_saved <= start - 1 <= max(begun, default=-1)

    # TrainingTimeInSeconds is wall time; BillableTimeInSeconds leaves out the time interrupted.
    state = job.describe()
    waited = sum(t.seconds for t in job.transitions if t.status in ("Interrupted", "Restarting"))
    assert waited >= 2.0
    assert abs(state.training_seconds - (state.training_end_time - state.training_start_time)) <= 1
    assert abs(state.billable_seconds - (state.training_seconds - waited)) <= 1
    assert state.extra["attempts"] == 3


def test_two_hosts_train_a_data_parallel_model_to_the_same_weights(sm_env):
    dp = script("""
        import os, torch
        from accelerate import Accelerator
        torch.manual_seed(0)
        acc = Accelerator()
        model = torch.nn.Linear(6, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        model, optimizer = acc.prepare(model, optimizer)
        # Each rank trains on its own shard; DDP averages the gradients.
        g = torch.Generator().manual_seed(100 + acc.process_index)
        for step in range(20):
            x = torch.randn(16, 6, generator=g)
            loss = torch.nn.functional.mse_loss(model(x), x.sum(1, keepdim=True))
            optimizer.zero_grad()
            acc.backward(loss)
            optimizer.step()
        weights = acc.unwrap_model(model).state_dict()
        torch.save(weights, os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], f"rank-{acc.process_index}.pt"))
        print(f"{os.environ['SM_CURRENT_HOST']} rank {acc.process_index} of {acc.num_processes} done", flush=True)
        acc.wait_for_everyone()
        acc.end_training()
    """)
    job = sm_magic.launch(dp, distributed_type="DATA_PARALLEL", instance_count=2, wait=True)
    job_dir = sm_env / "sm_jobs" / job.name
    saved = {}
    for host, root in (("algo-1", job_dir / "opt_ml"), ("algo-2", job_dir / "hosts" / "algo-2" / "opt_ml")):
        for path in (root / "output" / "data").glob("rank-*.pt"):
            saved[(host, path.stem)] = torch.load(path)
    assert sorted(saved) == [("algo-1", "rank-0"), ("algo-1", "rank-1"), ("algo-2", "rank-2"), ("algo-2", "rank-3")]
    reference = saved[("algo-1", "rank-0")]
    init = torch.nn.Linear(6, 1)
    assert not torch.equal(reference["weight"], init.weight.detach())
    for weights in saved.values():
        assert all(torch.equal(weights[k], reference[k]) for k in reference)
    # One checkpoint directory seen by both hosts, as S3 gives a restarted job.
    assert (job_dir / "hosts" / "algo-2" / "opt_ml" / "checkpoints").resolve() == \
        (job_dir / "opt_ml" / "checkpoints").resolve()


SIGTERM_SAVER = script("""
    import os, signal, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    def on_term(signum, frame):
        open(os.path.join(os.environ["SM_MODEL_DIR"], "saved-on-sigterm.txt"), "w").write("ok")
        print("got SIGTERM: saved the model", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    print(f"{os.environ['SM_CURRENT_HOST']} running", flush=True)
    time.sleep(600)
""")


def pgids(sm_env, job):
    return read_state(sm_env / "sm_jobs" / job.name / "state.json").extra["pgids"]


def test_max_run_stops_the_job_as_max_runtime_exceeded_with_its_model(sm_env):
    job = sm_magic.launch(SIGTERM_SAVER, max_run=3)
    # The limit must find the script running, its SIGTERM handler set.
    released = hold_runner(sm_env, job, 1, lambda: "algo-1 running" in job.logs(), "the script to start")
    job.wait(timeout=60)
    assert job.status == "Stopped" and job.secondary_status == "MaxRuntimeExceeded"
    statuses = [t.status for t in job.transitions]
    assert statuses[-4:] == ["Training", "Stopping", "Uploading", "MaxRuntimeExceeded"]
    assert "max_run (3 s" in job.transitions[-3].message
    state = job.describe()
    # Stopped at 3 s or, after a start-up longer than that, as soon as the runner was let go; and
    # ended by the script's own exit on SIGTERM, before the KILL the grace period would bring.
    limit = max(3, released - state.training_start_time)
    assert 3 <= state.billable_seconds < limit + STOP_GRACE_SECONDS, (state.billable_seconds, limit)
    assert "got SIGTERM: saved the model" in job.logs()  # SIGTERM first, as SageMaker sends
    with tarfile.open(job.model_data) as tar:
        assert tar.getnames() == ["saved-on-sigterm.txt"]
    assert not any(live_session_members(g) for g in pgids(sm_env, job).values())


def test_max_wait_counts_the_time_spent_interrupted(sm_env):
    # 2 s runs, each followed by a 1 s wait for capacity: the job has run about 4 s (under
    # max_run) when 6 s of wall time (max_wait) are up.
    job = sm_magic.launch(SIGTERM_SAVER, use_spot_instances=True, max_run=5, max_wait=6,
                          simulate_interruptions=[2, 2, 2, 2]).wait(timeout=60)
    assert job.status == "Stopped" and job.secondary_status == "MaxWaitTimeExceeded"
    assert [t.status for t in job.transitions].count("Interrupted") >= 2
    state = job.describe()
    assert state.billable_seconds < 5 <= state.training_seconds


def test_stop_ends_every_process_of_every_host_and_keeps_checkpoints(sm_env, monkeypatch):
    monkeypatch.setenv("SM_MAGIC_CPU_PROCESSES", "1")  # one process per host, two in all
    job = sm_magic.launch(script("""
        import os
        os.makedirs(os.path.join(os.environ["SM_CHECKPOINT_DIR"], "ckpt-0"), exist_ok=True)
    """) + SIGTERM_SAVER, instance_count=2, distributed_type="DATA_PARALLEL")
    wait_until(lambda: "algo-1 running" in job.logs() and "algo-2 running" in job.logs(), 60, "both hosts running")
    groups = pgids(sm_env, job)
    assert sorted(groups) == ["algo-1", "algo-2"]
    assert all(len(live_session_members(g)) >= 2 for g in groups.values())  # the script and its child
    job.stop().wait(timeout=60)
    assert job.status == "Stopped" and job.secondary_status == "Stopped"
    assert not any(live_session_members(g) for g in groups.values()), "a process of the stopped job lives on"
    assert (sm_env / "sm_jobs" / job.name / "opt_ml" / "checkpoints" / "ckpt-0").is_dir()
    with tarfile.open(job.model_data) as tar:
        assert tar.getnames() == ["saved-on-sigterm.txt"]
