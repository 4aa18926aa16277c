"""Training scripts the tests launch (shared by several test modules)."""

import signal
import sys
import textwrap
import time
from pathlib import Path


def script(body: str) -> str:
    return textwrap.dedent(body).lstrip("\n")


# A training script with no torch import: the local backend's path is what is under test.
# The `sm-magic` command of the environment the tests run in (its console script).
SM_MAGIC = Path(sys.executable).parent / "sm-magic"

EPOCHS_SCRIPT = script("""
    import argparse, json, os, sys
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.1)
    args = parser.parse_args()
    for epoch in range(args.epochs):
        acc = 0.5 + 0.1 * epoch
        print(f"epoch {epoch}: {{'accuracy': {acc}, 'f1': {acc - 0.05}}}")
    model_dir = os.environ["SM_MODEL_DIR"]
    with open(os.path.join(model_dir, "model.json"), "w") as f:
        json.dump({"lr": args.lr, "argv": sys.argv[1:]}, f)
    with open(os.path.join(model_dir, "env.json"), "w") as f:
        json.dump({k: v for k, v in os.environ.items() if k.startswith("SM_")}, f)
""")


# Helper code a `%%sagemaker_include` cell holds (tests/test_include.py, tests/test_export.py).
INCLUDE_HELPERS = script("""
    import json, os

    def loss_at(epoch):
        return round(BASE / (epoch + 1), 4)

    def save(result):
        with open(os.path.join(os.environ["SM_MODEL_DIR"], "result.json"), "w") as f:
            json.dump(result, f)

    BASE = 2.0
""")


def rows_script(rows: int = 40_000, seconds: float = 20.0, progress_every: int = 500) -> str:
    """A training script (no torch) that logs one JSON metric row per step, as custom training
    loops do: `rows` rows `{"step": i, "loss": ...}` at an even pace over about `seconds` seconds,
    plus a `step i/rows` line every `progress_every` steps, so the widget knows the total (eta.py)
    and shows a progress bar. Ends with `done`."""
    return script(f"""
        import json, math, sys, time
        rows, seconds, every = {rows}, {seconds}, {progress_every}
        start = time.time()
        i = 0
        while i < rows:
            due = min(rows, int((time.time() - start) / seconds * rows) + 1)
            while i < due:
                print(json.dumps({{"step": i, "loss": round(10 * math.exp(-i / 4000) + 0.01, 5)}}))
                i += 1
                if i % every == 0 or i == rows:
                    print(f"step {{i}}/{{rows}}")
            sys.stdout.flush()
            time.sleep(0.01)
        print("done", flush=True)
    """)


def wait_until(condition, timeout: float, what: str):
    """Poll `condition` until it returns something true (returned), or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def end_jobs(jobs_dir):
    """No test may leave a job running: stop what runs (the stop marker also catches a runner
    that has not started its hosts yet), wait for it to end, then kill whatever is left: the
    runner (proven by its recorded identity) and every process carrying the job's token."""
    from sm_magic.backends.local.backend import LocalBackend
    from sm_magic.backends.local.procs import end_token_processes, proven_signal
    from sm_magic.backends.local.state import JobFiles, job_token, read_runner, read_state

    backend = LocalBackend(jobs_dir)
    states = sorted(jobs_dir.glob("*/state.json"))
    for state_file in states:
        try:
            backend.stop(state_file.parent.name)
        except Exception:  # noqa: BLE001 - a broken job must not keep the others running
            pass

    def ended(state_file) -> bool:
        try:
            return backend.describe(state_file.parent.name).done
        except Exception:  # noqa: BLE001 - an unreadable job is left to the kills below
            return True

    try:
        wait_until(lambda: all(ended(f) for f in states), 30, "the stopped jobs to end")
    except AssertionError:
        pass  # whatever still runs is killed below
    for state_file in states:
        files = JobFiles(state_file.parent)
        try:
            state = read_state(state_file)
        except (OSError, ValueError):
            continue
        runner = read_runner(files)
        if runner and not state.done:
            proven_signal(runner.get("pid") or 0, signal.SIGKILL, ident=runner)
        token = job_token(state)
        if token:
            end_token_processes(token, timeout=10)
