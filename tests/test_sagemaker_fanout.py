"""Many SageMaker jobs watched at once by one Monitor (against moto on 127.0.0.1, through the
counting, fault-injecting proxy of tests/test_sagemaker_backend.py): the statuses of all of them
come from one ListTrainingJobs per poll and their logs from one FilterLogEvents per poll, every
line of every job is delivered once and in order (a spot restart's second stream included, with
20% of the calls failing), and a job that ended costs no call any more. Time is compressed: the
backend polls every 50 ms instead of 10 s."""

from __future__ import annotations

import functools
import threading
import time

import pytest
import test_sagemaker_backend as single
from test_sagemaker_backend import LIFECYCLE, Service, epoch_line

from sm_magic.backends.sagemaker import cloudwatch_fanout
from sm_magic.backends.sagemaker.backend import SageMakerBackend
from sm_magic.jobs.job import Job
from sm_magic.jobs.monitor import Monitor

from helpers.jobscripts import wait_until

pytestmark = pytest.mark.jobs

sm, proxy = single.sm, single.proxy  # the same fixtures: moto with a 50 ms poll, the counting proxy

JOBS = 12
SPOT_LIFECYCLE = ["Starting", "Downloading", "Training", "Interrupted", "Restarting", "Training", "Uploading",
                  "Completed"]
RESTARTED_STREAM = 1700000600  # the new instance's stream: `<job>/algo-1-1700000600`


class Room:
    """One Monitor following many jobs, and what each job's snapshots delivered."""

    def __init__(self, jobs: list[Job]):
        self.jobs = {j.name: j for j in jobs}
        self.lines: dict[str, list[str]] = {j.name: [] for j in jobs}
        self.snaps: dict[str, list] = {j.name: [] for j in jobs}
        self.cond = threading.Condition()
        self.monitor = Monitor(poll=0.01)
        for job in jobs:
            self.monitor.watch(job, functools.partial(self._deliver, job.name), min_interval=0)

    def _deliver(self, name: str, snap) -> None:
        with self.cond:
            self.snaps[name].append(snap)
            self.lines[name].extend(snap.new_lines)
            self.cond.notify_all()

    def wait_for(self, what, timeout: float = 60.0, why: str = "") -> None:
        with self.cond:
            ok = self.cond.wait_for(what, timeout)
        assert ok, f"timed out waiting for {why}: {[(n, len(v)) for n, v in self.lines.items()]}"

    def last(self, name: str):
        return self.snaps[name][-1].state if self.snaps[name] else None

    def all_show(self, names, secondary: str) -> None:
        self.wait_for(lambda: all((s := self.last(n)) is not None and s.secondary_status == secondary for n in names),
                      why=f"every job {secondary}")

    def have(self, counts: dict[str, int]) -> None:
        self.wait_for(lambda: all(len(self.lines[n]) >= c for n, c in counts.items()), why=f"lines {counts}")

    def finished(self) -> None:
        self.wait_for(lambda: all(s and s[-1].state.done for s in self.snaps.values()) and not self.monitor.watched(),
                      why="every job ended")


def start_jobs(svc: Service, backend: SageMakerBackend, n: int = JOBS, **kw) -> tuple[list[str], Room]:
    names = [svc.create(**kw) for _ in range(n)]
    room = Room([Job(name, backend) for name in names])
    room.all_show(names, "Starting")
    for phase in ("Downloading", "Training"):
        for name in names:
            svc.to(name, phase)
        room.all_show(names, phase)
    return names, room


def log_batches(svc: Service, room: Room, names: list[str], batches: range, expected: dict[str, list[str]],
                started: dict[str, int] | None = None) -> None:
    """Each job logs a batch (40 lines and an epoch line), and every line is awaited."""
    for b in batches:
        for i, name in enumerate(names):
            batch = [f"job {i} batch {b} line {k:02d}" for k in range(40)] + [epoch_line(b)]
            svc.put(name, batch, started=(started or {}).get(name, 1700000000))
            expected[name] += batch
        room.have({n: len(expected[n]) for n in names})


def drained(room: Room, names) -> bool:
    """Every one of `names` ended and its logs were read to the end (a read finds nothing new)."""
    for name in names:
        job = room.jobs[name]
        job.logs()
        if not (job._cursor is not None and job._cursor.drained):
            return False
    return True


# -- nothing lost, nothing repeated ------------------------------------------------------------

def test_every_line_of_many_jobs_comes_once_in_order_through_a_spot_restart_under_20_percent_faults(sm, proxy):
    proxy.fault_rate = 0.2
    backend = SageMakerBackend()
    names, room = start_jobs(sm, backend)
    spot = names[0]
    expected: dict[str, list[str]] = {n: [] for n in names}
    log_batches(sm, room, names, range(3), expected)

    # The spot job is interrupted; its new instance logs to a new stream, which is found and read
    # from its start, after the old one's lines. The others keep logging meanwhile.
    sm.aws.drive(spot, "Interrupted", "Training job interrupted: spot capacity reclaimed")
    room.all_show([spot], "Interrupted")
    sm.aws.drive(spot, "Restarting", "Restarting the training job")
    room.all_show([spot], "Restarting")
    sm.aws.drive(spot, "Training", "Training resumed")
    room.all_show([spot], "Training")
    log_batches(sm, room, names, range(3, 6), expected, started={spot: RESTARTED_STREAM})

    for phase in ("Uploading", "Completed"):
        for name in names:
            sm.to(name, phase)
        if phase == "Uploading":
            room.all_show(names, phase)
    room.finished()

    for name in names:
        assert room.lines[name] == expected[name], name           # each line once, in order
        assert room.jobs[name].logs().splitlines() == expected[name]
        assert len(room.jobs[name].metrics) == 6
        final = room.last(name)
        assert (final.status, final.secondary_status) == ("Completed", "Completed")
        assert [t.status for t in final.transitions] == (SPOT_LIFECYCLE if name == spot else LIFECYCLE), name
        assert all(t.message for t in final.transitions)  # the end's describe brings the real timeline
    restarted = [line for line in expected[spot] if "batch 3 " in line]
    assert room.lines[spot].index(restarted[0]) == 3 * 41  # the new stream's lines follow the old one's
    faults, requests = sum(proxy.faults.values()), sum(proxy.counts.values())
    print(f"{requests} requests, faults: {dict(proxy.faults)}, calls: {dict(proxy.counts)}")
    assert 0.1 <= faults / requests <= 0.3 and all(proxy.faults[k] for k in ("throttle", "500", "drop", "drop-after"))


def test_a_second_handle_and_a_late_attach_read_the_whole_log_from_the_start(sm, proxy):
    backend = SageMakerBackend()
    names, room = start_jobs(sm, backend, n=3, instance_count=2)
    expected: dict[str, list[str]] = {n: [] for n in names}
    for name in names:
        sm.put(name, ["rank 0 up", epoch_line(0)], host="algo-1")
        sm.put(name, ["rank 1 up"], host="algo-2")
        expected[name] = ["algo-1 | rank 0 up", f"algo-1 | {epoch_line(0)}", "algo-2 | rank 1 up"]
    room.have({n: 3 for n in names})
    # Another handle on a running job: its own reads, from the start, while the rounds go on.
    other = Job(names[1], backend)
    assert sorted(other.logs().splitlines()) == sorted(expected[names[1]])
    for name in names:
        sm.put(name, [epoch_line(1)], host="algo-1")
        expected[name].append(f"algo-1 | {epoch_line(1)}")
        sm.to(name, "Completed")
    room.finished()
    for name in names:
        assert sorted(room.lines[name]) == sorted(expected[name])
        assert [line for line in room.lines[name] if line.startswith("algo-1")] == \
            [line for line in expected[name] if line.startswith("algo-1")]
    assert sorted(other.logs().splitlines()) == sorted(expected[names[1]])  # and it goes on from where it was
    # A new backend (another kernel) attaching to an ended job reads it all.
    late = Job(names[2], SageMakerBackend())
    assert late.status == "Completed" and sorted(late.logs().splitlines()) == sorted(expected[names[2]])


# -- the calls ----------------------------------------------------------------------------------

def test_calls_per_poll_do_not_grow_with_the_job_count_and_an_ended_job_costs_nothing(sm, proxy, monkeypatch):
    # Chunks of 5 streams per FilterLogEvents instead of 100, so that 12 jobs need 3 calls a round.
    monkeypatch.setattr(cloudwatch_fanout, "STREAMS_PER_CALL", 5)
    rounds: list[tuple[int, int]] = []  # (streams read, FilterLogEvents calls) of each shared read
    run_round = cloudwatch_fanout.LogFanout._run_round

    def counted_round(fanout, now):
        before = proxy.counts["Logs_20140328.FilterLogEvents"]
        run_round(fanout, now)
        rounds.append((len(fanout.round.start), proxy.counts["Logs_20140328.FilterLogEvents"] - before))
    monkeypatch.setattr(cloudwatch_fanout.LogFanout, "_run_round", counted_round)
    started = time.monotonic()
    backend = SageMakerBackend()
    names, room = start_jobs(sm, backend)
    expected: dict[str, list[str]] = {n: [] for n in names}
    log_batches(sm, room, names, range(4), expected)
    # At least 10 more polls while training, however slow this machine is.
    target = proxy.counts["SageMaker.ListTrainingJobs"] + 10
    wait_until(lambda: proxy.counts["SageMaker.ListTrainingJobs"] >= target, 60, "10 polls while training")

    # Half of the jobs end; once their logs are drained nothing names them any more.
    ended, running = names[:6], names[6:]
    for name in ended:
        sm.to(name, "Uploading")
        sm.to(name, "Completed")
    wait_until(lambda: drained(room, ended), 30, "the ended jobs' logs drained")
    sent: list[tuple[str, dict]] = []
    call = backend._call

    def recording(key, service, operation, fail_fast=True, **params):
        sent.append((operation, params))
        return call(key, service, operation, fail_fast, **params)

    monkeypatch.setattr(backend, "_call", recording)
    log_batches(sm, room, running, range(4, 6), expected)
    target = proxy.counts["SageMaker.ListTrainingJobs"] + 6
    wait_until(lambda: proxy.counts["SageMaker.ListTrainingJobs"] >= target, 60, "6 polls")
    named = [(op, p) for op, p in sent
             if p.get("TrainingJobName") in ended or any(s.split("/")[0] in ended for s in p.get("logStreamNames", []))]
    assert sent and not named, named
    assert sum(1 for op, p in sent if op == "filter_log_events") <= 2 * sum(1 for op, _ in sent if op == "list_training_jobs") + 2
    monkeypatch.setattr(backend, "_call", call)

    for name in running:
        sm.to(name, "Uploading")
        sm.to(name, "Completed")
    room.finished()
    for name in names:
        assert room.lines[name] == expected[name]
    c = proxy.counts
    lists, describes = c["SageMaker.ListTrainingJobs"], c["SageMaker.DescribeTrainingJob"]
    filters, listings = c["Logs_20140328.FilterLogEvents"], c["Logs_20140328.DescribeLogStreams"]
    print(dict(c))
    assert lists >= 20, dict(c)
    # About two describes per job (the first look, and the end's details), whatever the polls.
    assert describes <= 2 * JOBS + 4, dict(c)
    # Each shared read is ceil(streams / 5) calls: 3 while all 12 jobs log, 2 with 6; and there
    # is one a poll interval at most (and one at once when a job is seen ending), however many
    # jobs and however slow this machine is.
    assert rounds and all(calls == -(-streams // 5) for streams, calls in rounds), rounds
    interval = backend._fanout(backend._key()).interval
    assert len(rounds) <= (time.monotonic() - started) / interval + JOBS + 5, (len(rounds), dict(c))
    assert filters == sum(calls for _, calls in rounds), dict(c)
    assert c["Logs_20140328.GetLogEvents"] == 0
    # Streams looked for when training starts and until each job has one (and the spot job a new
    # one): one group-wide listing (of 1-2 pages) every third poll at most, whatever the job count.
    assert listings <= 2 * (lists / 3) + 4, dict(c)

    wait_until(lambda: drained(room, names), 30, "every job's logs drained")
    proxy.reset()
    for name in names:
        job = room.jobs[name]
        assert job.status == "Completed" and job.logs().splitlines() == expected[name]
        assert backend.describe(name).done and backend.logs(name, job._cursor)[0] == []
    assert sum(proxy.counts.values()) == 0, dict(proxy.counts)


@pytest.mark.parametrize("jobs", [1, 6])
def test_a_job_watched_alone_is_described_every_poll_and_many_are_not(sm, proxy, jobs):
    backend = SageMakerBackend()
    names, room = start_jobs(sm, backend, n=jobs)
    target = proxy.counts["SageMaker.DescribeTrainingJob"] + 10 if jobs == 1 else \
        proxy.counts["SageMaker.ListTrainingJobs"] + 10
    op = "SageMaker.DescribeTrainingJob" if jobs == 1 else "SageMaker.ListTrainingJobs"
    wait_until(lambda: proxy.counts[op] >= target, 60, "10 polls")
    for name in names:
        sm.to(name, "Completed")
    room.finished()
    c = proxy.counts
    if jobs == 1:  # today's per-job describe: the timeline's messages as they come
        assert c["SageMaker.ListTrainingJobs"] == 0 and c["SageMaker.DescribeTrainingJob"] >= 10
    else:
        assert c["SageMaker.DescribeTrainingJob"] <= 2 * jobs + 2, dict(c)
    for name in names:
        assert [t.status for t in room.last(name).transitions] == ["Starting", "Downloading", "Training", "Completed"]
