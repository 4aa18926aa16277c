"""A JupyterLab server and a headless Chromium for browser tests and screenshots.

Used by tests/e2e/conftest.py and scripts/screenshot.py. Everything the server and its kernels
write (registry, jobs, HF_HOME, Jupyter runtime/config/data, HOME) lives under one root directory.
The browser is Debian's chromium (``make browser`` installs it); Playwright's own download is
never used.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, for the shared job helpers
from jobscripts import end_jobs  # noqa: E402

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


def isolated_env(root: Path, jobs_dir: Optional[Path] = None) -> dict:
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

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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


def start_lab(root: Path, timeout: float = 90.0, jobs_dir: Optional[Path] = None) -> LabServer:
    """`jupyter lab` on a free loopback port with no token, serving root; waits for /api/status."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    env = isolated_env(root, jobs_dir)
    port = free_port()
    log_path = root / ".home" / "jupyterlab.log"
    log = open(log_path, "wb")
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip", "127.0.0.1",
           "--port", str(port), "--ServerApp.port_retries=0",
           "--ServerApp.token=", "--ServerApp.password=", "--allow-root",
           f"--ServerApp.root_dir={root}", "--LabApp.news_url=",
           "--ServerApp.disable_check_xsrf=True"]
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    server = LabServer(root=root, port=port, proc=proc, env=env, log_path=log_path, _log=log)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            server.stop()
            raise RuntimeError(f"jupyter lab exited ({proc.returncode}):\n{server.log()[-4000:]}")
        try:
            server.api("/api/status")
            return server
        except (OSError, urllib.error.URLError, ValueError):
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"jupyter lab did not answer /api/status in {timeout:.0f} s:\n"
                               f"{server.log()[-4000:]}")
        time.sleep(0.3)


def launch_browser(playwright):
    return playwright.chromium.launch(executable_path=require_chromium(), headless=True,
                                      args=CHROMIUM_ARGS)


def new_page(browser, width: int = 1280, height: int = 1000):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(TIMEOUT_MS)
    return page


# --- notebooks --------------------------------------------------------------------------------

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
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")


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


def run_notebook(page, server: LabServer, path: str, wait_done: bool = True,
                 timeout: int = TIMEOUT_MS) -> None:
    """Open /lab/tree/<path>, wait for an idle kernel, Run > Run All Cells, wait until all ran."""
    page.goto(f"{server.url}/lab/tree/{path}?reset", wait_until="domcontentloaded")
    wait_for(page, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell", timeout=timeout)
    wait_kernel_idle(page, timeout=timeout)
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    if wait_done:
        wait_cells_done(page, timeout=timeout)


def expect_text(locator, text: str, timeout: int = TIMEOUT_MS) -> None:
    """Wait until locator's text contains text (Playwright's retrying assertion)."""
    from playwright.sync_api import expect

    expect(locator).to_contain_text(text, timeout=timeout)
