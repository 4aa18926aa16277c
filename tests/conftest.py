"""Every test runs with its own registry, jobs directory and accelerate config home."""

import os
import signal

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


@pytest.fixture(scope="session")
def moto_server():
    """One moto server on 127.0.0.1 for the session (see tests/aws_moto.py)."""
    from aws_moto import MotoAWS

    aws = MotoAWS()
    yield aws
    aws.stop()


@pytest.fixture
def aws(moto_server, sm_env, monkeypatch):
    """A user whose environment points at moto, with an IAM role and a bucket there."""
    from aws_moto import user_env

    for key in list(os.environ):
        if key.startswith(("AWS_", "SAGEMAKER_")):
            monkeypatch.delenv(key)
    for key, value in user_env(moto_server.endpoint).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HOME", str(sm_env / "home"))  # no ~/.aws of the machine's user
    moto_server.role_arn = moto_server.create_role()
    moto_server.bucket = moto_server.create_bucket()
    return moto_server
