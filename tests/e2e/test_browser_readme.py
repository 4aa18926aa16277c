"""The README's first screen, as a newcomer opens it next to their notebooks (issue 24).

In JupyterLab the README is opened as a person opens it rendered: the file browser's right-click
menu, Open With > Markdown Preview, in a 1280x900 window with the file browser open. Its first
screen (what shows before any scrolling) must hold the install commands, whole, each on one line
(a wrapped comment once put `pip install torch` on a line of its own, reading as one more
command), and the start of the quickstart: its heading and its first cell. (Not a link to it: in
this JupyterLab's preview an in-page `#quickstart` link does not scroll, measured.)

Notebook 7 has no Markdown preview (its Open With offers only Editor): README.md opens as text at
/edit/README.md. There the first screen must show the intro naming the two steps (`%load_ext
sm_magic`, then a `%%sagemaker_train` cell), the install commands, whole, and the way into an
existing Jupyter; the quickstart's own heading is on line 45 of the text, below that screen.
"""

import shutil
from pathlib import Path

import pytest

from helpers import lab

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]  # one worker: one server per UI

README = Path(__file__).resolve().parents[2] / "README.md"
WIDTH, HEIGHT = 1280, 900
INSTALL = "pip install . jupyterlab"
FIRST_CELL = "%load_ext sm_magic"  # the quickstart's first cell

# In the preview's visible box: the install block (whole? its source lines, and the line boxes
# they take), the Quickstart heading and the quickstart's first code block (whole?).
PREVIEW = """([install, first]) => {
    const doc = document.querySelector('.jp-MarkdownViewer:not(.lm-mod-hidden)');
    const view = doc.getBoundingClientRect();
    const whole = (el) => { if (!el) return null; const r = el.getBoundingClientRect();
                            return r.height > 0 && r.top >= view.top && r.bottom <= view.bottom; };
    const pres = [...doc.querySelectorAll('pre')];
    const pre = pres.find(p => p.textContent.includes(install));
    const code = pre && pre.querySelector('code');  // inline: one client rect per line box
    const heading = [...doc.querySelectorAll('h2')].find(h => h.textContent.startsWith('Quickstart'));
    return {install: whole(pre), lines: pre ? pre.textContent.replace(/\\n$/, '').split('\\n') : [],
            boxes: code ? code.getClientRects().length : 0, quickstart: whole(heading),
            first: whole(pres.find(p => p.textContent.trim() === first))};
}"""


@pytest.fixture
def page(browser):
    """A 1280x900 window (conftest's `page` is 1000 tall); a failing test leaves its screenshot."""
    page = lab.new_page(browser, WIDTH, HEIGHT)
    yield page
    page.close()


@pytest.fixture
def readme(lab_server):
    shutil.copy(README, lab_server.root / "README.md")
    return "README.md"


def _open_preview(page, server, name):
    page.goto(f"{server.url}/lab?reset", wait_until="domcontentloaded")
    page.locator(".jp-DirListing-item", has_text=name).first.click(button="right")
    page.locator(".lm-Menu-item", has_text="Open With").hover()
    page.locator(".lm-Menu-item", has_text="Markdown Preview").click()
    viewer = page.locator(".jp-MarkdownViewer:not(.lm-mod-hidden)")
    viewer.locator("h1", has_text="sm_magic").wait_for()
    return viewer


def test_the_readme_first_screen_has_the_install_and_the_quickstart(page, lab_server, readme, shot):
    if lab_server.ui == "lab":
        _check_preview(page, lab_server, readme, shot)
    else:
        _check_editor(page, lab_server, readme, shot)


def _check_preview(page, server, readme, shot):
    viewer = _open_preview(page, server, readme)
    viewer.locator("pre", has_text=FIRST_CELL).first.wait_for()
    first = page.evaluate(PREVIEW, [INSTALL, FIRST_CELL])
    assert first["install"], f"the install commands are not whole on the first screen: {first}"
    assert any(line.startswith("jupyter lab") for line in first["lines"]) and INSTALL in first["lines"], first
    assert first["boxes"] == len(first["lines"]), \
        f"an install line wraps at {WIDTH} px: {len(first['lines'])} lines take {first['boxes']}: {first['lines']}"
    assert first["quickstart"] and first["first"], f"the quickstart does not start on the first screen: {first}"
    shot(page, "readme-first-screen")


# The editor's lines wholly on screen, in order (CodeMirror renders only about what is in view).
EDITOR = """() => {
    const scroller = document.querySelector('.jp-FileEditor .cm-scroller');
    const view = scroller.getBoundingClientRect();
    return [...scroller.querySelectorAll('.cm-line')].filter(line => {
        const r = line.getBoundingClientRect();
        return r.height > 0 && r.top >= view.top && r.bottom <= view.bottom;
    }).map(line => line.textContent);
}"""


def _check_editor(page, server, readme, shot):
    # Notebook 7's file browser opens a Markdown file here, as text (it has no preview).
    page.goto(f"{server.url}/edit/{readme}", wait_until="domcontentloaded")
    page.locator(".jp-FileEditor .cm-line", has_text=INSTALL).first.wait_for()
    shown = page.evaluate(EDITOR)
    assert any(INSTALL in line for line in shown) and any(line.startswith("jupyter lab") for line in shown), shown
    assert "`%%sagemaker_train` cell: the cell becomes a training script, the job runs (on this machine with no" \
        in shown, shown  # the intro's first two steps: %load_ext sm_magic, then a %%sagemaker_train cell
    assert any(line.startswith("**Into a Jupyter you already have**") for line in shown), shown
    shot(page, "readme-first-screen")
