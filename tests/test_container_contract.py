"""The container contract: a job launched with `backend="sagemaker"` would really run in
SageMaker's training container.

Each test launches a small PyTorch + Accelerate script through the public API against moto
(tests/helpers/container.py keeps the CreateTrainingJob request exactly as sent), then plays the
platform's part for each host of that request, on this machine:

- emulated: the /opt/ml tree (input/config/hyperparameters.json, resourceconfig.json,
  inputdataconfig.json; every input channel, `code` and `sm_drivers` included, downloaded from
  the S3 URIs in the request; model/, output/, checkpoints/ restored from CheckpointConfig.S3Uri);
  the request's own ContainerEntrypoint + ContainerArguments, unchanged, so the SDK's own drivers
  (sm_train.sh, environment.py, install_requirements.py) install requirements.txt and run the
  bundle's entry command; a clean environment (the request's Environment and what the platform
  sets, nothing of this process's); hostname algo-N and /etc/hosts naming every host; a private
  mount, UTS and PID namespace per host; no network at all for a network-isolated job; the
  image's Python at the image's version with its torch, read-only under a per-host layer, and
  without accelerate, which the job installs; nvidia-smi answering with the instance's GPUs;
  a spot reclaim (SIGKILL, checkpoints synced to S3 and restored on the restarted hosts).
- not emulated: the real image (its CUDA, its other packages such as transformers, its
  entrypoint when the request names none), real GPUs (the fake nvidia-smi makes the SDK and
  accelerate count them, torch finds none and trains on the CPU), separate machines (the hosts
  share this machine's network namespace and reach each other on loopback; a network-isolated
  host gets an empty one, so only single-host isolation is tested), S3 access from inside the
  container, uploading model.tar.gz and the job's status transitions (tests/test_sagemaker_backend.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import sm_magic
from sm_magic.runtime import latest_checkpoint

from helpers.aws_moto import BUCKET, ROLE_NAME
from helpers.container import _capturing_moto, mount_point, opt_ml_mount_point, sagemaker_wire, sm_platform  # noqa: F401 (fixtures)
from helpers.jobscripts import script
from helpers.releases import ACCELERATE_1_16, notebook_accelerate

# Under `pytest -n` (make test) these run one after another on one worker: they share /opt/ml (one
# host tree mounted at a time) and each runs several hosts.
pytestmark = pytest.mark.xdist_group("container")

# Pinned image versions (the newest Hugging Face training image the SDK knows), so that only the
# default-config test follows the product's choice of image.
MODERN = dict(pytorch_version="2.9.0", transformers_version="5.3.0", py_version="py312")
# Script arguments a user could type, shell metacharacters included; they must arrive unchanged.
ARGS = ["--epochs", "3", "--lr=0.1", "--note", "two words; $HOME `id` 'q' -1", "--verbose"]
EPOCHS = 3
W_TRUE = [[1.0], [-2.0], [3.0], [0.5]]

# Full-batch gradient descent on a linear model: every rank takes an equal share of the rows,
# so data parallel training ends with the same weights as one process (gradients averaged).
TRAIN = script("""
    import argparse, json, os, socket, sys
    import torch
    from accelerate import Accelerator

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--note", default="")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--probe-network", action="store_true")
    args = parser.parse_args()
    if args.probe_network:
        try:
            socket.getaddrinfo("pypi.org", 443)
            print("network: reachable", flush=True)
        except OSError as e:
            print(f"network: none ({e})", flush=True)

    accelerator = Accelerator()
    rank, world = accelerator.process_index, accelerator.num_processes
    train_dir = os.environ.get("SM_CHANNEL_TRAIN")
    if train_dir:
        with open(os.path.join(train_dir, "rows.csv")) as f:
            rows = [[float(v) for v in line.split(",")] for line in f]
        X, y = torch.tensor([r[:4] for r in rows]), torch.tensor([r[4:] for r in rows])
        accelerator.print(f"read {len(rows)} rows from {train_dir}")
    else:
        X = torch.linspace(-1, 1, 64).reshape(16, 4)
        y = X @ torch.tensor([[1.0], [-2.0], [3.0], [0.5]])
    X, y = X[rank::world].to(accelerator.device), y[rank::world].to(accelerator.device)
    model = torch.nn.Linear(4, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    model, optimizer = accelerator.prepare(model, optimizer)
    total = accelerator.reduce(torch.tensor([rank + 1.0], device=accelerator.device), reduction="sum")
    # One write per line: under PYTHONUNBUFFERED print() writes the text and its newline apart, and
    # two ranks of a host share one output.
    sys.stdout.write(f"rank {rank} of {world} on {os.environ['SM_CURRENT_HOST']}: all-reduced {total.item():g}\\n")
    sys.stdout.flush()
    for epoch in range(args.epochs):
        loss = torch.nn.functional.mse_loss(model(X), y)
        optimizer.zero_grad()
        accelerator.backward(loss)
        optimizer.step()
        accelerator.print(f"epoch {epoch}: {{'loss': {loss.item():.6f}}}")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        model_dir = os.environ["SM_MODEL_DIR"]
        torch.save(accelerator.unwrap_model(model).state_dict(), os.path.join(model_dir, "model.pt"))
        with open(os.path.join(model_dir, "argv.json"), "w") as f:
            json.dump(sys.argv[1:], f)
""")

FAILING = script("""
    print("epoch 0: {'loss': 1.0}", flush=True)


    def normalise(total, count):
        return total / count


    normalise(1.0, 0)
""")
FAILING_LINE = FAILING.splitlines().index("    return total / count") + 1

# Checkpoints every epoch; a fresh run's epoch 2 is long, so the reclaim lands in it.
SPOT = script("""
    import argparse, os, time
    import torch
    from accelerate import Accelerator
    from sm_magic.runtime import resume, save_checkpoint

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    accelerator = Accelerator()
    X = torch.linspace(-1, 1, 64).reshape(16, 4)
    y = X @ torch.tensor([[1.0], [-2.0], [3.0], [0.5]])
    model = torch.nn.Linear(4, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    start = resume(accelerator)
    print(f"starting at epoch {start}", flush=True)
    for epoch in range(start, args.epochs):
        if start == 0 and epoch == 2:
            print(f"epoch {epoch}: a long one", flush=True)
            time.sleep(3600)
        loss = torch.nn.functional.mse_loss(model(X), y)
        optimizer.zero_grad()
        accelerator.backward(loss)
        optimizer.step()
        print(f"epoch {epoch}: {{'loss': {loss.item():.6f}}}", flush=True)
        save_checkpoint(accelerator, epoch)
    torch.save(accelerator.unwrap_model(model).state_dict(), os.path.join(os.environ["SM_MODEL_DIR"], "model.pt"))
""")


def trained_weights(X, y, epochs, lr=0.1):
    """What TRAIN's model ends with: the same arithmetic, in this process."""
    model = torch.nn.Linear(4, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(epochs):
        loss = torch.nn.functional.mse_loss(model(X), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.weight.detach()


def synthetic():
    X = torch.linspace(-1, 1, 64).reshape(16, 4)
    return X, X @ torch.tensor(W_TRUE)


def launch(source=TRAIN, args=ARGS, **overrides):
    return sm_magic.launch(source, backend="sagemaker", iam_role_name=ROLE_NAME, args=args, **overrides)


def assert_trained(host, epochs=EPOCHS, weights=None, args=ARGS):
    """What a user checks of a finished host: exit 0, the epoch lines, the saved model, the
    arguments as typed."""
    assert host.returncode == 0, f"{host.name} exit status {host.returncode}; log ends:\n{host.tail()}"
    log = host.log()
    for epoch in range(epochs):
        assert re.search(rf"^epoch {epoch}: \{{'loss': [\d.]+\}}$", log, re.M), f"no epoch {epoch} line:\n{host.tail()}"
    expected = trained_weights(*synthetic(), epochs) if weights is None else weights
    saved = torch.load(host.opt_ml / "model" / "model.pt")["weight"]
    assert torch.allclose(saved, expected, atol=1e-5), (saved, expected)
    assert json.loads((host.opt_ml / "model" / "argv.json").read_text()) == args
    assert "AWS_SECRET_ACCESS_KEY" not in log and "SM_MAGIC_" not in log  # nothing leaked in


@pytest.mark.jobs
def test_default_config_on_a_one_gpu_instance(sagemaker_wire, sm_platform):
    launch(instance_type="ml.g5.xlarge")
    request = sagemaker_wire.create_training_job_request()
    assert request["Environment"]["ACCELERATE_SAGEMAKER_DISTRIBUTED_TYPE"] == "NO"
    [host] = sm_platform(gpus=1).run()
    assert_trained(host)
    assert "rank 0 of 1 on algo-1" in host.log()


@pytest.mark.jobs
def test_data_parallel_on_a_one_gpu_instance(sagemaker_wire, sm_platform):
    launch(instance_type="ml.g5.xlarge", distributed_type="DATA_PARALLEL", **MODERN)
    [host] = sm_platform(gpus=1).run()
    assert_trained(host)
    assert "rank 0 of 1 on algo-1: all-reduced 1" in host.log()


@pytest.mark.jobs
def test_data_parallel_on_two_cpu_hosts(sagemaker_wire, sm_platform):
    launch(instance_type="ml.m5.xlarge", instance_count=2, distributed_type="DATA_PARALLEL",
           pytorch_version="2.9.0", py_version="py312")
    hosts = sm_platform(gpus=0).run()
    for host in hosts:
        assert host.returncode == 0, f"{host.name} exit status {host.returncode}; log ends:\n{host.tail()}"
    # One process group across both hosts: every rank, on either host, saw the sum over all ranks.
    seen = [(host.name, said, int(rank), int(world), float(total)) for host in hosts
            for rank, world, said, total in re.findall(r"^rank (\d+) of (\d+) on (\S+): all-reduced (\S+)$",
                                                       host.log(), re.M)]
    world = seen[0][3]
    assert world >= 2 and {name for name, *_ in seen} == {"algo-1", "algo-2"}, seen
    assert sorted(rank for _, _, rank, _, _ in seen) == list(range(world)), seen
    assert all(said == name and w == world and total == world * (world + 1) / 2
               for name, said, _, w, total in seen), seen
    assert_trained(hosts[0])  # the main process (algo-1) saved the trained weights


@pytest.mark.jobs
def test_a_failing_script_leaves_its_reason_in_the_failure_file(sagemaker_wire, sm_platform):
    launch(FAILING, instance_type="ml.g5.xlarge", **MODERN)
    [host] = sm_platform(gpus=1).run()
    assert host.returncode != 0, host.tail()
    failure = host.failure()
    assert failure is not None, f"no /opt/ml/output/failure; log ends:\n{host.tail()}"
    assert "ZeroDivisionError" in failure and re.search(rf'train\.py"?, line {FAILING_LINE}\b', failure), failure


@pytest.mark.jobs
def test_spot_interruption_resumes_from_the_last_checkpoint(sagemaker_wire, sm_platform):
    launch(SPOT, args=["--epochs", "4"], instance_type="ml.g5.xlarge", use_spot_instances=True, max_wait=3600,
           **MODERN)
    request = sagemaker_wire.create_training_job_request()
    assert request["EnableManagedSpotTraining"] is True and request["CheckpointConfig"]["S3Uri"].startswith("s3://")
    first, second = sm_platform(gpus=1).interrupt_and_resume(
        reclaim_when=lambda hosts: "epoch 2: a long one" in hosts[0].log())
    assert first[0].returncode != 0 and latest_checkpoint(str(first[0].checkpoints))[0] == 1
    assert re.findall(r"^epoch (\d): \{", first[0].log(), re.M) == ["0", "1"]
    [host] = second
    assert host.returncode == 0, f"exit status {host.returncode}; log ends:\n{host.tail()}"
    log = host.log()
    assert "starting at epoch 2" in log and "resumed from checkpoint 1" in log, host.tail()
    assert re.findall(r"^epoch (\d): \{", log, re.M) == ["2", "3"]
    # The optimizer and model state came back: the weights are those of four uninterrupted epochs.
    saved = torch.load(host.opt_ml / "model" / "model.pt")["weight"]
    assert torch.allclose(saved, trained_weights(*synthetic(), 4), atol=1e-5)


@pytest.mark.jobs
def test_a_two_host_restart_resumes_from_the_newest_checkpoint_every_host_synced(sagemaker_wire, sm_platform):
    """The reclaim came when both hosts had saved checkpoint 1 but only algo-2's part of it had
    reached S3 (each host syncs its own directory to one prefix, in no set order). The restarted
    hosts must not trust algo-2's marker for the model file algo-1 never uploaded: they resume
    from checkpoint 0, which both hosts synced, and train to the weights of four epochs."""
    launch(SPOT, args=["--epochs", "4"], instance_type="ml.m5.xlarge", instance_count=2, use_spot_instances=True,
           max_wait=3600, pytorch_version="2.9.0", py_version="py312")

    def both_saved_checkpoint_1(hosts):
        return all((host.checkpoints / "ckpt-1").is_dir() for host in hosts) and "a long one" in hosts[0].log()

    first, second = sm_platform(gpus=0).interrupt_and_resume(
        reclaim_when=both_saved_checkpoint_1,
        synced=lambda host, rel: not (host == "algo-1" and rel.startswith("ckpt-1/")))
    assert sorted(p.name for p in (first[0].checkpoints / "ckpt-1").iterdir()) != sorted(
        p.name for p in (first[1].checkpoints / "ckpt-1").iterdir())  # each host saved its own part
    for host in second:
        assert host.returncode == 0, f"{host.name} exit status {host.returncode}; log ends:\n{host.tail()}"
    log = second[0].log()
    assert "checkpoint 1 is incomplete (algo-1's part is missing): not resuming from it" in log, second[0].tail()
    assert "resumed from checkpoint 0" in log and "starting at epoch 1" in log, second[0].tail()
    assert "FileNotFoundError" not in log + second[1].log()
    saved = torch.load(second[0].opt_ml / "model" / "model.pt")["weight"]
    assert torch.allclose(saved, trained_weights(*synthetic(), 4), atol=1e-5)


# Rank 3 (on algo-2) raises in the middle of training; the other ranks are in an all-reduce then.
RANK_FAILS = script("""
    import torch
    from accelerate import Accelerator
    accelerator = Accelerator()
    for step in range(4):
        if step == 2 and accelerator.process_index == 3:
            raise ValueError("bad batch on the last rank")
        total = accelerator.reduce(torch.ones(1), reduction="sum")
        accelerator.print(f"epoch {step}: {{'ranks': {total.item()}}}")
""")
RANK_FAILS_LINE = RANK_FAILS.splitlines().index('        raise ValueError("bad batch on the last rank")') + 1


@pytest.mark.jobs
def test_every_hosts_failure_file_names_the_first_failure(sagemaker_wire, sm_platform):
    """SageMaker shows one host's failure file: whichever it is, it names the rank that failed
    first, and the host that failed of losing it says so."""
    launch(RANK_FAILS, args=[], instance_type="ml.m5.xlarge", instance_count=2, pytorch_version="2.9.0",
           py_version="py312")
    hosts = sm_platform(gpus=0).run()
    first = re.compile(rf"^ValueError: bad batch on the last rank \[train\.py, line {RANK_FAILS_LINE}\] on rank 3")
    failures = {host.name: host.failure() for host in hosts}
    for host in hosts:
        assert host.returncode != 0, f"{host.name} did not fail; log ends:\n{host.tail()}"
        assert failures[host.name] and first.match(failures[host.name]), (failures, host.tail())
    assert "(on algo-2, the first failure; algo-1 then failed of it: " in failures["algo-1"], failures
    assert failures["algo-2"].count("ValueError") == 1, failures


@pytest.mark.jobs
@pytest.mark.parametrize("where", ["s3", "local"])
def test_an_input_channel_reaches_the_script(sagemaker_wire, sm_platform, sm_env, where):
    """From S3, or from a local path, which the launch uploads (the same cell runs locally)."""
    X = torch.linspace(0, 2, 32).reshape(8, 4)
    y = X @ torch.tensor([[0.5], [0.25], [-1.0], [2.0]])
    rows = "".join(",".join(map(repr, [*x, *t])) + "\n" for x, t in zip(X.tolist(), y.tolist()))  # exact
    if where == "s3":
        sagemaker_wire.client("s3").put_object(Bucket=BUCKET, Key="data/train/rows.csv", Body=rows.encode())
        uri = f"s3://{BUCKET}/data/train"
    else:
        (sm_env / "data").mkdir()
        (sm_env / "data" / "rows.csv").write_text(rows)
        uri = str(sm_env / "data")
    launch(instance_type="ml.g5.xlarge", inputs=[f"train={uri}"], **MODERN)
    [host] = sm_platform(gpus=1).run()
    assert_trained(host, weights=trained_weights(X, y, EPOCHS))
    assert "read 8 rows from /opt/ml/input/data/train" in host.log()


@pytest.mark.jobs
def test_network_isolation_installs_requirements_from_the_bundle(sagemaker_wire, sm_platform):
    launch(args=[*ARGS, "--probe-network"], instance_type="ml.g5.xlarge",
           additional_args={"enable_network_isolation": True}, **MODERN)
    request = sagemaker_wire.create_training_job_request()
    assert request["EnableNetworkIsolation"] is True
    p = sm_platform(gpus=1)
    assert p.network is False
    [host] = p.run()
    assert_trained(host, args=[*ARGS, "--probe-network"])
    assert "network: none" in host.log()


TENSORBOARD_SCRIPT = (Path(__file__).parent / "scripts" / "tensorboard_writer.py").read_text()


@pytest.mark.jobs
def test_summary_writer_scalars_reach_job_metrics_through_the_tensorboard_output(sagemaker_wire, sm_platform):
    """A script that writes SummaryWriter scalars (tests/scripts) runs in the container, where the
    job installs tensorboard (no image has it) and the files land in the request's
    TensorBoardOutputConfig.LocalPath; uploaded where SageMaker puts them, they are job.metrics rows."""
    job = launch(TENSORBOARD_SCRIPT, args=["--epochs", "3"], instance_type="ml.g5.xlarge", **MODERN)
    config = sagemaker_wire.create_training_job_request()["TensorBoardOutputConfig"]
    assert config["LocalPath"] == "/opt/ml/output/tensorboard"
    [host] = sm_platform(gpus=1).run()
    assert host.returncode == 0, f"exit status {host.returncode}; log ends:\n{host.tail()}"
    local = host.opt_ml / "output" / "tensorboard"
    files = [f for f in local.rglob("*") if f.is_file()]
    assert files and all(f.name.startswith("events.out.tfevents.") for f in files), files
    # The platform's part: SageMaker uploads LocalPath under <S3OutputPath>/<job>/tensorboard-output/.
    bucket, _, prefix = config["S3OutputPath"].removeprefix("s3://").partition("/")
    s3 = sagemaker_wire.client("s3")
    for f in files:
        key = "/".join(p for p in (prefix.strip("/"), job.name, "tensorboard-output",
                                   f.relative_to(local).as_posix()) if p)
        s3.put_object(Bucket=bucket, Key=key, Body=f.read_bytes())
    frame = job.metrics
    steps = frame.index if frame.index.name == "step" else frame["step"]
    loss = {int(k) for k, v in zip(steps, frame["train/loss"]) if v == v}
    accuracy = {int(k) for k, v in zip(steps, frame["val/accuracy"]) if v == v}
    assert loss == set(range(1, 3 * 32 + 1)) and accuracy == {32, 64, 96}, frame


# An image_uri whose tag says Python 3.10, older than accelerate 1.16 allows, and PyTorch 2.9.0 (so
# its stand-in venv takes torch's CUDA wheels from pip's cache, as the other cases' py312 one did).
PY310_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.9.0-gpu-py310-cu130-ubuntu22.04"


@pytest.mark.jobs
def test_an_image_older_than_the_notebooks_accelerate_allows_runs_the_newest_that_installs(
        sagemaker_wire, sm_platform, monkeypatch):
    """A notebook with accelerate 1.16 (Python >= 3.11) and an image with Python 3.10: the job
    installs accelerate 1.15.0, the newest 1.x that installs there, and trains with it."""
    notebook_accelerate(monkeypatch, ACCELERATE_1_16)
    said = ("import accelerate, sys\n"
            "print(f'accelerate {accelerate.__version__} on Python {sys.version_info[0]}.{sys.version_info[1]}', flush=True)\n")
    launch(said + TRAIN, instance_type="ml.g5.xlarge", image_uri=PY310_IMAGE)
    request = sagemaker_wire.create_training_job_request()
    assert request["AlgorithmSpecification"]["TrainingImage"] == PY310_IMAGE
    [host] = sm_platform(gpus=1).run()
    assert_trained(host)
    log = host.log()
    assert "accelerate 1.15.0 on Python 3.10" in log, host.tail()
    assert re.search(r"Successfully installed .*\baccelerate-1\.15\.0\b", log), host.tail()


def test_the_mount_point_is_removed_by_its_last_user_and_only_when_tests_made_it(tmp_path):
    """/opt/ml's life, on stand-ins: each user holds the lock on its own file description, as
    another test session would; a directory the machine had, or one still holding files, stays."""
    ml, lock, created = tmp_path / "ml", tmp_path / "lock", tmp_path / "created"
    with mount_point(ml, lock, created):
        assert ml.is_dir() and created.is_file()
        with mount_point(ml, lock, created):
            pass
        assert ml.is_dir(), "removed while another user still had it"
    assert not ml.exists() and not created.exists(), "the last user left the mount point behind"

    ml.mkdir()  # the machine's own
    with mount_point(ml, lock, created):
        pass
    assert ml.is_dir() and not created.exists()

    ml.rmdir()
    with mount_point(ml, lock, created):
        (ml / "left.txt").write_text("x")
    assert (ml / "left.txt").is_file() and created.is_file(), "a mount point with files in it was removed"


@pytest.mark.jobs
def test_a_warm_pool_installs_the_requirements_once_and_a_changed_one_again(sagemaker_wire, sm_platform, sm_env):
    """--keep-alive: the entry command installs requirements.txt into the warm pool's persistent
    cache; the same job again on the same warm instance installs nothing, and a job whose
    requirements changed installs them anew (never a half-made environment)."""
    launch(instance_type="ml.g5.xlarge", keep_alive=10, **MODERN)
    request = sagemaker_wire.create_training_job_request()
    assert request["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 600
    p = sm_platform(request, gpus=1)
    [first] = p.run()
    assert_trained(first)
    log = first.log()
    assert "Installing requirements" not in log  # the SDK's driver installs nothing into the image
    assert "warm pool cache: no environment for these requirements" in log, first.tail()
    assert re.search(r"Successfully installed .*\baccelerate-", log), first.tail()

    [second] = p.run()  # the same job again: a fresh container on the same warm instance
    assert_trained(second)
    log = second.log()
    assert re.search(r"warm pool cache: requirements unchanged \(key \w+, installed by job "
                     rf"{request['TrainingJobName']}\): reused, nothing installed", log), second.tail()
    assert "pip install" not in log and "Successfully installed" not in log, second.tail()
    cached = [d.name for d in (p.warm_cache / "algo-1" / "sm_magic-requirements").iterdir() if not d.name.startswith(".")]
    assert len(cached) == 1, cached

    # A changed requirement: the next job on the same warm instance installs again, beside the first.
    requirements = sm_env / "requirements.txt"
    requirements.write_text((first.opt_ml / "input" / "data" / "code" / "requirements.txt").read_text() + "packaging\n")
    launch(instance_type="ml.g5.xlarge", keep_alive=10, requirements=str(requirements), **MODERN)
    changed = sagemaker_wire.requests[-1]
    [third] = sm_platform(changed, gpus=1, warm_cache=p.warm_cache).run()
    assert_trained(third)
    assert re.search(r"warm pool cache: no environment for these requirements \(key \w+; this instance was kept "
                     r"from an earlier job \(its cache holds 1 other environment\)\)", third.log()), third.tail()
    assert "sm_magic: pip install -r requirements.txt" in third.log(), third.tail()
    cached = [d.name for d in (p.warm_cache / "algo-1" / "sm_magic-requirements").iterdir() if not d.name.startswith(".")]
    assert len(cached) == 2, cached


@pytest.mark.jobs
def test_a_warm_pool_without_network_installs_the_carried_wheels_once(sagemaker_wire, sm_platform):
    """Network isolation and a warm pool: the cache's environment is made from the wheels the
    bundle carries (no network at all), and the next run on the warm host installs nothing."""
    launch(args=[*ARGS, "--probe-network"], instance_type="ml.g5.xlarge", keep_alive=5,
           additional_args={"enable_network_isolation": True}, **MODERN)
    p = sm_platform(gpus=1)
    assert p.network is False and p.warm_cache is not None
    [first] = p.run()
    assert_trained(first, args=[*ARGS, "--probe-network"])
    assert "network: none" in first.log()
    assert re.search(r"Successfully installed .*\baccelerate-", first.log()), first.tail()
    [second] = p.run()
    assert_trained(second, args=[*ARGS, "--probe-network"])
    assert "reused, nothing installed" in second.log() and "Successfully installed" not in second.log(), second.tail()
