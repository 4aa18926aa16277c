"""An old live widget after a kernel restart (issue 24), in JupyterLab and in Notebook 7.

A job's progress widget needs the kernel that made it. After "Restart Kernel" the old widget
must not stay with a Stop button that looks live and does nothing: in its place a note says the
kernel is gone, that the job keeps running and that `%sagemaker_attach NAME` follows it again;
and that command, run in the new kernel, does. The same note shows in a notebook saved while the
job ran and reopened later (instead of "Error displaying widget" alone). A job that ends while
its kernel lives leaves its summary and nothing else: no note, no empty output (after
`%sagemaker_attach`, under a `--wait -o job` cell and under `job` as a later cell's value); and
the note never flashes while a widget lives.

The same holds for a sweep's widget, whose note says the sweep's started jobs go on.

The jobs are gated: before the third epoch the script waits for a file the test writes, so a job
is certainly still running across the restart, and ends as soon as the test lets it.
"""

import json
from dataclasses import dataclass

import pytest

from helpers import lab
from helpers.jobscripts import EPOCHS_SCRIPT, script

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]  # one worker: one server per UI

GATE_S = 300  # the longest the script waits for the gate: a test that fails never leaves it running
GATED = script("""
    import argparse, os, time
    parser = argparse.ArgumentParser()
    parser.add_argument("--gate", required=True)
    args, _ = parser.parse_known_args()  # a sweep adds --lr
    for epoch in range(4):
        if epoch == 2:
            deadline = time.monotonic() + %d
            while not os.path.exists(args.gate) and time.monotonic() < deadline:
                time.sleep(0.05)
        print(f"epoch {epoch}: {{'loss': {1.0 / (epoch + 1)}}}", flush=True)
        time.sleep(0.2)
""" % GATE_S)
LOAD, JOB, ATTACH = 0, 1, 2


@dataclass
class View:
    """A live view under test: how its cell launches it, and its parts' selectors."""
    name: str
    launch: str        # the cell, with {gate} for the gate file's path
    what: str          # "job" or "sweep": what the note says keeps running
    live: str
    summary: str
    stop: str
    image: str


JOB_VIEW = View("e2e-restart", "%%sagemaker_train --name e2e-restart -- --gate {gate}\n" + GATED, "job",
                ".sm-magic-progress", ".sm-magic-summary", "button.sm-magic-stop", "img.sm-magic-plot")
SWEEP_VIEW = View("e2e-rsweep", "%%sagemaker_train --name e2e-rsweep --sweep lr=0.1,0.2 --sweep-max-parallel 2 "
                  "-- --gate {gate}\n" + GATED, "sweep",
                  ".sm-magic-sweep", ".sm-magic-sweep-summary", "button.sm-magic-sweep-stop", "img.sm-magic-sweep-plot")

# Which of a cell's outputs show, and what each holds. Read in one call, so an output replaced
# between two reads cannot trip a test.
OUTPUTS = """([selector, index, live, summary]) => [...document.querySelectorAll(selector)[index]
        .querySelectorAll('.jp-OutputArea-child')].map((o) => ({
    shown: o.getClientRects().length > 0 && getComputedStyle(o).display !== 'none',
    height: o.getBoundingClientRect().height,
    live: !!o.querySelector(live),
    summary: !!o.querySelector(summary),
    note: !!o.querySelector('.sm-magic-disconnected'),
    text: o.textContent.slice(0, 120)}))"""


# Counts the animation frames in which a companion's note was visible, from now on: it must never
# flash while a widget lives (before its view renders, the note's rule alone would show it).
WATCH_NOTES = """() => { window.__smNotes = 0; const tick = () => {
    for (const el of document.querySelectorAll('.sm-magic-disconnected'))
        if (el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden') window.__smNotes++;
    requestAnimationFrame(tick); }; tick(); }"""


def _outputs(page, index, view):
    return page.evaluate(OUTPUTS, [lab.CELL_SELECTOR, index, view.live, view.summary])


def _shown(page, index, view):
    return [o for o in _outputs(page, index, view) if o["shown"]]


def _only_the_summary(page, index, view, what):
    """The cell shows the summary and nothing else: no note, no empty output's space."""
    shown = _shown(page, index, view)
    assert [o["summary"] for o in shown] == [True], f"{what}: {_outputs(page, index, view)}"
    area = lab.cell_output(page, index).locator(".jp-OutputArea").first.bounding_box()["height"]
    assert abs(area - shown[0]["height"]) <= 1, (f"{what}: the outputs are {area:.0f} px tall, "
                                                 f"the summary {shown[0]['height']:.0f} px")


def _restart_kernel(page):
    page.locator(".lm-MenuBar-item", has_text="Kernel").first.click()
    page.get_by_role("menuitem", name="Restart Kernel…").click()
    page.locator(".jp-Dialog button.jp-mod-accept").click()


def _expect_the_note_instead_of_the_widget(page, view, what, dead_view=True):
    """The launching cell shows the note alone: not the dead view (after a restart, still on the
    page), nor "Error displaying widget" (reopened: no view at all)."""
    out = lab.cell_output(page, JOB)
    note = out.locator(".sm-magic-disconnected")
    note.wait_for(state="visible", timeout=lab.TIMEOUT_MS)
    text = note.inner_text()
    assert "Disconnected from the kernel" in text and f"%sagemaker_attach {view.name}" in text, text
    assert f"{view.what} {view.name} " in text, text
    # Nothing of the dead widget shows: no Stop button to press, no image.
    for selector in (view.live, view.stop, view.image) if dead_view else ():
        assert out.locator(selector).count() and all(el.is_hidden() for el in out.locator(selector).all()), \
            f"{selector} shows {what}"
    shown = _shown(page, JOB, view)
    assert [o["note"] for o in shown] == [True], f"{what}, the launching cell shows {shown}"


@pytest.fixture
def nb_page(browser, lab_server):  # named as conftest expects, for a screenshot on failure
    page = lab.new_page(browser)
    page.gates = []
    yield page
    for gate in page.gates:  # whatever happened, the jobs may end
        gate.touch()
    page.close()


def _launch(page, lab_server, view):
    """Open a notebook of three cells: `%load_ext sm_magic`, the view's launching cell and
    `%sagemaker_attach NAME` (with `%load_ext`, for the new kernel); run the first two; wait
    until the live widget has drawn its plot (the jobs wait at their gate). Returns the gate."""
    gate = lab_server.root / f"{view.name}.gate"
    page.gates.append(gate)
    cells = ["%load_ext sm_magic", view.launch.replace("{gate}", str(gate)), f"%load_ext sm_magic\n%sagemaker_attach {view.name}"]
    page.nb_path = lab.write_notebook(lab_server.root, f"{view.name}.ipynb", cells)
    lab.open_notebook(page, lab_server, page.nb_path)
    page.evaluate(WATCH_NOTES)
    lab.click_cell_latency(page, JOB)  # so that LOAD is not the active cell, which may lack the focus
    lab.run_cell_latency(page, LOAD, "")
    lab.run_cell_latency(page, JOB, view.name)
    out = lab.cell_output(page, JOB)
    out.locator(view.image).wait_for(state="visible", timeout=lab.TIMEOUT_MS)
    assert out.locator(view.stop).is_enabled()
    # No note while the widget lives, not even for a frame while its view was being made.
    assert out.locator(".sm-magic-disconnected").is_hidden()
    assert page.evaluate("() => window.__smNotes") == 0, "the note flashed while the widget lived"
    assert [o["live"] for o in _shown(page, JOB, view)] == [True], _outputs(page, JOB, view)
    return gate


def _follow_again(page, view, gate):
    """Run `%sagemaker_attach NAME` in the new kernel: the live widget, then (the gate open) the
    summary alone: the work ended while this kernel lives, so no note and no empty output."""
    lab.run_cell_latency(page, ATTACH, view.name)
    attached = lab.cell_output(page, ATTACH)
    attached.locator(f"{view.live} {view.stop}").wait_for(state="visible", timeout=lab.TIMEOUT_MS)
    gate.touch()
    summary = attached.locator(view.summary)
    summary.wait_for(state="visible", timeout=lab.TIMEOUT_MS)
    _only_the_summary(page, ATTACH, view, "the work ended")
    return summary


def test_after_a_restart_the_old_widget_says_how_to_follow_the_job_again(nb_page, lab_server, shot):
    page, view = nb_page, JOB_VIEW
    gate = _launch(page, lab_server, view)
    lab.save_notebook(page, lab_server, page.nb_path)  # saved while the job runs

    _restart_kernel(page)
    _expect_the_note_instead_of_the_widget(page, view, "after the restart")
    assert "keeps running" in lab.cell_output(page, JOB).locator(".sm-magic-disconnected").inner_text()
    shot(lab.cells(page).nth(JOB), "restart-old-widget")

    # Reopened from the file saved while the job ran: the note, not "Error displaying widget".
    page.reload(wait_until="domcontentloaded")
    lab.wait_for(page, lab.CELL_SELECTOR)
    lab.wait_kernel_idle(page)
    out = lab.cell_output(page, JOB)
    out.locator(".jupyter-widgets", has_text="Error displaying widget").wait_for(state="attached",
                                                                                 timeout=lab.TIMEOUT_MS)
    _expect_the_note_instead_of_the_widget(page, view, "in the reopened notebook", dead_view=False)

    # What the note says works: the new kernel follows the job, live, to its end.
    summary = _follow_again(page, view, gate)
    lab.expect_text(summary.locator(".sm-magic-status"), "Completed")
    assert "epoch" in summary.locator("table.sm-magic-metrics").inner_text()

    # Saved and reopened after the end: the summary alone still.
    lab.save_notebook(page, lab_server, page.nb_path)
    saved = json.dumps(json.loads((lab_server.root / page.nb_path).read_text())["cells"][ATTACH]["outputs"])
    assert "sm-magic-summary" in saved and "sm-magic-companion-ended" in saved
    page.reload(wait_until="domcontentloaded")
    lab.wait_for(page, lab.CELL_SELECTOR)
    lab.cell_output(page, ATTACH).locator(view.summary).wait_for(state="visible", timeout=lab.TIMEOUT_MS)
    _only_the_summary(page, ATTACH, view, "reopened after the job ended")


def test_after_a_restart_the_old_sweep_widget_says_how_to_follow_the_sweep_again(nb_page, lab_server, shot):
    page, view = nb_page, SWEEP_VIEW
    gate = _launch(page, lab_server, view)
    _restart_kernel(page)
    _expect_the_note_instead_of_the_widget(page, view, "after the restart")
    assert "started jobs keep running" in lab.cell_output(page, JOB).locator(".sm-magic-disconnected").inner_text()
    shot(lab.cells(page).nth(JOB), "restart-old-sweep-widget")
    summary = _follow_again(page, view, gate)
    lab.expect_text(summary.locator(".sm-magic-sweep-header"), "2 Completed")


def test_a_waited_job_and_its_value_leave_the_summary_and_no_note(nb_page, lab_server):
    """`--wait -o job`: the widget while the cell blocks, then its summary and the streamed lines,
    no note and no empty output; `job` as a later cell's value shows the summary alone."""
    page, view = nb_page, JOB_VIEW
    cells = ["%load_ext sm_magic", f"%%sagemaker_train --wait -o job --name e2e-wait\n{EPOCHS_SCRIPT}", "job"]
    page.nb_path = lab.write_notebook(lab_server.root, "e2e-wait.ipynb", cells)
    lab.open_notebook(page, lab_server, page.nb_path)
    page.evaluate(WATCH_NOTES)
    lab.run_all_cells(page)
    lab.wait_cells_done(page, timeout=180_000)
    out = lab.cell_output(page, JOB)
    lab.expect_text(out.locator(view.summary + " .sm-magic-status"), "Completed")
    shown = _shown(page, JOB, view)
    assert [o["summary"] for o in shown] == [True, False], _outputs(page, JOB, view)  # the summary, the stream
    assert "Starting - Preparing the instances for training" in shown[1]["text"], shown  # the --wait stream
    assert sum(o["height"] for o in shown) >= out.locator(".jp-OutputArea").first.bounding_box()["height"] - 1
    value = lab.cell_output(page, ATTACH).locator(view.summary)
    value.wait_for(state="visible", timeout=lab.TIMEOUT_MS)
    _only_the_summary(page, ATTACH, view, "`job` after the end")
    assert page.evaluate("() => window.__smNotes") == 0, "the note showed though no kernel was lost"
