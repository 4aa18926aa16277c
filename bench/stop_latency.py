"""How long a local job takes to stop: from `job.stop()` to its last process gone.

    .venv/bin/python bench/stop_latency.py [--runs 3]

A two-host DATA_PARALLEL job (instance_count=2, one CPU rank per host, so torch's elastic agent
starts each rank in a session of its own), whose every rank starts a daemon in a session of its
own. Two kinds of script, each run --runs times:

- stubborn: the ranks and their daemons ignore SIGTERM, so only the SIGKILL after the runner's
  stop grace (STOP_GRACE_SECONDS, 10 s) ends them;
- cooperative: the ranks exit on SIGTERM (their daemons still ignore it and are killed).

Once both ranks run, the bench calls `job.stop()` and polls: a scan of /proc for the job's token
(every process of the job carries it) and the job's state. It prints, per run, the time to the
last process gone and to `Stopped` observed, and checks that no process of the job ran when
`Stopped` was first read.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = r'''
import json, os, signal, subprocess, sys, time
if {stubborn}:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
daemon = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                           "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"],
                          start_new_session=True)
path = os.path.join(os.environ["SM_CHECKPOINT_DIR"], "rank-" + os.environ["RANK"])
open(path, "w").write(str(os.getpid()))
time.sleep(600)
'''


def one_run(stubborn: bool) -> tuple[float, float]:
    import sm_magic
    from sm_magic.backends.local.backend import LocalBackend
    from sm_magic.backends.local.procs import token_pids
    from sm_magic.backends.local.state import JobFiles, job_token, read_state

    job = sm_magic.launch(SCRIPT.format(stubborn=stubborn), instance_count=2, distributed_type="DATA_PARALLEL")
    files = JobFiles(Path(os.environ["SM_MAGIC_JOBS_DIR"]) / job.name)
    checkpoints = files.opt_ml("algo-1", ["algo-1"]) / "checkpoints"
    deadline = time.monotonic() + 180
    while len(list(checkpoints.glob("rank-*"))) < 2:
        if time.monotonic() > deadline:
            raise SystemExit(f"the ranks did not start; log:\n{job.logs()}")
        time.sleep(0.05)
    token = job_token(read_state(files.state))
    holders = len(token_pids(token))
    reader = LocalBackend(files.dir.parent)
    started = time.monotonic()
    job.stop()
    gone = None
    while True:
        done = reader.describe(job.name).done
        live = token_pids(token)
        now = time.monotonic()
        if not live and gone is None:
            gone = now
        if done:
            if live:
                raise SystemExit(f"Stopped was reported with processes {live} of the job still running")
            break
        time.sleep(0.02)
    status = reader.describe(job.name).status
    if status != "Stopped":
        raise SystemExit(f"the job ended {status}, not Stopped")
    print(f"  {'stubborn' if stubborn else 'cooperative':11s} {holders:2d} processes: last one gone after "
          f"{gone - started:6.2f} s, Stopped read after {now - started:6.2f} s", flush=True)
    return gone - started, now - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sm-stop-bench-") as tmp:
        os.environ.update(SM_MAGIC_JOBS_DIR=str(Path(tmp) / "sm_jobs"), SM_MAGIC_REGISTRY=str(Path(tmp) / "reg.db"),
                          HF_HOME=str(Path(tmp) / "hf"), SM_MAGIC_CPU_PROCESSES="1")
        results = {}
        try:
            for stubborn in (True, False):
                results[stubborn] = [one_run(stubborn) for _ in range(opts.runs)]
        finally:  # nothing of a failed run may outlive the bench
            from sm_magic.backends.local.procs import end_token_processes
            from sm_magic.backends.local.state import job_token, read_state

            for state in (Path(tmp) / "sm_jobs").glob("*/state.json"):
                token = job_token(read_state(state))
                if token:
                    end_token_processes(token, timeout=10)
    print("median stop latency (stop() -> last process of the job gone; -> Stopped read):")
    for stubborn, runs in results.items():
        print(f"  {'stubborn (SIGTERM ignored)' if stubborn else 'cooperative (exits on SIGTERM)':32s} "
              f"{statistics.median(r[0] for r in runs):6.2f} s; {statistics.median(r[1] for r in runs):6.2f} s")
    print(json.dumps({("stubborn" if k else "cooperative"): v for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
