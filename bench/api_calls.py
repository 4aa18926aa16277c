"""API calls made while watching SageMaker training jobs: sm_magic's Monitor against the SDK's
own `TrainingJob.wait(logs=True)`, counted at the server.

    .venv/bin/python bench/api_calls.py [--scale 10] [--jobs 1,20,100] [--sdk-max-jobs 20] [--tensorboard]

A moto server on 127.0.0.1 plays SageMaker and CloudWatch Logs; a counting proxy in front of it
(tests/helpers/faulty_proxy.py, no faults) counts every request by its X-Amz-Target. Each simulated job
lasts 10 minutes: Starting 1 min, Downloading 1 min, Training 7 min (a log line every 5 s and an
epoch metrics line every minute, on one host), Uploading 1 min, then Completed. A driver moves
the jobs through moto's state and writes their logs directly to moto (not counted).

Time is compressed by --scale: every duration above, both pollers' intervals (sm_magic's default
10 s, the SDK's default 5 s) and the driver's clock run `scale` times faster, so a 10-minute job
takes 600/scale seconds. Calls are reported per minute of job time, i.e. as they would be at the
default intervals in real time. Each case is watched one way, then the same jobs again the other
way (fresh jobs each time):

  1 job,  sm_magic: one Job watched by a Monitor (as under a %%sagemaker_train cell)
  1 job,  SDK:      TrainingJob.get(name).wait(logs=True)
  N jobs, sm_magic: N Jobs sharing one backend, one Monitor
  N jobs, SDK:      N threads, each TrainingJob.get(name).wait(logs=True)

for each N of --jobs. With --tensorboard, a third case: sm_magic watching jobs whose request
sets TensorBoardOutputConfig and whose script writes a TensorBoard scalar with every log line
(a real SummaryWriter; the driver uploads the whole event file to the job's
<output>/<job>/tensorboard-output/ each time it grows, as SageMaker's upload does), so each poll
finds the file grown: the S3 calls per poll are listed by operation.

Past --sdk-max-jobs the SDK case is skipped (its N threads, each polling every 5 s, are more
than a 2-core machine running moto keeps up with; the output says so).

"polls/min" checks the compression held: a poller that falls behind polls less than its interval
says (12/min for the SDK's 5 s, 6/min for sm_magic's 10 s).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from helpers.aws_moto import LOG_GROUP, MotoAWS, user_env  # noqa: E402
from helpers.faulty_proxy import FaultyProxy  # noqa: E402

JOB_SECONDS = 600
PHASES = [(0, "Starting"), (60, "Downloading"), (120, "Training"), (540, "Uploading"), (600, "Completed")]
LINE_EVERY = 5      # job seconds between progress lines while training
EPOCH_EVERY = 60    # job seconds between epoch metric lines
TENSORBOARD_CASE = "sm_magic + TensorBoard"
OUR_POLL = 10.0     # sm_magic's default poll interval (SageMakerBackend.poll_interval)
SDK_POLL = 5        # TrainingJob.wait's default
POLLS = [0]         # status polls made by the watcher of the case running
POLLS_LOCK = threading.Lock()
S3_OPS: Counter = Counter()  # the watcher's S3 calls by operation (--tensorboard)


def count_poll() -> None:
    with POLLS_LOCK:
        POLLS[0] += 1


class Service:
    """Creates jobs in moto and plays their lifecycle on a compressed clock."""

    def __init__(self, aws: MotoAWS, scale: float, tensorboard: bool = False):
        self.aws, self.scale, self.tensorboard = aws, scale, tensorboard
        self.sm = aws.client("sagemaker")
        self.logs = aws.client("logs")
        self.s3 = aws.client("s3")
        self.writers: dict = {}  # job -> (SummaryWriter, its directory), with --tensorboard
        self.last_ms = 0
        try:
            self.logs.create_log_group(logGroupName=LOG_GROUP)
        except self.logs.exceptions.ResourceAlreadyExistsException:
            pass

    def create(self, n: int) -> list[str]:
        names = []
        for _ in range(n):
            name = f"bench-{uuid.uuid4().hex[:10]}"
            extra = {"TensorBoardOutputConfig": {"S3OutputPath": f"s3://{self.aws.bucket}/output",
                                                 "LocalPath": "/opt/ml/output/tensorboard"}} if self.tensorboard else {}
            self.sm.create_training_job(**extra,
                TrainingJobName=name, RoleArn=self.aws.role_arn,
                AlgorithmSpecification={"TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/x:1",
                                        "TrainingInputMode": "File"},
                OutputDataConfig={"S3OutputPath": f"s3://{self.aws.bucket}/output"},
                ResourceConfig={"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
                StoppingCondition={"MaxRuntimeInSeconds": 3600}, HyperParameters={"epochs": "7"})
            self.aws.start_lifecycle(name)
            names.append(name)
        return names

    def play(self, names: list[str], stop: threading.Event) -> None:
        """Drive every job through PHASES and write their training logs, on the job clock."""
        t0 = time.monotonic()
        phase = 0
        logged = 0  # job seconds of training already logged
        created: set[str] = set()
        while not stop.is_set():
            now = (time.monotonic() - t0) * self.scale
            while phase + 1 < len(PHASES) and now >= PHASES[phase + 1][0]:
                phase += 1
                for name in names:
                    self.aws.drive(name, PHASES[phase][1])
            if PHASES[phase][1] == "Training":
                upto = int(now - 120)
                lines = []
                scalars = []
                for s in range(logged + 1, upto + 1):
                    if s % LINE_EVERY == 0:
                        lines.append(f"step {s // LINE_EVERY}: loss={1 / (1 + s):.4f}")
                        scalars.append((s // LINE_EVERY, 1 / (1 + s)))
                    if s % EPOCH_EVERY == 0:
                        e = s // EPOCH_EVERY - 1
                        lines.append(f"epoch {e}: {{'accuracy': {0.7 + e / 100:.2f}, 'f1': {0.8 + e / 100:.2f}}}")
                logged = max(logged, upto)
                if lines:
                    for name in names:
                        self.put(name, lines, name in created)
                        created.add(name)
                if scalars and self.tensorboard:
                    for name in names:
                        self.upload_scalars(name, scalars)
            if PHASES[phase][1] == "Completed":
                return
            stop.wait(0.2 / self.scale * 10)

    def upload_scalars(self, name: str, scalars: list[tuple[int, float]]) -> None:
        """Write the scalars with a real SummaryWriter and upload its whole event file again."""
        from torch.utils.tensorboard import SummaryWriter

        if name not in self.writers:
            directory = Path(tempfile.mkdtemp(prefix="bench-tb-"))
            self.writers[name] = (SummaryWriter(directory, max_queue=10_000, flush_secs=3600), directory)
        writer, directory = self.writers[name]
        for step, loss in scalars:
            writer.add_scalar("train/loss", loss, step)
        writer.flush()
        (path,) = [p for p in directory.iterdir() if "tfevents" in p.name]
        self.s3.put_object(Bucket=self.aws.bucket, Key=f"output/{name}/tensorboard-output/{path.name}",
                           Body=path.read_bytes())

    def close(self) -> None:
        for writer, directory in self.writers.values():
            writer.close()
            shutil.rmtree(directory, ignore_errors=True)

    def put(self, name: str, lines: list[str], exists: bool) -> None:
        stream = f"{name}/algo-1-1700000000"
        if not exists:
            self.logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        events = []
        for line in lines:
            self.last_ms = max(int(time.time() * 1000), self.last_ms + 1)
            events.append({"timestamp": self.last_ms, "message": line})
        self.logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream, logEvents=events)


def watch_ours(names: list[str], scale: float) -> None:
    from sm_magic.backends.sagemaker.backend import SageMakerBackend
    from sm_magic.jobs.job import Job
    from sm_magic.jobs.monitor import Monitor

    backend = SageMakerBackend(poll_interval=OUR_POLL / scale)
    describe = backend.describe

    def s3_call(model, **_):  # S3 calls by operation (the proxy sees "GET /<bucket>" for both)
        with POLLS_LOCK:
            S3_OPS[f"S3.{model.name}"] += 1

    backend.client("s3").meta.events.register("before-call.s3", s3_call)

    def counted(name):  # a poll of one job = one describe() asked of the backend
        count_poll()
        return describe(name)

    backend.describe = counted
    monitor = Monitor(poll=0.01)
    done = threading.Event()
    ended: set[str] = set()

    def deliver(snap) -> None:
        if snap.state.done:
            ended.add(snap.state.name)
            if len(ended) == len(names):
                done.set()

    for name in names:
        monitor.watch(Job(name, backend), deliver, min_interval=0.5 / scale)
    done.wait(JOB_SECONDS / scale * 3)
    while monitor.watched():
        time.sleep(0.01)


def watch_sdk(names: list[str], scale: float) -> None:
    from sagemaker.core.resources import TrainingJob

    errors = []

    def one(name: str) -> None:
        try:
            TrainingJob.get(training_job_name=name).wait(poll=SDK_POLL, logs=True)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"{name}: {e!r}")

    refresh = TrainingJob.refresh

    def counted(self, *a, **k):  # a poll of one job = one refresh (DescribeTrainingJob)
        count_poll()
        return refresh(self, *a, **k)

    TrainingJob.refresh = counted
    threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in names]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(JOB_SECONDS / scale * 3)
    finally:
        TrainingJob.refresh = refresh
    if errors:
        raise SystemExit("SDK wait failed: " + "; ".join(errors[:3]))


@contextlib.contextmanager
def sdk_compressed(scale: float):
    """TrainingJob.wait on the compressed clock: its sleep(poll) runs `scale` times faster; no
    rich Live display (one per thread is refused, and it draws nothing here)."""
    import sagemaker.core.resources as resources

    real_time = resources.time

    class Clock:
        time = staticmethod(real_time.time)
        monotonic = staticmethod(real_time.monotonic)

        @staticmethod
        def sleep(seconds):
            real_time.sleep(seconds / scale)

    saved_live = resources.Live
    resources.time = Clock
    resources.Live = lambda *a, **k: contextlib.nullcontext()
    try:
        yield
    finally:
        resources.time, resources.Live = real_time, saved_live


def run_case(label: str, watcher, n: int, aws: MotoAWS, proxy: FaultyProxy, scale: float) -> dict:
    service = Service(aws, scale, tensorboard=label == TENSORBOARD_CASE)
    names = service.create(n)
    stop = threading.Event()
    driver = threading.Thread(target=service.play, args=(names, stop), daemon=True)
    proxy.reset()
    POLLS[0] = 0
    S3_OPS.clear()
    t0 = time.monotonic()
    driver.start()
    try:
        watcher(names, scale)
    finally:
        stop.set()
        driver.join()
        service.close()
    wall = time.monotonic() - t0
    counts = Counter(proxy.counts)
    total = sum(counts.values())
    minutes = JOB_SECONDS / 60
    row = {"case": label, "jobs": n, "calls": total, "per_min": total / minutes,
           "per_job_min": total / minutes / n, "polls_per_min": POLLS[0] / minutes / n,
           "wall": wall, "counts": counts}
    print(f"{label:<22} {n:>3} jobs  {total:>6} calls  {row['per_min']:8.1f} calls/min  "
          f"{row['per_job_min']:6.1f} per job/min   polls/min per job {row['polls_per_min']:5.1f}  "
          f"({wall:.0f} s wall)", flush=True)
    print("    " + ", ".join(f"{op.split('.')[-1]} {c}" for op, c in sorted(counts.items())), flush=True)
    polls = POLLS[0]
    if polls:
        row["per_poll"] = total / polls
        print(f"    {total / polls:.2f} calls per poll ({polls} polls)" + "".join(
            f", {op} {c / polls:.2f}/poll" for op, c in sorted(S3_OPS.items())), flush=True)
    nominal = 60 / (OUR_POLL if label.startswith("sm_magic") else SDK_POLL)
    if row["polls_per_min"] < 0.9 * nominal:
        print(f"    (behind: {row['polls_per_min']:.1f} of {nominal:.0f} polls/min per job; this machine cannot keep "
              f"up at scale {scale:g}, so these calls are undercounted: lower --scale)", flush=True)
    return row


def counts_arg(text: str) -> list[int]:
    try:
        counts = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected job counts such as 1,20,100") from None
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected job counts of at least 1")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=10.0, help="time compression (default 10)")
    parser.add_argument("--jobs", type=counts_arg, default=[1, 20],
                        help="job counts watched at once, one case each (default 1,20)")
    parser.add_argument("--sdk-max-jobs", type=int, default=20,
                        help="skip the SDK's case for more jobs than this (default 20)")
    parser.add_argument("--tensorboard", action="store_true",
                        help="also watch jobs that write TensorBoard scalars to S3 (calls per poll by operation)")
    opts = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("sagemaker").setLevel(logging.WARNING)

    aws = MotoAWS()
    proxy = FaultyProxy(aws.endpoint).start()
    os.environ.update(user_env(proxy.endpoint))
    os.environ.pop("AWS_PROFILE", None)
    aws.role_arn = aws.create_role()
    aws.bucket = aws.create_bucket()
    print(f"moto at {aws.endpoint}, counting proxy at {proxy.endpoint}; a 10-minute job runs "
          f"{JOB_SECONDS / opts.scale:.0f} s (scale {opts.scale:g}); sm_magic polls every {OUR_POLL:g} s, "
          f"the SDK every {SDK_POLL} s (job time)\n", flush=True)
    cases = (("sm_magic Monitor", watch_ours), ("SDK wait(logs=True)", watch_sdk))
    if opts.tensorboard:
        cases += ((TENSORBOARD_CASE, watch_ours),)
    rows = []
    skipped = []
    try:
        with sdk_compressed(opts.scale):
            for n in opts.jobs:
                for label, watcher in cases:
                    if watcher is watch_sdk and n > opts.sdk_max_jobs:
                        skipped.append(n)
                        print(f"{label:<22} {n:>3} jobs  skipped (--sdk-max-jobs {opts.sdk_max_jobs}: {n} SDK threads "
                              "are more than this machine keeps up with)", flush=True)
                        continue
                    rows.append(run_case(label, watcher, n, aws, proxy, opts.scale))
    finally:
        proxy.stop()
        aws.stop()
    report(rows, opts.jobs, skipped)


def report(rows: list[dict], counts: list[int], skipped: list[int]) -> None:
    by = {(r["case"], r["jobs"]): r for r in rows}
    base = counts[0]
    print(f"\nAPI calls per minute of job time (at the default poll intervals); growth vs {base} job(s):")
    print("| | " + " | ".join(f"{n} job{'s' if n > 1 else ''}" for n in counts) + " |")
    print("|---|" + "---|" * len(counts))
    cases = ["sm_magic Monitor", "SDK wait(logs=True)"]
    cases += [TENSORBOARD_CASE] if any(r["case"] == TENSORBOARD_CASE for r in rows) else []
    for case in cases:
        first = by.get((case, base))
        cells = []
        for n in counts:
            r = by.get((case, n))
            if r is None:
                cells.append("skipped")
            elif first is None or n == base:
                cells.append(f"{r['per_min']:.1f}")
            else:
                cells.append(f"{r['per_min']:.1f} ({r['per_min'] / first['per_min']:.1f}x)")
        print(f"| {case} | " + " | ".join(cells) + " |")
    print("\nWhere the calls go (calls per minute of job time, by operation):")
    ops = sorted({op for r in rows for op in r["counts"]})
    print("| case | jobs | " + " | ".join(op.split(".")[-1] for op in ops) + " |")
    print("|---|---|" + "---|" * len(ops))
    for r in rows:
        minutes = JOB_SECONDS / 60
        print(f"| {r['case']} | {r['jobs']} | " + " | ".join(f"{r['counts'].get(op, 0) / minutes:.1f}" for op in ops) + " |")
    ours = by.get(("sm_magic Monitor", base))
    sdk = by.get(("SDK wait(logs=True)", base))
    if ours and sdk:
        print(f"\n{base} job(s): sm_magic makes {ours['per_min'] / sdk['per_min']:.2f}x the SDK's calls (target < 1)")
    if ours:
        for n in counts[1:]:
            r = by.get(("sm_magic Monitor", n))
            target = {20: 2, 100: 4}.get(n)
            if r:
                print(f"{n} jobs: sm_magic makes {r['per_min'] / ours['per_min']:.1f}x the calls of {base} "
                      f"for {n / base:g}x the jobs" + (f" (target <= {target}x)" if target and base == 1 else ""))
    if skipped:
        print(f"SDK case skipped for {', '.join(map(str, skipped))} jobs (--sdk-max-jobs)")


if __name__ == "__main__":
    main()
