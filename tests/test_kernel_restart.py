"""A job outlives a real kernel restart, and the restarted kernel finds and follows it.

A real ipykernel is driven through jupyter_client, as JupyterLab drives it: the job is launched
with `%%sagemaker_train` in one kernel, the kernel is killed and restarted (SIGKILL to its process
group, as "Restart Kernel" does), and the new kernel lists, attaches to and waits for the job.
"""

import json
import os
import re
import tarfile
import time
from pathlib import Path

import pytest
from jupyter_client.manager import start_new_kernel

from helpers.jobscripts import script, wait_until

pytestmark = pytest.mark.jobs

EPOCHS = 6
GATE_EPOCH = 3  # the script waits before this epoch until the test has attached from the new kernel

# Prints one epoch line a second and keeps a model file in SM_MODEL_DIR up to date. Before epoch
# GATE_EPOCH it waits for the gate file (at most a minute), so the job is certainly still running
# while the restarted kernel lists it and attaches to it.
KR_SCRIPT = script("""
    import argparse, json, os, time
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--gate", default="")
    args = parser.parse_args()
    for epoch in range(args.epochs):
        if epoch == %d and args.gate:
            deadline = time.monotonic() + 60
            while not os.path.exists(args.gate) and time.monotonic() < deadline:
                time.sleep(0.05)
        print(f"epoch {epoch}: {{'loss': {1.0 / (epoch + 1)}}}", flush=True)
        with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.json"), "w") as f:
            json.dump({"epochs_done": epoch + 1}, f)
        if epoch + 1 < args.epochs:
            time.sleep(1.0)
""" % GATE_EPOCH)


class Kernel:
    """A kernel client that keeps every IOPub message it reads, whichever request it answers
    (the monitor thread's display updates arrive after the cell that caused them)."""

    def __init__(self, kc):
        self.kc = kc
        self.iopub: list[dict] = []

    def _read_iopub(self, timeout: float):
        msg = self.kc.get_iopub_msg(timeout=timeout)
        self.iopub.append(msg)
        return msg

    def run(self, code: str, timeout: float = 120) -> list[dict]:
        """Execute `code`; return the IOPub messages of that request. An error fails the test."""
        msg_id = self.kc.execute(code)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read_iopub(max(0.1, deadline - time.monotonic()))
            if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                    and msg["content"]["execution_state"] == "idle"):
                break
        while True:
            reply = self.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        mine = [m for m in self.iopub if m["parent_header"].get("msg_id") == msg_id]
        if reply["content"]["status"] != "ok":
            errors = [m["content"] for m in mine if m["msg_type"] == "error"]
            raise AssertionError(f"cell failed: {code!r}\n{reply['content']}\n{errors}\n{stdout(mine)}")
        return mine

    def wait_for(self, predicate, timeout: float) -> dict:
        """Read IOPub until a message (already read or new) satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        for msg in self.iopub:
            if predicate(msg):
                return msg
        while time.monotonic() < deadline:
            try:
                msg = self._read_iopub(max(0.1, deadline - time.monotonic()))
            except Exception:  # queue.Empty: nothing more within the deadline
                break
            if predicate(msg):
                return msg
        raise AssertionError(f"no such IOPub message within {timeout} s; saw types "
                             f"{sorted({m['msg_type'] for m in self.iopub})}")


def stdout(msgs: list[dict]) -> str:
    return "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream"
                   and m["content"]["name"] == "stdout")


def results(msgs: list[dict]) -> list[dict]:
    return [m["content"]["data"] for m in msgs if m["msg_type"] == "execute_result"]


def _read_state(path: Path) -> dict:
    return json.loads(path.read_text())


def test_job_survives_a_kernel_restart_and_the_new_kernel_follows_it(sm_env):
    env = dict(os.environ)  # the sm_env fixture's registry, jobs dir and HF_HOME, explicitly
    env.update(SM_MAGIC_REGISTRY=str(sm_env / "registry.sqlite3"), SM_MAGIC_JOBS_DIR=str(sm_env / "sm_jobs"),
               HF_HOME=str(sm_env / "hf"), IPYTHONDIR=str(sm_env / "ipython"), PYTHONUNBUFFERED="1")
    gate = sm_env / "gate"
    job_dir = sm_env / "sm_jobs" / "kr-job"
    log_file = job_dir / "logs" / "algo-1.log"

    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=60, env=env, cwd=str(sm_env))
    try:
        kernel = Kernel(kc)
        kernel.run("%load_ext sm_magic")
        launched = kernel.run(f"%%sagemaker_train --name kr-job -- --epochs {EPOCHS} --gate {gate}\n{KR_SCRIPT}")
        # The live widget under the cell, and no `<Job ...>` value that would go stale beside it.
        assert any(m["msg_type"] == "display_data" for m in launched) and not results(launched)
        first_pid = km.provisioner.pid

        wait_until(lambda: log_file.is_file() and "epoch 1:" in log_file.read_text(), 60, "epoch 1 in the log")
        before = _read_state(job_dir / "state.json")
        assert before["status"] == "InProgress" and before["secondary_status"] == "Training"

        km.restart_kernel(now=True)
        kc.wait_for_ready(timeout=60)
        assert km.provisioner.pid != first_pid, "the kernel was not restarted"

        # The old kernel is gone (killed with its process group); the job is not.
        after = _read_state(job_dir / "state.json")
        assert after["status"] == "InProgress", after["status"]
        assert after["extra"]["runner_pid"] == before["extra"]["runner_pid"]
        assert os.path.exists(f"/proc/{after['extra']['runner_pid']}"), "the job runner died with the kernel"

        kernel = Kernel(kc)
        kernel.run("%load_ext sm_magic")

        # %sagemaker_jobs in the new kernel: the job, live, asked of the backend (not the launcher's).
        table = results(kernel.run("%sagemaker_jobs"))
        assert table, "no table from %sagemaker_jobs"
        text = table[0]["text/plain"]
        # (the only job, so every cell of the table is its: pandas may wrap a wide row)
        for cell in ("kr-job", "local", "InProgress", "local x1", f"epochs={EPOCHS}"):
            assert cell in text, f"{cell!r} not in\n{text}"
        assert re.search(r"<td[^>]*>kr-job</td>", table[0]["text/html"])  # the name in a cell of its own

        # %sagemaker_attach: a live progress widget appears under the cell (its value, the Job,
        # shows nothing beside it).
        attached = kernel.run("%sagemaker_attach kr-job")
        assert not results(attached)
        displays = [m for m in attached if m["msg_type"] == "display_data"]
        # The widget, then the note that takes its place once its kernel is gone (companion.py).
        assert len(displays) == 2, [m["msg_type"] for m in attached]
        assert "`%sagemaker_attach kr-job`" in displays[1]["content"]["data"]["text/plain"]
        widget = displays[0]["content"]["data"]
        assert "application/vnd.jupyter.widget-view+json" in widget
        display_id = displays[0]["content"]["transient"]["display_id"]

        # The widget (from the monitor thread) shows the job running, with the epochs logged so far,
        # including those logged before the restart.
        def widget_value(msg, *needles):
            if msg["msg_type"] not in ("comm_open", "comm_msg"):
                return False
            value = str(msg["content"].get("data", {}).get("state", {}).get("value", ""))
            return all(n in value for n in needles)

        kernel.wait_for(lambda m: widget_value(m, "kr-job", "InProgress", "Training"), 30)
        rows_before_restart = ("<tr><td>0</td><td>1</td></tr>", "<tr><td>1</td><td>0.5</td></tr>")  # epoch, loss
        kernel.wait_for(lambda m: widget_value(m, *rows_before_restart), 30)

        gate.touch()  # let the job go on to its end

        # Plain Python in the new kernel: attach and wait, then report what a user would look at.
        out = stdout(kernel.run(
            "import json, sm_magic\n"
            "job = sm_magic.attach('kr-job').wait(timeout=120)\n"
            "m = job.metrics\n"
            "print(json.dumps({'status': job.status, 'secondary': job.secondary_status,\n"
            "    'transitions': [t.status for t in job.transitions],\n"
            "    'epochs': [int(e) for e in m.index], 'loss': [float(v) for v in m['loss']],\n"
            "    'epoch_lines': sum(l.startswith('epoch ') for l in job.logs().splitlines()),\n"
            "    'model_data': job.model_data}))\n", timeout=150))
        report = json.loads(out.strip().splitlines()[-1])
        assert report["status"] == "Completed" and report["secondary"] == "Completed", report
        assert report["transitions"] == ["Starting", "Downloading", "Training", "Uploading", "Completed"]
        assert report["epochs"] == list(range(EPOCHS)), "metric rows are missing"
        assert report["loss"] == [1.0 / (e + 1) for e in range(EPOCHS)]
        assert report["epoch_lines"] == EPOCHS
        assert report["model_data"] == str(job_dir / "output" / "model.tar.gz")
        with tarfile.open(report["model_data"]) as tar:
            assert tar.getnames() == ["model.json"]
            assert json.load(tar.extractfile("model.json")) == {"epochs_done": EPOCHS}
        log_lines = log_file.read_text().splitlines()
        assert [l for l in log_lines if l.startswith("epoch ")] == [
            f"epoch {e}: {{'loss': {1.0 / (e + 1)}}}" for e in range(EPOCHS)]

        # The attach display is replaced in place by the finished job's static summary.
        final = kernel.wait_for(lambda m: m["msg_type"] == "update_display_data"
                                and m["content"]["transient"]["display_id"] == display_id, 30)
        html, plain = final["content"]["data"]["text/html"], final["content"]["data"]["text/plain"]
        assert 'class="sm-magic-summary"' in html and "Completed" in html
        assert "Completed  0:" in plain and "Completed / " not in plain and "Training - Training in progress" in plain
        for epoch in range(EPOCHS):
            # (the best epoch's cell carries the best mark: class sm-magic-best and a star)
            assert re.search(rf"<tr><td[^>]*>{epoch}( \u2605)?</td>", html), f"epoch {epoch} missing from the summary table"

        # And the registry, read from the test process, agrees.
        from sm_magic.jobs.registry import Registry

        assert Registry().get("kr-job").status == "Completed"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
