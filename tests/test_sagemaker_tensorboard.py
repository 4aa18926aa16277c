"""TensorBoard scalars of a SageMaker job, against moto on 127.0.0.1: the CreateTrainingJob
request names where $SM_OUTPUT_DIR/tensorboard goes (TensorBoardOutputConfig), and the event files
found there (written by a real SummaryWriter, uploaded whole again as they grow, as SageMaker's
upload does) become job.metrics rows while the job runs, read with bounded S3 calls: none before
training, one listing and one ranged GetObject per grown file a poll, each byte fetched once,
none once the ended job was read."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

import sm_magic
from sm_magic.backends.sagemaker.backend import SageMakerBackend
from sm_magic.jobs.job import Job

from helpers.aws_moto import ACCOUNT, ROLE_NAME
from helpers.jobscripts import EPOCHS_SCRIPT, wait_until

pytestmark = pytest.mark.jobs
SummaryWriter = pytest.importorskip("torch.utils.tensorboard").SummaryWriter

POLL = 0.2  # seconds between polls (10 s by default): a quiet job listed less often shows in 12 polls
LOCAL_PATH = "/opt/ml/output/tensorboard"


@pytest.fixture
def fast_polls(monkeypatch):
    monkeypatch.setenv("SM_MAGIC_SAGEMAKER_POLL", str(POLL))


def test_the_request_sends_the_tensorboard_directory_to_the_jobs_output_path(aws, fast_polls):
    job = sm_magic.launch(EPOCHS_SCRIPT, backend="sagemaker", instance_type="ml.g5.xlarge", iam_role_name=ROLE_NAME)
    described = aws.client("sagemaker").describe_training_job(TrainingJobName=job.name)
    output_path = described["OutputDataConfig"]["S3OutputPath"]
    assert output_path.startswith(f"s3://sagemaker-us-east-1-{ACCOUNT}/")
    assert described["TensorBoardOutputConfig"] == {"S3OutputPath": output_path, "LocalPath": LOCAL_PATH}
    assert job.describe().extra["tensorboard"] == output_path


class S3Calls:
    """The S3 calls the backend makes (botocore's before-call: one per API call, retries not
    counted), with the byte ranges it fetched."""

    def __init__(self, backend: SageMakerBackend):
        self.ops: Counter = Counter()
        self.ranges: list[tuple[str, int, int]] = []
        backend.client("s3").meta.events.register("before-call.s3", self._seen)

    def _seen(self, model, params, **_):
        self.ops[model.name] += 1
        if model.name == "GetObject":
            start, end = params["headers"]["Range"].removeprefix("bytes=").split("-")
            self.ranges.append((params["url_path"].rsplit("/", 1)[-1], int(start), int(end)))

    def total(self) -> int:
        return sum(self.ops.values())


class Uploads:
    """A job's event files as SageMaker's upload leaves them in S3: the whole file again, as
    far as it was written (`cut` bytes short: an upload taken mid-record)."""

    def __init__(self, aws, prefix: str, tmp_path, host: str):
        self.s3, self.bucket, self.prefix = aws.client("s3"), aws.bucket, prefix
        self.writer = SummaryWriter(tmp_path / host, max_queue=1000, flush_secs=3600)
        self.local = None
        self.key = None
        self.host = host

    def scalars(self, *points: tuple[str, float, int], cut: int = 0) -> int:
        for tag, value, step in points:
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()
        if self.local is None:
            (self.local,) = [p for p in Path(self.writer.log_dir).iterdir() if "tfevents" in p.name]
            # The container's hostname is the host's name: torch names the file after it.
            self.key = f"{self.prefix}events.out.tfevents.1700000000.{self.host}.77.0"
        data = self.local.read_bytes()
        data = data[:len(data) - cut]
        self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=data)
        return len(data)


def test_event_files_in_s3_become_rows_while_the_job_runs_with_bounded_calls(aws, fast_polls, tmp_path):
    name = f"smm-tb-{uuid.uuid4().hex[:10]}"
    sm = aws.client("sagemaker")
    sm.create_training_job(
        TrainingJobName=name, RoleArn=aws.role_arn,
        AlgorithmSpecification={"TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/x:1",
                                "TrainingInputMode": "File"},
        OutputDataConfig={"S3OutputPath": f"s3://{aws.bucket}/output"},
        TensorBoardOutputConfig={"S3OutputPath": f"s3://{aws.bucket}/output", "LocalPath": LOCAL_PATH},
        ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": 2, "VolumeSizeInGB": 30},
        StoppingCondition={"MaxRuntimeInSeconds": 3600})
    aws.start_lifecycle(name)
    backend = SageMakerBackend()
    calls = S3Calls(backend)
    job = Job(name, backend)
    prefix = f"output/{name}/tensorboard-output/"
    algo1 = Uploads(aws, prefix, tmp_path, "algo-1")
    algo2 = Uploads(aws, prefix, tmp_path, "algo-2")  # the same script on the second host

    def polls(n: int) -> list[int]:
        """S3 calls of each of n polls, a poll interval apart."""
        made = []
        for _ in range(n):
            before = calls.total()
            job.snapshot()
            made.append(calls.total() - before)
            time.sleep(POLL * 1.2)
        return made

    def rows(poll: bool = True) -> dict:
        """The rows after a poll (the monitor's: the state described, then logs and scalars)."""
        if poll:
            job.snapshot()
        return {r["step"]: {k: v for k, v in r.items() if k != "step"} for r in job.metric_rows()}

    # Files already there while the job is starting are not looked for: its container is not running.
    algo1.scalars(("train/loss", 1.0, 1))
    assert polls(5) == [0] * 5 and rows() == {}
    aws.drive(name, "Downloading")
    aws.drive(name, "Training")
    algo2.scalars(("train/loss", 9.0, 1), ("train/loss", 9.0, 2))
    wait_until(lambda: rows().get(1), 30, "step 1 from S3")
    assert rows() == {1: {"train/loss": 1.0}}  # algo-2's file is not read
    assert calls.ops["GetObject"] == 1

    # Steps 2-3 uploaded mid-record: what is whole comes, the rest with the next upload.
    algo1.scalars(("train/loss", 0.5, 2), ("train/loss", 0.25, 3), ("val/accuracy", 0.75, 3), cut=7)
    wait_until(lambda: rows().get(3), 30, "step 3's first scalar")
    assert rows()[2] == {"train/loss": 0.5} and rows()[3] == {"train/loss": 0.25}
    size = algo1.scalars()
    wait_until(lambda: "val/accuracy" in rows().get(3, {}), 30, "the rest of step 3")
    assert rows()[3] == {"train/loss": 0.25, "val/accuracy": 0.75}

    # A poll: one listing, and a GetObject only for a file that grew; a quiet job is listed less often.
    made = polls(12)
    assert max(made) <= 1 and sum(made) < 12, made
    size = algo1.scalars(("train/loss", 0.125, 4))
    wait_until(lambda: rows().get(4), 30, "step 4")
    assert all(n <= 2 for n in polls(3))

    aws.drive(name, "Uploading")
    size = algo1.scalars(("train/loss", 0.0625, 5))
    aws.drive(name, "Completed")
    wait_until(lambda: job.snapshot().state.done, 30, "the end")
    assert rows()[5] == {"train/loss": 0.0625}  # uploaded at the end: read after the end was seen
    assert polls(5) == [0] * 5  # ended and read: no more calls
    assert sorted(rows()) == [1, 2, 3, 4, 5]
    # Every byte of algo-1's file fetched once, in order; algo-2's never.
    spans = sorted((start, end) for key, start, end in calls.ranges)
    assert {key for key, _, _ in calls.ranges} == {algo1.key.rsplit("/", 1)[-1]}
    assert spans[0][0] == 0 and spans[-1][1] == size - 1
    assert all(b[0] == a[1] + 1 for a, b in zip(spans, spans[1:])), spans
    assert set(calls.ops) == {"ListObjectsV2", "GetObject"}


@pytest.mark.parametrize("region, asked", [("eu-west-1", True), ("ap-southeast-3", False)])
def test_no_tensorboard_output_where_sagemaker_has_no_debugger(aws, region, asked):
    from sm_magic.plan.planner import dry_run

    text = dry_run(EPOCHS_SCRIPT, backend="sagemaker", instance_type="ml.m5.xlarge", iam_role_name=ROLE_NAME,
                   region=region)
    request = json.loads(text[text.index("{"):])
    assert ("TensorBoardOutputConfig" in request) is asked
    if asked:
        assert request["TensorBoardOutputConfig"] == {"S3OutputPath": request["OutputDataConfig"]["S3OutputPath"],
                                                      "LocalPath": LOCAL_PATH}
