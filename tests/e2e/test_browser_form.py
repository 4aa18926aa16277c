"""The config form in the browser (JupyterLab and Notebook 7, as conftest runs every test in
each): fields that apply, labels that are not cut, the instance type list, a refused Save whose
message is by the Save button, and what a saved notebook shows once the widget is gone (kernel
restarted, notebook reopened).

The tests run in order on one form: the last one restarts its kernel.
"""

import json
import time

import pytest
import yaml

from helpers import lab

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]  # one worker: one server per UI

CFG = "form.yaml"
NOTEBOOK = "form.ipynb"
CELLS = ["%load_ext sm_magic", f"%sagemaker_config --edit --config {CFG}"]
FORM = 1


@pytest.fixture(scope="module")
def nb_page(browser, lab_server):  # named as conftest expects, for a screenshot on failure
    (lab_server.root / CFG).write_text("compute_environment: AMAZON_SAGEMAKER\nec2_instance_type: local\n")
    path = lab.write_notebook(lab_server.root, NOTEBOOK, CELLS)
    page = lab.new_page(browser)
    lab.run_notebook(page, lab_server, path)
    yield page
    page.close()


@pytest.fixture
def form(nb_page):
    form = lab.cell_output(nb_page, FORM).locator(".sm-magic-form")
    form.wait_for(timeout=lab.TIMEOUT_MS)
    return form


def _row(form, name):
    return form.locator(f".sm-magic-row-{name}")


def _fill(form, name, text):
    box = form.locator(f".sm-magic-field-{name} input")
    box.fill(text)
    box.press("Tab")


def _saved(lab_server) -> dict:
    return yaml.safe_load((lab_server.root / CFG).read_text())


def test_the_message_is_by_the_save_button_and_the_form_is_shorter(form):
    save = form.locator("button.sm-magic-save").bounding_box()
    message = form.locator(".sm-magic-form-message").bounding_box()
    box = form.bounding_box()
    print(f"form height: {box['height']:.0f} px")  # 2,043 px at 1280x1000 before fields were hidden
    assert save["y"] - box["y"] < 80 and 0 <= message["y"] - (save["y"] + save["height"]) < 40
    assert box["height"] < 1500


def test_fields_that_do_not_apply_follow_the_dropdown_and_the_checkbox(form):
    for name in ("fsdp_sharding_strategy", "fsdp_transformer_layer_cls_to_wrap", "deepspeed_zero_stage", "max_wait"):
        assert _row(form, name).is_hidden()
    form.locator(".sm-magic-field-distributed_type select").select_option("FSDP")
    _row(form, "fsdp_transformer_layer_cls_to_wrap").wait_for(state="visible", timeout=lab.TIMEOUT_MS)
    assert _row(form, "deepspeed_zero_stage").is_hidden()
    form.locator(".sm-magic-field-distributed_type select").select_option("DEEPSPEED")
    _row(form, "deepspeed_zero_stage").wait_for(state="visible", timeout=lab.TIMEOUT_MS)
    _row(form, "fsdp_transformer_layer_cls_to_wrap").wait_for(state="hidden", timeout=lab.TIMEOUT_MS)
    form.locator(".sm-magic-field-use_spot_instances input").check()
    _row(form, "max_wait").wait_for(state="visible", timeout=lab.TIMEOUT_MS)
    form.locator(".sm-magic-field-use_spot_instances input").uncheck()
    _row(form, "max_wait").wait_for(state="hidden", timeout=lab.TIMEOUT_MS)
    form.locator(".sm-magic-field-distributed_type select").select_option("FSDP")


def test_labels_are_whole_words_never_cut(form):
    name = form.locator(".sm-magic-label-fsdp_transformer_layer_cls_to_wrap")
    name.wait_for(state="visible", timeout=lab.TIMEOUT_MS)
    assert name.inner_text().strip() == "FSDP transformer layer class"
    cut = form.evaluate("""f => [...f.querySelectorAll('[class*=sm-magic-label-] div')]
        .filter(d => d.offsetParent && (d.scrollWidth > d.clientWidth || d.scrollHeight > d.clientHeight + 1))
        .map(d => d.textContent)""")
    assert cut == []
    help_text = _row(form, "fsdp_transformer_layer_cls_to_wrap").inner_text()
    assert "fsdp_config.fsdp_transformer_layer_cls_to_wrap — FSDP, TRANSFORMER_BASED_WRAP" in help_text


def test_instance_type_list_shows_what_a_type_offers(form, lab_server):
    specs = form.locator(".sm-magic-instance-specs")
    options = form.locator(".sm-magic-field-ec2_instance_type datalist option")
    assert options.count() > 30 and "ml.p4d.24xlarge" in options.evaluate_all("os => os.map(o => o.value)")
    _fill(form, "ec2_instance_type", "ml.g5.12xlarge")
    lab.expect_text(specs, "4 x A10G, 96 GiB GPU memory")
    _fill(form, "ec2_instance_type", "ml.g6e.12xlarge")
    lab.expect_text(specs, "not in the list; any ml.* name is accepted")
    form.locator("button.sm-magic-save").click()
    lab.expect_text(form.locator(".sm-magic-form-message"), "Saved to")
    assert _saved(lab_server)["ec2_instance_type"] == "ml.g6e.12xlarge"


def test_a_refused_save_names_the_field_by_the_save_button(form, lab_server):
    before = (lab_server.root / CFG).read_bytes()
    _fill(form, "num_machines", "0")
    form.locator(".sm-magic-error-num_machines").wait_for(state="visible", timeout=lab.TIMEOUT_MS)
    form.locator("button.sm-magic-save").click()
    message = form.locator(".sm-magic-form-message")
    lab.expect_text(message, "Not saved: fix Number of machines (num_machines): "
                             "Input should be greater than or equal to 1")
    assert message.is_visible() and (lab_server.root / CFG).read_bytes() == before
    _fill(form, "num_machines", "2")
    form.locator("button.sm-magic-save").click()
    lab.expect_text(message, "Saved to")
    assert _saved(lab_server)["num_machines"] == 2


def _save_notebook(page, lab_server):
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").first.focus()
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + lab.TIMEOUT_MS / 1000
    while time.monotonic() < deadline:  # the file on disk, as a reopened notebook reads it
        outputs = json.loads((lab_server.root / NOTEBOOK).read_text())["cells"][FORM]["outputs"]
        if "sm-magic-form-static" in json.dumps(outputs) and "ml.g6e.12xlarge" in json.dumps(outputs):
            return outputs
        time.sleep(0.2)
    raise AssertionError(f"{NOTEBOOK} was not saved with the form's description")


def _expect_static_instead_of_the_widget(page):
    out = lab.cell_output(page, FORM)
    static = out.locator(".sm-magic-form-static")
    static.wait_for(state="visible", timeout=lab.TIMEOUT_MS)
    assert "ml.g6e.12xlarge" in static.inner_text() and "saved to form.yaml" in static.inner_text()
    assert out.locator(".sm-magic-form").count() == 0 or out.locator(".sm-magic-form").is_hidden()
    assert "Error displaying widget" not in out.inner_text()


def test_a_saved_notebook_shows_the_form_description_once_the_widget_is_gone(nb_page, form, lab_server):
    out = lab.cell_output(nb_page, FORM)
    assert out.locator(".sm-magic-form-static").is_hidden()  # only the live form while it lives
    outputs = _save_notebook(nb_page, lab_server)
    assert "".join(outputs[0]["data"]["text/plain"]).startswith("sm_magic config form for form.yaml")

    nb_page.locator(".lm-MenuBar-item", has_text="Kernel").first.click()
    nb_page.get_by_role("menuitem", name="Restart Kernel…").click()
    nb_page.locator(".jp-Dialog button.jp-mod-accept").click()
    _expect_static_instead_of_the_widget(nb_page)  # the disconnected form is hidden

    nb_page.reload(wait_until="domcontentloaded")  # reopened: no widget model to render
    lab.wait_kernel_idle(nb_page)
    out.locator(".jupyter-widgets", has_text="Error displaying widget").wait_for(state="attached",
                                                                                 timeout=lab.TIMEOUT_MS)
    _expect_static_instead_of_the_widget(nb_page)
