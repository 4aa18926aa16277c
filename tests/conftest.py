"""Every test runs with its own registry, jobs directory and accelerate config home."""

import tempfile

import pytest

from helpers.jobscripts import end_jobs

# `jobs` and `browser` are given on the tests themselves; this plugin fails an unmarked test that starts
# what only they may (a moto server, a real local job, a kernel, a Jupyter server, Chromium).
pytest_plugins = ["helpers.lanes"]


@pytest.fixture
def sm_env(tmp_path, monkeypatch):
    """An isolated user: registry, jobs dir and HF_HOME under tmp_path, cwd = tmp_path."""
    monkeypatch.setenv("SM_MAGIC_REGISTRY", str(tmp_path / "registry.sqlite3"))
    monkeypatch.setenv("SM_MAGIC_JOBS_DIR", str(tmp_path / "sm_jobs"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    end_jobs(tmp_path / "sm_jobs")


@pytest.fixture
def tmp_dir(sm_env, monkeypatch):
    """The temporary directory every checkout and bundle goes to, to check that it is left empty."""
    tmp = sm_env / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))  # tempfile caches its choice
    return tmp


@pytest.fixture(scope="session")
def moto_server():
    """One moto server on 127.0.0.1 for the session (see tests/helpers/aws_moto.py)."""
    from helpers.aws_moto import MotoAWS

    aws = MotoAWS()
    yield aws
    aws.stop()


@pytest.fixture
def aws(moto_server, sm_env, monkeypatch):
    """A user whose environment points at moto, with an IAM role and a bucket there."""
    from helpers.aws_moto import become_user

    return become_user(moto_server, sm_env / "home", monkeypatch)  # no ~/.aws of the machine's user


@pytest.fixture(scope="session")
def ip_shell():
    """The one global IPython test shell, with the extension loaded."""
    from IPython.testing.globalipapp import get_ipython, start_ipython

    shell = start_ipython() or get_ipython()
    shell.run_line_magic("load_ext", "sm_magic")
    return shell


@pytest.fixture
def ip(ip_shell, sm_env):
    return ip_shell


@pytest.fixture
def live_sweeps(sm_env):
    """No sweep of a test goes on queueing jobs after it: its sweeps are stopped before sm_env ends their jobs."""
    from sm_magic.sweeps import sweep as sweeps

    yield
    for sweep in list(sweeps._live.values()):
        sweep.stop()
    sweeps._live.clear()


@pytest.fixture
def comm_messages(monkeypatch):
    """Every widget state update sent to the frontend: (time sent, the widget's comm id)."""
    import time

    import comm

    sent = []
    original = comm.DummyComm.publish_msg

    def publish(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        if msg_type == "comm_msg" and (data or {}).get("method") == "update":
            sent.append((time.monotonic(), self.comm_id))
        return original(self, msg_type, data=data, metadata=metadata, buffers=buffers, **keys)

    monkeypatch.setattr(comm.DummyComm, "publish_msg", publish)
    return sent
