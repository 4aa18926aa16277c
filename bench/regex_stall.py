"""How long the kernel's main thread stalls while the metrics reader meets hostile input.

    .venv/bin/python bench/regex_stall.py [--before 20,22,24] [--lines 15000] [--job-lines 3000]

The main thread ticks (waits 1 ms, notes the time) while other threads work, and the longest
and mean gap between its ticks are printed, for:

* before: the stdlib `re` search that the metric definition `x=(a+)+$` used to run in the
  monitor thread, on one line of N "a"s and a "!" (a C call that holds the GIL throughout);
  and the old key=value regex on one 10,000-character "a/a/..." line;
* after, parser: a MetricsParser with `x=(a+)+$` (RE2 now) fed, on a background thread, lines
  of 26..40 "a"s and a "!", 4,000-deep JSON lines, and other hostile default-format lines;
* after, Python re: the same with `x=(?=a)(a+)+$` (lookahead: RE2 lacks it, so it runs in the
  worker process and is disabled after one line over 0.1 s);
* after, a real job: a local job printing those lines and epoch metrics, followed by the
  kernel's Monitor (as under a notebook cell) with both definitions, until its final snapshot.

For scale, the first line is the floor: the gaps a background thread running plain Python
causes (CPython hands the GIL over every switch interval, 5 ms).
"""

import argparse
import os
import re
import statistics
import sys
import tempfile
import threading
import time

PATHOLOGICAL = ["x=" + "a" * n + "!" for n in range(26, 41)]
DEEP_JSON = '{"epoch": 1, "x": ' + "[" * 4000 + "]" * 4000 + "}"
HOSTILE = [
    DEEP_JSON,
    "epoch 1: {'x': " + "(" * 3000 + ")" * 3000 + "}",
    "epoch 1: {'x': " + "1<" * 4900 + "1}",
    # The pair, bar and segment formats (log_formats.py): names of words, bars of bars, segments.
    "epoch 1 " + "ab cd " * 1600 + ": 1",
    "Epoch 1: 5%|" + "|" * 9900,
    "epoch 1 | " + "a 1 | " * 1600,
    "Epoch 2/3 " + "━" * 9900 + " 1/2",
    "a/" * 4990 + " epoch=1",
]

JOB = """
import json
lines = {lines}
pathological = ["x=" + "a" * n + "!" for n in range(26, 41)]
for i in range(lines):
    print(pathological[i % len(pathological)])
    if i % 100 == 0:
        print('{{"epoch": 1, "x": ' + "[" * 4000 + "]" * 4000 + "}}")
        print("epoch " + str(i // 100) + ": {{'accuracy': 0.5}}", flush=True)
"""


def tick_while(work) -> dict:
    """Run `work` on a background thread while the main thread ticks; gaps and work time."""
    done = threading.Event()
    thread = threading.Thread(target=lambda: (work(), done.set()), daemon=True)
    gaps = []
    started = last = time.perf_counter()
    thread.start()
    while not done.wait(0.001):
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    gaps.append(time.perf_counter() - last)
    thread.join()
    return {"longest": max(gaps), "mean": statistics.fmean(gaps), "ticks": len(gaps),
            "took": time.perf_counter() - started}


def show(label: str, r: dict, extra: str = "") -> None:
    print(f"{label:58s} longest gap {r['longest'] * 1e3:9.1f} ms  mean {r['mean'] * 1e3:5.2f} ms  "
          f"({r['ticks']} ticks, work {r['took']:.2f} s){extra}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="22,24,26",
                        help="numbers of 'a's for the stdlib re search (each one more doubles it; 26: 4-10 s)")
    parser.add_argument("--lines", type=int, default=15_000, help="pathological lines fed to the parser")
    parser.add_argument("--job-lines", type=int, default=3_000, help="pathological lines the real job prints")
    opts = parser.parse_args()

    # A private registry and jobs directory, as the tests' sm_env fixture sets them.
    home = tempfile.mkdtemp(prefix="regex_stall-")
    os.environ["SM_MAGIC_REGISTRY"] = os.path.join(home, "registry.sqlite3")
    os.environ["SM_MAGIC_JOBS_DIR"] = os.path.join(home, "sm_jobs")
    os.environ["HF_HOME"] = os.path.join(home, "hf")
    os.chdir(home)
    import sm_magic
    from sm_magic.jobs.monitor import get_monitor
    from sm_magic.metrics.parser import MetricsParser, parse_metric_flag

    print(f"Python {sys.version.split()[0]}, switch interval {sys.getswitchinterval() * 1e3:.0f} ms, "
          f"{os.cpu_count()} CPUs")
    def busy():
        deadline = time.perf_counter() + 0.5
        while time.perf_counter() < deadline:
            pass

    show("floor: any pure-Python thread busy for 0.5 s", tick_while(busy))
    print("before (the calls the old reader made, one line each):")
    catastrophic = re.compile(r"x=(a+)+$")
    for n in [int(n) for n in opts.before.split(",") if n]:
        show(f"  stdlib re  x=(a+)+$  on {n} 'a's + '!'", tick_while(lambda: catastrophic.search("x=" + "a" * n + "!")))
    old_kv = re.compile(r"(?<![\w.\-])([A-Za-z_][\w.\-/]*)=([^\s,;=]+)")
    show("  old key=value regex on 'a/' * 4990 + ' epoch=1'", tick_while(lambda: old_kv.findall(HOSTILE[-1])))

    print("after:")
    lines = [PATHOLOGICAL[i % len(PATHOLOGICAL)] for i in range(opts.lines)]
    batch = lines + HOSTILE * 25 + ["epoch 2: {'accuracy': 0.5}"]
    for flag, label in (("x=x=(a+)+$", "RE2"), ("x=x=(?=a)(a+)+$", "Python re in the worker")):
        p = MetricsParser([parse_metric_flag(flag)])
        r = tick_while(lambda: p.feed(batch))
        show(f"  parser, {label}: {len(batch)} lines", r,
             f", {len(batch) / r['took']:,.0f} lines/s, rows {p.rows}, warnings {len(p.warnings)}")

    job = sm_magic.launch(JOB.format(lines=opts.job_lines), name="regex-stall", backend="local",
                          metrics=["x=x=(a+)+$", "y=x=(?=a)(a+)+$"])
    final = threading.Event()
    snaps = []

    def on_snapshot(snap):
        snaps.append(snap)
        if snap.state.done:
            final.set()

    def follow():
        get_monitor().watch(job, on_snapshot)
        final.wait(600)

    r = tick_while(follow)
    notes = [line for line in job.logs().splitlines() if line.startswith("[sm_magic]")]
    show(f"  monitor following a local job ({opts.job_lines} + {opts.job_lines // 100} hostile lines)", r,
         f", {len(snaps)} snapshots, {snaps[-1].state.status}, {len(snaps[-1].metrics)} epoch rows,"
         f" {len(notes)} warning line(s)")
    for note in notes:
        print("   ", note)


if __name__ == "__main__":
    main()
