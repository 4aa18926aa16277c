"""A sweep followed in JupyterLab and in Notebook 7 (every test runs in both, conftest.py): its
widget's table (one row per job with its swept value, status, progress and each metric's latest
and best value), the dropdown that picks the plotted metric, the static summary that replaces it
at the end, and Stop for the whole sweep.

One notebook, run once (Run > Run All Cells): `%load_ext sm_magic`, a 2-job sweep whose jobs log
two epochs and then wait for a file the test writes (so the live widget is looked at while they
run, however slow the machine), then log two more and complete; and a 3-job sweep, one at a time,
whose first job runs until someone presses Stop.
"""

import pytest

from helpers import lab

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]  # one worker: one server per UI

SCRIPT = """\
import argparse, os, time
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float); p.add_argument("--epochs", type=int); p.add_argument("--release")
a = p.parse_args()
for epoch in range(a.epochs):
    if epoch == a.epochs // 2:  # half way: wait until the test has looked at the live widget
        deadline = time.time() + 240
        while not os.path.exists(a.release) and time.time() < deadline:
            time.sleep(0.2)
    loss, acc = round(a.lr * 10 / (epoch + 1), 4), round(0.5 + a.lr + 0.05 * epoch, 4)
    print(f"epoch {epoch}: {{'loss': {loss}, 'accuracy': {acc}}}", flush=True)
    time.sleep(0.3)
"""

STOP_SCRIPT = """\
import argparse, time
p = argparse.ArgumentParser()
p.add_argument("--lr")
p.parse_args()
print("epoch 0: {'loss': 0.9}", flush=True)
time.sleep(300)
"""

SWEEP, STOP = 1, 2

# The sweep cell's live widget (or summary) as a plain object, read in one call (the widget may be
# replaced by the summary between two reads).
STATE = """([selector, index]) => {
    const cell = document.querySelectorAll(selector)[index];
    const live = cell.querySelector('.sm-magic-sweep');
    const summary = cell.querySelector('.sm-magic-sweep-summary');
    const root = live || summary;
    if (!root) return {live: false, summary: false};
    const text = (el) => el ? el.innerText.split(/\\s+/).join(' ').trim() : null;
    const table = root.querySelector('table.sm-magic-sweep-rows');
    const head = table ? [...table.querySelectorAll('thead th')].map(text) : [];
    const rows = {};
    if (table) for (const tr of table.querySelectorAll('tbody tr[data-job]')) {
        const cells = [...tr.querySelectorAll('td')].map(text);
        rows[cells[0]] = Object.fromEntries(head.map((h, i) => [h, cells[i]]));
    }
    const select = live ? live.querySelector('.sm-magic-sweep-metric select') : null;
    const plot = root.querySelector('img.sm-magic-sweep-plot');
    return {live: !!live, summary: !!summary, head, rows,
            header: text(root.querySelector('.sm-magic-sweep-header')),
            options: select ? [...select.options].map(o => o.textContent) : null,
            selected: select ? select.value : null,
            plot: plot && plot.getClientRects().length > 0 ? plot.getAttribute('src') : null,
            plot_alt: plot ? plot.getAttribute('alt') : null,
            stop_note: text(root.querySelector('.sm-magic-sweep-stop-note'))};
}"""


def _cells(lab_server) -> list[str]:
    release = lab_server.root / "release-sweep"
    sweep = (f"%%sagemaker_train --backend local --name e2e-sweep --sweep lr=0.1,0.2 --sweep-max-parallel 2 "
             f"-- --epochs 4 --release {release}\n" + SCRIPT)
    stop = "%%sagemaker_train --backend local --name e2e-halt --sweep lr=1,2,3 --sweep-max-parallel 1\n" + STOP_SCRIPT
    return ["%load_ext sm_magic", sweep, stop]


@pytest.fixture(scope="module")
def nb_page(browser, lab_server):
    path = lab.write_notebook(lab_server.root, "sweep.ipynb", _cells(lab_server))
    page = lab.new_page(browser)
    lab.run_notebook(page, lab_server, path)  # the sweep cells return at once; their jobs run on
    yield page
    page.close()


def _state(page, index: int) -> dict:
    return page.evaluate(STATE, [lab.CELL_SELECTOR, index])


def _until(page, index: int, condition, what: str, timeout_ms: int = lab.TIMEOUT_MS) -> dict:
    """The cell's state once `condition(state)` holds (polled in the page's own time)."""
    deadline = lab.now_ms(page) + timeout_ms
    state: dict = {}
    while lab.now_ms(page) < deadline:
        state = _state(page, index)
        if condition(state):
            return state
        page.wait_for_timeout(200)
    raise AssertionError(f"timed out waiting for {what}; last seen: {state}")


def test_a_sweep_shows_one_row_per_job_a_metric_picker_and_its_summary(nb_page, lab_server):
    page = nb_page

    def running(s):  # both jobs half way: two epochs logged each, waiting for the release file
        return s["live"] and all((s["rows"].get(j) or {}).get("progress") == "50%" for j in ("e2e-sweep-1", "e2e-sweep-2")) \
            and s["options"] == ["loss", "accuracy"] and s["plot"]
    live = _until(page, SWEEP, running, "both jobs' second epoch in the live widget")
    assert "Sweep e2e-sweep" in live["header"] and "2 jobs, at most 2 at a time" in live["header"]
    assert live["head"][:6] == ["job", "lr", "status", "progress", "loss last / min", "accuracy last / max"]
    assert list(live["rows"]) == ["e2e-sweep-1", "e2e-sweep-2"]
    one, two = live["rows"]["e2e-sweep-1"], live["rows"]["e2e-sweep-2"]
    assert (one["lr"], two["lr"]) == ("0.1", "0.2")
    assert one["status"].startswith("InProgress") and two["status"].startswith("InProgress")
    assert one["progress"] == two["progress"] == "50%"  # 2 of --epochs 4
    assert one["loss last / min"] == "0.5 / 0.5" and two["loss last / min"] == "1 / 1"
    assert one["accuracy last / max"] == "0.65 / 0.65" and two["accuracy last / max"] == "0.75 / 0.75"
    assert live["selected"] == "loss"

    # A person picks another metric: the plot is redrawn with it, and its column comes first.
    page.locator(lab.CELL_SELECTOR).nth(SWEEP).locator(".sm-magic-sweep-metric select").select_option("accuracy")
    picked = _until(page, SWEEP, lambda s: s["live"] and s["plot"] and s["plot"] != live["plot"]
                    and s["head"][4:5] == ["accuracy last / max"], "the plot of accuracy")
    assert picked["selected"] == "accuracy"

    (lab_server.root / "release-sweep").write_text("go")  # the jobs log their last two epochs and end
    out = lab.cell_output(page, SWEEP)
    out.locator(".sm-magic-sweep-summary").wait_for(timeout=lab.TIMEOUT_MS)
    done = _state(page, SWEEP)
    assert not done["live"] and done["summary"], done  # the live widget is gone
    assert "2 Completed" in done["header"]
    one, two = done["rows"]["e2e-sweep-1"], done["rows"]["e2e-sweep-2"]
    assert one["status"] == two["status"] == "Completed"
    assert one["progress"] == two["progress"] == "100%"
    assert one["loss last / min"] == "0.25 / 0.25" and two["loss last / min"] == "0.5 / 0.5"
    assert one["accuracy last / max"] == "0.75 / 0.75" and two["accuracy last / max"] == "0.85 / 0.85"
    assert done["plot"].startswith("data:image/png;base64,") and done["plot_alt"] == "accuracy of each job of the sweep"
    plot = out.locator("img.sm-magic-sweep-plot")
    plot.evaluate("(img) => img.complete ? null : new Promise(r => img.onload = img.onerror = r)")
    assert plot.evaluate("(img) => img.naturalWidth") > 100


def test_stop_in_the_browser_cancels_the_queued_jobs_and_stops_the_running_one(nb_page):
    page = nb_page
    _until(page, STOP, lambda s: s["live"] and (s["rows"].get("e2e-halt-1") or {}).get("loss last / min") == "0.9 / 0.9",
           "the first job's metric")
    live = _state(page, STOP)
    assert [live["rows"][j]["status"] for j in ("e2e-halt-2", "e2e-halt-3")] == ["Queued", "Queued"]
    stop = page.locator(lab.CELL_SELECTOR).nth(STOP).locator("button.sm-magic-sweep-stop")
    assert stop.is_enabled()
    stop.click()
    out = lab.cell_output(page, STOP)
    out.locator(".sm-magic-sweep-summary").wait_for(timeout=lab.TIMEOUT_MS)
    done = _state(page, STOP)
    assert [done["rows"][j]["status"] for j in ("e2e-halt-1", "e2e-halt-2", "e2e-halt-3")] == \
        ["Stopped", "Cancelled", "Cancelled"]
    assert "1 Stopped" in done["header"] and "2 Cancelled" in done["header"]
    lab.expect_text(out.locator(".sm-magic-sweep-summary"),
                    "Stopped the sweep: 2 queued jobs cancelled, 1 running job asked to stop")
