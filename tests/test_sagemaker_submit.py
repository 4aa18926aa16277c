"""Submitting a bundle to SageMaker (SDK v3 ModelTrainer) against moto on 127.0.0.1.

Each test is what a user would check: the CreateTrainingJob request that was sent (or, with a
dry run, would be), the job moto then knows, the objects in S3, and the message when something
is missing. The user's environment is only the `aws` fixture's: endpoint, dummy keys, region,
SAGEMAKER_VALIDATE_ROLE=false and a role in moto.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import textwrap

import pytest

from sm_magic.backends.base import BackendError
from sm_magic.backends.sagemaker.args import accepted_additional_args
from sm_magic.backends.sagemaker.submit import Submission, dry_run_text, submit
from sm_magic.bundle.build import BundleCode, JobSpec, build_bundle
from sm_magic.config.model import TrainConfig
from sm_magic.metrics.parser import MetricDefinition
from sm_magic.software.images import ImageError

from helpers.aws_moto import ACCOUNT, BUCKET, REGION, ROLE_NAME
from helpers.jobscripts import wait_until

SCRIPT = textwrap.dedent("""\
    import argparse, os
    from accelerate import Accelerator
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3)
    args = p.parse_args()
    accelerator = Accelerator()
    for epoch in range(args.epochs):
        print(f"epoch {epoch}: {{'accuracy': 0.5}}")
    """)

# The Accelerate SageMaker guide's example config, with the moto role's name.
GUIDE_YAML = f"""\
base_job_name: accelerate-sagemaker-1
compute_environment: AMAZON_SAGEMAKER
distributed_type: DATA_PARALLEL
ec2_instance_type: ml.p3.16xlarge
iam_role_name: {ROLE_NAME}
mixed_precision: fp16
num_machines: 1
py_version: py38
pytorch_version: 1.10.2
region: us-east-1
transformers_version: 4.17.0
use_cpu: false
"""
# The guide's versions (what `accelerate config` always writes) name a py38 image that cannot install
# today's accelerate: the newest image that can, and whose CUDA runs on the V100s of ml.p3.16xlarge.
HF_IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-training:"
            "2.8.0-transformers4.56.2-gpu-py312-cu129-ubuntu22.04")
DEFAULT_BUCKET = f"sagemaker-{REGION}-{ACCOUNT}"
ARGS = ("--epochs", "3", "--lr", "5e-5")
_bundles = itertools.count()


def guide_config(tmp_path, extra: str = "") -> TrainConfig:
    path = tmp_path / "accelerate_config.yaml"
    path.write_text(GUIDE_YAML + extra)
    return TrainConfig.from_yaml(path)


def make_bundle(tmp_path, config, name, args=ARGS, **kw):
    dest = tmp_path / f"bundle-{name}-{next(_bundles)}"
    return build_bundle(BundleCode(SCRIPT), JobSpec(config, list(args), name, **kw), dest=dest)


def s3_keys(aws, bucket=None, prefix=""):
    s3 = aws.client("s3")
    buckets = [bucket] if bucket else [b["Name"] for b in s3.list_buckets()["Buckets"]]
    keys = set()
    for b in buckets:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=b, Prefix=prefix):
            keys.update(f"{b}/{o['Key']}" for o in page.get("Contents", []))
    return keys


def job_exists(aws, name) -> bool:
    sm = aws.client("sagemaker")
    try:
        sm.describe_training_job(TrainingJobName=name)
        return True
    except sm.exceptions.ClientError:
        return False


@pytest.mark.jobs
def test_guide_example_submits_the_job_through_model_trainer(aws, tmp_path):
    config = guide_config(tmp_path)
    metrics = [MetricDefinition("accuracy", r"'accuracy': ([0-9.]+)")]
    bundle = make_bundle(tmp_path, config, "guide-job-1", metric_definitions=metrics,
                         inputs={"train": f"s3://{BUCKET}/data/train"})

    sub = submit(bundle, config)

    assert isinstance(sub, Submission)
    req = sub.request
    assert sub.name == req["TrainingJobName"] == "guide-job-1"  # exactly the bundle's name
    assert sub.arn == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/guide-job-1"
    assert req["AlgorithmSpecification"]["TrainingImage"] == HF_IMAGE
    assert req["AlgorithmSpecification"]["MetricDefinitions"] == [m.to_api() for m in metrics]
    assert req["RoleArn"] == aws.role_arn == f"arn:aws:iam::{ACCOUNT}:role/{ROLE_NAME}"
    assert req["ResourceConfig"] == {"InstanceType": "ml.p3.16xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30}
    env = req["Environment"]
    assert env["ACCELERATE_USE_SAGEMAKER"] == "true"
    assert env["ACCELERATE_MIXED_PRECISION"] == "fp16"
    assert env["ACCELERATE_SAGEMAKER_DISTRIBUTED_TYPE"] == "DATA_PARALLEL"
    assert env["ACCELERATE_DYNAMO_BACKEND"] == "NO"
    assert req["HyperParameters"] == {"epochs": "3", "lr": "5e-5"}
    assert req["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400}
    assert "EnableManagedSpotTraining" not in req and "CheckpointConfig" not in req
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in req["InputDataConfig"]}
    assert channels["train"] == f"s3://{BUCKET}/data/train"
    assert sub.output_path == req["OutputDataConfig"]["S3OutputPath"] == f"s3://{DEFAULT_BUCKET}/accelerate-sagemaker-1"
    assert sub.model_data == f"{sub.output_path}/guide-job-1/output/model.tar.gz"

    # The job exists, as created from that request.
    described = aws.client("sagemaker").describe_training_job(TrainingJobName="guide-job-1")
    assert described["TrainingJobArn"] == sub.arn
    assert described["RoleArn"] == aws.role_arn
    assert described["HyperParameters"] == {"epochs": "3", "lr": "5e-5"}
    assert described["ResourceConfig"]["InstanceType"] == "ml.p3.16xlarge"

    # The bundle is in S3 (the default bucket, created for the user), under the job's own prefix.
    code = channels["code"]
    assert code.startswith(f"s3://{DEFAULT_BUCKET}/accelerate-sagemaker-1/guide-job-1/")
    bucket, _, prefix = code.removeprefix("s3://").partition("/")
    uploaded = {k.rsplit("/", 1)[-1] for k in s3_keys(aws, bucket, prefix + "/")}
    assert {"train.py", "sm_entry.py", "sm_launch.json", "requirements.txt", "accelerate_config.yaml"} <= uploaded
    s3 = aws.client("s3")
    assert s3.get_object(Bucket=bucket, Key=f"{prefix}/train.py")["Body"].read().decode() == SCRIPT
    # The container runs the bundle's one command, unchanged, and installs its requirements.
    drivers = channels["sm_drivers"].removeprefix("s3://").partition("/")[2]
    train_sh = s3.get_object(Bucket=bucket, Key=f"{drivers}/sm_train.sh")["Body"].read().decode()
    assert "\npython sm_entry.py\n" in train_sh
    assert "install_requirements.py requirements.txt" in train_sh
    launch = json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}/sm_launch.json")["Body"].read())
    assert launch["args"] == list(ARGS)


@pytest.mark.jobs
def test_spot_with_checkpoints(aws, tmp_path):
    config = guide_config(tmp_path, "additional_args:\n  use_spot_instances: true\n  max_run: 3600\n"
                                    "  max_wait: 7200\n")
    sub = submit(make_bundle(tmp_path, config, "spot-job-1"), config)

    req = sub.request
    assert req["EnableManagedSpotTraining"] is True
    assert req["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert req["CheckpointConfig"] == {"S3Uri": f"{sub.output_path}/spot-job-1/checkpoints",
                                       "LocalPath": "/opt/ml/checkpoints"}
    assert job_exists(aws, "spot-job-1")


@pytest.mark.jobs
def test_spot_without_max_wait_is_refused_before_anything_is_sent(aws, tmp_path):
    config = guide_config(tmp_path, "additional_args:\n  use_spot_instances: true\n")
    before = s3_keys(aws)
    with pytest.raises(BackendError, match="use_spot_instances needs max_wait"):
        submit(make_bundle(tmp_path, config, "spot-job-2"), config)
    assert not job_exists(aws, "spot-job-2") and s3_keys(aws) == before


@pytest.mark.jobs
def test_additional_args_land_in_the_request(aws, tmp_path):
    config = guide_config(tmp_path, textwrap.dedent(f"""\
        additional_args:
          enable_network_isolation: true
          tags: {{team: nlp, project: sm-magic}}
          volume_size: 100
          output_path: s3://{BUCKET}/custom
          environment: {{HF_HUB_OFFLINE: 1}}
          max_retry_attempts: 2
          checkpoint_s3_uri: s3://{BUCKET}/ckpt
        """))
    sub = submit(make_bundle(tmp_path, config, "args-job-1"), config)

    req = sub.request
    assert req["EnableNetworkIsolation"] is True
    assert {"Key": "team", "Value": "nlp"} in req["Tags"] and {"Key": "project", "Value": "sm-magic"} in req["Tags"]
    assert req["ResourceConfig"]["VolumeSizeInGB"] == 100
    assert sub.output_path == req["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/custom"
    assert req["Environment"]["HF_HUB_OFFLINE"] == "1"
    assert req["Environment"]["ACCELERATE_MIXED_PRECISION"] == "fp16"
    assert req["RetryStrategy"] == {"MaximumRetryAttempts": 2}
    assert req["CheckpointConfig"] == {"S3Uri": f"s3://{BUCKET}/ckpt", "LocalPath": "/opt/ml/checkpoints"}
    assert any(k.endswith("/train.py") for k in s3_keys(aws, BUCKET, "custom/args-job-1/"))
    assert job_exists(aws, "args-job-1")


@pytest.mark.jobs
def test_unknown_additional_args_key_lists_the_accepted_ones(aws, tmp_path):
    config = guide_config(tmp_path, "additional_args:\n  volume_sise: 100\n")
    before = s3_keys(aws)
    with pytest.raises(BackendError) as err:
        submit(make_bundle(tmp_path, config, "args-job-2"), config)
    message = str(err.value)
    assert "unknown key `volume_sise`" in message and "Did you mean `volume_size`?" in message
    for key in accepted_additional_args():
        assert key in message
    assert {"enable_network_isolation", "tags", "volume_size", "max_wait", "output_path"} <= set(
        accepted_additional_args())
    assert not job_exists(aws, "args-job-2") and s3_keys(aws) == before


@pytest.mark.jobs
def test_dry_run_prints_the_request_and_sends_nothing(aws, tmp_path):
    config = guide_config(tmp_path)
    s3 = aws.client("s3")
    buckets_before = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    keys_before = s3_keys(aws)

    dry = submit(make_bundle(tmp_path, config, "dry-job-1"), config, dry_run=True)

    assert dry.arn is None and dry.name == "dry-job-1"
    assert not job_exists(aws, "dry-job-1")
    assert aws.client("sagemaker").list_training_jobs(NameContains="dry-job-1")["TrainingJobSummaries"] == []
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == buckets_before  # not even the bucket
    assert s3_keys(aws) == keys_before
    text = dry_run_text(dry)
    assert json.loads(text) == dry.request
    assert '"TrainingJobName": "dry-job-1"' in text and HF_IMAGE in text

    # A real submit of the same bundle sends the same request (only the SDK's upload folder,
    # named after the second it ran, may differ).
    real = submit(make_bundle(tmp_path, config, "dry-job-1"), config)
    stamp = re.compile(r"/accelerate-sagemaker-1-\d{14}/")
    same = lambda r: json.loads(stamp.sub("/STAMP/", json.dumps(r)))  # noqa: E731
    assert same(dry.request) == same(real.request)
    assert real.arn and job_exists(aws, "dry-job-1")


@pytest.mark.jobs
def test_missing_credentials(aws, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.write_text("")
    home = tmp_path / "nohome"
    home.mkdir()
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    config = guide_config(tmp_path)
    before = s3_keys(aws)
    with pytest.raises(BackendError, match=r"no AWS credentials found.*aws configure"):
        submit(make_bundle(tmp_path, config, "nocreds-job-1"), config)
    assert s3_keys(aws) == before and not job_exists(aws, "nocreds-job-1")


@pytest.mark.jobs
def test_missing_profile(aws, tmp_path):
    config = guide_config(tmp_path, "profile: nobody\n")
    with pytest.raises(BackendError, match=r"AWS profile 'nobody'.*aws configure --profile nobody"):
        submit(make_bundle(tmp_path, config, "noprofile-job-1"), config)


@pytest.mark.jobs
def test_missing_role(aws, tmp_path):
    config = guide_config(tmp_path).model_copy(update={"iam_role_name": "no-such-role"})
    before = s3_keys(aws)
    with pytest.raises(BackendError, match=r"IAM role 'no-such-role' does not exist in account 123456789012"):
        submit(make_bundle(tmp_path, config, "norole-job-1"), config)
    assert s3_keys(aws) == before and not job_exists(aws, "norole-job-1")


@pytest.mark.jobs
def test_no_role_configured(aws, tmp_path):
    config = guide_config(tmp_path).model_copy(update={"iam_role_name": None})
    with pytest.raises(BackendError, match="set iam_role_name"):
        submit(make_bundle(tmp_path, config, "norole-job-2"), config)
    # A dry run still shows the request, with a placeholder where the role goes, and says so.
    dry = submit(make_bundle(tmp_path, config, "norole-job-2"), config, dry_run=True)
    assert dry.request["RoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/<iam_role_name>"
    assert "Note: the role is a placeholder: set iam_role_name in the config" in dry_run_text(dry)


@pytest.mark.jobs
def test_unknown_region(aws, tmp_path):
    config = guide_config(tmp_path).model_copy(update={"region": "us-esat-1"})
    with pytest.raises(BackendError, match=r"unknown AWS region 'us-esat-1' \(did you mean [^)]*us-east-1"):
        submit(make_bundle(tmp_path, config, "region-job-1"), config)


@pytest.mark.jobs
def test_instance_type_rejected_by_the_api(aws, tmp_path, monkeypatch):
    """moto accepts any instance type; here it answers as the service does for a training type the
    region does not offer (a type botocore does not know is refused before any call: below)."""
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import SageMakerModelBackend

    real_create = SageMakerModelBackend.create_training_job

    def create_training_job(self, *args, **kwargs):
        instance_type = kwargs["resource_config"]["InstanceType"]
        if instance_type == "ml.p5.48xlarge":
            raise ValidationError(f"Instance type {instance_type} is not supported in region us-east-1")
        return real_create(self, *args, **kwargs)

    monkeypatch.setattr(SageMakerModelBackend, "create_training_job", create_training_job)
    config = guide_config(tmp_path).model_copy(update={"ec2_instance_type": "ml.p5.48xlarge"})
    with pytest.raises(BackendError) as err:
        submit(make_bundle(tmp_path, config, "badtype-job-1"), config)
    message = str(err.value)
    assert "SageMaker refused training job badtype-job-1: ValidationException" in message
    assert "Instance type ml.p5.48xlarge is not supported in region us-east-1" in message
    assert "check ec2_instance_type (ml.p5.48xlarge)" in message
    assert not job_exists(aws, "badtype-job-1")
    assert s3_keys(aws, DEFAULT_BUCKET, "accelerate-sagemaker-1/badtype-job-1/") == set()  # uploads removed


def _refused_before_upload(aws, tmp_path, config, name) -> str:
    """Submit for real; the refusal's message, once checked that nothing reached AWS."""
    before = s3_keys(aws)
    with pytest.raises(BackendError) as err:
        submit(make_bundle(tmp_path, config, name), config)
    assert s3_keys(aws) == before and not job_exists(aws, name)
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.jobs
@pytest.mark.parametrize("instance_type, expected", [
    ("ml.p3.16xlarg", "ec2_instance_type ml.p3.16xlarg is not a SageMaker training instance type: "
                      "did you mean ml.p3.16xlarge?"),
    ("ml.inf2.xlarge", "ec2_instance_type ml.inf2.xlarge is an inference instance, not a SageMaker training "
                       "instance type"),
    ("ml.trn1.2xlarge", "ec2_instance_type ml.trn1.2xlarge is a Trainium (Neuron) instance"),
])
def test_an_instance_type_sagemaker_cannot_train_on_is_refused_before_anything_is_uploaded(
        aws, tmp_path, instance_type, expected):
    config = guide_config(tmp_path).model_copy(update={"ec2_instance_type": instance_type})
    message = _refused_before_upload(aws, tmp_path, config, "type-job-1")
    assert expected in message
    if "trn" in instance_type:  # never CPU processes on a Neuron host: refused, with what to use instead
        assert "NeuronCores idle" in message and "Use a GPU instance type" in message


@pytest.mark.jobs
def test_the_apis_limits_on_the_environment_are_checked_before_anything_is_uploaded(aws, tmp_path):
    long_value = guide_config(tmp_path, "additional_args:\n  environment:\n    PROMPT: " + "p" * 600 + "\n")
    message = _refused_before_upload(aws, tmp_path, long_value, "env-job-1")
    assert message.startswith("additional_args environment.PROMPT: the value is 600 characters; SageMaker allows ")
    assert "p" * 20 not in message  # a value is never echoed
    many = "".join(f"    VAR_{i}: x\n" for i in range(100))
    crowded = guide_config(tmp_path, "additional_args:\n  environment:\n" + many)
    message = _refused_before_upload(aws, tmp_path, crowded, "env-job-2")
    assert "the job's environment would hold " in message and "set by sm_magic); SageMaker allows " in message


@pytest.mark.jobs
def test_vpc_repository_access_needs_a_vpc_before_anything_is_uploaded(aws, tmp_path):
    vpc = "additional_args:\n  training_repository_access_mode: Vpc\n"
    message = _refused_before_upload(aws, tmp_path, guide_config(tmp_path, vpc), "vpc-job-1")
    assert "training_repository_access_mode Vpc" in message and "add subnets and security_group_ids" in message
    with_vpc = guide_config(tmp_path, vpc + "  subnets: [subnet-1]\n  security_group_ids: [sg-1]\n")
    sub = submit(make_bundle(tmp_path, with_vpc, "vpc-job-2"), with_vpc, dry_run=True)
    assert sub.request["VpcConfig"] == {"Subnets": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}


@pytest.mark.jobs
def test_local_instance_type_is_refused(aws, tmp_path):
    config = guide_config(tmp_path).model_copy(update={"ec2_instance_type": "local"})
    with pytest.raises(BackendError, match=r"runs on this machine.*--backend local"):
        submit(make_bundle(tmp_path, config, "local-type-1"), config, dry_run=True)


@pytest.mark.jobs
def test_unsupported_image_versions_name_them_and_suggest_image_uri(aws, tmp_path):
    config = guide_config(tmp_path).model_copy(update={"transformers_version": "4.99.0"})
    # The versions asked for are the user's to change: a usage problem, whichever layer finds it.
    with pytest.raises(ImageError, match=r"no SageMaker training image with pytorch_version 1\.10\.2, "
                                           r"transformers_version 4\.99\.0, py_version py38 can run this job on "
                                           r"ml\.p3\.16xlarge.*Remove the version settings.*set image_uri"):
        submit(make_bundle(tmp_path, config, "image-job-1"), config, dry_run=True)
    # image_uri wins; the guide's py38 (what `accelerate config` always writes) says nothing about it.
    custom = guide_config(tmp_path).model_copy(update={"image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/mine:1"})
    sub = submit(make_bundle(tmp_path, custom, "image-job-2"), custom, dry_run=True)
    assert sub.request["AlgorithmSpecification"]["TrainingImage"] == custom.image_uri


@pytest.mark.jobs
def test_nothing_secret_in_the_request(aws, tmp_path, monkeypatch):
    secret = "SmMagicDummySecretKey0123456789abcdefXYZ"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)  # moto accepts any secret
    config = guide_config(tmp_path)
    sub = submit(make_bundle(tmp_path, config, "secret-job-1"), config)
    assert secret not in json.dumps(sub.request)
    assert not any(k.startswith("AWS_") for k in sub.request["Environment"])
    assert job_exists(aws, "secret-job-1")

    # A secret pasted into the script's arguments is refused before anything is sent.
    before = s3_keys(aws)
    with pytest.raises(BackendError, match="contains this session's AWS credentials"):
        submit(make_bundle(tmp_path, config, "secret-job-2", args=("--key", secret)), config)
    assert not job_exists(aws, "secret-job-2")
    assert s3_keys(aws, DEFAULT_BUCKET, "accelerate-sagemaker-1/secret-job-2/") == set()
    del before

    refused = guide_config(tmp_path, "additional_args:\n  environment: {AWS_SECRET_ACCESS_KEY: x}\n")
    with pytest.raises(BackendError, match="never go in a training job's environment"):
        submit(make_bundle(tmp_path, refused, "secret-job-3"), refused, dry_run=True)


@pytest.mark.jobs
def test_hyperparameters_the_container_driver_can_export(aws, tmp_path):
    """The SDK's driver writes `export SM_HP_<KEY>='<value>'`: quotes and dotted keys would end the
    job; the script still gets its arguments verbatim from sm_launch.json."""
    config = guide_config(tmp_path)
    args = ("--prompt", "it's", "--lr.decay", "0.5", "--long", "x" * 2000, "--longer", "y" * 9000)
    bundle = make_bundle(tmp_path, config, "hp-job-1", args=args)
    sub = submit(bundle, config, dry_run=True)
    hps = sub.request["HyperParameters"]
    assert hps["prompt"] == "it\u2019s" and hps["lr_decay"] == "0.5" and hps["long"] == "x" * 2000  # the API takes it
    import botocore.session  # the longest value the installed botocore validates the request against
    value_max = botocore.session.get_session().get_service_model("sagemaker").shape_for("HyperParameterValue")
    assert hps["longer"] == "y" * (value_max.metadata["max"] - 1) + "\u2026"
    assert json.loads((bundle.path / "sm_launch.json").read_text())["args"] == list(args)


@pytest.mark.jobs
def test_job_name_already_taken(aws, tmp_path):
    config = guide_config(tmp_path)
    submit(make_bundle(tmp_path, config, "taken-job-1"), config)
    with pytest.raises(BackendError, match="already exists.*choose another --name"):
        submit(make_bundle(tmp_path, config, "taken-job-1"), config)


def test_local_container_backend_says_docker_is_not_running(sm_env):
    from sm_magic.backends.local_container import LocalContainerBackend, docker_running

    if docker_running():
        pytest.skip("a Docker engine answers here")
    config = TrainConfig(ec2_instance_type="local_container")
    backend = LocalContainerBackend(jobs_dir=sm_env / "sm_jobs")
    assert backend.name == "local-container"
    bundle = make_bundle(sm_env, config, "container-job-1")
    with pytest.raises(BackendError) as err:
        backend.submit(bundle, config)
    message = str(err.value)
    assert "Docker is not running here" in message and "--backend local" in message
    assert not (sm_env / "sm_jobs" / "container-job-1").exists()
    assert bundle.path.is_dir()  # left for the caller, as when any submit is refused
    if shutil.which("docker"):
        assert subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0


@pytest.mark.jobs
def test_local_container_job_ends_failed_with_the_reason_when_the_sdk_cannot_run_it(sm_env, monkeypatch):
    """Past the Docker checks, the job runs in its own runner; whatever stops the SDK becomes the
    job's FailureReason instead of a job that never ends."""
    from sm_magic.backends import local_container

    if local_container.docker_running():
        pytest.skip("a Docker engine answers here: this would start a real container")
    monkeypatch.setattr(local_container, "_docker_problem", lambda: None)
    monkeypatch.setattr(local_container, "_compose_problem", lambda: None)
    config = TrainConfig(ec2_instance_type="local_container", image_uri="python:3.11-slim")
    backend = local_container.LocalContainerBackend(jobs_dir=sm_env / "sm_jobs")
    assert backend.submit(make_bundle(sm_env, config, "container-job-2"), config) == "container-job-2"
    state = wait_until(lambda: (s := backend.describe("container-job-2")).done and s, 60, "the job to end")
    assert state.status == "Failed" and state.failure_reason
    assert [t.status for t in state.transitions] == ["Starting", "Downloading", "Training", "Failed"]
    lines, _ = backend.logs("container-job-2")
    assert any(line.startswith("sm_magic: ") and state.failure_reason.split(":")[0] in line for line in lines)


@pytest.mark.jobs
def test_a_warm_pool_job_installs_its_requirements_in_the_entry_command(aws, tmp_path):
    """keep_alive_period_in_seconds: ResourceConfig.KeepAlivePeriodInSeconds, and (on purpose, unlike
    every other job) the SDK's driver is given no requirements: the bundle's entry command installs
    them into the warm pool's cache, told so by the job's environment."""
    config = guide_config(tmp_path, "additional_args:\n  keep_alive_period_in_seconds: 900\n")
    sub = submit(make_bundle(tmp_path, config, "warm-job-1"), config)
    req = sub.request
    assert req["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 900
    assert req["Environment"]["SM_ENTRY_REQUIREMENTS"] == "requirements.txt"
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in req["InputDataConfig"]}
    bucket, _, drivers = channels["sm_drivers"].removeprefix("s3://").partition("/")
    train_sh = aws.client("s3").get_object(Bucket=bucket, Key=f"{drivers}/sm_train.sh")["Body"].read().decode()
    assert "\npython sm_entry.py\n" in train_sh and "install_requirements.py" not in train_sh
    code = channels["code"].removeprefix("s3://").partition("/")[2]
    assert any(k.endswith(f"{code}/requirements.txt") for k in s3_keys(aws, bucket, code + "/"))


def test_keep_alive_beyond_the_apis_bound_is_refused_when_the_config_is_read(tmp_path):
    with pytest.raises(ValueError, match=r"keep_alive_period_in_seconds: at most 21600 s \(360 minutes\), "
                                         r"SageMaker's limit on ResourceConfig.KeepAlivePeriodInSeconds"):
        guide_config(tmp_path, "additional_args:\n  keep_alive_period_in_seconds: 86400\n")
