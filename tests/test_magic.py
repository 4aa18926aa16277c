"""The magics through a real IPython shell, asserting on what the user sees."""

import pytest
from IPython.core.error import UsageError

from sm_magic.jobs.job import Job, JobFailedError
from sm_magic.jobs.monitor import get_monitor
from sm_magic.jobs.registry import Registry

from helpers.jobscripts import EPOCHS_SCRIPT, script, wait_until


def _settle(job):
    """Wait until the monitor has delivered the job's last snapshot (and printed its lines)."""
    wait_until(lambda: job not in get_monitor().watched(), 30, f"the monitor's last snapshot of {job.name}")


@pytest.mark.jobs
def test_wait_streams_status_and_log_and_returns_the_job(ip, capsys):
    job = ip.run_cell_magic("sagemaker_train", "--wait -o trained -- --epochs 3 --lr 0.05", EPOCHS_SCRIPT)
    out = capsys.readouterr().out
    assert isinstance(job, Job) and ip.user_ns["trained"] is job
    assert job.status == "Completed"
    lines = out.splitlines()
    starting = next(i for i, l in enumerate(lines) if l.endswith("Starting - Preparing the instances for training"))
    epoch0 = lines.index("epoch 0: {'accuracy': 0.5, 'f1': 0.45}")
    completed = next(i for i, l in enumerate(lines) if "Completed - Training job completed" in l)
    assert starting < epoch0 < completed
    assert "Billable seconds: " in out
    assert f"You can find your model data at: {job.model_data}" in out
    assert job.hyperparameters == {"epochs": "3", "lr": "0.05"}


@pytest.mark.jobs
def test_without_wait_the_cell_returns_at_once(ip, capsys):
    job = ip.run_cell_magic("sagemaker_train", "--name quick-1", script("""
        import time
        time.sleep(2)
    """))
    assert job.name == "quick-1" and job.status == "InProgress"
    assert "%sagemaker_attach quick-1" in capsys.readouterr().out
    job.wait(timeout=60)
    # In a terminal the progress follows as lines from the monitor thread, ending with the result.
    _settle(job)
    out = capsys.readouterr().out
    assert "[quick-1] " in out and "Training - Training in progress" in out
    assert "[quick-1] model: " in out


@pytest.mark.jobs
def test_line_expansion_and_script_args_reach_the_script_exactly(ip):
    ip.user_ns["lr"] = 5e-5
    job = ip.run_cell_magic(
        "sagemaker_train", "--wait -- --epochs 1 --lr={lr} --extra '$(touch pwned)' --name \"a b\"",
        script("""
            import argparse, json, os, sys
            p = argparse.ArgumentParser()
            p.add_argument("--epochs", type=int); p.add_argument("--lr", type=float)
            p.add_argument("--extra"); p.add_argument("--name")
            a = p.parse_args()
            print(json.dumps(sys.argv[1:]))
        """))
    assert '["--epochs", "1", "--lr=5e-05", "--extra", "$(touch pwned)", "--name", "a b"]' in job.logs()
    assert job.hyperparameters == {"epochs": "1", "lr": "5e-05", "extra": "$(touch pwned)", "name": "a b"}


@pytest.mark.jobs
def test_failed_job_with_wait_fails_the_cell_with_the_reason(ip, capsys):
    result = ip.run_cell("%%sagemaker_train --wait --name broken-1\nraise ValueError('bad batch size')\n")
    assert isinstance(result.error_in_exec, JobFailedError)
    out = capsys.readouterr().out
    assert "training job broken-1 failed: AlgorithmError: ValueError: bad batch size" in out
    assert "Traceback (most recent call last)" not in out.split("Failed - Training job failed")[-1]


@pytest.mark.parametrize("line, cell, message", [
    ("--bogus", "print(1)", "unrecognized arguments: --bogus"),
    ("", "for i in range(3)\n    print(i)\n", "syntax error in the cell, line 1"),
    ("", "\n# only a comment\n", "the cell is empty"),
    ("--instance-count 0", "print(1)", "--instance-count: Input should be greater than or equal to 1"),
    ("--backend nowhere", "print(1)", "invalid choice: 'nowhere'"),
    ("--name bad_name!", "print(1)", "is not a valid training job name"),
    ("--config missing.yaml", "print(1)", "config file missing.yaml does not exist"),
    ("--metric loss", "print(1)", "NAME=REGEX"),
])
def test_bad_input_is_a_usage_error_and_leaves_nothing(ip, sm_env, line, cell, message):
    with pytest.raises(UsageError, match=None) as err:
        ip.run_cell_magic("sagemaker_train", line, cell)
    assert message in str(err.value)
    assert not (sm_env / "sm_jobs").exists() or not any((sm_env / "sm_jobs").iterdir())
    assert Registry().list() == []


def test_config_file_mistakes_name_the_file_line_and_fix(ip, sm_env):
    (sm_env / "typo.yaml").write_text("compute_environment: AMAZON_SAGEMAKER\nec2_instance_typ: local\n")
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("sagemaker_train", "--config typo.yaml", "print(1)")
    assert "typo.yaml line 2: unknown key `ec2_instance_typ`; did you mean `ec2_instance_type`?" in str(err.value)
    (sm_env / "broken.yaml").write_text("distributed_type: [NO\nnum_machines: 1\n")
    with pytest.raises(UsageError, match=r"broken.yaml line 2, column \d+: not valid YAML"):
        ip.run_cell_magic("sagemaker_train", "--config broken.yaml", "print(1)")


def test_dry_run_shows_the_plan_and_launches_nothing(ip, sm_env, capsys):
    ip.run_cell_magic("sagemaker_train", "--dry-run --instance-type ml.p3.2xlarge --backend local -- --fp16 --lr=5e-5",
                      "import yaml\nprint(1)\n")
    out = capsys.readouterr().out
    assert "Dry run: nothing started. Job sm-magic-" in out and " on the local backend." in out
    assert "ec2_instance_type: ml.p3.2xlarge" in out
    assert '"fp16": "True"' in out and "train.py --fp16 --lr=5e-5" in out
    assert "PyYAML==" in out  # the distribution's own spelling
    assert Registry().list() == [] and not (sm_env / "sm_jobs").exists() or not any((sm_env / "sm_jobs").iterdir())


@pytest.mark.jobs
def test_jobs_logs_and_stop_magics(ip, capsys):
    ip.run_cell_magic("sagemaker_train", "--wait --name done-1", EPOCHS_SCRIPT)
    running = ip.run_cell_magic("sagemaker_train", "--name long-1", script("""
        import time
        print("started", flush=True)
        time.sleep(600)
    """))
    capsys.readouterr()
    table = ip.run_line_magic("sagemaker_jobs", "")
    assert list(table["name"]) == ["long-1", "done-1"]
    assert list(table["status"]) == ["InProgress", "Completed"]

    ip.run_line_magic("sagemaker_logs", "done-1 --tail 1")
    # long-1's progress lines may arrive meanwhile from the monitor thread (a terminal shell).
    printed = [l for l in capsys.readouterr().out.splitlines() if not l.startswith("[long-1]")]
    assert printed == ["epoch 2: {'accuracy': 0.7, 'f1': 0.6499999999999999}"]

    ip.run_line_magic("sagemaker_stop", "long-1")
    assert "Stopping long-1" in capsys.readouterr().out
    assert running.wait(timeout=60).status == "Stopped"
    _settle(running)
    with pytest.raises(UsageError, match="no job named nope"):
        ip.run_line_magic("sagemaker_logs", "nope")


def test_config_magic_prints_the_effective_config(ip, sm_env, capsys):
    (sm_env / "guide.yaml").write_text("compute_environment: AMAZON_SAGEMAKER\ndistributed_type: DATA_PARALLEL\n"
                                       "ec2_instance_type: ml.p3.16xlarge\nmixed_precision: fp16\n")
    ip.run_line_magic("sagemaker_config", "--config guide.yaml")
    out = capsys.readouterr().out
    assert "# backend: sagemaker" in out and "ec2_instance_type: ml.p3.16xlarge" in out


@pytest.mark.jobs
def test_simulated_interruption_through_the_magic_and_its_refusals(ip, capsys):
    resumable = script("""
        import time
        from sm_magic.runtime import resume, save_checkpoint
        start = resume(load=lambda path: None)
        for epoch in range(start, 8):
            time.sleep(0.5)
            print(f"epoch {epoch}: {{'loss': {1.0 / (epoch + 1)}}}", flush=True)
            save_checkpoint(None, epoch, save=lambda path: None)
    """)
    job = ip.run_cell_magic("sagemaker_train", "--wait --simulate-interruption 4", resumable)
    out = capsys.readouterr().out
    # Every epoch the first run printed before the reclaim reached the log (the entry command
    # copies it before it ends), and the reclaim is not reported as a failure of the script.
    assert job.status == "Completed" and list(job.metrics.index) == list(range(8))
    assert "the job failed" not in job.logs()
    assert "Interrupted - Spot capacity reclaimed after 4" in out and "Restarting - Restarting on new" in out
    assert "Managed Spot Training savings: " in out
    for line, message in (("--simulate-interruption 0", "a number above 0"),
                          ("--backend sagemaker --simulate-interruption 5", "local backend only")):
        with pytest.raises(UsageError, match=message):
            ip.run_cell_magic("sagemaker_train", line, resumable)
    assert [r.name for r in Registry().list()] == [job.name]


@pytest.mark.jobs
def test_the_forms_launch_button_starts_the_cells_job_with_the_edited_config(ip, sm_env, monkeypatch):
    shown = []
    monkeypatch.setattr("sm_magic.magic.follow.display", shown.append)
    ip.run_cell_magic("sagemaker_train", "--edit --name edited-1 -o edited -- --epochs 1 --lr 0.1", EPOCHS_SCRIPT)
    assert Registry().list() == []  # the form alone starts nothing
    [box] = shown
    form = box._form
    form.controls["mixed_precision"].value = "bf16"
    form.launch()
    assert "Not launched" not in form.message.value, form.message.value
    job = ip.user_ns["edited"]
    assert job.name == "edited-1" and job.wait(timeout=120).status == "Completed"
    assert job.hyperparameters == {"epochs": "1", "lr": "0.1"}
    launch = (sm_env / "sm_jobs" / "edited-1" / "bundle" / "sm_launch.json").read_text()
    assert '"mixed_precision": "bf16"' in launch
    _settle(job)
