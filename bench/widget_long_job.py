"""The progress widget following a long job that logs one metric row per step, in a real kernel.

    .venv/bin/python bench/widget_long_job.py [--rows 40000] [--seconds 20] [--epochs E]

A kernel runs `%%sagemaker_train` on the local backend with a script printing ROWS JSON rows
(`{"step": i, "loss": ...}`, as custom training loops log them) over SECONDS seconds, with a
`step i/ROWS` line every 500 steps (tests/helpers/jobscripts.py: rows_script, as bench/widget_browser.py
and the browser test run it), and a cell
that waits for it. With `--epochs E` the script also prints an epoch line after each ROWS/E steps
(`epoch e: {'val_loss': ..., 'val_accuracy': ...}`): step rows and epoch rows together.
Everything the kernel sends on iopub is counted, as a frontend receives it. Printed: the widgets'
traffic (bytes per second on average while following, the largest single message), the kernel
process's CPU share while following (all its threads, from /proc), and the size of the launch
cell's outputs as a saved notebook keeps them.
Targets (issue 12): at most 100 KB/s, no message over 256 KB, saved output under 300 KB,
kernel CPU < 15% of a core.
"""

import argparse
import json
import os
import queue
import sys
import tempfile
import time
from pathlib import Path

from jupyter_client.manager import KernelManager

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers.jobscripts import rows_script  # noqa: E402 - the job the browser test and bench run too


def with_epochs(script: str, rows: int, epochs: int) -> str:
    """rows_script's job with an epoch line after each rows/epochs steps (a validation pass)."""
    every = max(1, rows // epochs)
    hook = (f"        if i % {every} == 0:\n"
            f"            print(f\"epoch {{i // {every} - 1}}: {{{{'val_loss': {{1 / (i + 1) ** 0.3:.4f}}, "
            f"'val_accuracy': {{1 - 1 / (i + 2) ** 0.3:.4f}}}}}}\")\n")
    anchor = "        i += 1\n"
    assert anchor in script, "rows_script changed: put the epoch line after its step"
    return script.replace(anchor, anchor + hook, 1)

WAIT = """
import time
from sm_magic.jobs.monitor import get_monitor
job.wait()
while get_monitor().watched():  # until the display shows the final summary
    time.sleep(0.05)
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(kc, code: str, on_msg, timeout: float) -> None:
    """Execute `code`; every iopub message until its idle status goes to on_msg."""
    msg_id = kc.execute(code)
    deadline = time.monotonic() + timeout
    while True:
        try:
            msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(f"no idle after {timeout} s running {code[:40]!r}") from None
        on_msg(msg)
        if msg["header"]["msg_type"] == "error" and msg["parent_header"].get("msg_id") == msg_id:
            raise RuntimeError("\n".join(msg["content"]["traceback"]))
        if (msg["header"]["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"
                and msg["parent_header"].get("msg_id") == msg_id):
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--epochs", type=int, default=0, help="an epoch line after each rows/epochs steps")
    opts = parser.parse_args()

    widget_bytes, largest, outputs = [], [0, ""], {}

    def on_msg(msg) -> None:
        kind, content = msg["header"]["msg_type"], msg["content"]
        if kind in ("comm_open", "comm_msg", "comm_close", "display_data", "update_display_data"):
            size = len(json.dumps(content, default=str)) + sum(len(b) for b in msg.get("buffers") or ())
            widget_bytes.append(size)
            if size > largest[0]:
                largest[:] = [size, kind]
        # What a saved notebook keeps of the launch cell: each display's latest data.
        if kind in ("display_data", "update_display_data", "execute_result", "stream"):
            key = content.get("transient", {}).get("display_id") or f"{kind}-{len(outputs)}"
            if kind != "update_display_data" or key in outputs:
                outputs[key] = {k: v for k, v in content.items() if k != "transient"}

    with tempfile.TemporaryDirectory(prefix="sm_magic-bench-") as tmp:
        env = dict(os.environ, SM_MAGIC_REGISTRY=str(Path(tmp) / "registry.sqlite3"))
        km = KernelManager(kernel_name="python3")
        km.start_kernel(cwd=tmp, env=env)
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=120)
            pid = km.provisioner.process.pid
            run(kc, "%load_ext sm_magic\nimport matplotlib.figure, ipywidgets", lambda m: None, 120)
            start, cpu0 = time.monotonic(), cpu_seconds(pid)
            job_script = rows_script(opts.rows, opts.seconds)
            if opts.epochs:
                job_script = with_epochs(job_script, opts.rows, opts.epochs)
            cell = "%%sagemaker_train -o job --name bench-long\n" + job_script
            run(kc, cell, on_msg, 120)
            launch_outputs = dict(outputs)
            run(kc, WAIT, on_msg, opts.seconds + 300)
            wall, cpu = time.monotonic() - start, cpu_seconds(pid) - cpu0
            saved = {k: outputs[k] for k in launch_outputs}
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)

    total = sum(widget_bytes)
    saved_bytes = len(json.dumps(list(saved.values())).encode())
    epochs = f" and {opts.epochs} epoch lines" if opts.epochs else ""
    print(f"job: {opts.rows} metric rows{epochs} over {opts.seconds:.0f} s; followed in a kernel for {wall:.1f} s")
    print(f"widget traffic: {total / 1e3:.1f} KB in {len(widget_bytes)} messages, {total / wall / 1e3:.1f} KB/s "
          f"on average (target <= 100), largest message {largest[0] / 1e3:.1f} KB, a {largest[1]} (target <= 256)")
    print(f"kernel CPU: {cpu:.2f} s over {wall:.1f} s = {100 * cpu / wall:.1f}% of a core (target < 15%)")
    print(f"the launch cell's saved outputs: {saved_bytes / 1e3:.1f} KB (target < 300)")


if __name__ == "__main__":
    main()
