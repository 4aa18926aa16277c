"""The local backend end to end: real processes, real files, no mocks."""

import json
import os
import subprocess
import sys
import tarfile
import textwrap
import time

import pytest

import sm_magic
from sm_magic.backends import BackendError
from sm_magic.backends.local.state import live_session_members
from sm_magic.jobs.job import JobFailedError
from sm_magic.jobs.registry import Registry
from sm_magic.plan.planner import LaunchError

from helpers.jobscripts import EPOCHS_SCRIPT, script, wait_until


@pytest.mark.jobs
def test_completed_job_has_metrics_model_and_sagemaker_layout(sm_env):
    job = sm_magic.launch(EPOCHS_SCRIPT, args=["--epochs", "3", "--lr", "0.05"], wait=True)

    assert job.status == "Completed" and job.secondary_status == "Completed"
    assert [t.status for t in job.transitions] == ["Starting", "Downloading", "Training", "Uploading", "Completed"]
    assert all(t.end is not None and t.end >= t.start for t in job.transitions)
    assert job.hyperparameters == {"epochs": "3", "lr": "0.05"}

    frame = job.metrics
    assert list(frame.index) == [0, 1, 2] and frame.index.name == "epoch"
    assert frame.loc[2, "accuracy"] == pytest.approx(0.7) and frame.loc[0, "f1"] == pytest.approx(0.45)

    job_dir = sm_env / "sm_jobs" / job.name
    assert job.model_data == str(job_dir / "output" / "model.tar.gz")
    with tarfile.open(job.model_data) as tar:
        assert sorted(tar.getnames()) == ["env.json", "model.json"]
        model = json.load(tar.extractfile("model.json"))
        env = json.load(tar.extractfile("env.json"))
    assert model == {"lr": 0.05, "argv": ["--epochs", "3", "--lr", "0.05"]}
    opt_ml = job_dir / "opt_ml"
    assert env["SM_MODEL_DIR"] == str(opt_ml / "model")
    assert env["SM_CURRENT_HOST"] == "algo-1" and json.loads(env["SM_HOSTS"]) == ["algo-1"]
    assert json.loads(env["SM_HPS"]) == {"epochs": "3", "lr": "0.05"}
    assert json.loads((opt_ml / "input/config/hyperparameters.json").read_text()) == {"epochs": "3", "lr": "0.05"}
    assert json.loads((opt_ml / "input/config/resourceconfig.json").read_text())["current_host"] == "algo-1"
    assert "epoch 2: {'accuracy'" in (job_dir / "logs" / "algo-1.log").read_text()

    record = Registry().get(job.name)
    assert record.status == "Completed" and record.location == str(job_dir)


@pytest.mark.jobs
def test_launch_returns_at_once_and_attach_sees_the_same_job(sm_env):
    slow = script("""
        import time
        time.sleep(3)
        print("epoch 0: {'loss': 1.5}")
    """)
    started = time.monotonic()
    job = sm_magic.launch(slow)
    assert time.monotonic() - started < 2.5
    assert job.status == "InProgress"
    again = sm_magic.attach(job.name).wait(timeout=60)
    assert again.status == "Completed"
    assert again.metrics.loc[0, "loss"] == 1.5


@pytest.mark.jobs
def test_failing_script_fails_the_job_with_its_reason_and_keeps_the_log(sm_env):
    failing = script("""
        print("loading data")
        def train():
            return 1 / 0
        train()
    """)
    with pytest.raises(JobFailedError) as err:
        sm_magic.launch(failing, wait=True)
    job = err.value.job
    assert job.status == "Failed" and job.secondary_status == "Failed"
    assert "ZeroDivisionError: division by zero" in job.failure_reason
    assert "train.py, line 3" in job.failure_reason and "exit code 1" in job.failure_reason
    assert "ZeroDivisionError" in str(err.value)
    assert "loading data" in job.logs()
    assert job.model_data is None
    assert Registry().get(job.name).status == "Failed"


@pytest.mark.jobs
def test_failure_file_is_the_reason_when_the_script_writes_one(sm_env):
    failing = script("""
        import os, sys
        with open(os.path.join(os.environ["SM_OUTPUT_DIR"], "failure"), "w") as f:
            f.write("dataset has no rows")
        sys.exit(3)
    """)
    with pytest.raises(JobFailedError) as err:
        sm_magic.launch(failing, wait=True)
    assert "dataset has no rows" in err.value.reason


@pytest.mark.jobs
def test_killed_script_is_reported_with_its_signal(sm_env):
    killed = script("""
        import os, signal
        print("about to be killed", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    with pytest.raises(JobFailedError) as err:
        sm_magic.launch(killed, wait=True)
    assert "SIGKILL" in err.value.reason
    assert "about to be killed" in err.value.job.logs()


def _group_alive(pgid: int) -> bool:
    return bool(live_session_members(pgid))


@pytest.mark.jobs
def test_stop_ends_every_process_and_keeps_the_model(sm_env):
    sleeper = script("""
        import os, subprocess, sys, time
        open(os.path.join(os.environ["SM_MODEL_DIR"], "partial.pt"), "w").write("weights")
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        print("epoch 0: {'loss': 2.0}", flush=True)
        time.sleep(600)
    """)
    job = sm_magic.launch(sleeper)
    wait_until(lambda: "epoch 0" in job.logs(), 60, "the script to start")
    state = json.loads((sm_env / "sm_jobs" / job.name / "state.json").read_text())
    pgid = state["extra"]["pgids"]["algo-1"]
    assert _group_alive(pgid)

    job.stop().wait(timeout=60)
    assert job.status == "Stopped" and job.secondary_status == "Stopped"
    assert [t.status for t in job.transitions][-3:] == ["Stopping", "Uploading", "Stopped"]
    assert not _group_alive(pgid), "a process of the stopped job is still alive"
    with tarfile.open(job.model_data) as tar:
        assert tar.getnames() == ["partial.pt"]
    assert job.metrics.loc[0, "loss"] == 2.0


@pytest.mark.jobs
def test_job_outlives_the_process_that_launched_it(sm_env):
    code = textwrap.dedent(f"""
        import sm_magic
        job = sm_magic.launch({script('''
            import time
            time.sleep(2)
            print("epoch 0: {'accuracy': 0.9}")
        ''')!r})
        print(job.name)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    name = out.stdout.strip().splitlines()[-1]
    job = sm_magic.attach(name).wait(timeout=60)
    assert job.status == "Completed" and job.metrics.loc[0, "accuracy"] == 0.9


@pytest.mark.jobs
def test_name_collision_is_refused_and_the_first_job_is_intact(sm_env):
    first = sm_magic.launch(EPOCHS_SCRIPT, name="my-job-1", wait=True)
    with pytest.raises(LaunchError, match="my-job-1 is already"):
        sm_magic.launch(EPOCHS_SCRIPT, name="my-job-1")
    assert sm_magic.attach("my-job-1").status == "Completed"
    assert first.metrics.shape == (3, 2)


def test_unwritable_jobs_dir_is_refused_before_anything_is_written(sm_env):
    blocker = sm_env / "not-a-dir"
    blocker.write_text("a file where the jobs directory should be")
    with pytest.raises(BackendError, match="cannot write job directories under .*SM_MAGIC_JOBS_DIR"):
        sm_magic.launch(EPOCHS_SCRIPT, jobs_dir=str(blocker / "jobs"))
    assert Registry().list() == []


@pytest.mark.jobs
def test_input_channels_and_metric_definitions(sm_env, monkeypatch):
    data = sm_env / "data"
    data.mkdir()
    (data / "rows.csv").write_text("1,2\n3,4\n")
    reader = script("""
        import os
        rows = open(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "rows.csv")).read().splitlines()
        print(f"epoch 0: rows={len(rows)}")
        print(f"epoch=0 loss=0.25 channels={os.environ['SM_CHANNELS']}")
    """)
    job = sm_magic.launch(reader, inputs=[f"train={data}"], metrics=["rows=rows=([0-9]+)"], wait=True)
    assert job.metrics.loc[0, "rows"] == 2 and job.metrics.loc[0, "loss"] == 0.25
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(sm_env / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(sm_env / "none"))
    with pytest.raises(BackendError, match=r"cannot list s3://bucket/train \(no AWS credentials found\); the local "
                                           "backend downloads s3:// inputs with your AWS credentials"):
        sm_magic.launch(reader, inputs=["train=s3://bucket/train"])
    assert len(Registry().list()) == 1


@pytest.mark.jobs
def test_data_parallel_runs_one_gloo_group_on_this_host(sm_env):
    dp = script("""
        import torch
        from accelerate import Accelerator
        acc = Accelerator()
        total = acc.reduce(torch.tensor([float(acc.process_index + 1)]), reduction="sum")
        print(f"rank {acc.process_index} of {acc.num_processes} {acc.distributed_type} sum={total.item()}")
        acc.end_training()  # without it gloo may abort at exit (a torch behaviour, docs/limits.md)
    """)
    job = sm_magic.launch(dp, distributed_type="DATA_PARALLEL", mixed_precision="fp16", wait=True)
    log = job.logs()
    assert "fp16 needs a GPU" in log
    for rank in (0, 1):
        assert f"rank {rank} of 2 DistributedType.MULTI_CPU sum=3.0" in log


@pytest.mark.jobs
def test_two_hosts_join_one_group_with_their_own_trees_and_logs(sm_env):
    dp = script("""
        import os, torch
        from accelerate import Accelerator
        acc = Accelerator()
        total = acc.reduce(torch.tensor([float(acc.process_index + 1)]), reduction="sum")
        print(f"{os.environ['SM_CURRENT_HOST']} rank {acc.process_index} of {acc.num_processes} sum={total.item()}")
        if acc.is_local_main_process:
            open(os.path.join(os.environ["SM_MODEL_DIR"], os.environ["SM_CURRENT_HOST"]), "w").write("w")
        acc.wait_for_everyone()
        acc.end_training()  # tear the gloo group down together, as a data-parallel script should
    """)
    job = sm_magic.launch(dp, distributed_type="DATA_PARALLEL", instance_count=2, wait=True)
    job_dir = sm_env / "sm_jobs" / job.name
    assert "algo-2 | algo-2 rank 3 of 4 sum=10.0" in job.logs()
    assert "algo-1 rank 0 of 4 sum=10.0" in (job_dir / "logs" / "algo-1.log").read_text()
    assert (job_dir / "hosts" / "algo-2" / "opt_ml" / "model" / "algo-2").exists()
    with tarfile.open(job.model_data) as tar:
        assert tar.getnames() == ["algo-1"]  # the model comes from algo-1, as on SageMaker


@pytest.mark.jobs
def test_accelerate_inputs_and_metrics_files_from_the_config(sm_env):
    data = sm_env / "train-data"
    data.mkdir()
    (data / "x.txt").write_text("hello")
    (sm_env / "inputs.tsv").write_text(f"channel\turi\ntrain\t{data}\n")
    (sm_env / "metrics.tsv").write_text("name\tregex\nloss\tloss: ([0-9.]+)\n")
    (sm_env / "cfg.yaml").write_text("compute_environment: AMAZON_SAGEMAKER\nec2_instance_type: local\n"
                                     "sagemaker_inputs_file: inputs.tsv\nsagemaker_metrics_file: metrics.tsv\n")
    reader = script("""
        import os
        print(open(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "x.txt")).read())
        for epoch in range(2):
            print(f"Epoch {epoch} loss: {1.0 / (epoch + 1)}")
    """)
    job = sm_magic.launch(reader, config="cfg.yaml", wait=True)
    assert "hello" in job.logs()
    assert list(job.metrics["loss"]) == [1.0, 0.5]
    (sm_env / "inputs.tsv").write_text("channel\turi\ntrain-only-name\n")
    with pytest.raises(LaunchError, match=r"inputs.tsv, line 2: expected 'name<TAB>value'"):
        sm_magic.launch(reader, config="cfg.yaml")


@pytest.mark.jobs
def test_stop_right_after_launch_ends_the_job_stopped(sm_env):
    job = sm_magic.launch(script("""
        import time
        time.sleep(600)
    """))
    job.stop()  # before the runner has even recorded its pid
    assert job.wait(timeout=60).status == "Stopped"
    assert "Stopping" in [t.status for t in job.transitions]


@pytest.mark.jobs
def test_a_poll_of_quiet_jobs_opens_no_file_and_a_changed_job_only_its_log(sm_env, monkeypatch):
    gated = script("""
        import os, sys, time
        print("waiting", flush=True)
        while not os.path.exists(sys.argv[1]):
            time.sleep(0.05)
        print("more", flush=True)
        while not os.path.exists(sys.argv[1] + ".end"):
            time.sleep(0.05)
    """)
    gates = [sm_env / f"gate-{i}" for i in range(3)]
    jobs = [sm_magic.launch(gated, args=[str(gate)], backend="local") for gate in gates]
    for job in jobs:
        wait_until(lambda job=job: job.status == "InProgress" and "waiting" in job.logs(), 60, "the job to start")
    from sm_magic.backends.local.changed_files import RACY_SECONDS

    def settled() -> bool:  # every job file older than the racy window, so none must be read again
        newest = max(p.stat().st_mtime for p in (sm_env / "sm_jobs").rglob("*") if p.is_file())
        return time.time() - newest >= RACY_SECONDS
    wait_until(settled, 30, "the jobs' files to settle")
    for job in jobs:
        job.snapshot()  # each job's cursor at the end of its log
    opened: list[str] = []
    real_open = open

    def counting_open(file, *args, **kwargs):
        if str(file).startswith(str(sm_env / "sm_jobs")):
            opened.append(os.path.relpath(file, sm_env / "sm_jobs"))
        return real_open(file, *args, **kwargs)
    monkeypatch.setattr("builtins.open", counting_open)
    for job in jobs:
        snap = job.snapshot()
        assert snap.state.status == "InProgress" and snap.new_lines == []
    assert opened == []
    gates[1].touch()
    wait_until(lambda: "more" in (sm_env / "sm_jobs" / jobs[1].name / "logs" / "algo-1.log").read_text(), 60, "a line")
    lines = {job.name: job.snapshot().new_lines for job in jobs}
    assert lines == {jobs[0].name: [], jobs[1].name: ["more"], jobs[2].name: []}
    assert opened == [f"{jobs[1].name}/logs/algo-1.log"]
    monkeypatch.undo()
    for gate in gates:
        gate.touch()
        gate.with_name(gate.name + ".end").touch()
    for job in jobs:
        assert job.wait(timeout=60).status == "Completed"
