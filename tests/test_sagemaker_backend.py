"""The SageMaker backend after submission, against moto on 127.0.0.1 (tests/helpers/aws_moto.py): job
lifecycles driven through moto's state while log events go into its CloudWatch Logs, watched
through sm_magic's own Job, Monitor and ProgressWidget; stop; several hosts; a fault-injecting
proxy (tests/helpers/faulty_proxy.py) in front of moto that throttles, fails and drops 20% of the calls;
an endpoint that is down for a while; and the number of calls the backend makes, counted at the
proxy. Time is compressed: the backend polls every 50 ms instead of 10 s."""

from __future__ import annotations

import itertools
import threading
import time
import uuid

import pytest

from sm_magic.backends import BackendError, get_backend
from sm_magic.backends.sagemaker.backend import SageMakerBackend
from sm_magic.jobs.job import Job, JobFailedError
from sm_magic.jobs.monitor import Monitor
from sm_magic.widgets.progress import ProgressWidget

from helpers.aws_moto import LOG_GROUP
from helpers.faulty_proxy import FaultyProxy, compress_retry_time
from helpers.jobscripts import wait_until

pytestmark = pytest.mark.jobs

POLL = 0.05
LIFECYCLE = ["Starting", "Downloading", "Training", "Uploading", "Completed"]
MESSAGES = {"Downloading": "Downloading input data",
            "Training": "Training image download completed. Training in progress.",
            "Uploading": "Uploading generated training model",
            "Completed": "Training job completed"}


@pytest.fixture
def sm(aws, monkeypatch):
    """The moto service and a backend polling every POLL seconds instead of 10: botocore's
    retry timing (backoff, adaptive rate limiter) runs on the same compressed clock."""
    monkeypatch.setenv("SM_MAGIC_SAGEMAKER_POLL", str(POLL))
    undo = compress_retry_time(10 / POLL)
    yield Service(aws)
    undo()


@pytest.fixture
def proxy(aws, monkeypatch):
    """A proxy in front of moto, faultless until a test says otherwise; the user's
    AWS_ENDPOINT_URL points at it (the test's own helpers still talk to moto directly)."""
    p = FaultyProxy(aws.endpoint, seed=42).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", p.endpoint)
    yield p
    p.stop()


class Service:
    """Plays SageMaker's part: creates jobs in moto, moves them along, writes their logs."""

    _stamp = itertools.count()

    def __init__(self, aws):
        self.aws = aws
        self.sm = aws.client("sagemaker")
        self.logs = aws.client("logs")
        self._last_ms = 0

    def create(self, instance_count: int = 1, hyperparameters=None) -> str:
        name = f"smm-{uuid.uuid4().hex[:12]}"
        self.sm.create_training_job(
            TrainingJobName=name, RoleArn=self.aws.role_arn,
            AlgorithmSpecification={"TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/"
                                                     "huggingface-pytorch-training:latest",
                                    "TrainingInputMode": "File"},
            OutputDataConfig={"S3OutputPath": f"s3://{self.aws.bucket}/output"},
            ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": instance_count, "VolumeSizeInGB": 30},
            StoppingCondition={"MaxRuntimeInSeconds": 3600},
            HyperParameters=hyperparameters or {"epochs": "3", "lr": "5e-05"})
        self.aws.start_lifecycle(name)  # moto's jobs are born Completed
        return name

    def to(self, name: str, secondary: str, **kw) -> None:
        self.aws.drive(name, secondary, MESSAGES.get(secondary, ""), **kw)

    def put(self, name: str, lines: list[str], host: str = "algo-1", started: int = 1700000000) -> None:
        """Append to `<job>/<host>-<started>` with strictly increasing timestamps (moto's tokens
        are positions in timestamp order, as the service's are in ingestion order); a restarted
        spot instance logs to a new stream of its own."""
        stream = f"{name}/{host}-{started}"
        for create in (lambda: self.logs.create_log_group(logGroupName=LOG_GROUP),
                       lambda: self.logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)):
            try:
                create()
            except self.logs.exceptions.ResourceAlreadyExistsException:
                pass
        events = []
        for line in lines:
            self._last_ms = max(int(time.time() * 1000), self._last_ms + 1)
            events.append({"timestamp": self._last_ms, "message": line})
        self.logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream, logEvents=events)


class Watcher:
    """A Monitor delivering every snapshot of one job to a ProgressWidget and a record."""

    def __init__(self, job: Job, widget: bool = True):
        self.job = job
        self.snaps: list = []
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.widget = ProgressWidget(job) if widget else None
        self.monitor = Monitor(poll=0.01)
        self.monitor.watch(job, self._deliver, min_interval=0)

    def _deliver(self, snap) -> None:
        if self.widget is not None:
            self.widget.update(snap)
        with self.cond:
            self.snaps.append(snap)
            self.lines.extend(snap.new_lines)
            self.cond.notify_all()

    def wait_for(self, what, timeout: float = 20.0) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: what(self), timeout)
        last = self.snaps[-1].state if self.snaps else None
        assert ok, f"timed out; last state {last and (last.status, last.secondary_status)}, {len(self.lines)} lines"

    def saw(self, secondary: str) -> bool:
        return any(s.state.secondary_status == secondary for s in self.snaps)

    def finished(self) -> None:
        self.wait_for(lambda w: w.snaps and w.snaps[-1].state.done and not w.monitor.watched())

    def secondaries(self) -> list[str]:
        return [k for k, _ in itertools.groupby(s.state.secondary_status for s in self.snaps)]


def epoch_line(epoch: int) -> str:
    return f"epoch {epoch}: {{'accuracy': {0.7 + epoch / 100:.2f}, 'f1': {0.8 + epoch / 100:.2f}}}"


def drive_lifecycle(svc: Service, name: str, w: Watcher, batches: list[list[str]], host: str = "algo-1",
                    hold: int = 0, proxy: FaultyProxy | None = None) -> None:
    """Starting -> Downloading -> Training (the batches logged one by one, each awaited) ->
    Uploading -> Completed, each status awaited and then held for `hold` polls (DescribeTrainingJob
    calls counted at `proxy`: a slow machine polls less often in the same time)."""

    def held():
        if hold:
            target = proxy.counts["SageMaker.DescribeTrainingJob"] + hold
            wait_until(lambda: proxy.counts["SageMaker.DescribeTrainingJob"] >= target, 60, f"{hold} more polls")

    w.wait_for(lambda w: w.saw("Starting"))
    held()
    for phase in ("Downloading", "Training"):
        svc.to(name, phase)
        w.wait_for(lambda w, p=phase: w.saw(p))
        held()
    total = 0
    for batch in batches:
        svc.put(name, batch, host)
        total += len(batch)
        w.wait_for(lambda w, n=total: len(w.lines) >= n)
    svc.to(name, "Uploading")
    w.wait_for(lambda w: w.saw("Uploading"))
    held()
    svc.to(name, "Completed")
    w.finished()


# -- lifecycle, metrics, model, failure, stop ---------------------------------------------------

def test_widget_follows_a_completed_job_with_metrics_from_the_logs_and_its_model(sm):
    name = sm.create()
    job = Job(name, SageMakerBackend())
    w = Watcher(job)
    w.wait_for(lambda w: w.saw("Starting"))
    assert w.snaps[0].state.status == "InProgress" and w.snaps[0].backend == "sagemaker"
    assert "smm-" in w.widget.overview.value and "ml.m5.xlarge" in w.widget.overview.value
    batches = [["Invoking script with the following command:", epoch_line(0)], [epoch_line(1)],
               ["saving model", epoch_line(2)]]
    drive_lifecycle(sm, name, w, batches)

    assert w.secondaries() == LIFECYCLE
    statuses = [k for k, _ in itertools.groupby(s.state.status for s in w.snaps)]
    assert statuses == ["InProgress", "Completed"]
    final = w.snaps[-1].state
    assert [t.status for t in final.transitions] == LIFECYCLE
    assert all(t.end is not None and t.end >= t.start for t in final.transitions)
    assert final.transitions[2].message == MESSAGES["Training"]
    assert final.training_start_time and final.training_end_time >= final.training_start_time
    assert final.billable_seconds is not None and final.hyperparameters == {"epochs": "3", "lr": "5e-05"}
    # The model's location is shown once the job has one, not while it runs.
    assert all(s.state.model_artifacts is None for s in w.snaps if not s.state.done)
    assert final.model_artifacts == f"s3://{sm.aws.bucket}/output/{name}/output/model.tar.gz"
    assert job.model_data == final.model_artifacts and job.status == "Completed"

    assert w.lines == [line for batch in batches for line in batch]
    metrics = job.metrics
    assert list(metrics.index) == [0, 1, 2] and list(metrics.columns) == ["accuracy", "f1"]
    assert metrics.loc[2, "f1"] == pytest.approx(0.82)
    assert w.snaps[-1].metrics[0] == {"epoch": 0, "accuracy": 0.7, "f1": 0.8}

    overview = w.widget.overview.value
    assert "Completed</span>" in overview and "model.tar.gz" in overview and "sm-magic-connection" not in overview
    assert w.widget.timeline_table.value.count("<tr>") == 1 + len(LIFECYCLE)
    assert w.widget.metrics.value.count("<tr>") == 4 and "0.82" in w.widget.metrics.value
    assert w.widget.stop_button.disabled and w.widget.stop_button.description == "Completed"
    assert "saving model" in w.widget.log.value


def test_failed_job_shows_its_reason_and_wait_raises_it(sm):
    name = sm.create()
    job = Job(name, SageMakerBackend())
    w = Watcher(job)
    sm.to(name, "Downloading")
    sm.to(name, "Training")
    w.wait_for(lambda w: w.saw("Training"))
    # What CloudWatch holds: the script's traceback, then accelerate's wrapper around it.
    user = ["Traceback (most recent call last):", '  File "/opt/ml/code/train.py", line 9, in main',
            "    load_batches(16)", "ValueError: bad batch size"]
    sm.put(name, [*user, "Traceback (most recent call last):",
                  '  File "/usr/local/lib/python3.11/site-packages/accelerate/commands/launch.py", line 999, in simple_launcher',
                  "subprocess.CalledProcessError: Command '['python', 'train.py']' returned non-zero exit status 1."])
    reason = "AlgorithmError: ValueError: bad batch size, exit code: 1"
    sm.to(name, "Failed", failure_reason=reason)
    w.finished()
    final = w.snaps[-1].state
    assert (final.status, final.secondary_status, final.failure_reason) == ("Failed", "Failed", reason)
    assert final.model_artifacts is None
    assert "sm-magic-failure" in w.widget.overview.value and "bad batch size" in w.widget.overview.value
    with pytest.raises(JobFailedError) as err:
        job.wait(timeout=5)
    assert err.value.reason == reason
    assert "ValueError: bad batch size" in job.logs()
    assert job.snapshot().log_tail == user  # the failed job's tail: the user's traceback, not the wrapper


def test_spot_job_interrupted_then_out_of_runtime_is_followed_through_restarts(sm):
    name = sm.create()
    job = Job(name, SageMakerBackend())
    w = Watcher(job)
    for phase in ("Downloading", "Training"):
        sm.to(name, phase)
    sm.put(name, [epoch_line(0), epoch_line(1)])
    w.wait_for(lambda w: len(w.lines) == 2)
    sm.aws.drive(name, "Interrupted", "Training job interrupted: spot capacity reclaimed")
    w.wait_for(lambda w: w.saw("Interrupted"))
    assert "Interrupted" in w.widget.overview.value and w.snaps[-1].state.status == "InProgress"
    sm.aws.drive(name, "Restarting", "Restarting the training job")
    sm.aws.drive(name, "Training", "Training resumed")
    # The new instance logs to a new stream: the backend finds it and reads it from its start.
    sm.put(name, ["sm_magic: resumed from checkpoint 1 (/opt/ml/checkpoints/ckpt-1): starting at step 2",
                  epoch_line(2)], started=1700000600)
    w.wait_for(lambda w: len(w.lines) == 4)
    sm.aws.drive(name, "MaxRuntimeExceeded", "Training job runtime exceeded MaxRuntimeInSeconds provided")
    w.finished()
    final = w.snaps[-1].state
    assert (final.status, final.secondary_status) == ("Stopped", "MaxRuntimeExceeded")
    assert [t.status for t in final.transitions] == [
        "Starting", "Downloading", "Training", "Interrupted", "Restarting", "Training", "MaxRuntimeExceeded"]
    assert list(job.metrics.index) == [0, 1, 2]
    assert "MaxRuntimeExceeded" in w.widget.overview.value
    assert w.widget.stop_button.disabled
    assert job.wait(timeout=5).status == "Stopped"  # stopped by a limit is not a failure


def test_stop_calls_stop_training_job_and_the_job_ends_stopped(sm, proxy):
    name = sm.create()
    job = Job(name, SageMakerBackend())
    w = Watcher(job)
    sm.to(name, "Training")
    sm.put(name, [epoch_line(0)])
    w.wait_for(lambda w: w.saw("Training") and w.lines)
    w.widget._stop()  # the widget's Stop button
    assert proxy.counts["SageMaker.StopTrainingJob"] == 1
    w.wait_for(lambda w: w.snaps[-1].state.status == "Stopping")
    assert not w.widget.stop_button.description == "Stopped"
    sm.to(name, "Stopped")  # the service stops the instances, uploads the model, says Stopped
    w.finished()
    final = w.snaps[-1].state
    assert (final.status, final.secondary_status) == ("Stopped", "Stopped")
    assert final.model_artifacts and final.model_artifacts.endswith("model.tar.gz")
    assert job.wait(timeout=5) is job and w.widget.stop_button.description == "Stopped"
    job.stop()  # an ended job: nothing to ask
    assert proxy.counts["SageMaker.StopTrainingJob"] == 1


def test_errors_name_what_to_fix(sm):
    backend = SageMakerBackend()
    with pytest.raises(BackendError, match="no SageMaker training job named nope-1 in us-east-1"):
        backend.describe("nope-1")
    assert backend.logs("nope-3")[0] == []  # no log group or stream yet is not an error
    with pytest.raises(BackendError, match="AWS profile 'missing'"):
        SageMakerBackend(profile="missing").describe("x")


def test_two_hosts_streams_are_both_read_with_host_prefixes(sm):
    name = sm.create(instance_count=2)
    job = Job(name, SageMakerBackend())
    w = Watcher(job, widget=False)
    sm.to(name, "Training")
    w.wait_for(lambda w: w.saw("Training"))
    sm.put(name, ["rank 0 up", epoch_line(0)], host="algo-1")
    w.wait_for(lambda w: len(w.lines) >= 2)
    sm.put(name, ["rank 1 up"], host="algo-2")  # the second host's stream appears later
    sm.put(name, [epoch_line(1)], host="algo-1")
    sm.put(name, ["rank 1 done"], host="algo-2")
    w.wait_for(lambda w: len(w.lines) >= 5)
    sm.to(name, "Completed")
    w.finished()
    assert sorted(w.lines) == sorted(["algo-1 | rank 0 up", f"algo-1 | {epoch_line(0)}", f"algo-1 | {epoch_line(1)}",
                                      "algo-2 | rank 1 up", "algo-2 | rank 1 done"])
    assert [l for l in w.lines if l.startswith("algo-2")] == ["algo-2 | rank 1 up", "algo-2 | rank 1 done"]
    assert w.snaps[-1].state.instance_count == 2
    assert list(job.metrics.index) == [0, 1]


# -- faults --------------------------------------------------------------------------------------

def test_no_status_change_or_log_line_is_lost_or_repeated_under_20_percent_faults(sm, proxy):
    proxy.fault_rate = 0.2
    backend = SageMakerBackend()
    assert backend.client("sagemaker").meta.config.retries["mode"] == "adaptive"
    name = sm.create()
    job = Job(name, backend)
    w = Watcher(job)
    batches = [[f"batch {b} line {i:03d}" for i in range(40)] + [epoch_line(b)] for b in range(10)]
    drive_lifecycle(sm, name, w, batches, hold=8, proxy=proxy)

    expected = [line for batch in batches for line in batch]
    assert len(expected) == 410
    assert w.secondaries() == LIFECYCLE
    assert [t.status for t in w.snaps[-1].state.transitions] == LIFECYCLE
    assert w.lines == expected                       # each line delivered once, in order
    assert job.logs().splitlines() == expected
    assert len(job.metrics) == 10
    requests = sum(proxy.counts.values())
    faults = sum(proxy.faults.values())
    print(f"{requests} requests, faults: {dict(proxy.faults)}")
    assert requests >= 60 and 0.1 <= faults / requests <= 0.3, (requests, dict(proxy.faults))
    assert all(proxy.faults[k] for k in ("throttle", "500", "drop", "drop-after")), dict(proxy.faults)


def test_an_unreachable_endpoint_shows_reconnecting_and_loses_nothing(sm, proxy):
    backend = SageMakerBackend(max_attempts=2)
    with proxy_down(proxy):
        with pytest.raises(BackendError, match="cannot reach SageMaker in us-east-1 to describe"):
            backend.describe("not-yet-seen")
    name = sm.create()
    job = Job(name, backend)
    assert job.snapshot().state.secondary_status == "Starting"
    sm.to(name, "Training")
    sm.put(name, ["line 1", "line 2"])
    with proxy_down(proxy):
        notices = []  # what each snapshot says; between retries it repeats the last attempt's notice

        def reconnecting(attempt):
            snap = job.snapshot()
            notices.append(snap.state.extra.get("connection", ""))
            assert snap.state.secondary_status == "Starting" and snap.new_lines == []  # the last state, kept
            return notices[-1].startswith(f"reconnecting (attempt {attempt})") and snap

        for attempt in (1, 2, 3):
            snap = wait_until(lambda a=attempt: reconnecting(a), 30, f"reconnecting (attempt {attempt})")
        # Every retry is counted, none skipped.
        assert [k for k, _ in itertools.groupby(n.split(":")[0] for n in notices)] == \
            [f"reconnecting (attempt {i})" for i in (1, 2, 3)]
        assert "SageMaker: " in notices[0]
        widget = ProgressWidget(job)
        widget.update(snap)
        assert "sm-magic-connection" in widget.overview.value and "reconnecting" in widget.overview.value
    lines = []

    def caught_up():
        snap = job.snapshot()
        lines.extend(snap.new_lines)
        return snap.state.secondary_status == "Training" and len(lines) >= 2 and snap

    snap = wait_until(caught_up, 30, "the state and the lines logged during the outage")
    assert "connection" not in snap.state.extra and lines == ["line 1", "line 2"]

    # The monitor keeps polling through an outage and picks up what happened meanwhile.
    w = Watcher(job, widget=False)
    with proxy_down(proxy):
        sm.put(name, ["line 3"])
        sm.to(name, "Uploading")
        w.wait_for(lambda w: any("reconnecting (attempt 2)" in s.state.extra.get("connection", "") for s in w.snaps))
    sm.put(name, ["line 4"])
    sm.to(name, "Completed")
    w.finished()
    assert w.lines == ["line 3", "line 4"] and job.logs().splitlines() == [f"line {i}" for i in (1, 2, 3, 4)]
    # The monitor may never have seen Uploading (it passed during the outage), but the timeline
    # shown at the end has it, as the user would check.
    final = w.snaps[-1].state
    assert (final.status, final.secondary_status) == ("Completed", "Completed")
    assert [t.status for t in final.transitions] == ["Starting", "Training", "Uploading", "Completed"]


class proxy_down:
    """Every request through the proxy is dropped without an answer while inside."""

    def __init__(self, proxy):
        self.proxy = proxy

    def __enter__(self):
        self.kinds, self.proxy.kinds, self.proxy.fault_rate = self.proxy.kinds, ("drop",), 1.0

    def __exit__(self, *exc):
        self.proxy.kinds, self.proxy.fault_rate = self.kinds, 0.0


# -- API calls -----------------------------------------------------------------------------------

def test_calls_stay_few_and_stop_once_the_job_is_over(sm, proxy):
    backend = SageMakerBackend()
    name = sm.create()
    started = time.monotonic()
    job = Job(name, backend)
    w = Watcher(job, widget=False)
    # Starting for at least 20 polls (no log streams exist yet), however slow this machine is.
    wait_until(lambda: proxy.counts["SageMaker.DescribeTrainingJob"] >= 20, 60, "20 polls while Starting")
    drive_lifecycle(sm, name, w, [[epoch_line(0)], [epoch_line(1)]])
    describes, listings = proxy.counts["SageMaker.DescribeTrainingJob"], proxy.counts["Logs_20140328.DescribeLogStreams"]
    elapsed = time.monotonic() - started
    # While no stream exists, streams are listed at most every third poll interval of time, not of
    # polls: a slow machine's polls come later than the interval, so they are fewer in the same
    # time and a listing may come every second poll. The budget is time: one listing per two poll
    # intervals, plus one each at the start, when training starts and after the end.
    assert describes >= 20 and listings <= elapsed / (2 * POLL) + 3, (describes, listings, round(elapsed / POLL))
    log_reads = proxy.counts["Logs_20140328.GetLogEvents"] + proxy.counts["Logs_20140328.FilterLogEvents"]
    assert log_reads <= describes + 4

    # Read again until the ended job's logs are drained (an empty read a poll after the end).
    wait_until(lambda: job.logs() is not None and job._cursor.drained, 10, "the ended job's logs drained")
    proxy.reset()
    for _ in range(3):
        assert job.status == "Completed" and len(job.logs().splitlines()) == 2
        assert backend.describe(name).done and backend.logs(name, job._cursor)[0] == []
    assert sum(proxy.counts.values()) == 0, dict(proxy.counts)


def test_one_list_call_serves_many_watched_jobs(sm, proxy):
    backend = SageMakerBackend()
    names = [sm.create() for _ in range(3)]
    watchers = [Watcher(Job(n, backend), widget=False) for n in names]
    for w in watchers:
        w.wait_for(lambda w: w.saw("Starting"))
    for phase in ("Downloading", "Training", "Uploading", "Completed"):
        # At least 6 polls in each phase, however slow this machine is.
        target = proxy.counts["SageMaker.ListTrainingJobs"] + 6
        wait_until(lambda t=target: proxy.counts["SageMaker.ListTrainingJobs"] >= t, 60, f"6 polls before {phase}")
        for n in names:
            sm.to(n, phase)
        for w in watchers:
            w.wait_for(lambda w, p=phase: w.saw(p))
    for w in watchers:
        w.finished()
        assert w.secondaries() == LIFECYCLE
    lists = proxy.counts["SageMaker.ListTrainingJobs"]
    describes = proxy.counts["SageMaker.DescribeTrainingJob"]
    assert lists >= 20, dict(proxy.counts)
    # Without the list each poll of each job is a describe: 3 per list call.
    assert describes < 1.5 * lists, dict(proxy.counts)


def test_get_backend_shares_one_sagemaker_backend_per_settings(sm):
    a = get_backend("sagemaker", region="us-east-1", profile=None)
    assert get_backend("sagemaker", region="us-east-1", profile=None) is a
    assert isinstance(a, SageMakerBackend) and a.poll_interval == POLL
    assert get_backend("sagemaker", region="eu-west-1", profile=None) is not a


# -- end to end ----------------------------------------------------------------------------------

E2E_SCRIPT = """\
import argparse
p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=1)
args = p.parse_args()
for epoch in range(args.epochs):
    print(f"epoch {epoch}: {{'accuracy': 0.5, 'f1': 0.6}}")
"""


def test_launch_on_sagemaker_then_watch_and_attach(sm):
    import sm_magic
    from sm_magic.plan.planner import dry_run

    from helpers.aws_moto import ROLE_NAME

    options = dict(backend="sagemaker", iam_role_name=ROLE_NAME, instance_type="ml.p3.2xlarge")
    text = dry_run(E2E_SCRIPT, args=["--epochs", "2"], name="smm-e2e-dry", **options)
    assert "Dry run: nothing started. Job smm-e2e-dry on the sagemaker backend." in text and '"TrainingJobName": "smm-e2e-dry"' in text

    name = f"smm-e2e-{uuid.uuid4().hex[:8]}"
    job = sm_magic.launch(E2E_SCRIPT, args=["--epochs", "2"], name=name, **options)
    sm.aws.start_lifecycle(name)  # moto's jobs are born Completed
    assert job.name == name and job.backend == "sagemaker"
    assert isinstance(job._backend, SageMakerBackend) and job._backend.poll_interval == POLL
    w = Watcher(job)
    drive_lifecycle(sm, name, w, [[epoch_line(0)], [epoch_line(1)]])
    assert w.secondaries() == LIFECYCLE
    assert list(job.metrics.index) == [0, 1]
    assert job.model_data.endswith(f"/{name}/output/model.tar.gz") and job.model_data.startswith("s3://")
    assert job.hyperparameters == {"epochs": "2"}
    assert "model.tar.gz" in w.widget.overview.value

    again = sm_magic.attach(name)  # through the registry, the same backend settings
    assert again._backend is job._backend
    assert again.status == "Completed" and again.logs().splitlines() == [epoch_line(0), epoch_line(1)]


def test_a_warm_pool_is_requested_and_its_status_reaches_the_job(sm, capsys, moto_warm_pools):
    """--keep-alive on SageMaker: the launch says what it asked for, the request carries
    KeepAlivePeriodInSeconds, the registry records it, and the job's state follows
    DescribeTrainingJob's WarmPoolStatus (moto has no warm pools: the test plays the service)."""
    import sm_magic
    from sm_magic.backends.sagemaker.warm_pool import status_line
    from sm_magic.jobs.registry import Registry

    from helpers.aws_moto import ROLE_NAME

    name = f"smm-warm-{uuid.uuid4().hex[:8]}"
    job = sm_magic.launch(E2E_SCRIPT, name=name, backend="sagemaker", iam_role_name=ROLE_NAME,
                          instance_type="ml.g5.xlarge", keep_alive=10)
    assert "sm_magic: warm pool: the instances stay 10 min after the job" in capsys.readouterr().out
    moto_job = sm.aws.training_job(name)
    assert moto_job.resource_config["KeepAlivePeriodInSeconds"] == 600
    assert Registry().get(name).extra["keep_alive_seconds"] == 600
    sm.aws.start_lifecycle(name)
    sm.to(name, "Training")
    moto_job.warm_pool_status = {"Status": "InUse"}
    state = job._backend.describe(name)
    assert state.extra["warm_pool"] == {"keep_alive_seconds": 600, "status": "InUse", "reused_by": None,
                                        "retained_billable_seconds": None, "started_on_pool_of": None}
    assert status_line(state.extra["warm_pool"]) == ("warm pool (10 min keep-alive): in use by this job; "
                                                     "started on newly provisioned instances")
    from sm_magic.widgets.progress import header_html  # the widget's header says it too

    assert "warm pool (10 min keep-alive): in use by this job" in header_html(job.snapshot())
    # The next matching job took the instances over before this one was seen ending.
    moto_job.warm_pool_status = {"Status": "Reused", "ReusedByJob": "smm-next", "ResourceRetainedBillableTimeInSeconds": 42}
    sm.to(name, "Completed")
    job.wait(timeout=60)
    assert status_line(job.describe().extra["warm_pool"]) == (
        "warm pool (10 min keep-alive): reused by job smm-next; started on newly provisioned instances; "
        "42 s billed while kept")


@pytest.fixture
def moto_warm_pools(monkeypatch):
    """ListTrainingJobs with WarmPoolStatusEquals, as the service answers it (moto 5.2 ignores the
    filter and has no WarmPoolStatus): the jobs whose `warm_pool_status` (set by the test on moto's
    job) has that status, newest first, each summary with it."""
    import json

    from moto.core.responses import ActionResult
    from moto.sagemaker.responses import SageMakerResponse

    listed = SageMakerResponse.list_training_jobs  # tests/helpers/aws_moto.py's answer to the rest

    def list_training_jobs(self):
        wanted = json.loads(self.body or "{}").get("WarmPoolStatusEquals")
        if wanted is None:
            return listed(self)
        jobs = [j for j in self.sagemaker_backend.training_jobs.values()
                if (getattr(j, "warm_pool_status", None) or {}).get("Status") == wanted]
        jobs.sort(key=lambda j: j.creation_time.timestamp(), reverse=True)
        return ActionResult({"TrainingJobSummaries": [
            {"TrainingJobName": j.training_job_name, "TrainingJobArn": j.arn, "CreationTime": j.creation_time,
             "TrainingJobStatus": j.training_job_status, "WarmPoolStatus": j.warm_pool_status} for j in jobs]})

    monkeypatch.setattr(SageMakerResponse, "list_training_jobs", list_training_jobs)


def test_a_job_on_a_reused_warm_pool_says_whose_it_was(sm, moto_warm_pools):
    """The second of two matching jobs takes the first one's warm pool: the API says so on the
    first (Reused, ReusedByJob); the second job's state names the first once it is past Starting,
    and a job that found no pool says it started on new instances."""
    import sm_magic
    from sm_magic.backends.sagemaker.warm_pool import status_line

    from helpers.aws_moto import ROLE_NAME

    options = dict(backend="sagemaker", iam_role_name=ROLE_NAME, instance_type="ml.g5.xlarge", keep_alive=10)
    first, second = (f"smm-pool-{uuid.uuid4().hex[:8]}" for _ in range(2))
    sm_magic.launch(E2E_SCRIPT, name=first, **options)
    sm.aws.start_lifecycle(first)
    sm.to(first, "Training")
    backend = get_backend("sagemaker", region="us-east-1")
    assert backend.describe(first).extra["warm_pool"]["started_on_pool_of"] is None
    sm.to(first, "Completed")
    sm.aws.training_job(first).warm_pool_status = {"Status": "Available"}

    job = sm_magic.launch(E2E_SCRIPT, name=second, **options)
    sm.aws.start_lifecycle(second)
    assert "started_on_pool_of" not in job.describe().extra["warm_pool"]  # Starting: not asked yet
    sm.aws.training_job(first).warm_pool_status = {"Status": "Reused", "ReusedByJob": second}
    sm.aws.training_job(second).warm_pool_status = {"Status": "InUse"}
    sm.to(second, "Training")
    wait_until(lambda: job.describe().secondary_status == "Training", 20, "the second job training")
    warm = job.describe().extra["warm_pool"]
    assert warm["started_on_pool_of"] == first
    assert status_line(warm) == (f"warm pool (10 min keep-alive): in use by this job; "
                                 f"started on the warm pool of job {first}")


def test_a_job_without_a_warm_pool_has_no_warm_pool_facts(sm):
    name = sm.create()
    assert "warm_pool" not in get_backend("sagemaker", region="us-east-1").describe(name).extra
