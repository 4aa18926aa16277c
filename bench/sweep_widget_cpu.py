"""Kernel CPU and widget messages while a 20-job sweep widget follows its jobs.

    .venv/bin/python bench/sweep_widget_cpu.py [--jobs 20] [--seconds 60] [--rows 5] [--lines 50]

A Sweep of JOBS points, all running at once, each a real `Job` (its log reader, metrics parser,
progress tracker) on a simulated backend whose log grows with time as a training job's does:
LINES log lines a second, ROWS of them metric rows (`{"step": i, "loss": ..., "accuracy": ...}`,
with an `epoch N: {...}` row per 100 steps and a `step i/total` line, so the bar has a total),
for SECONDS seconds; then each job ends. The widget (widgets/sweep_widget.py) follows the sweep
through the kernel's monitor, as under a notebook cell, until its static summary is made.
Nothing else runs in the process: the log lines are made when the monitor reads them.

Printed: the process's CPU (time.process_time) as a share of one core, split by thread (the
monitor, the widget's render thread, the rest; from /proc), widget update messages per second
(counted at the comm, with their JSON and buffer bytes), renders and plot drawings.
Targets (the single-job widget's bounds, docs/widgets.md): at most 10 messages a second, a plot
no more than every 2 s.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import threading
import time
from pathlib import Path

import comm

from sm_magic.backends.base import JobState
from sm_magic.jobs.job import Job
from sm_magic.sweeps import grid as sweep_grid
from sm_magic.sweeps.sweep import Point, Sweep
from sm_magic.widgets.sweep_widget import SweepWidget


class TimedBackend:
    """Jobs whose log grows with the time since they started: `lines` lines a second, `rows` of
    them metric rows; each ends `seconds` after it started."""

    name = "simulated"
    poll_interval = 1.0  # the local backend's pace is 0.5 s, SageMaker's 5 s or more

    def __init__(self, seconds: float, rows: int, lines: int):
        self.seconds, self.rows, self.lines = seconds, rows, lines
        self.started: dict[str, float] = {}
        self.states: dict[str, JobState] = {}
        self.lock = threading.Lock()

    def add(self, name: str, lr: float) -> None:
        now = time.time()
        with self.lock:
            self.started[name] = now
            self.states[name] = JobState(name=name, status="InProgress", secondary_status="Training",
                                         creation_time=now, training_start_time=now,
                                         hyperparameters={"lr": str(lr)})

    def describe(self, name: str) -> JobState:
        with self.lock:
            state = self.states[name]
            if not state.done and time.time() - self.started[name] >= self.seconds:
                state.status = state.secondary_status = "Completed"
                state.training_end_time = self.started[name] + self.seconds
            return dataclasses.replace(state)

    def logs(self, name: str, cursor=None):
        """The lines due by now since `cursor` (the number of lines given so far)."""
        given = cursor or 0
        elapsed = min(time.time() - self.started[name], self.seconds)
        due = int(elapsed * self.lines)
        lr = float(self.states[name].hyperparameters["lr"])
        total = int(self.seconds * self.rows)
        out = []
        every = max(1, self.lines // self.rows)
        for i in range(given, min(due, given + 5000)):
            if i % every:
                out.append(f"[rank 0] iteration {i}: data loading took 0.01 s, tokens 4096")
                continue
            step = i // every
            loss = round(2.0 * math.exp(-lr * step / 50) + 0.05, 5)
            out.append(json.dumps({"step": step, "loss": loss, "accuracy": round(1 - loss / 2.1, 5)}))
            if step % 20 == 0:
                out.append(f"step {step}/{total}")
            if step and step % 100 == 0:
                out.append(f"epoch {step // 100}: {{'val_loss': {loss * 1.1:.5f}, 'val_accuracy': {1 - loss / 2:.5f}}}")
        return out, given + len(range(given, min(due, given + 5000)))

    def stop(self, name: str) -> None:
        with self.lock:
            self.states[name].status = "Stopped"


def thread_cpu_seconds(native_id: int) -> float:
    try:
        fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # the thread has ended
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rows", type=int, default=5, help="metric rows a second per job")
    parser.add_argument("--lines", type=int, default=50, help="log lines a second per job (the rows among them)")
    parser.add_argument("--interval", type=float, default=1.0, help="the widget's interval (magic/views.py WIDGET_INTERVAL)")
    opts = parser.parse_args()

    sent: list[tuple[float, str, int]] = []
    original = comm.DummyComm.publish_msg

    def counting(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        if msg_type == "comm_msg" and (data or {}).get("method") == "update":
            size = len(json.dumps(data, default=str)) + sum(len(b) for b in buffers or ())
            sent.append((time.monotonic(), self.comm_id, size))
        return original(self, msg_type, data=data, metadata=metadata, buffers=buffers, **keys)

    comm.DummyComm.publish_msg = counting

    backend = TimedBackend(opts.seconds, opts.rows, opts.lines)
    grid = {"lr": [f"{0.5 + i / 10:g}" for i in range(opts.jobs)]}
    combos = sweep_grid.points(grid)
    names = sweep_grid.job_names("bench", len(combos))

    def launch(point: Point) -> Job:
        backend.add(point.name, float(point.values["lr"]))
        return Job(point.name, backend)

    sweep = Sweep("bench", grid, [Point(i, names[i - 1], v) for i, v in enumerate(combos, start=1)],
                  launcher=launch, max_parallel=opts.jobs, backend=backend.name)
    done = threading.Event()
    summary: list[str] = []
    import matplotlib  # noqa: F401 - imported before the clock starts, as a kernel that drew once has it

    # Each thread's CPU, read once a second (the monitor and the render thread end with the sweep).
    by_thread: dict[str, float] = {}
    sampling = threading.Event()

    def sample() -> None:
        me = threading.get_ident()
        while True:
            for t in threading.enumerate():
                if t.native_id and t.ident != me and t is not threading.main_thread():
                    by_thread[t.name] = max(by_thread.get(t.name, 0.0), thread_cpu_seconds(t.native_id))
            if sampling.wait(1.0):
                return

    sampler = threading.Thread(target=sample, name="bench-sampler", daemon=True)
    cpu0, wall0 = time.process_time(), time.monotonic()
    sampler.start()

    def finished(w: SweepWidget) -> None:
        summary.append(w.summary_html())
        for t in threading.enumerate():  # the render thread's and the monitor's last reading
            if t.name.startswith("sm_magic-") and t.native_id:
                by_thread[t.name] = max(by_thread.get(t.name, 0.0), thread_cpu_seconds(t.native_id))
        done.set()

    widget = SweepWidget(sweep, on_done=finished, interval=opts.interval)
    sweep.start()
    widget.start()
    done.wait(opts.seconds + 120)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    sampling.set()
    sampler.join()
    by_thread["the rest (main, sampler, sweep start)"] = max(0.0, cpu - sum(by_thread.values()))
    if not done.is_set():
        raise SystemExit(f"the widget did not end within {opts.seconds + 120:.0f} s: {sweep.summary()}")

    rows = sum(len(job.metric_rows()) for job in sweep.jobs)
    lines = sum(backend.lines * backend.seconds for _ in sweep.jobs)
    plots = [t for t, cid, _ in sent if cid == widget.plot.model_id]
    per_second: dict[int, int] = {}
    for t, _, _ in sent:
        per_second[int(t - wall0)] = per_second.get(int(t - wall0), 0) + 1
    size = sum(s for _, _, s in sent)
    print(f"{opts.jobs} jobs, {opts.seconds:g} s each, all at once; per job {opts.lines} log lines/s, "
          f"{opts.rows} metric rows/s: {int(lines):,} lines, {rows:,} rows in all")
    print(f"followed for {wall:.1f} s (start to static summary)")
    print(f"kernel process CPU: {cpu:.2f} s = {100 * cpu / wall:.1f}% of a core")
    for name in sorted(by_thread):
        print(f"  thread {name}: {by_thread[name]:.2f} s = {100 * by_thread[name] / wall:.1f}% of a core")
    print(f"widget update messages: {len(sent)} = {len(sent) / wall:.2f}/s, at most {max(per_second.values())} "
          f"in one second; {size / 1024:.1f} KB = {size / 1024 / wall:.1f} KB/s, largest "
          f"{max(s for _, _, s in sent) / 1024:.1f} KB")
    paced = plots[:-1]  # the last drawing, at the end, is not paced
    print(f"renders: {widget.renders} ({widget.renders / wall:.2f}/s); plot drawings sent: {len(plots)}"
          + (f", at least {min(b - a for a, b in zip(paced, paced[1:])):.1f} s apart (but the last, at the end)"
             if len(paced) > 1 else ""))
    print(f"static summary: {len(summary[0]) / 1024:.1f} KB of HTML")


if __name__ == "__main__":
    main()
