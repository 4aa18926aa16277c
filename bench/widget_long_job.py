"""The progress widget following a long job that logs one metric row per step.

    .venv/bin/python bench/widget_long_job.py [--rows 40000] [--seconds 20]

A local job prints ROWS JSON rows (`{"step": i, "loss": ...}`, as custom training loops log
them) over SECONDS seconds. A ProgressWidget follows it through the kernel's Monitor, as under a
notebook cell, and leaves its static summary. Printed: the widget's comm traffic (bytes per
second on average, the largest single message), the monitor thread's CPU share while following,
and the size of the summary the saved notebook keeps.
Targets (issue 12): at most 100 KB/s, no message over 256 KB, summary under 300 KB, CPU < 15%.
"""

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import comm
from widget_rate import thread_cpu_seconds  # bench/ is the script's directory

ROWS = """
import json, math, time
rows, seconds = {rows}, {seconds}
start = time.time()
i = 0
while i < rows:
    due = min(rows, int((time.time() - start) / seconds * rows) + 1)
    while i < due:
        print(json.dumps({{"step": i, "loss": round(10 * math.exp(-i / 4000) + 0.01, 5)}}))
        i += 1
    time.sleep(0.01)
print("done", flush=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    opts = parser.parse_args()

    sizes = []
    original = comm.DummyComm.publish_msg

    def counting(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        if msg_type == "comm_msg":
            sizes.append(len(json.dumps(data, default=str)) + sum(len(b) for b in buffers or ()))
        return original(self, msg_type, data=data, metadata=metadata, buffers=buffers, **keys)

    comm.DummyComm.publish_msg = counting
    import matplotlib.backends.backend_agg  # noqa: F401 - a kernel that has plotted before
    import matplotlib.figure  # noqa: F401

    import sm_magic
    from sm_magic.monitor import Monitor
    from sm_magic.widgets.progress import ProgressWidget, summary_html

    with tempfile.TemporaryDirectory(prefix="sm_magic-bench-") as tmp:
        os.environ["SM_MAGIC_REGISTRY"] = str(Path(tmp) / "registry.sqlite3")
        job = sm_magic.launch(ROWS.format(rows=opts.rows, seconds=opts.seconds), jobs_dir=str(Path(tmp) / "jobs"))
        done = threading.Event()
        final = []
        widget = ProgressWidget(job, on_done=lambda snap: (final.append(snap), done.set()))
        monitor = Monitor()
        start = time.monotonic()
        monitor.watch(job, widget.update, min_interval=1.0)
        thread = next(t for t in threading.enumerate() if t.name == "sm_magic-monitor")
        cpu0 = thread_cpu_seconds(thread.native_id)
        done.wait(opts.seconds + 180)
        cpu = thread_cpu_seconds(thread.native_id) - cpu0
        wall = time.monotonic() - start
        summary = summary_html(final[0])
        rows = len(job.metrics)

    print(f"job: {rows} metric rows in {opts.seconds:.0f} s, status {job.status}; followed for {wall:.1f} s")
    print(f"widget traffic: {sum(sizes) / 1e3:.1f} KB in {len(sizes)} messages, {sum(sizes) / wall / 1e3:.1f} KB/s "
          f"on average (target <= 100), largest message {max(sizes) / 1e3:.1f} KB (target <= 256)")
    print(f"monitor thread CPU: {cpu:.2f} s over {wall:.1f} s = {100 * cpu / wall:.1f}% of a core (target < 15%)")
    print(f"static summary: {len(summary.encode()) / 1e3:.1f} KB (target < 300)")


if __name__ == "__main__":
    main()
