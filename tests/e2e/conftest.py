"""Browser tests: one headless Chromium for the whole session, and one Jupyter server per UI
people run notebooks in: JupyterLab, then Notebook 7.

Every test that uses `lab_server` (directly or through a fixture) runs once in each UI, as
test_x[lab] and test_x[notebook]; pytest runs all of one UI's tests before starting the other's
server, so one server runs at a time. SM_MAGIC_E2E_UIS=lab (or =notebook) runs one UI only.

The server's root is a temporary directory; its environment (registry, jobs dir, HF_HOME, Jupyter
dirs, HOME) lives there too, so no test touches the user's files. Chromium must be installed
(`make browser`): a missing browser fails the tests, it never skips them. A failing test leaves a
full-page screenshot in build/e2e/<test>.png.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import lab

SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "e2e"


def _uis() -> list[str]:
    chosen = [ui.strip() for ui in os.environ.get("SM_MAGIC_E2E_UIS", ",".join(lab.UIS)).split(",") if ui.strip()]
    unknown = sorted(set(chosen) - set(lab.UIS))
    if unknown or not chosen:
        raise pytest.UsageError(f"SM_MAGIC_E2E_UIS={os.environ.get('SM_MAGIC_E2E_UIS')!r}: "
                                f"name one or more of {', '.join(lab.UIS)}")
    return chosen


@pytest.fixture(scope="session", params=_uis())
def lab_server(request, tmp_path_factory):
    """A Jupyter server of one UI (request.param: "lab" or "notebook"); `.ui` says which."""
    server = lab.start_lab(tmp_path_factory.mktemp(request.param), ui=request.param)
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
def page(browser):
    page = lab.new_page(browser)
    yield page
    page.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "call" or not rep.failed:
        return
    for name in ("page", "nb_page"):
        pg = getattr(item, "funcargs", {}).get(name)
        if pg is None:
            continue
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        try:
            pg.screenshot(path=str(SCREENSHOTS / f"{item.name}.png"), full_page=True)
        except Exception:
            pass


@pytest.fixture
def shot(request):
    """`shot(target, name)` saves a screenshot of a page or locator as <dir>/<name>.png when
    SM_MAGIC_SCREENSHOTS names a directory (`make screenshots` sets it to docs/images), and does
    nothing otherwise: the docs' pictures come from the tests that check what they show."""
    folder = os.environ.get("SM_MAGIC_SCREENSHOTS")
    ui = request.node.callspec.params.get("lab_server", "") if hasattr(request.node, "callspec") else ""

    def take(target, name: str) -> None:
        if not folder:
            return
        Path(folder).mkdir(parents=True, exist_ok=True)
        suffix = f"-{ui}" if ui else ""
        target.screenshot(path=str(Path(folder) / f"{name}{suffix}.png"))

    return take
