"""Several local jobs at once, and several readers of one job at once: real processes, real files."""

import concurrent.futures
import json
import tarfile
import threading
import time
from collections import defaultdict

import pytest

import sm_magic
from sm_magic.backends.local.backend import LocalBackend
from sm_magic.jobs.monitor import Monitor
from sm_magic.jobs.registry import Registry

from helpers.jobscripts import script, wait_until

# Every line a job prints names the job (<tag>), so a line in the wrong log or the wrong
# subscriber's snapshot is seen. Each epoch's metrics carry the job's own lr. The model file is
# rewritten every epoch, so a stopped job has one too.
TAGGED_SCRIPT = script("""
    import argparse, json, os, time
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--pause", type=float, default=0.4)
    args = parser.parse_args()
    for epoch in range(args.epochs):
        for i in range(20):
            print(f"<{args.tag}> line {i} of round {epoch}", flush=True)
        print(f"epoch {epoch}: {{'loss': {args.lr * (epoch + 1)}, 'lr': {args.lr}}}", flush=True)
        with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.json"), "w") as f:
            json.dump({"lr": args.lr, "tag": args.tag, "epochs_done": epoch + 1}, f)
        time.sleep(args.pause)
""")

SECONDARY_ORDER = {"Starting": 0, "Downloading": 1, "Training": 2, "Stopping": 3, "Uploading": 4,
                   "Completed": 5, "Failed": 5, "Stopped": 5}
STATUS_ORDER = {"InProgress": 0, "Stopping": 1, "Completed": 2, "Failed": 2, "Stopped": 2}


def _moves_forward(seq: list[tuple]) -> bool:
    return all(a <= b for a, b in zip(seq, seq[1:]))


@pytest.mark.jobs
def test_five_jobs_at_once_under_one_monitor_stay_apart(sm_env):
    lrs = {f"conc-{i}": lr for i, lr in enumerate([0.01, 0.02, 0.03, 0.04, 0.05])}
    victim = "conc-2"

    def launch(name):
        epochs = "40" if name == victim else "3"  # the victim runs long enough to be stopped mid-run
        return sm_magic.launch(TAGGED_SCRIPT, name=name,
                               args=["--epochs", epochs, "--lr", str(lrs[name]), "--tag", name])

    # Five launches at the same moment, from a thread pool, as a sweep would launch them.
    with concurrent.futures.ThreadPoolExecutor(len(lrs)) as pool:
        jobs = dict(zip(lrs, pool.map(launch, lrs)))
    assert {name: job.name for name, job in jobs.items()} == {name: name for name in lrs}

    monitor = Monitor(poll=0.1)
    lock = threading.Lock()
    snaps: dict[str, list] = defaultdict(list)
    delivered: dict[str, list[str]] = defaultdict(list)

    def subscriber(name):
        def on_snapshot(snap):
            with lock:
                snaps[name].append(snap)
                delivered[name].extend(snap.new_lines)
        return on_snapshot

    for name, job in jobs.items():
        monitor.watch(job, subscriber(name), min_interval=0.2)
    assert sorted(j.name for j in monitor.watched()) == sorted(lrs)

    def victim_rows():
        with lock:
            return snaps[victim] and len(snaps[victim][-1].metrics) >= 2
    wait_until(victim_rows, 60, f"two epochs of {victim}")
    jobs[victim].stop()

    wait_until(lambda: not monitor.watched(), 90, "every watched job to end")

    for name, job in jobs.items():
        own = f"<{name}>"
        final = snaps[name][-1]
        assert final.state.done and final.state.name == name
        states = [(STATUS_ORDER[s.state.status], SECONDARY_ORDER[s.state.secondary_status], len(s.state.transitions))
                  for s in snaps[name]]
        assert _moves_forward(states), f"{name}: statuses went back: {states}"

        # Its own log, and nothing but: in the file, in job.logs(), and in what the monitor delivered.
        log_file = (sm_env / "sm_jobs" / name / "logs" / "algo-1.log").read_text().splitlines()
        assert job.logs().splitlines() == log_file
        assert delivered[name] == log_file, f"{name}: the monitor delivered other lines than its log"
        for line in log_file:
            others = [other for other in lrs if other != name and f"<{other}>" in line]
            assert not others, f"{name}'s log has a line of {others}: {line!r}"
            assert own in line or line.startswith("epoch "), f"{name}'s log has a stray line: {line!r}"
            if line.startswith("epoch "):
                assert f"'lr': {lrs[name]}}}" in line, f"{name}'s log has another job's epoch: {line!r}"

        metrics = job.metrics
        assert set(metrics["lr"]) == {lrs[name]}, f"{name}: {metrics}"
        with tarfile.open(job.model_data) as tar:
            model = json.load(tar.extractfile("model.json"))
        assert model["lr"] == lrs[name] and model["tag"] == name

        if name == victim:
            assert job.status == "Stopped" and job.secondary_status == "Stopped"
            assert [t.status for t in job.transitions][-3:] == ["Stopping", "Uploading", "Stopped"]
            assert 2 <= len(metrics) < 40 and list(metrics.index) == list(range(len(metrics)))
            assert model["epochs_done"] >= 2
        else:
            assert job.status == "Completed", f"{name}: {job.status} {job.failure_reason}"
            assert [t.status for t in job.transitions] == ["Starting", "Downloading", "Training", "Uploading",
                                                           "Completed"]
            assert list(metrics.index) == [0, 1, 2]
            assert list(metrics["loss"]) == [lrs[name] * e for e in (1, 2, 3)]
            assert model["epochs_done"] == 3
            assert sum(line.startswith("epoch ") for line in log_file) == 3

    records = {r.name: r for r in Registry().list()}
    assert sorted(records) == sorted(lrs)
    for name, record in records.items():
        assert record.status == ("Stopped" if name == victim else "Completed"), (name, record.status)
        assert record.hyperparameters["lr"] == str(lrs[name]) and record.hyperparameters["tag"] == name


@pytest.mark.jobs
def test_concurrent_readers_never_see_a_torn_state_or_a_status_going_back(sm_env):
    """While jobs move through their statuses (each move replaces state.json), threads read it
    in tight loops: as JSON, through `sm_magic.attach(name).status`, and through the registry."""
    names = [f"rd-{i}" for i in range(3)]
    jobs_dir = sm_env / "sm_jobs"
    stop = threading.Event()
    lock = threading.Lock()
    seen: dict[tuple[str, str], list[tuple]] = defaultdict(list)  # (reader, job) -> what it saw, in order
    errors: list[str] = []
    reads: dict[str, int] = defaultdict(int)

    def record(reader, name, status, secondary, transitions=0):
        with lock:
            seen[reader, name].append((STATUS_ORDER[status], SECONDARY_ORDER[secondary], transitions))
            reads[reader] += 1

    def guarded(reader, body):
        def loop():
            while not stop.is_set():
                try:
                    body(reader)
                except Exception as e:  # every failure is kept; the test fails on any
                    with lock:
                        errors.append(f"{reader}: {type(e).__name__}: {e}")
        return threading.Thread(target=loop, name=reader, daemon=True)

    def json_reader(reader):
        for path in sorted(jobs_dir.glob("*/state.json")):
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            record(reader, path.parent.name, data["status"], data["secondary_status"], len(data["transitions"]))

    def attach_reader(reader):  # a fresh handle each time, as another kernel's `%sagemaker_jobs` makes
        for name in names:
            job_dir = jobs_dir / name
            if (job_dir / "state.json").is_file() and Registry().get(name) is not None:
                job = sm_magic.attach(name)
                status = job.status     # the public read; it describes the job ...
                state = job.describe()  # ... and this is that same state (kept for half a second)
                record(reader, name, status, state.secondary_status, len(state.transitions))
            time.sleep(0.01)

    def registry_reader(reader):
        for r in Registry().list():
            record(reader, r.name, r.status, "Starting")  # the registry keeps no secondary status

    threads = ([guarded(f"json-{i}", json_reader) for i in range(3)]
               + [guarded("attach", attach_reader), guarded("registry", registry_reader)])
    for t in threads:
        t.start()
    try:
        quick = ["--epochs", "2", "--pause", "0.3"]
        # Staggered launches: the readers see jobs appear, start, train and end at different times.
        jobs = []
        for i, name in enumerate(names):
            jobs.append(sm_magic.launch(TAGGED_SCRIPT, name=name, args=[*quick, "--lr", f"0.{i + 1}", "--tag", name]))
            time.sleep(0.5)
        # Waiting reads the state files, not Job handles: the attach thread stays the only one that
        # writes statuses into the registry (each handle's refresh records what it read), so the
        # registry's order is the order that thread read them in. Two handles refreshing at once
        # can record a stale InProgress after Completed (jobs.lookup.job_handle's record_status has no ordering).
        wait_until(lambda: all(json.loads((jobs_dir / n / "state.json").read_text())["status"] == "Completed"
                                for n in names), 90, "every job to complete")
        # Let the readers see the final states too.
        wait_until(lambda: all(seen.get(("attach", n)) and seen["attach", n][-1][0] == STATUS_ORDER["Completed"]
                                and seen["registry", n][-1][0] == STATUS_ORDER["Completed"] for n in names),
                    30, "the readers to see every job Completed")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)

    assert not errors, f"{len(errors)} failed reads, e.g. {errors[:5]}"
    assert all(reads[t.name] >= 20 for t in threads), dict(reads)
    for (reader, name), states in seen.items():
        assert _moves_forward(states), f"{reader} saw {name} go back: {states}"
    for name in names:
        json_seen = {s for i in range(3) for s in seen[f"json-{i}", name]}
        assert (STATUS_ORDER["Completed"], SECONDARY_ORDER["Completed"], 5) in json_seen
    assert [j.status for j in jobs] == ["Completed"] * 3


def _in_threads(n: int, body) -> list[Exception]:
    """Run `body()` in `n` threads released together; every exception raised, collected."""
    barrier, errors = threading.Barrier(n), []

    def run():
        barrier.wait()
        try:
            body()
        except Exception as e:
            errors.append(e)
    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return errors


def test_launch_checks_from_several_threads_at_once_do_not_collide(sm_env):
    """What `sm_magic.launch` from a thread pool (a sweep) runs first, twice per launch."""
    backend = LocalBackend(sm_env / "sm_jobs")

    def check_many():
        for _ in range(100):
            backend.check_writable()
    errors = _in_threads(8, check_many)
    assert not errors, f"{len(errors)} refused, e.g. {errors[0]}"
    assert sorted(p.name for p in (sm_env / "sm_jobs").iterdir()) == []  # no probe left behind


@pytest.mark.jobs
def test_a_new_registry_opened_by_several_threads_at_once(sm_env):
    """First use from several threads or kernels at once (e.g. five launches at the same moment)."""
    for round_ in range(200):  # about one round in ten fails today; the first failure ends the test
        path = sm_env / f"registry-{round_}.sqlite3"
        errors = _in_threads(5, lambda: Registry(path).list())
        assert not errors, f"round {round_}: {len(errors)} of 5 openings failed, e.g. {errors[0]}"
