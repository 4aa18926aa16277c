"""The SageMaker backend: submission through the SDK v3 (`sagemaker_submit`), then describe,
logs and stop through boto3 with as few API calls as a live view allows.

- describe: DescribeTrainingJob mapped onto JobState. While two or more jobs of one (profile,
  region) are watched, one ListTrainingJobs per poll interval answers for all of them: a job is
  described the first time, when its TrainingJobStatus changes (so its end brings FailureReason,
  billable seconds, the model and the full timeline with messages) and when LastModifiedTime moved
  with nothing visible changing (transitions in between, e.g. a spot restart); a change of the
  secondary status alone is taken from the summary (the timeline gets a transition starting at
  LastModifiedTime). So a 10-minute job costs about 2 describes however many are watched. A job
  watched alone is described every poll (the timeline's messages as they come). A job that ended
  is never described again by this backend; stop() forces a real describe.
- logs: CloudWatch Logs `/aws/sagemaker/TrainingJobs`, read for all the watched jobs of one
  (profile, region) together by `cloudwatch_fanout.LogFanout` (one FilterLogEvents per poll
  interval for up to 100 streams; streams found only when a job may have a new one; after a job
  ended and its streams are drained, no call).
- scalars: the TensorBoard event files the job writes under $SM_OUTPUT_DIR/tensorboard, read from
  the S3 output that TensorBoardOutputConfig names (s3_tensorboard: one ListObjectsV2 per poll
  at most, one ranged GetObject per file that grew, fewer while nothing changes, none once read
  after the end).
- every client uses botocore's adaptive retry mode (backoff with jitter, a client-side rate limit
  on throttling, 5xx and dropped connections retried). When a call still fails the backend keeps
  what it had: `describe` answers the last state with `extra["connection"]` saying it is
  reconnecting, `logs` returns no line and the cursor as it was (the lines come next time).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...console import progress
from ..base import BackendClass, BackendError, JobState, SubmitOptions, Traits, Transition
from . import pricing, warm_pool
from .aws_polling import SLACK, Link, Unreachable, api_seconds, list_summaries, short, transient, watched_window
from .cloudwatch_fanout import LogFanout
from .cloudwatch_logs import LogCursor
from .s3_tensorboard import S3Scalars, training_began

if TYPE_CHECKING:
    from ...bundle.build import Bundle
    from ...config.model import TrainConfig

POLL_ENV = "SM_MAGIC_SAGEMAKER_POLL"
DEFAULT_POLL_SECONDS = 10.0
MAX_ATTEMPTS = 6            # per API call, the first try included (botocore adaptive mode)
CONNECT_TIMEOUT = 5         # seconds
READ_TIMEOUT = 30           # seconds
SWEEP_MIN_JOBS = 2          # ListTrainingJobs replaces per-job describes from this many watched jobs
SWEEP_MAX_PAGES = 3


def _not_found(message: str) -> bool:
    """The service says "Requested resource not found"; moto "Could not find training job"."""
    message = message.lower()
    return "not found" in message or "could not find" in message


def state_from_description(d: dict) -> JobState:
    """DescribeTrainingJob's answer as a JobState (the model appears once the job has one)."""
    resource = d.get("ResourceConfig") or {}
    groups = resource.get("InstanceGroups") or []
    instance_type = resource.get("InstanceType") or ",".join(g.get("InstanceType", "") for g in groups)
    instance_count = resource.get("InstanceCount") or sum(g.get("InstanceCount", 0) for g in groups) or 1
    status = d.get("TrainingJobStatus", "InProgress")
    transitions = [Transition(status=t.get("Status", ""), start=api_seconds(t.get("StartTime")) or 0.0,
                              end=api_seconds(t.get("EndTime")), message=t.get("StatusMessage") or "")
                   for t in d.get("SecondaryStatusTransitions") or []]
    model = (d.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    # The service names the model's future location from the start; it exists once the job
    # completed (or stopped: SageMaker uploads what /opt/ml/model holds when stopped).
    if status not in ("Completed", "Stopped"):
        model = None
    extra: dict[str, Any] = {"arn": d.get("TrainingJobArn")}
    if d.get("LastModifiedTime") is not None:
        extra["last_modified"] = api_seconds(d["LastModifiedTime"])
    if d.get("EnableManagedSpotTraining"):
        extra["spot"] = True
    warm = warm_pool.facts(d)
    if warm:
        extra["warm_pool"] = warm  # requested, and what became of the pool (WarmPoolStatus)
    tensorboard = (d.get("TensorBoardOutputConfig") or {}).get("S3OutputPath")
    if tensorboard:
        extra["tensorboard"] = tensorboard  # where SageMaker uploads $SM_OUTPUT_DIR/tensorboard
    return JobState(
        name=d.get("TrainingJobName", ""),
        status=status,
        secondary_status=d.get("SecondaryStatus") or (transitions[-1].status if transitions else "Starting"),
        transitions=transitions,
        failure_reason=d.get("FailureReason") or None,
        model_artifacts=model,
        creation_time=api_seconds(d.get("CreationTime")) or 0.0,
        training_start_time=api_seconds(d.get("TrainingStartTime")),
        training_end_time=api_seconds(d.get("TrainingEndTime")),
        training_seconds=d.get("TrainingTimeInSeconds"),
        billable_seconds=d.get("BillableTimeInSeconds"),
        instance_type=instance_type or "",
        instance_count=int(instance_count),
        hyperparameters=dict(d.get("HyperParameters") or {}),
        extra=extra,
    )


@dataclasses.dataclass
class _Entry:
    """What this backend knows of one job."""

    key: tuple
    state: JobState | None = None
    final: bool = False
    force: bool = False          # describe for real next time (after stop)
    ended_at: float | None = None   # monotonic time the end was observed (by a sweep or a describe)
    seen_at: float = 0.0         # monotonic time of the last describe() asked
    answer: JobState | None = None  # the state describe() answered last (running jobs)
    pool_from: str | None = None  # the job whose warm pool this one started on (warm_pool_origin)
    pool_looked: bool = False     # warm_pool_origin asked once
    price: pricing.Price | None = None  # one instance's price, looked up once (pricing.training_price)
    price_looked: bool = False


@dataclasses.dataclass
class _Sweep:
    at: float
    jobs: dict


class SageMakerBackend(BackendClass):
    """Jobs on Amazon SageMaker. `profile` / `region` default to the boto3 chain (environment,
    ~/.aws, instance role); a job submitted with a config uses the config's."""

    name = "sagemaker"
    simulates_interruptions = False  # spot interruptions there are real
    traits = Traits(in_image=True, warm_pools=True, network_isolation=True, bundle_goes="uploaded to S3")

    @classmethod
    def find_options(cls, config: TrainConfig) -> dict:
        return {"region": config.region, "profile": config.profile}  # a profile's name, never its keys

    def __init__(self, profile: str | None = None, region: str | None = None,
                 poll_interval: float | None = None, max_attempts: int = MAX_ATTEMPTS):
        self.profile = profile
        self.region = region
        if poll_interval is None:
            raw = os.environ.get(POLL_ENV)
            try:
                poll_interval = float(raw) if raw else DEFAULT_POLL_SECONDS
            except ValueError:
                raise BackendError(f"{POLL_ENV}={raw!r}: expected a number of seconds, e.g. 10") from None
        if poll_interval <= 0:
            raise BackendError(f"the poll interval must be a positive number of seconds, not {poll_interval}")
        self.poll_interval = float(poll_interval)
        self.max_attempts = max_attempts
        self._lock = threading.RLock()
        self._keys: dict[tuple, tuple] = {}
        self._clients: dict[tuple, Any] = {}
        self._links: dict[tuple, Link] = {}
        self._entries: dict[str, _Entry] = {}
        self._sweeps: dict[tuple, _Sweep] = {}
        self._fanouts: dict[tuple, LogFanout] = {}

    # -- clients -----------------------------------------------------------------------------

    def _key(self, profile: str | None = None, region: str | None = None) -> tuple:
        """(profile, region) as boto3 resolves them; an unknown profile or no region is an error."""
        asked = (profile or self.profile, region or self.region)
        with self._lock:
            if asked in self._keys:
                return self._keys[asked]
        import boto3
        from botocore.exceptions import ProfileNotFound

        try:
            session = boto3.Session(profile_name=asked[0], region_name=asked[1])
        except ProfileNotFound:
            raise BackendError(f"AWS profile {asked[0]!r} is not in ~/.aws/config or ~/.aws/credentials: "
                               "set `profile` in the config to one that exists, or leave it empty") from None
        if not session.region_name:
            raise BackendError("no AWS region: set `region` in the config (%sagemaker_config) or "
                               "AWS_DEFAULT_REGION")
        key = (asked[0], session.region_name)
        with self._lock:
            self._keys[asked] = key
            self._keys.setdefault(key, key)
        return key

    def client(self, service: str, key: tuple | None = None):
        """The backend's one boto3 client for `service` ("sagemaker", "logs") and key."""
        key = key or self._key()
        with self._lock:
            client = self._clients.get((key, service))
            if client is not None:
                return client
        import boto3
        from botocore.config import Config

        config = Config(retries={"mode": "adaptive", "max_attempts": self.max_attempts},
                        connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                        user_agent_extra="sm_magic")
        client = boto3.Session(profile_name=key[0], region_name=key[1]).client(service, config=config)
        with self._lock:
            return self._clients.setdefault((key, service), client)

    def _link(self, key: tuple, service: str) -> Link:
        with self._lock:
            return self._links.setdefault((key, service), Link(service))

    def _call(self, key: tuple, service: str, operation: str, fail_fast: bool = True, **params) -> dict:
        """One API call (botocore retries inside). Unreachable when it still failed for a
        passing reason, or (with fail_fast) when the endpoint failed less than a poll interval
        ago: while it is down, one call per interval finds out, not one per job."""
        link = self._link(key, service)
        if fail_fast and link.backing_off(time.monotonic()):
            raise Unreachable(link.error)
        from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

        try:
            response = getattr(self.client(service, key), operation)(**params)
        except (NoCredentialsError, PartialCredentialsError) as e:
            raise BackendError(f"no usable AWS credentials ({short(e)}): set AWS_PROFILE or `profile` in "
                               "the config, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run "
                               "`aws sso login`") from None
        except Exception as e:
            if transient(e):
                link.fail(e, time.monotonic() + SLACK * self.poll_interval)
                raise Unreachable(short(e)) from e
            link.ok()  # the service answered
            if isinstance(e, ClientError):
                raise
            raise BackendError(f"{operation}: {short(e)}") from e
        link.ok()
        return response

    # -- submit ------------------------------------------------------------------------------

    def _entry(self, name: str, key: tuple | None = None) -> _Entry:
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                entry = self._entries[name] = _Entry(key or self._key())
            return entry

    def check_config(self, config: TrainConfig) -> None:
        """What SageMaker would refuse in the config alone (instance type, stopping times, spot,
        region), before anything is built or any AWS call is made."""
        from . import submit as sagemaker_submit

        sagemaker_submit.check_config(config)

    def check_writable(self) -> None:
        """Nothing is written on this machine: the bundle goes to S3."""

    def job_location(self, name: str) -> str:
        return name

    def submit(self, bundle: Bundle, config: TrainConfig, options: SubmitOptions = SubmitOptions()) -> str:
        """CreateTrainingJob through the SDK (sagemaker_submit); returns the job name."""
        from . import submit as sagemaker_submit

        if options.interruptions:
            raise BackendError("simulated interruptions run on the local backend only: on SageMaker they are real")

        key = self._key(getattr(config, "profile", None), getattr(config, "region", None))
        submission = sagemaker_submit.submit(bundle, config)
        progress(f"cost: {submission.cost_line(config)}")
        line = warm_pool.launch_line(config.keep_alive_period_in_seconds)
        if line:
            progress(line)
        with self._lock:
            self._entries[submission.name] = _Entry(key)
        return submission.name

    def dry_run(self, bundle: Bundle, config: TrainConfig) -> str:
        """The CreateTrainingJob request that submit would send, as text; nothing is sent."""
        from . import submit as sagemaker_submit

        submission = sagemaker_submit.submit(bundle, config, dry_run=True)
        text = f"Cost: {submission.cost_line(config)}\n\n{sagemaker_submit.dry_run_text(submission)}"
        line = warm_pool.launch_line(config.keep_alive_period_in_seconds)
        return f"{line[0].upper()}{line[1:]}.\n\n{text}" if line else text

    # -- describe ----------------------------------------------------------------------------

    def describe(self, name: str) -> JobState:
        entry = self._entry(name)
        if entry.final:
            return self._answer(entry)
        now = time.monotonic()
        entry.seen_at = now
        sweep = self._sweep(entry, now) if entry.state is not None and not entry.force else None
        summary = sweep.jobs.get(name) if sweep is not None else None
        if summary is not None and self._from_summary(entry, summary):
            return self._answer(entry)
        from botocore.exceptions import ClientError

        try:
            d = self._call(entry.key, "sagemaker", "describe_training_job", fail_fast=entry.state is not None,
                           TrainingJobName=name)
        except Unreachable as e:
            if entry.state is None:
                raise BackendError(f"cannot reach SageMaker in {entry.key[1]} to describe {name}: {e}; "
                                   "check the network (or AWS_ENDPOINT_URL) and try again") from None
            return self._answer(entry)
        except ClientError as e:
            raise self._client_error(e, name, entry.key, "describe") from None
        state = state_from_description(d)
        state.extra["region"] = entry.key[1]
        if not entry.price_looked:  # what this machine knows (the cache the launch filled): no API call
            entry.price = pricing.training_price(state.instance_type, entry.key[1]) if state.instance_type else None
            entry.price_looked = True
        cost = pricing.cost_facts(entry.price, state.billable_seconds, state.instance_count)
        if cost:
            state.extra["cost"] = cost
        self._warm_pool_origin(entry, name, state)
        with self._lock:
            entry.state, entry.force = state, False
            entry.final = state.done
            if state.done:  # seen ended by the sweep that made this describe happen, if one did
                entry.ended_at = sweep.at if summary is not None and sweep is not None else now
        return self._answer(entry)

    def _warm_pool_origin(self, entry: _Entry, name: str, state: JobState) -> None:
        """For a job that asked for a warm pool: whether it started on one another job left. The
        API says so on that other job only (WarmPoolStatus Reused, ReusedByJob naming this one),
        so it is asked once, with ListTrainingJobs' WarmPoolStatusEquals, when the instances are
        this job's (past Starting)."""
        warm = state.extra.get("warm_pool")
        if not warm or not warm.get("keep_alive_seconds"):
            return
        if not entry.pool_looked and state.secondary_status != "Starting":
            from botocore.exceptions import ClientError

            try:  # the newest pools reused: the one this job took over is among them
                page = self._call(entry.key, "sagemaker", "list_training_jobs", WarmPoolStatusEquals="Reused",
                                  SortBy="CreationTime", SortOrder="Descending", MaxResults=100)
            except (Unreachable, ClientError, BackendError):
                return  # asked again with the next describe
            entry.pool_from = next((s["TrainingJobName"] for s in page.get("TrainingJobSummaries", [])
                                    if (s.get("WarmPoolStatus") or {}).get("ReusedByJob") == name), None)
            entry.pool_looked = True
        if entry.pool_looked:
            warm["started_on_pool_of"] = entry.pool_from  # None: on instances provisioned for it

    def _from_summary(self, entry: _Entry, summary: tuple) -> bool:
        """Whether the sweep's (status, secondary status, LastModifiedTime) answers for the job
        without a DescribeTrainingJob: nothing changed, or the secondary status alone (then the
        cached state takes it, and its timeline a transition from LastModifiedTime)."""
        state = entry.state
        assert state is not None
        status, secondary, modified = summary
        known = state.extra.get("last_modified")
        if modified is not None and known is not None and modified < known:
            return True  # a sweep older than the last describe
        if status != state.status:
            return False  # started, ended or stopping: the details come with a describe
        if modified == known and secondary in (None, state.secondary_status):
            return True
        if secondary is None or secondary == state.secondary_status or modified is None:
            return False  # modified with nothing visible changing: transitions came and went
        transitions = list(state.transitions)
        if transitions and transitions[-1].end is None:
            transitions[-1] = dataclasses.replace(transitions[-1], end=modified)
        transitions.append(Transition(status=secondary, start=modified, end=None, message=""))
        with self._lock:
            entry.state = dataclasses.replace(state, secondary_status=secondary, transitions=transitions,
                                              extra={**state.extra, "last_modified": modified})
        return True

    def _answer(self, entry: _Entry) -> JobState:
        """A copy of the job's last state, saying whether the endpoints answer."""
        s = entry.state
        assert s is not None  # answered only once the job has been described
        state = s.copy()
        if not entry.final:
            self._mark_connection(entry, state)
            entry.answer = state
        return state

    def _mark_connection(self, entry: _Entry, state: JobState) -> None:
        """Put "reconnecting (attempt N): <service>: <error>" in state.extra["connection"]
        (and when that began in extra["connection_since"]) while an endpoint fails; drop it
        once both answer. The logs are read after the state is described (Job.snapshot), so
        logs() updates the state it answered last, and one snapshot tells the whole story."""
        state.extra.pop("connection", None)
        state.extra.pop("connection_since", None)
        for service, label in (("sagemaker", "SageMaker"), ("logs", "CloudWatch Logs")):
            link = self._link(entry.key, service)
            if link.failures:
                state.extra["connection"] = f"reconnecting (attempt {link.failures}): {label}: {link.error}"
                state.extra["connection_since"] = link.since
                return

    def _sweep(self, entry: _Entry, now: float) -> _Sweep | None:
        """This poll's ListTrainingJobs: each job's (status, secondary status, LastModifiedTime),
        when enough jobs are watched for one list to replace their describes."""
        window = watched_window(self.poll_interval)
        with self._lock:
            active = [e for e in self._entries.values()
                      if e.key == entry.key and not e.final and e.state is not None and now - e.seen_at < window]
            if len(active) < SWEEP_MIN_JOBS:
                return None
            sweep = self._sweeps.get(entry.key)
            oldest = min(e.state.creation_time for e in active if e.state is not None)
            watched = {e.state.name for e in active if e.state is not None}
        if sweep is None or now - sweep.at >= SLACK * self.poll_interval:
            try:
                jobs = list_summaries(functools.partial(self._call, entry.key, "sagemaker"), watched, oldest,
                                      SWEEP_MAX_PAGES)
            except Exception:  # Unreachable or refused: describe each job instead
                return None
            sweep = _Sweep(now, jobs)
            with self._lock:
                self._sweeps[entry.key] = sweep
        return sweep

    def _client_error(self, e, name: str, key: tuple, what: str) -> BackendError:
        code = e.response.get("Error", {}).get("Code", "")
        message = e.response.get("Error", {}).get("Message", "")
        if code == "ValidationException" and _not_found(message):
            return BackendError(f"no SageMaker training job named {name} in {key[1]} "
                                "(wrong region or profile? `region` in the config chooses)")
        if code in ("AccessDeniedException", "AccessDenied", "UnrecognizedClientException",
                    "InvalidSignatureException", "ExpiredTokenException"):
            return BackendError(f"AWS refused to {what} {name}: {code}: {message}. Check the credentials "
                                "(profile, AWS_* variables) and their IAM permissions")
        return BackendError(f"cannot {what} {name}: {code}: {message}")

    # -- logs --------------------------------------------------------------------------------

    def logs(self, name: str, cursor: LogCursor | None = None) -> tuple[list[str], LogCursor]:
        """New lines of every host's CloudWatch stream since `cursor`, read for all watched jobs
        of the job's (profile, region) together (cloudwatch_fanout.LogFanout); with several hosts
        each line carries an `algo-N | ` prefix. A read that failed leaves the cursor as it was,
        so its lines come next time, once."""
        entry = self._entry(name)
        try:
            return self._fanout(entry.key).read(name, entry.state, entry.ended_at, cursor)
        finally:
            if entry.answer is not None and not entry.final:
                self._mark_connection(entry, entry.answer)

    def _fanout(self, key: tuple) -> LogFanout:
        with self._lock:
            fanout = self._fanouts.get(key)
            if fanout is None:
                fanout = self._fanouts[key] = LogFanout(
                    functools.partial(self._call, key, "logs"), self._link(key, "logs"),
                    lambda e, name, what: self._client_error(e, name, key, what), self.poll_interval)
            return fanout

    # -- TensorBoard scalars -----------------------------------------------------------------

    def scalars(self, name: str, cursor: S3Scalars | None = None) -> tuple[list, S3Scalars | None]:
        """TensorBoard scalars the job wrote since `cursor`, as (step, {name: value}) rows, read
        from where its TensorBoardOutputConfig has them uploaded (s3_tensorboard), at most once
        per poll interval. A job described without that config, or not training yet, costs no
        call; a failed read leaves the cursor as it was (its rows come next time)."""
        entry = self._entry(name)
        if entry.state is None:
            # A handle's first read (job.metrics before any status was asked for) needs the
            # description: where the files go, and whether training began.
            try:
                self.describe(name)
            except BackendError:
                return [], cursor  # the next read tries again
        state = entry.state
        uri = state.extra.get("tensorboard") if state is not None else None
        if state is None or not uri:
            return [], cursor
        if cursor is None:
            cursor = S3Scalars(uri, name)
        # Once the end is seen, the last read comes at once (the files are complete), then none.
        due = cursor.due(time.monotonic()) or (entry.final and not cursor.drained)
        if not due or not training_began(state.secondary_status, entry.final):
            return [], cursor
        from botocore.exceptions import ClientError

        try:
            rows = cursor.read(functools.partial(self._call, entry.key, "s3"), self.poll_interval, entry.final)
        except Unreachable:
            return [], cursor
        except ClientError as e:
            error = e.response.get("Error", {})
            raise BackendError(f"cannot read {cursor.uri}: {error.get('Code', '')}: {error.get('Message', '')}. "
                               "Reading the job's TensorBoard files needs s3:ListBucket and "
                               "s3:GetObject there for your credentials") from None
        return rows, cursor

    # -- the model ---------------------------------------------------------------------------

    def fetch_object(self, name: str, uri: str, dest: Path) -> bool:
        """Download the S3 object `uri` (job `name`'s model.tar.gz or output.tar.gz) to `dest`,
        with the job's credentials and region; False when there is no such object."""
        from botocore.exceptions import BotoCoreError, ClientError

        entry = self._entry(name)
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        try:
            body = self._call(entry.key, "s3", "get_object", fail_fast=False, Bucket=bucket, Key=key)["Body"]
            with open(dest, "wb") as f:
                shutil.copyfileobj(body, f, 1 << 20)
        except Unreachable as e:
            raise BackendError(f"cannot reach S3 to download {uri} ({e}): try again") from None
        except ClientError as e:
            error = e.response.get("Error", {})
            if error.get("Code") in ("NoSuchKey", "404", "NotFound"):
                return False
            raise BackendError(f"cannot download {uri}: {error.get('Code', '')}: {error.get('Message', '')}. "
                               "It needs s3:GetObject there for your credentials") from None
        except (BotoCoreError, OSError) as e:
            raise BackendError(f"downloading {uri} to {dest} failed ({short(e)}): try again") from None
        return True

    # -- stop --------------------------------------------------------------------------------

    def stop(self, name: str) -> None:
        """StopTrainingJob; the job goes Stopping, then Stopped once the service says so."""
        entry = self._entry(name)
        if entry.final:
            return
        from botocore.exceptions import ClientError

        try:
            self._call(entry.key, "sagemaker", "stop_training_job", TrainingJobName=name)
        except Unreachable as e:
            raise BackendError(f"could not reach SageMaker to stop {name} ({e}); the job keeps running: "
                               "try again") from None
        except ClientError as e:
            message = e.response.get("Error", {}).get("Message", "")
            code = e.response.get("Error", {}).get("Code", "")
            if code == "ValidationException" and not _not_found(message):
                entry.force = True  # it has already ended or is stopping: nothing to do
                return
            raise self._client_error(e, name, entry.key, "stop") from None
        entry.force = True


__all__ = ["SageMakerBackend", "state_from_description"]
