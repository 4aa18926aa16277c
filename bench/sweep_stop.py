"""How fast a sweep stopped from another process stops launching (issue 23, finding 2).

    .venv/bin/python bench/sweep_stop.py [--runs 4] [--points 30] [--seed 23]

Each run starts a launcher process, as a notebook kernel would: `sm_magic.sweep(...)` of a short
local job (about 2 s), --points points, max_parallel=1, then `sweep.wait()`. Once its K-th job is
registered (K = 2, 3, ... by run) plus a random part of a job's length, so that the stop lands
during a job or between two launches, the stop is given from another process, alternately:

- shell: `sm-magic stop NAME` run as a subprocess (its start-up included);
- kernel: a Python process already running (sm_magic imported) that calls
  `%sagemaker_stop NAME`'s code when told to, as another notebook kernel does.

Per run it prints how many jobs were launched after the stop was recorded (must be 0; a point
whose launch was already under way when the stop came is shown apart as "in flight": its
launcher stops it as soon as it has started), and in ms from the moment the stop was given:
until it is in the sweep's record (from then on no point can be claimed, so none launches),
until the stopping command returned, and until the launcher had cancelled its queue.
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

JOB = textwrap.dedent("""
    import argparse, time
    p = argparse.ArgumentParser(); p.add_argument("--lr")
    p.parse_args()
    print("epoch 0: {'loss': 1.0}", flush=True)
    time.sleep(1)
""")

LAUNCHER = textwrap.dedent("""
    import json, sys
    import sm_magic

    name, points, job = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    sweep = sm_magic.sweep(job, grid={"lr": [str(i) for i in range(points)]}, name=name, max_parallel=1,
                           backend="local")
    sweep.wait()
    print(json.dumps(sweep.counts()), flush=True)
""")

KERNEL = textwrap.dedent("""
    import sys
    from sm_magic.sweeps.sweep import stop_named  # what `%sagemaker_stop NAME` runs

    name = sys.stdin.readline().strip()
    print(stop_named(name), flush=True)
""")


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


def one_run(run: int, way: str, points: int, rng: random.Random) -> dict:
    from sm_magic.jobs.registry import Registry
    from sm_magic.sweeps import record as sweep_record

    name = f"bench-stop-{run}"
    registry = Registry()
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, name, str(points), JOB], stdout=subprocess.PIPE,
                                text=True)
    kernel = None
    if way == "kernel":
        kernel = subprocess.Popen([sys.executable, "-c", KERNEL], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
    k = 2 + run % 3

    def jobs():
        return [r for r in registry.list() if r.name.startswith(f"{name}-")]

    wait_for(lambda: len(jobs()) >= k, 120, f"job {k} of {name}")
    time.sleep(rng.uniform(0, 3.0))  # somewhere in the K-th job, or just after it (between two launches)
    before = {r.name for r in jobs()}
    given = time.time()
    if way == "shell":
        stop = subprocess.run([str(Path(sys.executable).parent / "sm-magic"), "stop", name], capture_output=True,
                              text=True)
        returned = time.time()
        if stop.returncode:
            raise SystemExit(f"sm-magic stop: {stop.stderr}")
        said = stop.stdout.strip()
    else:
        assert kernel is not None
        kernel.stdin.write(name + "\n")
        kernel.stdin.flush()
        said = kernel.stdout.readline().strip()
        returned = time.time()
        kernel.wait(60)
    counts = json.loads(launcher.communicate(timeout=120)[0].strip().splitlines()[-1])
    row = sweep_record.read(registry, name)
    assert row is not None and row.stopped is not None and row.ended is not None
    late = [r for r in jobs() if r.created > row.stopped]
    in_flight = [r.name for r in late if r.name not in before and r.name in said]
    return {"way": way, "jobs": len(jobs()), "cancelled": counts.get("Cancelled", 0), "in_flight": len(in_flight),
            "after": len(late) - len(in_flight), "recorded": 1000 * (row.stopped - given),
            "returned": 1000 * (returned - given), "launcher": 1000 * (row.ended - given)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4, help="runs of each way (shell, kernel)")
    parser.add_argument("--points", type=int, default=30)
    parser.add_argument("--seed", type=int, default=23)
    opts = parser.parse_args()
    rng = random.Random(opts.seed)
    results = []
    with tempfile.TemporaryDirectory(prefix="sm_magic-bench-") as tmp:
        os.environ["SM_MAGIC_REGISTRY"] = str(Path(tmp) / "registry.sqlite3")
        os.environ["SM_MAGIC_JOBS_DIR"] = str(Path(tmp) / "sm_jobs")
        os.environ["HF_HOME"] = str(Path(tmp) / "hf")
        print(f"{'run':>3} {'way':6} {'jobs':>4} {'cancelled':>9} {'in flight':>9} {'after stop':>10} "
              f"{'recorded ms':>11} {'returned ms':>11} {'launcher ms':>11}")
        for run in range(2 * opts.runs):
            r = one_run(run, ("shell", "kernel")[run % 2], opts.points, rng)
            results.append(r)
            print(f"{run + 1:3d} {r['way']:6} {r['jobs']:4d} {r['cancelled']:9d} {r['in_flight']:9d} {r['after']:10d} "
                  f"{r['recorded']:11.0f} {r['returned']:11.0f} {r['launcher']:11.0f}", flush=True)
    print(f"\n{os.cpu_count()} CPUs, {opts.points}-point local sweeps, max_parallel 1")
    for way in ("shell", "kernel"):
        mine = [r for r in results if r["way"] == way]
        print(f"{way:6}: launched after the stop {sum(r['after'] for r in mine)}; median ms to recorded "
              f"{statistics.median(r['recorded'] for r in mine):.0f}, to returned "
              f"{statistics.median(r['returned'] for r in mine):.0f}, to the launcher's queue cancelled "
              f"{statistics.median(r['launcher'] for r in mine):.0f}")
    if any(r["after"] for r in results):
        raise SystemExit("a job was launched after the stop")


if __name__ == "__main__":
    sys.exit(main())
