"""A Jupyter server (JupyterLab or Notebook 7) and a headless Chromium for browser tests,
screenshots and benches.

Used by tests/e2e/conftest.py, scripts/screenshot.py and bench/widget_browser.py. Everything the
server and its kernels write (registry, jobs, HF_HOME, Jupyter runtime/config/data, HOME) lives
under one root directory. The browser is Debian's chromium (``make browser`` installs it);
Playwright's own download is never used.

The two UIs (`UIS`) share their notebook components, so the notebook helpers below work in both:
Notebook 7 is JupyterLab's notebook panel, cells, outputs, execution indicator and Run menu in a
one-document page, opened at /notebooks/<path> instead of /lab/tree/<path>.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .jobscripts import end_jobs
from .lanes import require

CHROMIUM = os.environ.get("SM_MAGIC_E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 60_000  # generous: 2 cores run the server, the kernel, the job and the browser

# The UIs a server can be: JupyterLab (`jupyter lab`) and Notebook 7 (`jupyter notebook`).
UIS = ("lab", "notebook")
_UI_MODULE = {"lab": "jupyterlab", "notebook": "notebook"}
_UI_NAME = {"lab": "JupyterLab", "notebook": "Notebook 7"}


class BrowserMissing(RuntimeError):
    pass


def require_chromium() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        raise BrowserMissing(
            f"{CHROMIUM} not found: the browser tests need Debian's chromium. "
            "Run `make browser` (apt-get install -y chromium); never `playwright install`.")
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def isolated_env(root: Path, jobs_dir: Path | None = None) -> dict:
    """The server's (and so every kernel's) environment, with all user state under root/.home
    (jobs under jobs_dir when given)."""
    home = root / ".home"
    dirs = {
        "HOME": home,
        "SM_MAGIC_REGISTRY": home / "registry.sqlite3",
        "SM_MAGIC_JOBS_DIR": Path(jobs_dir) if jobs_dir else home / "sm_jobs",
        "HF_HOME": home / "hf",
        "JUPYTER_RUNTIME_DIR": home / "jupyter" / "runtime",
        "JUPYTER_CONFIG_DIR": home / "jupyter" / "config",
        "JUPYTER_DATA_DIR": home / "jupyter" / "data",
        "JUPYTERLAB_SETTINGS_DIR": home / "jupyter" / "lab" / "user-settings",
        "JUPYTERLAB_WORKSPACES_DIR": home / "jupyter" / "lab" / "workspaces",
        "IPYTHONDIR": home / "ipython",
        "MPLCONFIGDIR": home / "matplotlib",
        "XDG_CACHE_HOME": home / "cache",
        "XDG_CONFIG_HOME": home / "config",
    }
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTER", "SM_MAGIC_", "IPYTHON", "SAGEMAKER", "AWS_"))}
    for key, path in dirs.items():
        env[key] = str(path)
        if key not in ("SM_MAGIC_REGISTRY",):
            path.mkdir(parents=True, exist_ok=True)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    # No news, update checks or toasts over the notebook; every cell in the DOM (no windowing),
    # so an output far down the notebook can be found, scrolled to and screenshotted.
    settings = {
        "@jupyterlab/apputils-extension/notification":
            {"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True},
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    }
    for plugin, values in settings.items():
        target = dirs["JUPYTERLAB_SETTINGS_DIR"] / f"{plugin}.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    return env


@dataclass
class LabServer:
    root: Path
    port: int
    proc: subprocess.Popen
    env: dict
    log_path: Path
    _log: object = field(repr=False, default=None)
    ui: str = "lab"  # one of UIS

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def name(self) -> str:
        """The UI as people call it: JupyterLab or Notebook 7."""
        return _UI_NAME[self.ui]

    def notebook_url(self, path: str) -> str:
        """Where this UI opens the notebook at path (relative to the server's root). JupyterLab
        gets ?reset, so no workspace saved by an earlier test reopens other documents."""
        if self.ui == "notebook":
            return f"{self.url}/notebooks/{path}"
        return f"{self.url}/lab/tree/{path}?reset"

    @property
    def jobs_dir(self) -> Path:
        return Path(self.env["SM_MAGIC_JOBS_DIR"])

    def api(self, path: str, method: str = "GET"):
        req = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(req, timeout=5) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Shut kernels down, end the server's process group, kill any job left running."""
        if self.proc.poll() is None:
            try:
                for kernel in self.api("/api/kernels"):
                    self.api(f"/api/kernels/{kernel['id']}", method="DELETE")
            except (OSError, urllib.error.URLError, ValueError):
                pass
            _end_group(self.proc)
        _kill_jobs(self.jobs_dir)
        if self._log:
            self._log.close()
            self._log = None


def _end_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    try:  # the server is gone; anything left in its group goes too
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=grace)


def _kill_jobs(jobs_dir: Path) -> None:
    """Local-backend jobs run in their own sessions: end every one a test started."""
    if jobs_dir.is_dir():
        end_jobs(jobs_dir)


def start_lab(root: Path, timeout: float = 90.0, jobs_dir: Path | None = None,
              ui: str = "lab") -> LabServer:
    """`jupyter lab` (ui="lab") or Notebook 7's `jupyter notebook` (ui="notebook") on a free
    loopback port with no token, serving root; waits for /api/status."""
    if ui not in UIS:
        raise ValueError(f"ui must be one of {UIS}, not {ui!r}")
    require("jobs", f"starts a Jupyter server ({ui})")
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    env = isolated_env(root, jobs_dir)
    port = free_port()
    log_path = root / ".home" / f"{_UI_MODULE[ui]}.log"
    log = open(log_path, "wb")
    cmd = [sys.executable, "-m", _UI_MODULE[ui], "--no-browser", "--ip", "127.0.0.1",
           "--port", str(port), "--ServerApp.port_retries=0",
           "--ServerApp.token=", "--ServerApp.password=", "--allow-root",
           f"--ServerApp.root_dir={root}", "--ServerApp.disable_check_xsrf=True"]
    if ui == "lab":
        cmd.append("--LabApp.news_url=")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    server = LabServer(root=root, port=port, proc=proc, env=env, log_path=log_path, _log=log, ui=ui)
    what = "jupyter lab" if ui == "lab" else "jupyter notebook"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            server.stop()
            raise RuntimeError(f"{what} exited ({proc.returncode}):\n{server.log()[-4000:]}")
        try:
            server.api("/api/status")
            return server
        except (OSError, urllib.error.URLError, ValueError):
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"{what} did not answer /api/status in {timeout:.0f} s:\n"
                               f"{server.log()[-4000:]}")
        time.sleep(0.3)


def launch_browser(playwright):
    require("browser", "starts Chromium")
    return playwright.chromium.launch(executable_path=require_chromium(), headless=True,
                                      args=CHROMIUM_ARGS)


def new_page(browser, width: int = 1280, height: int = 1000):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(TIMEOUT_MS)
    return page


# --- notebooks --------------------------------------------------------------------------------

# The cells of the notebook on screen (in JupyterLab, of the visible tab).
CELL_SELECTOR = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell"

def write_notebook(root: Path, name: str, cells: Iterable[str]) -> str:
    """A notebook of code cells at root/name (kernel python3); returns the relative path."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nbformat.write(nb, str(Path(root) / name))
    return name


def wait_for(page, selector: str, timeout: int = TIMEOUT_MS, state: str = "visible"):
    """The first element matching selector once it is in that state (default: visible)."""
    loc = page.locator(selector).first
    loc.wait_for(state=state, timeout=timeout)
    return loc


def wait_for_text(page, selector: str, text: str, timeout: int = TIMEOUT_MS):
    """The first element matching selector whose text contains text."""
    loc = page.locator(selector, has_text=text).first
    loc.wait_for(state="visible", timeout=timeout)
    return loc


def wait_kernel_idle(page, timeout: int = TIMEOUT_MS, settle: float = 3.0) -> None:
    """Wait until the notebook's kernel reports idle, then let it settle (comms, extensions)."""
    page.wait_for_function(
        """() => {
            const el = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) '
                                             + '.jp-Notebook-ExecutionIndicator');
            return el && el.getAttribute('data-status') === 'idle';
        }""", timeout=timeout)
    page.wait_for_timeout(int(settle * 1000))


def cells(page):
    return page.locator(CELL_SELECTOR)


def cell_output(page, index: int):
    """The output area of the index-th cell of the visible notebook."""
    return cells(page).nth(index).locator(".jp-Cell-outputWrapper")


def wait_cells_done(page, timeout: int = TIMEOUT_MS) -> None:
    """Every code cell has an execution count (none is queued or running: no '[*]')."""
    page.wait_for_function(
        """() => {
            const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
            if (!nb) return false;
            const prompts = [...nb.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')];
            return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
        }""", timeout=timeout)


def open_notebook(page, server: LabServer, path: str, timeout: int = TIMEOUT_MS) -> None:
    """Open the notebook at path in the server's UI and wait until its kernel is idle."""
    page.goto(server.notebook_url(path), wait_until="domcontentloaded")
    wait_for(page, CELL_SELECTOR, timeout=timeout)
    wait_kernel_idle(page, timeout=timeout)


def run_all_cells(page) -> None:
    """Run > Run All Cells: the same menu and command in JupyterLab and Notebook 7."""
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def run_notebook(page, server: LabServer, path: str, wait_done: bool = True,
                 timeout: int = TIMEOUT_MS) -> None:
    """Open the notebook (JupyterLab: /lab/tree/<path>, Notebook 7: /notebooks/<path>), wait for
    an idle kernel, Run > Run All Cells, wait until all ran."""
    open_notebook(page, server, path, timeout=timeout)
    run_all_cells(page)
    if wait_done:
        wait_cells_done(page, timeout=timeout)


def save_notebook(page, server: LabServer, path: str, timeout: int = TIMEOUT_MS) -> int:
    """Save the visible notebook as a person does (Ctrl+S, in both UIs), wait for the server to
    answer the save, and return the file's size in bytes."""
    def is_save(response) -> bool:
        return response.request.method == "PUT" and "/api/contents/" in response.url

    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").first.focus()
    with page.expect_response(is_save, timeout=timeout) as saved:
        page.keyboard.press("Control+s")
    if not saved.value.ok:
        raise AssertionError(f"saving {path} failed: HTTP {saved.value.status}")
    return (server.root / path).stat().st_size


# --- responsiveness --------------------------------------------------------------------------

# Records the browser main thread's long tasks (over 50 ms) from the first script of every
# document on: page.add_init_script(LONG_TASKS_INIT) before page.goto, then long_tasks(page).
LONG_TASKS_INIT = """
window.__smLongTasks = [];
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__smLongTasks.push([e.startTime, e.duration]);
  }).observe({entryTypes: ['longtask']});
} catch (e) { window.__smLongTasks = null; }
"""


def now_ms(page) -> float:
    """The page's clock (performance.now(), ms): the clock long tasks and events are stamped with."""
    return page.evaluate("() => performance.now()")


def long_tasks(page, since_ms: float = 0.0, until_ms: float | None = None) -> list[tuple[float, float]]:
    """(start, duration) in ms of the long tasks that started in [since_ms, until_ms) of the page's
    clock (needs LONG_TASKS_INIT)."""
    tasks = page.evaluate("() => window.__smLongTasks")
    if tasks is None:
        raise RuntimeError("no long-task records: add_init_script(LONG_TASKS_INIT) before opening the page")
    return [(start, dur) for start, dur in tasks
            if start >= since_ms and (until_ms is None or start < until_ms)]


_ARM_CLICK = """([selector, index]) => {
    const cell = document.querySelectorAll(selector)[index];
    if (!cell) return null;
    const target = cell.querySelector('.jp-InputArea-prompt') || cell;
    const box = target.getBoundingClientRect();
    const rec = window.__smClick = {down: null, active: null};
    const onDown = (e) => { if (rec.down === null) rec.down = e.timeStamp; };
    window.addEventListener('mousedown', onDown, {capture: true, once: true});
    const check = () => {
        if (rec.active === null && rec.down !== null && cell.classList.contains('jp-mod-active')) {
            rec.active = performance.now();
            observer.disconnect();
        }
    };
    const observer = new MutationObserver(check);
    observer.observe(cell, {attributes: true, attributeFilter: ['class']});
    window.addEventListener('mousedown', () => queueMicrotask(check), {once: true});
    return {x: box.left + box.width / 2, y: box.top + box.height / 2,
            active: cell.classList.contains('jp-mod-active'),
            visible: box.bottom > 0 && box.top < window.innerHeight && box.width > 0};
}"""


def click_cell_latency(page, index: int, timeout: int = TIMEOUT_MS) -> tuple[float, float]:
    """Click the index-th cell's prompt (a real mouse click; the cell must be on screen and not
    the active one) and return how long it took to become the active cell, in ms: (measured in
    the page, from the mousedown event's timestamp, which is when the browser got the click, to
    the cell's jp-mod-active class; measured here, around the click and the wait)."""
    armed = page.evaluate(_ARM_CLICK, [CELL_SELECTOR, index])
    if armed is None or not armed["visible"]:
        raise AssertionError(f"cell {index} is not on screen: {armed}")
    if armed["active"]:
        raise AssertionError(f"cell {index} is already the active cell: click another one first")
    start = time.monotonic()
    page.mouse.click(armed["x"], armed["y"])
    page.wait_for_function("() => window.__smClick.active !== null", timeout=timeout)
    wall = (time.monotonic() - start) * 1000
    rec = page.evaluate("() => window.__smClick")
    return rec["active"] - rec["down"], wall


_ARM_RUN = """([selector, index]) => {
    const cell = document.querySelectorAll(selector)[index];
    const prompt = cell.querySelector('.jp-InputArea-prompt');
    const rec = window.__smRun = {down: null, done: null, before: prompt.textContent};
    window.addEventListener('keydown', (e) => { rec.down = e.timeStamp; }, {capture: true, once: true});
}"""

_RUN_DONE = """([selector, index, text]) => {
    const rec = window.__smRun;
    const cell = document.querySelectorAll(selector)[index];
    const prompt = cell.querySelector('.jp-InputArea-prompt').textContent;
    const outputs = [...cell.querySelectorAll('.jp-OutputArea-output')].map((o) => o.textContent).join('\\n');
    if (rec.down !== null && /\\[\\d+\\]/.test(prompt) && prompt !== rec.before && outputs.includes(text)) {
        if (rec.done === null) rec.done = performance.now();
        return true;
    }
    return false;
}"""


def run_cell_latency(page, index: int, expect: str, timeout: int = TIMEOUT_MS) -> tuple[float, float]:
    """Make the index-th cell the active one, run it (Ctrl+Enter) and wait until it has a new
    execution count and its output shows `expect`. Returns the time that took, in ms: (measured in
    the page, from the key press to the output; measured here)."""
    active = page.evaluate("([selector, index]) => document.querySelectorAll(selector)[index]"
                           ".classList.contains('jp-mod-active')", [CELL_SELECTOR, index])
    if not active:
        click_cell_latency(page, index, timeout=timeout)
    page.evaluate(_ARM_RUN, [CELL_SELECTOR, index])
    start = time.monotonic()
    page.keyboard.press("Control+Enter")
    page.wait_for_function(_RUN_DONE, arg=[CELL_SELECTOR, index, expect], timeout=timeout)
    wall = (time.monotonic() - start) * 1000
    rec = page.evaluate("() => window.__smRun")
    return rec["done"] - rec["down"], wall


def dom_nodes(locator) -> int:
    """Elements under (and including) the first element locator matches."""
    return locator.first.evaluate("(el) => el.getElementsByTagName('*').length + 1")


def expect_text(locator, text: str, timeout: int = TIMEOUT_MS) -> None:
    """Wait until locator's text contains text (Playwright's retrying assertion)."""
    from playwright.sync_api import expect

    expect(locator).to_contain_text(text, timeout=timeout)
