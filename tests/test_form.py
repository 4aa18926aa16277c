"""The config form as a person meets it: fields that apply, readable labels, the instance type
list, a refused Save that says what to fix, and the static description a saved notebook keeps."""

from pathlib import Path

import ipywidgets as w
import pytest
import yaml

from sm_magic.config.files import accelerate_default_config_path
from sm_magic.config.instance_types import INSTANCE_TYPES, describe
from sm_magic.config.model import TrainConfig
from sm_magic.widgets import form as form_module
from sm_magic.widgets.form import ConfigForm, label

FSDP = [n for n in TrainConfig.model_fields if n.startswith("fsdp_")]
DEEPSPEED = [n for n in TrainConfig.model_fields if n.startswith("deepspeed_")]


def _shown(form, name) -> bool:
    return form.rows[name].layout.display != "none"


def test_fields_that_do_not_apply_are_hidden_and_follow_the_controls():
    form = ConfigForm(TrainConfig(), None)
    assert FSDP and DEEPSPEED
    assert not any(_shown(form, n) for n in FSDP + DEEPSPEED + ["max_wait"])
    assert all(_shown(form, n) for n in ("ec2_instance_type", "num_machines", "use_spot_instances", "max_run"))

    form.controls["distributed_type"].value = "FSDP"
    assert all(_shown(form, n) for n in FSDP) and not any(_shown(form, n) for n in DEEPSPEED)
    form.controls["distributed_type"].value = "DEEPSPEED"
    assert all(_shown(form, n) for n in DEEPSPEED) and not any(_shown(form, n) for n in FSDP)
    form.controls["distributed_type"].value = "NO"
    assert not any(_shown(form, n) for n in FSDP + DEEPSPEED)

    form.controls["use_spot_instances"].value = True
    assert _shown(form, "max_wait")
    form.controls["use_spot_instances"].value = False
    assert not _shown(form, "max_wait")


def test_hidden_fields_keep_their_values_and_are_saved(tmp_path):
    path = tmp_path / "c.yaml"
    form = ConfigForm(TrainConfig(), path)
    form.controls["distributed_type"].value = "FSDP"
    form.controls["fsdp_min_num_params"].value = "5000"
    form.controls["distributed_type"].value = "DATA_PARALLEL"
    assert not _shown(form, "fsdp_min_num_params")
    assert form.controls["fsdp_min_num_params"].value == "5000"
    assert form.save(), form.message.value
    saved = yaml.safe_load(path.read_text())
    assert saved["distributed_type"] == "DATA_PARALLEL"
    assert saved["fsdp_config"]["fsdp_min_num_params"] == 5000


def test_a_hidden_field_with_a_problem_stays_in_sight(tmp_path):
    form = ConfigForm(TrainConfig(), tmp_path / "c.yaml")
    form.controls["use_spot_instances"].value = True
    form.controls["max_wait"].value = "600"
    form.controls["use_spot_instances"].value = False  # max_wait no longer applies, and is refused
    assert _shown(form, "max_wait") and "spot jobs only" in form.errors["max_wait"].value
    form.controls["max_wait"].value = ""
    assert not _shown(form, "max_wait") and form.save()


def test_labels_are_words_and_the_help_names_the_yaml_key():
    assert label("fsdp_transformer_layer_cls_to_wrap") == "FSDP transformer layer class"
    assert label("num_machines") == "Number of machines"
    assert label("gpu_ids") == "GPU IDs"
    assert label("iam_role_name") == "IAM role name"
    assert label("checkpoint_s3_uri") == "Checkpoint S3 URI"
    assert label("deepspeed_zero_stage") == "DeepSpeed ZeRO stage"
    assert label("fsdp_offload_params") == "FSDP offload parameters"
    assert label("py_version") == "Python version"
    form = ConfigForm(TrainConfig(), None)
    for name, row in form.rows.items():
        name_html, _control, help_html = row.children[0].children
        assert "_" not in label(name) and label(name) in name_html.value
        assert "white-space:normal" in name_html.value  # wraps instead of being cut
        assert form.controls[name].description == ""  # no fixed-width, ellipsised widget label
    help_html = form.rows["fsdp_transformer_layer_cls_to_wrap"].children[0].children[2].value
    assert ("<code>fsdp_config.fsdp_transformer_layer_cls_to_wrap</code> &mdash; "
            "FSDP, TRANSFORMER_BASED_WRAP") in help_html
    assert "<code>deepspeed_config.zero_stage</code>" in form.rows["deepspeed_zero_stage"].children[0].children[2].value
    assert "<code>num_machines</code>" in form.rows["num_machines"].children[0].children[2].value


def test_instance_type_is_offered_from_a_list_and_any_ml_name_is_accepted(tmp_path):
    path = tmp_path / "c.yaml"
    form = ConfigForm(TrainConfig(), path)
    box = form.controls["ec2_instance_type"]
    assert isinstance(box, w.Combobox) and box.ensure_option is False
    for name in ("local", "local_gpu", "ml.g5.xlarge", "ml.g4dn.12xlarge", "ml.p3.16xlarge", "ml.p4d.24xlarge",
                 "ml.p5.48xlarge", "ml.trn1.32xlarge", "ml.m5.xlarge", "ml.c5.2xlarge"):
        assert name in box.options
    assert "this machine" in form.instance_specs.value

    box.value = "ml.g5.12xlarge"
    assert "4 x A10G, 96 GiB GPU memory" in form.instance_specs.value
    box.value = "ml.p4d.24xlarge"
    assert "8 x A100, 320 GiB GPU memory" in form.instance_specs.value
    box.value = "ml.g6e.48xlarge"  # not listed, still a valid name
    assert "not in the list; any ml.* name is accepted" in form.instance_specs.value
    assert form.save() and yaml.safe_load(path.read_text())["ec2_instance_type"] == "ml.g6e.48xlarge"
    box.value = "g5.xlarge"  # the config's own check still applies
    assert "not an instance type" in form.errors["ec2_instance_type"].value and not form.save()


def test_the_instance_type_table_holds_valid_names_and_published_specs():
    for name in INSTANCE_TYPES:
        assert TrainConfig(ec2_instance_type=name).ec2_instance_type == name
    assert describe("ml.p5.48xlarge") == "8 x H100, 640 GiB GPU memory"
    assert describe("ml.g4dn.xlarge") == "1 x T4, 16 GiB GPU memory"
    assert describe("ml.p3.2xlarge") == "1 x V100, 16 GiB GPU memory"
    assert describe("ml.trn1.32xlarge") == "16 x Trainium, 512 GiB accelerator memory"
    assert describe("ml.m5.xlarge") == "CPU only (no GPU)"
    assert describe("ml.unknown.xlarge") is None


def test_a_refused_save_names_the_fields_writes_nothing_and_says_so_at_the_top(tmp_path):
    path = tmp_path / "c.yaml"
    form = ConfigForm(TrainConfig(), path)
    form.controls["num_machines"].value = "0"
    assert not form.save() and not path.exists()
    assert ("Not saved: fix Number of machines (<code>num_machines</code>): "
            "Input should be greater than or equal to 1") in form.message.value
    form.controls["region"].value = ""
    form.controls["base_job_name"].value = "bad name"
    assert not form.save() and not path.exists()
    for named in ("Number of machines (<code>num_machines</code>)", "Base job name (<code>base_job_name</code>)"):
        assert named in form.message.value
    # The message and the buttons come before the first field, not 1,500 px below it, in the bar
    # that stays in sight while the form scrolls.
    children = list(form.box.children)
    first_row = children.index(form.rows["ec2_instance_type"])
    assert children.index(form.actions) < first_row and form.message in form.actions.children
    assert form.save_button in form.actions.children[0].children


@pytest.fixture
def shown(monkeypatch):
    """What the form displays and updates, as (kind, object, display_id) in order."""
    import IPython.display

    calls = []

    def display(obj, raw=False, display_id=None):
        calls.append(("display", obj, display_id))

    monkeypatch.setattr(form_module, "display", display)
    monkeypatch.setattr(IPython.display, "display", display)  # the companion's note
    monkeypatch.setattr(IPython.display, "update_display", lambda obj, raw=False, display_id=None: calls.append(
        ("update", obj, display_id)))
    return calls


def test_the_static_description_follows_each_save(tmp_path, shown):
    path = tmp_path / "c.yaml"
    form = ConfigForm(TrainConfig(), path)
    form.box._ipython_display_()  # what IPython's display(form.box) calls
    (_, bundle, _), (_, static, display_id) = shown
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"].startswith(f"sm_magic config form for {path}")
    assert display_id == form.static_id and f'id="{form.static_id}"' in static["text/html"]
    assert "not saved" in static["text/html"] and "Number of machines" in static["text/html"]
    # The widget's style hides the description while the widget lives; the description's own
    # style hides the widget output once that is gone or disconnected.
    title = form.box.children[0].value
    assert f"#{form.static_id}" in title and f".{form.form_id}:not(.jupyter-widgets-disconnected)" in title
    assert f":has(+ .jp-OutputArea-child #{form.static_id})" in static["text/html"]
    assert form.form_id in form.box._dom_classes

    form.controls["ec2_instance_type"].value = "ml.g5.12xlarge"
    kind, edited, _ = shown[-1]
    assert kind == "update" and "ml.g5.12xlarge" in edited["text/html"]
    assert "edited since, not saved" in edited["text/html"]
    assert form.save()
    kind, saved, display_id = shown[-1]
    assert kind == "update" and display_id == form.static_id
    assert f"saved to {path} at " in saved["text/html"] and "not saved" not in saved["text/html"]
    assert f"sm_magic config (saved to {path} at " in saved["text/plain"]  # for a terminal
    assert "  ec2_instance_type: ml.g5.12xlarge" in saved["text/plain"]
    assert "ml.g5.12xlarge" in saved["text/html"]
    assert "FSDP" not in saved["text/html"]  # settings that do not apply are left out

    count = len(shown)
    form.controls["num_machines"].value = "0"
    assert not form.save() and len(shown) == count  # an invalid form leaves the last good description


def test_a_field_with_one_possible_value_is_not_offered_and_still_saved(tmp_path):
    path = tmp_path / "c.yaml"
    form = ConfigForm(TrainConfig(), path)
    assert "compute_environment" not in form.rows
    shown = [c for n, c in form.controls.items() if n in form.rows]
    assert all(len(c.options) > 1 for c in shown if hasattr(c, "options") and not isinstance(c, w.Combobox))
    assert "Compute environment" not in str([getattr(c, "value", "") for c in form.box.children])
    assert form.save()
    assert yaml.safe_load(path.read_text())["compute_environment"] == "AMAZON_SAGEMAKER"
    assert TrainConfig.from_yaml(path) == form.config


def test_save_names_the_whole_path_it_wrote(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    form = ConfigForm(TrainConfig(), Path("c.yaml"))  # as `--config c.yaml` gives it
    assert str(tmp_path / "c.yaml") in form.box.children[0].value  # the title, before saving
    assert form.save() and (tmp_path / "c.yaml").is_file()
    assert f"Saved to <code>{tmp_path / 'c.yaml'}</code> at " in form.message.value
    assert "default config" not in form.message.value
    monkeypatch.chdir(tmp_path.parent)  # the kernel moved: the form still writes where it said
    assert form.save() and f"<code>{tmp_path / 'c.yaml'}</code>" in form.message.value
    assert not (tmp_path.parent / "c.yaml").exists()


def test_save_says_when_it_wrote_accelerates_default_config(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    default = accelerate_default_config_path()  # what the magic passes when no --config is given
    assert default == tmp_path / "hf" / "accelerate" / "default_config.yaml"
    form = ConfigForm(TrainConfig(), default)
    assert f"accelerate's default config, <code>{default}</code>" in form.box.children[0].value
    assert form.save() and default.is_file()
    text = form.message.value
    assert f"Saved to accelerate's default config, <code>{default}</code>, at " in text
    assert ("<code>accelerate launch</code> and <code>%%sagemaker_train</code> without <code>--config</code> "
            "use it.") in text


MORE_FIELDS = [n for n in TrainConfig.model_fields if n in ("image_uri", "py_version", "additional_args", "debug")]


def test_rarely_needed_groups_wait_behind_more_settings(tmp_path):
    form = ConfigForm(TrainConfig(), tmp_path / "c.yaml")
    assert len(MORE_FIELDS) == 4 and not any(_shown(form, n) for n in MORE_FIELDS)
    assert form.headings["Advanced"].layout.display == "none"
    assert all(_shown(form, n) for n in ("ec2_instance_type", "mixed_precision", "use_spot_instances"))
    count = len(form.groups["Software versions"]) + len(form.groups["Advanced"])
    assert form.more_toggle.description == f"More settings ({count})"
    assert "Software versions, Advanced" in form.more_note.value
    form.more_toggle.value = True  # what a click does
    assert all(_shown(form, n) for n in MORE_FIELDS) and form.headings["Advanced"].layout.display is None
    assert form.more_toggle.description == "Fewer settings" and form.more_note.value == ""
    form.more_toggle.value = False
    assert not any(_shown(form, n) for n in MORE_FIELDS)


def test_more_settings_open_by_themselves_when_one_is_set_or_wrong(tmp_path):
    assert ConfigForm(TrainConfig(image_uri="x.dkr.ecr/img:1"), None).more_toggle.value
    assert not ConfigForm(TrainConfig(mixed_precision="bf16"), None).more_toggle.value
    form = ConfigForm(TrainConfig(), tmp_path / "c.yaml")
    form.controls["py_version"].value = "3.12"  # not a tag: the problem must be in sight
    assert form.more_toggle.value and _shown(form, "py_version")
    assert "py312" in form.errors["py_version"].value
