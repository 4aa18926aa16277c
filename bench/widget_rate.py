"""The progress widget under a log flood: messages per second, monitor CPU, metric latency.

    .venv/bin/python bench/widget_rate.py [--rate 20000] [--seconds 10]

A local job prints RATE lines a second for SECONDS seconds, with a metric line
`epoch N: {'printed_at': <time>}` twice a second. A ProgressWidget follows it through the
kernel's Monitor, as under a notebook cell. Printed: widget update messages per second (counted
at the comm), the monitor thread's CPU share (from /proc), and the latency from a metric line
being printed to its row being in the widget's state (median and max).
Targets: at most 10 messages/s, under 5% of a core, latency under 2 s.
"""

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import comm

FLOOD = """
import sys, time
rate, seconds = {rate}, {seconds}
start = time.time()
sent = epoch = 0
while time.time() - start < seconds:
    due = int((time.time() - start) * rate)
    if due > sent:
        sys.stdout.write("".join(f"step {{i}} loss=0.5 of a flood of log lines\\n" for i in range(sent, due)))
        sent = due
    if time.time() - start >= epoch * 0.5:
        print(f"epoch {{epoch}}: {{{{'printed_at': {{time.time()}}}}}}", flush=True)
        epoch += 1
    time.sleep(0.005)
print(f"done: {{sent}} lines", flush=True)
"""


def thread_cpu_seconds(native_id: int) -> float:
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    opts = parser.parse_args()

    sent = []
    original = comm.DummyComm.publish_msg

    def counting(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        if msg_type == "comm_msg" and (data or {}).get("method") == "update":
            sent.append(time.monotonic())
        return original(self, msg_type, data=data, metadata=metadata, buffers=buffers, **keys)

    comm.DummyComm.publish_msg = counting

    # As in a kernel that has shown a plot before: matplotlib's one-time import (about 0.5 s of
    # CPU, paid by the first widget of a kernel) is not part of the steady-state figure.
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401

    import sm_magic
    from sm_magic.jobs.monitor import Monitor
    from sm_magic.widgets.progress import ProgressWidget

    with tempfile.TemporaryDirectory(prefix="sm_magic-bench-") as tmp:
        os.environ["SM_MAGIC_REGISTRY"] = str(Path(tmp) / "registry.sqlite3")
        os.environ["HF_HOME"] = str(Path(tmp) / "hf")
        job = sm_magic.launch(FLOOD.format(rate=opts.rate, seconds=opts.seconds), jobs_dir=str(Path(tmp) / "jobs"))
        seen_at: dict[int, float] = {}
        printed_at: dict[int, float] = {}
        done = threading.Event()
        widget = ProgressWidget(job, on_done=lambda snap: done.set())

        def update(snap):
            widget.update(snap)
            now = time.time()
            for row in snap.metrics:
                if "printed_at" in row and row["epoch"] not in seen_at:
                    seen_at[row["epoch"]] = now
                    printed_at[row["epoch"]] = row["printed_at"]

        monitor = Monitor()
        start = time.monotonic()
        monitor.watch(job, update, min_interval=1.0)
        thread = next(t for t in threading.enumerate() if t.name == "sm_magic-monitor")
        cpu0 = thread_cpu_seconds(thread.native_id)
        done.wait(opts.seconds + 120)
        cpu = thread_cpu_seconds(thread.native_id) - cpu0
        wall = time.monotonic() - start
        lines = job.logs().count("of a flood of log lines")

    per_second: dict[int, int] = {}
    for t in sent:
        per_second[int(t - start)] = per_second.get(int(t - start), 0) + 1
    latencies = [seen_at[e] - printed_at[e] for e in seen_at]
    print(f"job: {lines} flood lines in {opts.seconds:.0f} s ({lines / opts.seconds:.0f} lines/s), "
          f"{len(latencies)} metric lines, status {job.status}; watched for {wall:.1f} s")
    print(f"widget update messages: {len(sent)} in all, {len(sent) / wall:.1f}/s on average, "
          f"at most {max(per_second.values())} in any one second (target <= 10)")
    print(f"monitor thread CPU: {cpu:.2f} s over {wall:.1f} s = {100 * cpu / wall:.1f}% of a core (target < 5%)")
    print(f"metric line printed -> in the widget: median {statistics.median(latencies):.2f} s, "
          f"max {max(latencies):.2f} s (target < 2 s)")


if __name__ == "__main__":
    main()
