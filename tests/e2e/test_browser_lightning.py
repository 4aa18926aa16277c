"""A PyTorch Lightning script as people write it (tests/scripts/lightning_bar.py: `self.log(...,
prog_bar=True)`, Lightning's tqdm progress bar), run in a `%%sagemaker_train` cell on the local
backend with no `--metric` flags: its widget shows the metrics Lightning logs and a progress bar
while it runs, and the summary shows them when it has completed (issue 22).
"""

import re
from pathlib import Path

import pytest

from helpers import lab

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]  # one worker: one server per UI

SCRIPT = (Path(__file__).resolve().parents[1] / "scripts" / "lightning_bar.py").read_text()
EPOCHS = 3
# A pause after each epoch, so the widget can be seen between two epochs before the job ends.
JOB_CELL = f"%%sagemaker_train --name e2e-lightning -- --epochs {EPOCHS} --epoch-seconds 4\n" + SCRIPT
CELLS = ["%load_ext sm_magic", JOB_CELL]
JOB = 1
METRICS = ("train_loss", "val_loss", "val_acc")

# The job cell's live widget as a plain object, read in one call (the summary may replace it
# between two reads): the metric table's head and the progress line's text.
LIVE = """([selector, index]) => {
    const cell = document.querySelectorAll(selector)[index];
    const live = cell.querySelector('.sm-magic-progress');
    if (!live) return {live: false, summary: !!cell.querySelector('.sm-magic-summary')};
    const head = live.querySelector('table.sm-magic-metrics thead');
    const eta = live.querySelector('.sm-magic-eta');
    const status = live.querySelector('.sm-magic-status');
    return {live: true, head: head ? head.textContent : '', eta: eta ? eta.textContent : null,
            status: status ? status.textContent : ''};
}"""

# True once the live widget shows every metric and a progress above 0 %; also true (to stop
# waiting) when the summary replaced the widget first, which the test then reports.
SEEN = """([selector, index, metrics]) => {
    const cell = document.querySelectorAll(selector)[index];
    if (cell.querySelector('.sm-magic-summary')) return true;
    const live = cell.querySelector('.sm-magic-progress');
    if (!live) return false;
    const head = live.querySelector('table.sm-magic-metrics thead');
    const eta = live.querySelector('.sm-magic-eta');
    const percent = eta ? /\\((\\d+)%\\)/.exec(eta.textContent) : null;
    return !!head && metrics.every((m) => head.textContent.includes(m)) && !!percent && Number(percent[1]) > 0;
}"""


@pytest.fixture(scope="module")
def nb_page(browser, lab_server):
    path = lab.write_notebook(lab_server.root, "lightning.ipynb", CELLS)
    page = lab.new_page(browser)
    lab.run_notebook(page, lab_server, path)  # the job cell returns at once; the job runs on
    yield page
    page.close()


def test_lightning_job_shows_its_metrics_and_progress_live_and_in_the_summary(nb_page):
    out = lab.cell_output(nb_page, JOB)
    out.locator(".sm-magic-progress, .sm-magic-summary").first.wait_for(timeout=lab.TIMEOUT_MS)

    # While it runs, once an epoch has ended: Lightning's metrics as the table's columns and a
    # progress bar past 0 %. (Lightning takes ~10 s to start; the job then runs ~3 epochs of 4+ s.)
    nb_page.wait_for_function(SEEN, arg=[lab.CELL_SELECTOR, JOB, list(METRICS)], timeout=lab.TIMEOUT_MS * 2)
    live = nb_page.evaluate(LIVE, [lab.CELL_SELECTOR, JOB])
    assert live["live"], f"the job ended before its widget showed its metrics and progress: {live}"
    assert all(m in live["head"] for m in METRICS), live
    assert "InProgress" in live["status"], live
    percent = int(re.search(r"\((\d+)%\)", live["eta"]).group(1))
    assert 0 < percent < 100, live

    # When it has completed: the summary, with the same columns, an epoch row per epoch and a full bar.
    summary = out.locator(".sm-magic-summary")
    summary.wait_for(timeout=lab.TIMEOUT_MS)
    lab.expect_text(summary.locator(".sm-magic-status"), "Completed")
    head = summary.locator("table.sm-magic-metrics thead").inner_text()
    assert all(m in head for m in METRICS), head
    assert "epoch" in head, head
    rows = summary.locator("table.sm-magic-metrics tbody tr:not(.sm-magic-section):not(.sm-magic-hidden-rows)")
    assert rows.count() == EPOCHS, summary.locator("table.sm-magic-metrics").inner_html()
    eta = summary.locator(".sm-magic-eta")
    assert eta.is_visible()
    assert "(100%)" in eta.inner_text() and "left" not in eta.inner_text(), eta.inner_text()
    assert summary.locator("img.sm-magic-plot").is_visible()
    assert out.locator(".sm-magic-progress").count() == 0  # the live widget is gone
