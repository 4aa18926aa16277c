"""An old live widget after a kernel restart (issue 24), in JupyterLab and in Notebook 7.

A job's progress widget needs the kernel that made it. After "Restart Kernel" the old widget
must not stay with a Stop button that looks live and does nothing: in its place a note says the
kernel is gone, that the job keeps running and that `%sagemaker_attach NAME` follows it again;
and that command, run in the new kernel, does. The same note shows in a notebook saved while the
job ran and reopened later (instead of "Error displaying widget" alone). A job that ends while
its kernel lives leaves its summary and nothing else: no note, no empty output.

The job is gated: before its third epoch the script waits for a file the test writes, so it is
certainly still running across the restart, and ends as soon as the test lets it.
"""

import json

import pytest

from helpers import lab
from helpers.jobscripts import script

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]  # one worker: one server per UI

NAME = "e2e-restart"
GATE_S = 300  # the longest the script waits for the gate: a test that fails never leaves it running
GATED = script("""
    import argparse, os, time
    parser = argparse.ArgumentParser()
    parser.add_argument("--gate", required=True)
    args = parser.parse_args()
    for epoch in range(4):
        if epoch == 2:
            deadline = time.monotonic() + %d
            while not os.path.exists(args.gate) and time.monotonic() < deadline:
                time.sleep(0.05)
        print(f"epoch {epoch}: {{'loss': {1.0 / (epoch + 1)}}}", flush=True)
        time.sleep(0.2)
""" % GATE_S)
LOAD, JOB, ATTACH = 0, 1, 2

# Which of a cell's outputs show: one entry per output (its classes' key parts, shown or not,
# its height). Read in one call, so an output replaced between two reads cannot trip a test.
OUTPUTS = """(cell) => [...cell.querySelectorAll('.jp-OutputArea-child')].map((o) => ({
    shown: o.getClientRects().length > 0 && getComputedStyle(o).display !== 'none',
    height: o.getBoundingClientRect().height,
    live: !!o.querySelector('.sm-magic-progress'),
    summary: !!o.querySelector('.sm-magic-summary'),
    note: !!o.querySelector('.sm-magic-disconnected'),
    error: o.textContent.includes('Error displaying widget'),
    text: o.textContent.slice(0, 120)}))"""


def _outputs(page, index):
    return lab.cells(page).nth(index).evaluate(OUTPUTS)


def _shown(page, index):
    return [o for o in _outputs(page, index) if o["shown"]]


def _only_the_summary(page, index, what):
    """The cell shows the summary and nothing else: no note, no empty output's space."""
    shown = _shown(page, index)
    assert [o["summary"] for o in shown] == [True], f"{what}: {_outputs(page, index)}"
    area = lab.cell_output(page, index).locator(".jp-OutputArea").first.bounding_box()["height"]
    assert abs(area - shown[0]["height"]) <= 1, f"{what}: outputs {area:.0f} px tall, the summary {shown[0]['height']:.0f} px"


def _restart_kernel(page):
    page.locator(".lm-MenuBar-item", has_text="Kernel").first.click()
    page.get_by_role("menuitem", name="Restart Kernel…").click()
    page.locator(".jp-Dialog button.jp-mod-accept").click()


def _expect_the_note_instead_of_the_widget(page, what):
    out = lab.cell_output(page, JOB)
    note = out.locator(".sm-magic-disconnected")
    note.wait_for(state="visible", timeout=lab.TIMEOUT_MS)
    text = note.inner_text()
    assert "Disconnected from the kernel" in text and f"%sagemaker_attach {NAME}" in text, text
    assert f"job {NAME} keeps running" in text, text
    # Nothing of the dead widget shows: no Stop button to press, no image.
    for selector in (".sm-magic-progress", "button.sm-magic-stop", "img.sm-magic-plot"):
        assert all(el.is_hidden() for el in out.locator(selector).all()), f"{selector} shows {what}"
    shown = _shown(page, JOB)
    assert [o["note"] for o in shown] == [True], f"{what}, the job cell shows {shown}"


@pytest.fixture
def nb_page(browser, lab_server):  # named as conftest expects, for a screenshot on failure
    gate = lab_server.root / f"{NAME}.gate"
    cells = ["%load_ext sm_magic", f"%%sagemaker_train --name {NAME} -- --gate {gate}\n{GATED}",
             f"%load_ext sm_magic\n%sagemaker_attach {NAME}"]
    path = lab.write_notebook(lab_server.root, "restart.ipynb", cells)
    page = lab.new_page(browser)
    lab.open_notebook(page, lab_server, path)
    page.gate, page.nb_path = gate, path
    yield page
    gate.touch()  # whatever happened, the job may end
    page.close()


def test_after_a_restart_the_old_widget_says_how_to_follow_the_job_again(nb_page, lab_server, shot):
    page = nb_page
    lab.click_cell_latency(page, JOB)  # so that LOAD is not the active cell, which may lack the focus
    lab.run_cell_latency(page, LOAD, "")
    lab.run_cell_latency(page, JOB, NAME)
    out = lab.cell_output(page, JOB)
    live = out.locator(".sm-magic-progress")
    # Two epochs in, the job waits at the gate: its plot is drawn, its Stop button live.
    out.locator("img.sm-magic-plot").wait_for(state="visible", timeout=lab.TIMEOUT_MS)
    assert live.locator("button.sm-magic-stop").is_enabled()
    assert out.locator(".sm-magic-disconnected").is_hidden()  # no note while the widget lives
    assert [o["live"] for o in _shown(page, JOB)] == [True], _outputs(page, JOB)
    lab.save_notebook(page, lab_server, page.nb_path)  # saved while the job runs

    _restart_kernel(page)
    _expect_the_note_instead_of_the_widget(page, "after the restart")
    shot(lab.cells(page).nth(JOB), "restart-old-widget")

    # Reopened from the file saved while the job ran: the note, not "Error displaying widget".
    page.reload(wait_until="domcontentloaded")
    lab.wait_for(page, lab.CELL_SELECTOR)
    lab.wait_kernel_idle(page)
    out.locator(".jupyter-widgets", has_text="Error displaying widget").wait_for(state="attached",
                                                                                 timeout=lab.TIMEOUT_MS)
    _expect_the_note_instead_of_the_widget(page, "in the reopened notebook")

    # What the note says works: the new kernel follows the job, live, to its end.
    lab.run_cell_latency(page, ATTACH, NAME)
    attached = lab.cell_output(page, ATTACH)
    attached.locator(".sm-magic-progress button.sm-magic-stop").wait_for(state="visible", timeout=lab.TIMEOUT_MS)
    page.gate.touch()
    summary = attached.locator(".sm-magic-summary")
    summary.wait_for(state="visible", timeout=lab.TIMEOUT_MS)
    lab.expect_text(summary.locator(".sm-magic-status"), "Completed")
    assert "epoch" in summary.locator("table.sm-magic-metrics").inner_text()
    # The job ended while this kernel lives: the summary alone, no note and no empty output.
    _only_the_summary(page, ATTACH, "the job ended")

    # Saved and reopened after the end: the summary alone still.
    lab.save_notebook(page, lab_server, page.nb_path)
    saved = json.loads((lab_server.root / page.nb_path).read_text())["cells"][ATTACH]["outputs"]
    assert "sm-magic-summary" in json.dumps(saved) and "sm-magic-companion-ended" in json.dumps(saved)
    page.reload(wait_until="domcontentloaded")
    lab.wait_for(page, lab.CELL_SELECTOR)
    lab.cell_output(page, ATTACH).locator(".sm-magic-summary").wait_for(state="visible", timeout=lab.TIMEOUT_MS)
    _only_the_summary(page, ATTACH, "reopened after the job ended")
