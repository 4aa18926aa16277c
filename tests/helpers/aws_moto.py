"""A moto server on 127.0.0.1 standing in for AWS, and the knobs a test needs to play the
service's part: driving a training job through its lifecycle, writing its CloudWatch logs, and
the StopTrainingJob call moto lacks. No real AWS endpoint is ever contacted."""

from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import boto3

from .lanes import require

ACCOUNT = "123456789012"
REGION = "us-east-1"
ROLE_NAME = "sm-magic-test-role"
BUCKET = "sm-magic-test-bucket"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"


# What a user's environment holds in these tests, and nothing more (the list).
def user_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "SAGEMAKER_VALIDATE_ROLE": "false",
    }


def bench_user(server) -> Path:
    """A bench's process becomes a user of `server` (an AWS endpoint with its role made), with a
    throwaway registry, cache and HOME; returns that directory."""
    work = Path(tempfile.mkdtemp(prefix="sm_magic-bench-"))
    os.environ.update(user_env(server.endpoint))
    os.environ.update(SM_MAGIC_REGISTRY=str(work / "registry.sqlite3"), SM_MAGIC_CACHE=str(work / "cache"),
                      HOME=str(work))
    server.create_role()
    return work


def become_user(server: "MotoAWS", home, monkeypatch) -> "MotoAWS":
    """The test's environment becomes a user's whose AWS endpoint is `server` (nothing else of
    this machine's AWS settings, no ~/.aws), with the IAM role and the bucket there."""
    import os

    for key in list(os.environ):
        if key.startswith(("AWS_", "SAGEMAKER_")):
            monkeypatch.delenv(key)
    for key, value in user_env(server.endpoint).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HOME", str(home))
    server.role_arn = server.create_role()
    server.bucket = server.create_bucket()
    return server


class MotoAWS:
    """A running ThreadedMotoServer and helpers over its in-process backend state."""

    def __init__(self):
        from moto.server import ThreadedMotoServer

        require("jobs", "starts a moto server")

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        _install_stop_training_job()
        _install_list_training_jobs()

    def stop(self) -> None:
        self.server.stop()

    # -- resources a user would already have -------------------------------------------------

    def client(self, service: str, endpoint: str | None = None):
        return boto3.client(service, region_name=REGION, endpoint_url=endpoint or self.endpoint,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def create_role(self) -> str:
        iam = self.client("iam")
        try:
            return iam.get_role(RoleName=ROLE_NAME)["Role"]["Arn"]
        except iam.exceptions.NoSuchEntityException:
            doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                           "Principal": {"Service": "sagemaker.amazonaws.com"}}]}
            return iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=json.dumps(doc))["Role"]["Arn"]

    def create_bucket(self, name: str = BUCKET) -> str:
        self.client("s3").create_bucket(Bucket=name)
        return name

    # -- playing SageMaker's part ------------------------------------------------------------

    @staticmethod
    def training_job(name: str):
        """moto's own record of a training job (its attributes become DescribeTrainingJob fields)."""
        from moto.backends import get_backend

        return get_backend("sagemaker")[ACCOUNT][REGION].training_jobs[name]

    def drive(self, name: str, secondary: str, message: str = "", status: str | None = None,
              failure_reason: str | None = None) -> None:
        """Move a job to `secondary` (closing the open transition), as the service does."""
        job = self.training_job(name)
        now = datetime.now(timezone.utc)
        transitions = [dict(t) for t in job.secondary_status_transitions]
        if transitions and transitions[-1].get("EndTime") is None:
            transitions[-1]["EndTime"] = now
        entry = {"Status": secondary, "StartTime": now, "StatusMessage": message or f"{secondary}"}
        terminal = secondary in ("Completed", "Failed", "Stopped", "MaxRuntimeExceeded", "MaxWaitTimeExceeded")
        if terminal:
            entry["EndTime"] = now
        transitions.append(entry)
        job.secondary_status_transitions = transitions
        job.secondary_status = secondary
        job.training_job_status = status or {"Completed": "Completed", "Failed": "Failed", "Stopped": "Stopped",
                                              "Stopping": "Stopping", "MaxRuntimeExceeded": "Stopped",
                                              "MaxWaitTimeExceeded": "Stopped"}.get(secondary, "InProgress")
        if failure_reason is not None:
            job.failure_reason = failure_reason
        if secondary == "Training":
            job.training_start_time = now
        if terminal:
            job.training_end_time = now
            start = job.training_start_time or job.creation_time
            job.training_time_in_seconds = job.billable_time_in_seconds = int((now - start).total_seconds())
        job.last_modified_time = now

    def start_lifecycle(self, name: str) -> None:
        """A job as CreateTrainingJob leaves it on the real service: InProgress, Starting."""
        job = self.training_job(name)
        now = datetime.now(timezone.utc)
        job.training_job_status = "InProgress"
        job.secondary_status = "Starting"
        job.secondary_status_transitions = [{"Status": "Starting", "StartTime": now,
                                             "StatusMessage": "Preparing the instances for training"}]
        job.training_start_time = job.training_end_time = None
        job.creation_time = job.last_modified_time = now

    def put_logs(self, name: str, lines: list[str], host: str = "algo-1") -> None:
        """Append lines to the job's log stream `<job>/<host>-<epoch>` in CloudWatch Logs."""
        logs = self.client("logs")
        stream = f"{name}/{host}-1700000000"
        try:
            logs.create_log_group(logGroupName=LOG_GROUP)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        try:
            logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        now = int(time.time() * 1000)
        events = [{"timestamp": now + i, "message": line} for i, line in enumerate(lines)]
        for i in range(0, len(events), 5000):
            logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream, logEvents=events[i:i + 5000])


def _install_stop_training_job() -> None:
    """moto 5.2 has no StopTrainingJob (HTTP 500): answer it as the service does, Stopping."""
    from moto.sagemaker.responses import SageMakerResponse

    if getattr(SageMakerResponse, "_sm_magic_stop", False):
        return

    def stop_training_job(self):
        name = json.loads(self.body)["TrainingJobName"]
        jobs = self.sagemaker_backend.training_jobs
        if name not in jobs:
            return 400, {"status": 400}, json.dumps({"__type": "ValidationException",
                                        "message": f"Requested resource not found: {name}"})
        job = jobs[name]
        if job.training_job_status == "InProgress":
            job.training_job_status = "Stopping"
            job.secondary_status = "Stopping"
        return 200, {}, "{}"

    SageMakerResponse.stop_training_job = stop_training_job
    SageMakerResponse._sm_magic_stop = True


def _install_list_training_jobs() -> None:
    """moto 5.2's ListTrainingJobs ignores SortBy/SortOrder (it pages in creation order) and its
    summaries lack SecondaryStatus; the service sorts and botocore's TrainingJobSummary has it.
    Answer as the service does (the filters the backend never sends are left to moto)."""
    from moto.core.responses import ActionResult
    from moto.sagemaker.responses import SageMakerResponse

    if getattr(SageMakerResponse, "_sm_magic_list", False):
        return
    original = SageMakerResponse.list_training_jobs

    def list_training_jobs(self):
        params = json.loads(self.body or "{}")
        if any(k in params for k in ("CreationTimeAfter", "CreationTimeBefore", "LastModifiedTimeAfter",
                                     "LastModifiedTimeBefore")):
            return original(self)
        jobs = list(self.sagemaker_backend.training_jobs.values())
        if params.get("NameContains"):
            jobs = [j for j in jobs if params["NameContains"] in j.training_job_name]
        if params.get("StatusEquals"):
            jobs = [j for j in jobs if j.training_job_status == params["StatusEquals"]]
        key = {"Name": lambda j: j.training_job_name, "Status": lambda j: j.training_job_status}.get(
            params.get("SortBy", "CreationTime"), lambda j: _naive_utc(j.creation_time))
        jobs.sort(key=key, reverse=params.get("SortOrder", "Ascending") == "Descending")
        start = int(params.get("NextToken") or 0)
        end = start + int(params.get("MaxResults") or 10)
        summaries = [{"TrainingJobName": j.training_job_name, "TrainingJobArn": j.arn,
                      "CreationTime": j.creation_time, "TrainingEndTime": j.training_end_time,
                      "LastModifiedTime": j.last_modified_time, "TrainingJobStatus": j.training_job_status,
                      "SecondaryStatus": j.secondary_status}
                     for j in jobs[start:end]]
        return ActionResult({"TrainingJobSummaries": summaries,
                             "NextToken": str(end) if end < len(jobs) else None})

    SageMakerResponse.list_training_jobs = list_training_jobs
    SageMakerResponse._sm_magic_list = True


def _naive_utc(t: datetime) -> datetime:
    """moto keeps naive UTC times; MotoAWS.drive sets aware ones: comparable either way."""
    return t.astimezone(timezone.utc).replace(tzinfo=None) if t.tzinfo else t
