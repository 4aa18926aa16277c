"""The comparison and the job list in a notebook, in JupyterLab and in Notebook 7 at 1280 px
(every test runs in both, conftest.py): `%sagemaker_jobs --compare SWEEP` over a real 3-job local
sweep shows a compact table that fits the output area (short names, durations as `0:05`, numbers
to 4 significant digits, the best row marked), with every column one click away; `%sagemaker_jobs`
fits the same way.

One notebook, run once: `%load_ext sm_magic`, a 3-job sweep (`--wait`: the cell returns when its
jobs have ended), the comparison, the job list.
"""

import pytest

from helpers import lab

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]  # one worker: one server per UI

SCRIPT = """\
import argparse
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float); p.add_argument("--epochs", type=int)
p.add_argument("--optimizer"); p.add_argument("--warmup-steps", type=int)
a = p.parse_args()
for epoch in range(a.epochs):
    loss = round(a.lr * 10 / (epoch + 1) + 0.0123456789, 8)
    print(f"epoch {epoch}: {{'validation_loss': {loss}, 'validation_accuracy': {1 - loss / 10:.8f}, "
          f"'train_samples_per_second': 1234.56789, 'grad_norm': 0.0001234567}}", flush=True)
"""
NAME = "tokenizer-ablation-with-a-long-name"
COMPARE, JOBS = 2, 3

# The cell's compact table and its details block, measured as the page lays them out.
LAYOUT = """(out) => {
    const area = out.querySelector('.jp-OutputArea-output:has(.sm-magic-table)');
    const root = area.querySelector('.sm-magic-table');
    const compact = root.querySelector('table.compact');
    const text = (el) => el.innerText.split(/\\s+/).join(' ').trim();
    const details = root.querySelector('details');
    const all = root.querySelector('table.all-columns');
    return {area: area.clientWidth, table: compact.scrollWidth, root: root.scrollWidth,
            head: [...compact.querySelectorAll('thead th')].map(text),
            rows: [...compact.querySelectorAll('tbody tr')].map(tr => [...tr.querySelectorAll('td')].map(text)),
            best: [...compact.querySelectorAll('tbody tr')].map(tr => tr.classList.contains('best')),
            open: details.open, summary: text(details.querySelector('summary')),
            all_head: [...all.querySelectorAll('thead th')].map(text),
            all_box: all.parentElement.clientWidth};
}"""


def _cells() -> list[str]:
    sweep = (f"%%sagemaker_train --backend local --wait --name {NAME} --sweep lr=0.01,0.1,0.5 "
             "--sweep-max-parallel 3 -- --epochs 3 --optimizer adamw-decoupled-weight-decay --warmup-steps 500\n"
             + SCRIPT)
    return ["%load_ext sm_magic", sweep, f"%sagemaker_jobs --compare {NAME}", "%sagemaker_jobs"]


@pytest.fixture(scope="module")
def nb_page(browser, lab_server):
    path = lab.write_notebook(lab_server.root, "compare.ipynb", _cells())
    page = lab.new_page(browser, width=1280)
    lab.run_notebook(page, lab_server, path, timeout=4 * lab.TIMEOUT_MS)  # three real jobs, then the tables
    yield page
    page.close()


def _layout(page, index: int) -> dict:
    out = lab.cell_output(page, index)
    out.locator(".sm-magic-table table.compact").wait_for(timeout=lab.TIMEOUT_MS)
    return {**out.evaluate(LAYOUT), "all_visible": out.locator("table.all-columns").is_visible()}


def test_the_comparison_fits_the_cell_marks_the_best_and_has_every_column_one_click_away(nb_page, shot):
    page = nb_page
    seen = _layout(page, COMPARE)
    assert seen["table"] <= seen["area"] and seen["root"] <= seen["area"], seen  # no sideways scrolling
    # The columns that matter: the ranking metric's best, the swept lr (not the fixed arguments), the duration.
    assert seen["head"] == ["", "name", "status", "validation_loss (min)", "lr", "duration"], seen["head"]
    # Lowest loss first (lr 0.01, 0.1, 0.5); the long names cut in their middle, each still told apart.
    assert [row[1][-2:] for row in seen["rows"]] == ["-1", "-2", "-3"], seen["rows"]
    assert all(len(row[1]) <= 32 and row[1].startswith("tokenizer-abl") and "\u2026" in row[1] for row in seen["rows"])
    assert seen["best"] == [True, False, False] and seen["rows"][0][0] == "\u2605"
    first = seen["rows"][0]
    assert first[2] == "Completed" and first[3] == "0.04568" and first[4] == "0.01"  # 4 significant digits
    assert all(row[5].count(":") == 1 and len(row[5]) <= 5 for row in seen["rows"]), seen["rows"]  # 0:07
    assert not seen["open"] and not seen["all_visible"] and seen["summary"].startswith("All ")
    out = lab.cell_output(page, COMPARE)
    shot(out.locator(".sm-magic-table"), "compare-table")
    # One click: every column of the DataFrame, still inside the cell (the block scrolls, the cell does not).
    out.locator(".sm-magic-table summary").click()
    opened = _layout(page, COMPARE)
    assert opened["open"] and opened["all_visible"]
    assert seen["summary"].startswith(f"All {len(opened['all_head'])} columns"), (seen["summary"], opened["all_head"])
    assert opened["all_head"][:3] == ["name", "status", "lr"] and "grad_norm_best" in opened["all_head"]
    assert "optimizer" in opened["all_head"] and "warmup-steps" in opened["all_head"]
    assert opened["all_box"] <= opened["area"] and opened["root"] <= opened["area"], opened


def test_the_job_list_fits_the_cell(nb_page):
    seen = _layout(nb_page, JOBS)
    assert seen["table"] <= seen["area"] and seen["root"] <= seen["area"], seen
    assert seen["head"] == ["name", "status", "duration", "metrics", "hyperparameters", "created"]
    assert len(seen["rows"]) == 3 and {row[1] for row in seen["rows"]} == {"Completed"}
    assert all(len(row[4]) <= 48 for row in seen["rows"]), seen["rows"]
