"""A launch on SageMaker (moto on 127.0.0.1) as a new user tries it: one cell for every backend
(input channels, names), stopping conditions the API accepts, network isolation, a dry run before
AWS is set up, and the refusals that come before anything is uploaded."""

from __future__ import annotations

import json
import os
import socket
import threading

import pytest

import sm_magic
from sm_magic.backends import BackendError
from sm_magic.bundle.build import BundleError
from sm_magic.config.model import ConfigError
from sm_magic.jobs.registry import Registry
from sm_magic.plan.planner import LaunchError, dry_run

from helpers.aws_moto import ACCOUNT, BUCKET, ROLE_NAME
from helpers.jobscripts import EPOCHS_SCRIPT

DEFAULT_BUCKET = f"sagemaker-us-east-1-{ACCOUNT}"
SAGEMAKER = dict(backend="sagemaker", instance_type="ml.g5.xlarge", iam_role_name=ROLE_NAME)


def request_of(aws, name):
    return aws.client("sagemaker").describe_training_job(TrainingJobName=name)


def channels_of(aws, name) -> dict[str, str]:
    """Channel name -> S3 URI, as the job's request has them."""
    return {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
            for c in request_of(aws, name)["InputDataConfig"]}


def keys(aws, prefix):
    s3 = aws.client("s3")
    return {o["Key"]: o["LastModified"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=DEFAULT_BUCKET, Prefix=prefix) for o in page.get("Contents", [])}


@pytest.mark.jobs
def test_a_local_input_is_uploaded_once_per_content(aws, sm_env):
    data = sm_env / "data"
    data.mkdir()
    (data / "rows.csv").write_text("1,2\n3,4\n")
    first = sm_magic.launch(EPOCHS_SCRIPT, inputs=[f"train={data}"], name="upload-1", **SAGEMAKER)
    uri = channels_of(aws, first.name)["train"]
    assert uri.startswith(f"s3://{DEFAULT_BUCKET}/sm-magic-inputs/") and uri.endswith("/")
    prefix = uri.split("/", 3)[3]
    uploaded = keys(aws, prefix)
    assert list(uploaded) == [prefix + "rows.csv"]
    # Same data again: the same objects, not uploaded again.
    second = sm_magic.launch(EPOCHS_SCRIPT, inputs=[f"train={data}"], name="upload-2", **SAGEMAKER)
    assert channels_of(aws, second.name)["train"] == uri and keys(aws, prefix) == uploaded
    # Changed data: a new prefix.
    (data / "rows.csv").write_text("5,6\n")
    third = sm_magic.launch(EPOCHS_SCRIPT, inputs=[f"train={data}"], name="upload-3", **SAGEMAKER)
    assert channels_of(aws, third.name)["train"] != uri


@pytest.mark.jobs
def test_an_s3_input_runs_on_the_local_backend_from_a_cache(aws, sm_env, monkeypatch):
    monkeypatch.setenv("SM_MAGIC_CACHE", str(sm_env / "cache"))
    s3 = aws.client("s3")
    s3.put_object(Bucket=BUCKET, Key="data/train/rows.csv", Body=b"1,2\n3,4\n5,6\n")
    reader = ("import os\nrows = open(os.path.join(os.environ['SM_CHANNEL_TRAIN'], 'rows.csv')).read().splitlines()\n"
              "print(f'epoch 0: rows={len(rows)}')\n")
    job = sm_magic.launch(reader, inputs=[f"train=s3://{BUCKET}/data/train"], metrics=["rows=rows=([0-9]+)"],
                          wait=True)
    assert job.metrics.loc[0, "rows"] == 3
    cached = next((sm_env / "cache" / "s3" / BUCKET).glob("*/rows.csv"))
    mtime = cached.stat().st_mtime_ns
    sm_magic.launch(reader, inputs=[f"train=s3://{BUCKET}/data/train"], wait=True)
    assert cached.stat().st_mtime_ns == mtime  # unchanged in S3: not downloaded again
    s3.put_object(Bucket=BUCKET, Key="data/train/rows.csv", Body=b"7,8\n")
    job = sm_magic.launch(reader, inputs=[f"train=s3://{BUCKET}/data/train"], metrics=["rows=rows=([0-9]+)"],
                          wait=True)
    assert job.metrics.loc[0, "rows"] == 1


@pytest.mark.jobs
@pytest.mark.parametrize("backend", ["local", "sagemaker"])
def test_a_channel_name_the_container_cannot_export_is_refused_on_every_backend(aws, sm_env, backend):
    options = SAGEMAKER if backend == "sagemaker" else {"backend": "local"}
    with pytest.raises((LaunchError, BundleError), match=r"SM_CHANNEL_MY-DATA.*letters, digits and _.*'my_data'"):
        sm_magic.launch(EPOCHS_SCRIPT, inputs=[f"my-data={sm_env}"], **options)
    with pytest.raises((LaunchError, BundleError), match=r"'code' is used by the SageMaker SDK itself"):
        sm_magic.launch(EPOCHS_SCRIPT, inputs=[f"code={sm_env}"], **options)
    assert Registry().list() == []


@pytest.mark.jobs
@pytest.mark.parametrize("backend", ["local", "sagemaker"])
def test_several_hosts_with_distribution_turned_off_are_refused(aws, sm_env, backend):
    options = {**SAGEMAKER, "backend": backend} if backend == "sagemaker" else {"backend": backend}
    with pytest.raises(LaunchError, match=r"num_machines 2 with distributed_type NO would run the whole training "
                                          r"once on each host.*DATA_PARALLEL \(or leave it unset\).*or num_machines 1"):
        sm_magic.launch(EPOCHS_SCRIPT, instance_count=2, distributed_type="NO", **options)
    assert Registry().list() == []


@pytest.mark.jobs
def test_every_gpu_of_every_host_trains_unless_distribution_is_turned_off(aws, sm_env):
    """ml.g5.12xlarge has 4 GPUs: unset, the dry run's command starts one process per GPU on
    every host; an explicit NO keeps one process and says how many GPUs stay idle."""
    four = {**SAGEMAKER, "instance_type": "ml.g5.12xlarge"}
    text = dry_run(EPOCHS_SCRIPT, **four)
    command = next(line for line in text.splitlines() if "it runs: accelerate launch" in line)
    assert "on algo-1 (4 GPUs)" in command and "--multi_gpu" in command and "--num_processes 4" in command
    assert "note: distributed_type not set: data parallel, 4 processes (1 per host" not in text
    assert "note: distributed_type not set: data parallel, 4 processes (4 per host, one per GPU)" in text
    two_hosts = dry_run(EPOCHS_SCRIPT, instance_count=2, **four)
    assert "--num_machines 2" in two_hosts and "--num_processes 8" in two_hosts
    one = dry_run(EPOCHS_SCRIPT, distributed_type="NO", **four)
    assert "--num_processes 1" in one and "--multi_gpu" not in one
    assert "note: distributed_type NO: one process, so 3 of this host's 4 GPUs stay idle" in one
    single_gpu = dry_run(EPOCHS_SCRIPT, **SAGEMAKER)  # ml.g5.xlarge: one GPU, one process, nothing to say
    assert "--num_processes 1" in single_gpu and "distributed_type" not in single_gpu.split("it runs:")[1]


@pytest.mark.jobs
def test_spot_stopping_conditions_are_ones_the_api_accepts(aws, sm_env):
    job = sm_magic.launch(EPOCHS_SCRIPT, use_spot_instances=True, max_wait=7200, name="spot-1", **SAGEMAKER)
    stopping = request_of(aws, job.name)["StoppingCondition"]
    assert stopping["MaxRuntimeInSeconds"] == 7200 <= stopping["MaxWaitTimeInSeconds"] == 7200
    with pytest.raises(ConfigError, match=r"max-run: at most 2419200 s \(28 days\), SageMaker's limit"):
        sm_magic.launch(EPOCHS_SCRIPT, max_run=30 * 24 * 3600, **SAGEMAKER)
    with pytest.raises(ConfigError, match=r"max_wait \(3600 s\) must be at least max_run \(7200 s\)"):
        sm_magic.launch(EPOCHS_SCRIPT, use_spot_instances=True, max_run=7200, max_wait=3600, **SAGEMAKER)
    with pytest.raises(BackendError, match=r"max_pending_time: expected a whole number from 1800 to 2419200"):
        sm_magic.launch(EPOCHS_SCRIPT, additional_args={"max_pending_time": 60}, **SAGEMAKER)
    assert [r.name for r in Registry().list()] == ["spot-1"]


@pytest.mark.jobs
def test_the_image_and_why_are_shown_and_recorded(aws, sm_env):
    text = dry_run(EPOCHS_SCRIPT, **SAGEMAKER)
    assert ("Image: 763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-training:2.9.0-transformers5.3.0"
            "-gpu-py312-cu130-ubuntu22.04") in text
    assert "chosen: the newest Hugging Face PyTorch training image for ml.g5.xlarge (NVIDIA A10G)" in text
    job = sm_magic.launch(EPOCHS_SCRIPT, name="image-1", **SAGEMAKER)
    record = Registry().get(job.name).extra["image"]
    assert record["uri"] == request_of(aws, job.name)["AlgorithmSpecification"]["TrainingImage"]
    assert record["python"] == "3.12" and "NVIDIA A10G" in record["reason"]


class _Listener:
    """A TCP port that counts connections: any AWS call made through it is seen."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.connections = 0
        self.done = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.done:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self):
        self.done = True
        self.thread.join()
        self.sock.close()


def test_a_dry_run_needs_no_aws_account(sm_env, monkeypatch, capsys):
    for key in [k for k in os.environ if k.startswith(("AWS_", "SAGEMAKER_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(sm_env))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(sm_env / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(sm_env / "none"))
    listener = _Listener()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{listener.sock.getsockname()[1]}")
    try:
        text = dry_run(EPOCHS_SCRIPT, backend="sagemaker", instance_type="ml.g5.xlarge")
    finally:
        listener.close()
    assert listener.connections == 0  # nothing left this machine
    assert "Note: not looked up in AWS (no AWS credentials found): the request shows <AWS-ACCOUNT-ID>" in text
    assert "a real launch also needs AWS credentials" in text and "iam_role_name in the config" in text
    request = json.loads(text[text.index("CreateTrainingJob request:") + len("CreateTrainingJob request:"):])
    assert request["RoleArn"] == "arn:aws:iam::<AWS-ACCOUNT-ID>:role/<iam_role_name>"
    assert request["OutputDataConfig"]["S3OutputPath"] == "s3://sagemaker-us-east-1-<AWS-ACCOUNT-ID>/sm-magic"
    assert request["ResourceConfig"]["InstanceType"] == "ml.g5.xlarge"
    assert Registry().list() == []


@pytest.mark.jobs
def test_network_isolation_carries_the_wheels(aws, sm_env, monkeypatch):
    """The bundle carries every wheel its requirements need for the image's Python and platform,
    and requirements.txt installs only from them; a second launch takes them from the cache."""
    monkeypatch.setenv("SM_MAGIC_CACHE", str(sm_env / "cache"))
    source = "import yaml\n" + EPOCHS_SCRIPT
    options = dict(additional_args={"enable_network_isolation": True}, **SAGEMAKER)
    job = sm_magic.launch(source, name="isolated-1", **options)
    req = request_of(aws, job.name)
    assert req["EnableNetworkIsolation"] is True
    bucket, _, prefix = channels_of(aws, job.name)["code"].removeprefix("s3://").partition("/")
    s3 = aws.client("s3")
    names = [o["Key"][len(prefix) + 1:] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/")["Contents"]]
    wheels = {n.split("/")[1].split("-")[0].lower() for n in names if n.startswith("sm_wheels/")}
    assert {"accelerate", "pyyaml", "numpy", "psutil", "safetensors"} <= wheels
    assert not wheels & {"torch", "triton"} and not any(w.startswith("nvidia") for w in wheels)
    assert all("cp312" in n or "py3-none" in n or "abi3" in n for n in names if n.endswith(".whl"))
    lines = s3.get_object(Bucket=bucket, Key=f"{prefix}/requirements.txt")["Body"].read().decode().splitlines()
    assert lines[1:3] == ["--no-index", "--find-links sm_wheels"]
    text = dry_run(source, **options)
    assert "from the cache" in text


@pytest.mark.jobs
def test_network_isolation_with_a_package_that_has_no_wheel_is_refused(aws, sm_env, monkeypatch):
    monkeypatch.setenv("SM_MAGIC_CACHE", str(sm_env / "cache"))
    mine = sm_env / "requirements.txt"
    mine.write_text("pyspark==3.5.0\n")  # published as a source archive only
    with pytest.raises(LaunchError, match=r"enable_network_isolation: pyspark==3\.5\.0 has no wheel for the image's "
                                          r"Python 3\.12 on manylinux_2_35_x86_64"):
        sm_magic.launch(EPOCHS_SCRIPT, requirements=mine, additional_args={"enable_network_isolation": True},
                        **SAGEMAKER)
    assert Registry().list() == []
