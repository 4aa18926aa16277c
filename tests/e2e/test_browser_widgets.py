"""What a person sees in JupyterLab and in Notebook 7 (every test runs in both, conftest.py):
the config form, and the progress widget of a job that completes and of one that fails.

One notebook, run once (Run > Run All Cells): the form cell, then three `%%sagemaker_train` cells
without --wait, so the jobs run while the form is being edited. Each test then looks at one cell.
"""


import pytest
import yaml

from helpers import lab

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]  # one worker: one server per UI

CFG = "cfg.yaml"
CFG_TEXT = """\
compute_environment: AMAZON_SAGEMAKER
ec2_instance_type: local
num_machines: 1
mixed_precision: 'no'
region: us-east-1
"""

OK_JOB = """\
%%sagemaker_train --name e2e-ok -o ok_job
import time
for epoch in range(3):
    acc = 0.6 + 0.1 * epoch
    print(f"epoch {epoch}: {{'accuracy': {acc}, 'f1': {acc - 0.05}}}", flush=True)
    time.sleep(0.7)
"""

FAIL_JOB = """\
%%sagemaker_train --name e2e-fail
print("loading data", flush=True)
raise ValueError("bad batch size")
"""

# Runs until someone presses Stop (the server's teardown kills it otherwise).
LONG_JOB = """\
%%sagemaker_train --name e2e-stop
import time
print("epoch 0: {'loss': 0.9}", flush=True)
time.sleep(300)
"""

# The form comes first; its Launch button starts the cell's job with the edited config.
EDIT_JOB = """\
%%sagemaker_train --edit --config edit.yaml --name e2e-edit
import os
print("precision=" + os.environ.get("ACCELERATE_MIXED_PRECISION", "?"), flush=True)
print("epoch 0: {'loss': 0.5}", flush=True)
"""

CELLS = ["%load_ext sm_magic", f"%sagemaker_config --edit --config {CFG}", OK_JOB, FAIL_JOB, LONG_JOB, EDIT_JOB]
FORM, OK, FAIL, LONG, EDIT = 1, 2, 3, 4, 5


@pytest.fixture(scope="module")
def nb_page(browser, lab_server):
    (lab_server.root / CFG).write_text(CFG_TEXT)
    path = lab.write_notebook(lab_server.root, "widgets.ipynb", CELLS)
    page = lab.new_page(browser)
    lab.run_notebook(page, lab_server, path)
    yield page
    page.close()


def _cfg(lab_server) -> dict:
    return yaml.safe_load((lab_server.root / CFG).read_text())


def test_config_form_saves_valid_values_and_refuses_invalid_ones(nb_page, lab_server):
    out = lab.cell_output(nb_page, FORM)
    form = out.locator(".sm-magic-form")
    form.wait_for(timeout=lab.TIMEOUT_MS)

    instance = form.locator(".sm-magic-field-ec2_instance_type input")
    assert instance.input_value() == "local"
    instance.fill("ml.g5.xlarge")
    instance.press("Tab")
    form.locator("button.sm-magic-save").click()
    message = form.locator(".sm-magic-form-message")
    lab.expect_text(message, "Saved to")
    assert _cfg(lab_server)["ec2_instance_type"] == "ml.g5.xlarge"

    before = (lab_server.root / CFG).read_bytes()
    machines = form.locator(".sm-magic-field-num_machines input")
    machines.fill("0")
    machines.press("Tab")
    error = form.locator(".sm-magic-error-num_machines")
    error.wait_for(state="visible", timeout=lab.TIMEOUT_MS)
    lab.expect_text(error, "1")  # e.g. "Input should be greater than or equal to 1"
    form.locator("button.sm-magic-save").click()
    lab.expect_text(message, "Not saved")
    assert (lab_server.root / CFG).read_bytes() == before
    assert _cfg(lab_server)["num_machines"] == 1


def test_local_job_ends_completed_with_metrics_table_and_plot(nb_page):
    out = lab.cell_output(nb_page, OK)
    # While it runs: the live widget, with its Stop button.
    out.locator(".sm-magic-progress, .sm-magic-summary").first.wait_for(timeout=lab.TIMEOUT_MS)
    # When it ends: the static summary replaces the widget.
    summary = out.locator(".sm-magic-summary")
    summary.wait_for(timeout=lab.TIMEOUT_MS)
    lab.expect_text(summary.locator(".sm-magic-status"), "Completed")
    assert "e2e-ok" in summary.inner_text()
    rows = summary.locator("table.sm-magic-metrics tbody tr")
    assert rows.count() == 3, summary.inner_html()
    head = summary.locator("table.sm-magic-metrics thead").inner_text()
    assert "accuracy" in head and "f1" in head
    assert "0.8" in rows.nth(2).inner_text()
    plot = summary.locator("img.sm-magic-plot")
    assert plot.get_attribute("src").startswith("data:image/png;base64,")
    width = plot.evaluate("(img) => img.complete ? img.naturalWidth : 0")
    assert width > 100, width
    assert plot.is_visible()
    assert "model.tar.gz" in summary.locator(".sm-magic-model").inner_text()
    assert out.locator(".sm-magic-progress").count() == 0  # the live widget is gone


def test_failing_job_ends_failed_with_the_reason(nb_page):
    out = lab.cell_output(nb_page, FAIL)
    summary = out.locator(".sm-magic-summary")
    summary.wait_for(timeout=lab.TIMEOUT_MS)
    lab.expect_text(summary.locator(".sm-magic-status"), "Failed")
    failure = summary.locator(".sm-magic-failure")
    assert failure.is_visible()
    assert "ValueError: bad batch size" in failure.inner_text()


def test_running_job_shows_live_progress_and_its_stop_button_stops_it(nb_page):
    out = lab.cell_output(nb_page, LONG)
    live = out.locator(".sm-magic-progress")
    live.wait_for(timeout=lab.TIMEOUT_MS)
    lab.expect_text(live.locator(".sm-magic-status"), "InProgress")
    lab.expect_text(live.locator(".sm-magic-timeline"), "Training")
    lab.expect_text(live.locator(".sm-magic-log"), "epoch 0")
    lab.expect_text(live.locator(".sm-magic-metrics").first, "loss")
    assert live.locator(".sm-magic-metrics tbody tr").count() == 1
    stop = live.locator("button.sm-magic-stop")
    assert stop.is_enabled()
    stop.click()
    summary = out.locator(".sm-magic-summary")
    summary.wait_for(timeout=lab.TIMEOUT_MS)
    lab.expect_text(summary.locator(".sm-magic-status"), "Stopped")


def test_edit_then_launch_runs_the_cell_with_the_edited_config(nb_page):
    out = lab.cell_output(nb_page, EDIT)
    form = out.locator(".sm-magic-form")
    form.wait_for(timeout=lab.TIMEOUT_MS)
    assert out.locator(".sm-magic-progress, .sm-magic-summary").count() == 0  # nothing ran yet
    form.locator(".sm-magic-field-mixed_precision select").select_option("bf16")
    form.locator("button.sm-magic-launch").click()
    summary = form.locator(".sm-magic-summary")
    summary.wait_for(timeout=lab.TIMEOUT_MS)
    lab.expect_text(summary.locator(".sm-magic-status"), "Completed")
    assert "e2e-edit" in summary.inner_text()
    # The log (in the summary's collapsed tail) shows accelerate ran with the edited precision.
    assert "precision=bf16" in summary.text_content()
    assert summary.locator("table.sm-magic-metrics tbody tr").count() == 1

