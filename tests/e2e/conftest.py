"""Browser tests: one JupyterLab server and one headless Chromium for the whole session.

The server's root is a temporary directory; its environment (registry, jobs dir, HF_HOME, Jupyter
dirs, HOME) lives there too, so no test touches the user's files. Chromium must be installed
(`make browser`): a missing browser fails the tests, it never skips them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lab  # noqa: E402


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    server = lab.start_lab(tmp_path_factory.mktemp("lab"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser():
    try:
        lab.require_chromium()
    except lab.BrowserMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = lab.launch_browser(p)
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    page = lab.new_page(browser)
    yield page
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        out = Path(__file__).resolve().parents[2] / "build" / "e2e"
        out.mkdir(parents=True, exist_ok=True)
        try:
            page.screenshot(path=str(out / f"{request.node.name}.png"), full_page=True)
        except Exception:
            pass
    page.close()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def run_notebook():
    return lab.run_notebook
