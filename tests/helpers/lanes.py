"""The fast lane's guard: what only a test marked `jobs` or `browser` may do (a pytest plugin,
loaded by tests/conftest.py).

`make test-fast` runs `pytest -m "not jobs and not browser"`, in under a minute. A test that
starts a moto server, a real local job, a Jupyter kernel or server, or Chromium without the mark
would quietly make that lane slower; instead it fails, naming the mark to add.

Each of those starts calls `require(mark, what)`: the test helpers that start moto, JupyterLab
and Chromium (tests/helpers/aws_moto.py, container.py, lab.py) call it themselves, and the two
starts outside the tests, sm_magic's local backend starting a job's runner and jupyter_client
starting a kernel, are wrapped once by `pytest_configure`. A session fixture starts its server
once, so a test that only reuses one is refused by the fixture's name (SLOW_FIXTURES) before its
setup. `require` raises pytest's Failed (not an Exception: no `except Exception` in sm_magic
swallows it), and a refusal in another thread (a sweep launching its points) still fails the
test when its call ends. Outside a test (scripts/, bench/) everything is allowed.
"""

from __future__ import annotations

import functools
import inspect

import pytest

MARKS = ("jobs", "browser")
# What each mark allows: a browser test drives real jobs and kernels through JupyterLab too.
ALLOWED_BY = {"jobs": {"jobs", "browser"}, "browser": {"browser"}}

# Session fixtures that start something slow (once, for every test that uses them after).
SLOW_FIXTURES = {
    "moto_server": ("jobs", "uses the moto server (fixture `moto_server`)"),
    "_capturing_moto": ("jobs", "uses the capturing moto server (fixture `_capturing_moto`)"),
    "lab_server": ("browser", "uses a Jupyter server (fixture `lab_server`)"),
    "browser": ("browser", "uses Chromium (fixture `browser`)"),
}


class _Running:
    """The test being run: its marks, and what it was refused."""

    def __init__(self, item: pytest.Item):
        self.nodeid = item.nodeid
        self.marks = {mark for mark in MARKS if item.get_closest_marker(mark) is not None}
        self.refused: list[str] = []


_running: list[_Running] = []  # the test running now is the last (a pytester run nests its own)


def require(mark: str, what: str) -> None:
    """Fail the running test unless it carries `mark` (or a mark that allows as much)."""
    if not _running:
        return
    test = _running[-1]
    if test.marks & ALLOWED_BY[mark]:
        return
    where = "add pytestmark = pytest.mark.browser to its module (tests/e2e)" if mark == "browser" else \
        f"add @pytest.mark.{mark} to the test (or pytestmark = pytest.mark.{mark} to its module)"
    message = (f"{test.nodeid} {what}, which only a test marked `{mark}` may do: {where}. Unmarked tests "
               "run in `make test-fast`, which must stay under a minute (docs/testing.md).")
    test.refused.append(message)
    pytest.fail(message, pytrace=False)


def _report_refused(failed: BaseException | None = None) -> None:
    """Fail the phase with a refusal that something caught (a thread, an `except BaseException`),
    unless the phase already fails with it (`failed`)."""
    refused = _running[-1].refused if _running else []
    message = refused[0] if refused else None
    refused.clear()
    if message is not None and not (isinstance(failed, pytest.fail.Exception) and failed.msg == message):
        pytest.fail(message, pytrace=False)


# -- the starts outside the tests ---------------------------------------------------------------

_wrapped = False


def _guard(cls, name: str, mark: str, what: str) -> None:
    original = getattr(cls, name)

    if inspect.iscoroutinefunction(original):
        @functools.wraps(original)
        async def guarded(*args, **kwargs):
            require(mark, what)
            return await original(*args, **kwargs)
    else:
        @functools.wraps(original)
        def guarded(*args, **kwargs):
            require(mark, what)
            return original(*args, **kwargs)

    setattr(cls, name, guarded)


def pytest_configure(config):
    global _wrapped
    if _wrapped:  # a pytester run inside this session configures again
        return
    _wrapped = True
    from jupyter_client.provisioning.local_provisioner import LocalProvisioner

    from sm_magic.backends.local.backend import LocalBackend

    # Both the local backend and the local container backend start their runner process here.
    _guard(LocalBackend, "_start_runner", "jobs", "starts a real local job (the local backend's runner process)")
    # The one place jupyter_client starts a local kernel: nbclient, start_new_kernel, KernelManager.
    _guard(LocalProvisioner, "launch_kernel", "jobs", "starts a Jupyter kernel")


# -- the running test ---------------------------------------------------------------------------

@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _running.append(_Running(item))
    try:
        return (yield)
    finally:
        _running.pop()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    for name in item.fixturenames:
        if name in SLOW_FIXTURES:
            require(*SLOW_FIXTURES[name])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):  # a refusal in setup that a fixture caught is reported here too
    return (yield from _reporting())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    if _running:
        _running[-1].refused.clear()  # reported by setup or call already
    return (yield from _reporting())


def _reporting():
    try:
        result = yield
    except BaseException as exc:
        _report_refused(exc)
        raise
    _report_refused()
    return result
