"""Every test runs with its own registry, jobs directory and accelerate config home."""

import os
import signal
import textwrap

import pytest


@pytest.fixture
def sm_env(tmp_path, monkeypatch):
    """An isolated user: registry, jobs dir and HF_HOME under tmp_path, cwd = tmp_path."""
    monkeypatch.setenv("SM_MAGIC_REGISTRY", str(tmp_path / "registry.sqlite3"))
    monkeypatch.setenv("SM_MAGIC_JOBS_DIR", str(tmp_path / "sm_jobs"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    _end_jobs(tmp_path / "sm_jobs")


def _end_jobs(jobs_dir):
    """No test may leave a job running: stop what runs (the stop marker also catches a runner
    that has not recorded its pid yet), wait for it to end, then kill whatever is left."""
    import time

    from sm_magic.backends.local import LocalBackend
    from sm_magic.backends.local_state import kill_groups, read_state

    backend = LocalBackend(jobs_dir)
    states = sorted(jobs_dir.glob("*/state.json"))
    for state_file in states:
        backend.stop(state_file.parent.name)
    deadline = time.monotonic() + 30
    for state_file in states:
        while not read_state(state_file).done and time.monotonic() < deadline:
            time.sleep(0.1)
        state = read_state(state_file)
        kill_groups(list(state.extra.get("pgids", {}).values()), signal.SIGKILL)
        pid = state.extra.get("runner_pid")
        if pid and not state.done:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def script(body: str) -> str:
    return textwrap.dedent(body).lstrip("\n")


# A training script with no torch import: the local backend's path is what is under test.
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
