"""The fast lane's guard (tests/helpers/lanes.py): an unmarked test that starts what only a test
marked `jobs` or `browser` may is failed with the mark to add; a marked one goes on. Each test runs
a small suite in this process (pytester) whose job launches stop where the runner process would
start, so nothing here is slow."""

pytest_plugins = ["pytester"]

JOBS = '''
import subprocess
import threading

import pytest

import sm_magic


class RunnerStarted(Exception):
    """The local backend got as far as starting the job's runner process."""


@pytest.fixture
def no_runner(tmp_path, monkeypatch):
    monkeypatch.setenv("SM_MAGIC_REGISTRY", str(tmp_path / "registry.sqlite3"))
    monkeypatch.setenv("SM_MAGIC_JOBS_DIR", str(tmp_path / "sm_jobs"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)
    popen = subprocess.Popen

    def runner_stops_here(args, *rest, **kwargs):
        if "sm_magic.backends.local.runner" in args:
            raise RunnerStarted
        return popen(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", runner_stops_here)


def launch():
    with pytest.raises(RunnerStarted):
        sm_magic.launch("print('hi')", name="a-job", backend="local")


def test_unmarked_launch(no_runner):
    launch()


@pytest.mark.jobs
def test_marked_launch(no_runner):
    launch()


def test_unmarked_launch_in_a_thread_that_swallows_the_failure(no_runner):
    def swallow():
        try:
            launch()
        except BaseException:
            pass

    thread = threading.Thread(target=swallow)
    thread.start()
    thread.join()
'''

MARKERS = """
[pytest]
markers =
    jobs: slow
    browser: slow
"""

SESSION_FIXTURE = """
import pytest


@pytest.fixture(scope="session")
def moto_server():
    raise AssertionError("started for a test that may not use it")


def test_unmarked_moto(moto_server):
    pass
"""


def run(pytester, suite: str):
    pytester.makeini(MARKERS)
    pytester.makepyfile(test_suite=suite)
    return pytester.runpytest("-p", "helpers.lanes", "-p", "no:cacheprovider")


def test_an_unmarked_test_that_starts_a_job_fails_with_the_mark_to_add_and_a_marked_one_does_not(pytester):
    result = run(pytester, JOBS)
    result.assert_outcomes(passed=1, failed=2)
    # the short summary repeats the message in full when the terminal is wide enough (CI's is)
    failures = result.stdout.str().split("= FAILURES =")[1].split("short test summary info")[0]
    assert "test_marked_launch" not in failures
    for name in ("test_unmarked_launch", "test_unmarked_launch_in_a_thread_that_swallows_the_failure"):
        # the message once, as the whole report: no traceback, no second copy
        assert failures.count(f"test_suite.py::{name} starts") == 1
        result.stdout.fnmatch_lines([
            f"test_suite.py::{name} starts a real local job (the local backend's runner process), which only a "
            "test marked `jobs` may do: add @pytest.mark.jobs to the test (or pytestmark = pytest.mark.jobs to "
            "its module). Unmarked tests run in `make test-fast`, which must stay under a minute (docs/testing.md)."])


def test_an_unmarked_test_that_uses_a_slow_session_fixture_is_refused_before_its_setup(pytester):
    result = run(pytester, SESSION_FIXTURE)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["test_suite.py::test_unmarked_moto uses the moto server (fixture `moto_server`), "
                                 "which only a test marked `jobs` may do: add @pytest.mark.jobs to the test*"])
    assert "started for a test that may not use it" not in result.stdout.str()
