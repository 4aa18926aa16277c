"""The config form in the browser (JupyterLab and Notebook 7, as conftest runs every test in
each): a layout that fits the pane from a 1280 px window down to a phone's, fields that apply,
labels that are not cut, the instance type list, a Save that names the file it wrote, a refused
Save whose message is by the Save button, and what a saved notebook shows once the widget is gone
(kernel restarted, notebook reopened).

The wide tests run in order on one form at 1280 px: the last one restarts its kernel. The narrow
ones use a notebook of their own, in a page resized as a person resizes the window.
"""

import json
import time
from pathlib import Path

import pytest
import yaml

from helpers import lab

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]  # one worker: one server per UI

CFG = "form.yaml"
NOTEBOOK = "form.ipynb"
CELLS = ["%load_ext sm_magic", f"%sagemaker_config --edit --config {CFG}"]
FORM = 1
NARROW_CFG = "narrow.yaml"
NARROW_NOTEBOOK = "form-narrow.ipynb"
# The second form edits accelerate's default config: the magic without --config.
NARROW_CELLS = ["%load_ext sm_magic", f"%sagemaker_config --edit --config {NARROW_CFG}", "%sagemaker_config --edit"]
WIDE_MAX_PX = 1500  # the form's height at 1280 px
NARROW_MAX_PX = 1800  # two screens: a 900 px window with the file browser open, a 600 px window

# Where the form's parts are on screen: the form's box and overflow, and per shown row its
# label, control and help text (the control: the element with the field's class).
LAYOUT = """f => {
    const rect = e => { const r = e.getBoundingClientRect();
        return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width, height: r.height}; };
    const shown = e => e.offsetParent !== null && e.getBoundingClientRect().width > 0;
    const rows = [...f.querySelectorAll('.sm-magic-line')].filter(shown).map(line => {
        const name = [...line.closest('[class*=sm-magic-row-]').classList]
            .find(c => c.startsWith('sm-magic-row-')).slice('sm-magic-row-'.length);
        return {name, bool: line.classList.contains('sm-magic-line-bool'),
                label: rect(line.querySelector('.sm-magic-label')),
                control: rect(line.querySelector('.sm-magic-field-' + name)),
                help: rect(line.querySelector('.sm-magic-help'))};
    });
    const controls = [...f.querySelectorAll('input, select, textarea, button')].filter(shown).map(c => {
        const field = [...(c.closest('[class*=sm-magic-field-]') || c).classList].find(k => k.startsWith('sm-magic-'));
        return {what: field || c.tagName, ...rect(c)};
    });
    const selects = [...f.querySelectorAll('select')].filter(shown).map(s => s.options.length);
    return {form: rect(f), scrollWidth: f.scrollWidth, clientWidth: f.clientWidth, viewport: window.innerWidth,
            rows, controls, selects};
}"""


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


def _layout(form) -> dict:
    return form.evaluate(LAYOUT)


def _assert_fits(layout: dict, where: str) -> None:
    """No control overflows the form or the window sideways; no dropdown offers one value."""
    form = layout["form"]
    assert layout["scrollWidth"] <= layout["clientWidth"], f"{where}: the form scrolls sideways"
    assert 0 <= form["left"] and form["right"] <= layout["viewport"], f"{where}: the form is wider than the window"
    outside = [c["what"] for c in layout["controls"]
               if c["left"] < form["left"] - 1 or c["right"] > form["right"] + 1 or c["right"] > layout["viewport"]]
    assert outside == [], f"{where}: cut off or outside the form: {outside}"
    assert all(n > 1 for n in layout["selects"]), f"{where}: a dropdown offers one value: {layout['selects']}"


def _shoot(page, form, shot, name: str) -> None:
    """The whole form, at the window's width: the window made as tall as the form for the picture."""
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": int(form.bounding_box()["height"]) + 400})
    try:
        form.scroll_into_view_if_needed()
        shot(form, name)
    finally:
        page.set_viewport_size(size)


def test_at_1280_px_labels_controls_and_help_sit_side_by_side(nb_page, form, shot):
    save = form.locator("button.sm-magic-save").bounding_box()
    message = form.locator(".sm-magic-form-message").bounding_box()
    layout = _layout(form)
    box = layout["form"]
    print(f"form at 1280 px: {box['width']:.0f} x {box['height']:.0f} px")  # 2,043 px tall before issue 24
    assert save["y"] - box["top"] < 80 and 0 <= message["y"] - (save["y"] + save["height"]) < 40
    assert box["height"] <= WIDE_MAX_PX
    _assert_fits(layout, "1280 px")
    assert len(layout["rows"]) >= 12
    for row in layout["rows"]:  # label | control | help, on one line, the help a readable column
        label, control, help_ = row["label"], row["control"], row["help"]
        assert label["right"] <= control["left"] + 1 and control["right"] <= help_["left"] + 1, row
        assert abs(label["top"] - control["top"]) < 12 and help_["width"] >= 240, row
    assert form.locator(".sm-magic-field-compute_environment").count() == 0  # one fixed value: not offered
    _shoot(nb_page, form, shot, "form-1280")


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
    lab.expect_text(form.locator(".sm-magic-form-message"), f"Saved to {lab_server.root / CFG} at ")
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


def _expect_static_instead_of_the_widget(page, lab_server):
    out = lab.cell_output(page, FORM)
    static = out.locator(".sm-magic-form-static")
    static.wait_for(state="visible", timeout=lab.TIMEOUT_MS)
    assert "ml.g6e.12xlarge" in static.inner_text() and f"saved to {lab_server.root / CFG}" in static.inner_text()
    assert out.locator(".sm-magic-form").count() == 0 or out.locator(".sm-magic-form").is_hidden()
    assert "Error displaying widget" not in out.inner_text()


def test_a_saved_notebook_shows_the_form_description_once_the_widget_is_gone(nb_page, form, lab_server):
    out = lab.cell_output(nb_page, FORM)
    assert out.locator(".sm-magic-form-static").is_hidden()  # only the live form while it lives
    outputs = _save_notebook(nb_page, lab_server)
    assert "".join(outputs[0]["data"]["text/plain"]).startswith(f"sm_magic config form for {lab_server.root / CFG}")

    nb_page.locator(".lm-MenuBar-item", has_text="Kernel").first.click()
    nb_page.get_by_role("menuitem", name="Restart Kernel…").click()
    nb_page.locator(".jp-Dialog button.jp-mod-accept").click()
    _expect_static_instead_of_the_widget(nb_page, lab_server)  # the disconnected form is hidden

    nb_page.reload(wait_until="domcontentloaded")  # reopened: no widget model to render
    lab.wait_kernel_idle(nb_page)
    out.locator(".jupyter-widgets", has_text="Error displaying widget").wait_for(state="attached",
                                                                                 timeout=lab.TIMEOUT_MS)
    _expect_static_instead_of_the_widget(nb_page, lab_server)


# -- narrow panes ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def narrow_page(browser, lab_server):
    """The narrow notebook, run in a 1280 px window that the tests then narrow."""
    path = lab.write_notebook(lab_server.root, NARROW_NOTEBOOK, NARROW_CELLS)
    page = lab.new_page(browser, width=1280, height=900)
    lab.run_notebook(page, lab_server, path)
    yield page
    page.close()


def _narrow_form(page, cell: int = FORM):
    form = lab.cell_output(page, cell).locator(".sm-magic-form")
    form.wait_for(timeout=lab.TIMEOUT_MS)
    return form


def _file_browser(page, ui: str, shown: bool) -> None:
    """JupyterLab's file browser open or closed, as its sidebar tab toggles it (Notebook 7's
    notebook page has none)."""
    if ui != "lab":
        return
    panel = page.locator("#filebrowser")
    if panel.is_visible() != shown:
        page.locator('.jp-SideBar .lm-TabBar-tab[data-id="filebrowser"]').click()
    panel.wait_for(state="visible" if shown else "hidden", timeout=lab.TIMEOUT_MS)


def _resize(page, form, width: int, height: int = 900) -> dict:
    """The window at width x height, once the notebook has laid the form out again."""
    page.set_viewport_size({"width": width, "height": height})
    page.wait_for_function("""([f, w]) => window.innerWidth === w && f.getBoundingClientRect().right <= w""",
                           arg=[form.element_handle(), width], timeout=lab.TIMEOUT_MS)
    # A resize reaches the notebook's layout a frame later: wait until two frames agree.
    return page.evaluate("""async (f) => {
        const size = () => JSON.stringify([f.getBoundingClientRect().width, f.getBoundingClientRect().height]);
        let last = size();
        for (;;) {
            await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
            const now = size();
            if (now === last) return JSON.parse(now);
            last = now;
        }
    }""", form.element_handle())


def _assert_stacked(layout: dict, where: str) -> None:
    """Label above its control (a checkbox before its label), the help under the control and as
    wide as the form: never a sliver beside it."""
    width = layout["form"]["width"]
    assert len(layout["rows"]) >= 12, where
    for row in layout["rows"]:
        label, control, help_ = row["label"], row["control"], row["help"]
        if row["bool"]:
            assert control["right"] <= label["left"] + 1 and abs(control["top"] - label["top"]) < 12, (where, row)
        else:
            assert label["bottom"] <= control["top"] + 1, (where, row)
            assert control["width"] >= 0.9 * width, (where, row)  # a box the width of the pane
        assert help_["top"] >= control["bottom"] - 1 and help_["width"] >= 0.9 * width, (where, row)


# (window width, JupyterLab's file browser open, height bound): the realistic panes of each UI.
NARROW_CASES = {
    "lab": [(900, True, NARROW_MAX_PX), (600, False, NARROW_MAX_PX), (600, True, None)],
    "notebook": [(600, False, NARROW_MAX_PX), (360, False, None)],
}


def test_narrow_panes_stack_labels_above_controls_and_nothing_is_cut_off(narrow_page, lab_server):
    form = _narrow_form(narrow_page)
    try:
        for width, browser_open, max_height in NARROW_CASES[lab_server.ui]:
            _file_browser(narrow_page, lab_server.ui, browser_open)
            _resize(narrow_page, form, width)
            layout = _layout(form)
            where = f"{width} px window{' with the file browser open' if browser_open else ''}"
            box = layout["form"]
            print(f"{lab_server.ui}, {where}: form {box['width']:.0f} x {box['height']:.0f} px")
            _assert_fits(layout, where)
            _assert_stacked(layout, where)
            if max_height is not None:  # the narrowest panes (232 and 322 px) are allowed more
                assert box["height"] <= NARROW_MAX_PX, f"{where}: {box['height']:.0f} px tall"
    finally:
        _file_browser(narrow_page, lab_server.ui, True)
        narrow_page.set_viewport_size({"width": 1280, "height": 900})


def test_at_600_px_a_text_box_and_a_dropdown_work_and_save_names_the_file(narrow_page, lab_server, shot):
    form = _narrow_form(narrow_page)
    _file_browser(narrow_page, lab_server.ui, False)
    _resize(narrow_page, form, 600)
    try:
        _shoot(narrow_page, form, shot, "form-600")
        region = form.locator(".sm-magic-field-region input")
        region.fill("eu-west-1")
        region.press("Tab")
        form.locator(".sm-magic-field-mixed_precision select").select_option("bf16")
        form.locator("button.sm-magic-save").click()
        path = lab_server.root / NARROW_CFG
        lab.expect_text(form.locator(".sm-magic-form-message"), f"Saved to {path} at ")
        saved = yaml.safe_load(path.read_text())
        assert saved["region"] == "eu-west-1" and saved["mixed_precision"] == "bf16"
        assert saved["compute_environment"] == "AMAZON_SAGEMAKER"  # not offered, still written
    finally:
        _file_browser(narrow_page, lab_server.ui, True)
        narrow_page.set_viewport_size({"width": 1280, "height": 900})


def test_save_stays_in_sight_while_the_form_scrolls(narrow_page, lab_server):
    """At 600 px the form is taller than the window: after editing its last field, Save is still
    on screen (the bar sticks to the top of the notebook) and pressing it saves."""
    form = _narrow_form(narrow_page)
    _file_browser(narrow_page, lab_server.ui, False)
    _resize(narrow_page, form, 600)
    try:
        last = form.locator(".sm-magic-field-checkpoint_local_path input")
        last.fill("/opt/ml/ckpt")
        last.press("Tab")
        save = form.locator("button.sm-magic-save")
        form_top = form.bounding_box()["y"]
        at = save.evaluate("""b => { const r = b.getBoundingClientRect();
            const hit = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
            return {top: r.top, bottom: r.bottom, onTop: !!hit && b.contains(hit)}; }""")
        assert form_top < -300, "the form did not scroll: the test proves nothing"
        assert 0 <= at["top"] and at["bottom"] <= 900 and at["onTop"], at
        save.click()
        lab.expect_text(form.locator(".sm-magic-form-message"), "Saved to")
        assert yaml.safe_load((lab_server.root / NARROW_CFG).read_text())["additional_args"][
            "checkpoint_local_path"] == "/opt/ml/ckpt"
    finally:
        _file_browser(narrow_page, lab_server.ui, True)
        narrow_page.set_viewport_size({"width": 1280, "height": 900})


def test_without_config_save_says_it_wrote_accelerates_default_config(narrow_page, lab_server):
    form = _narrow_form(narrow_page, cell=2)
    default = Path(lab_server.env["HF_HOME"]) / "accelerate" / "default_config.yaml"
    assert f"accelerate's default config, {default}" in form.locator(".sm-magic-title").inner_text()
    try:
        form.locator("button.sm-magic-save").click()
        lab.expect_text(form.locator(".sm-magic-form-message"),
                        f"Saved to accelerate's default config, {default}, at ")
        lab.expect_text(form.locator(".sm-magic-form-message"), "accelerate launch and %%sagemaker_train without --config use it.")
        assert yaml.safe_load(default.read_text())["compute_environment"] == "AMAZON_SAGEMAKER"
    finally:  # the server's other notebooks would read it
        default.unlink(missing_ok=True)
