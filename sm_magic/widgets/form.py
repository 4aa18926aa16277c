"""The config form: one ipywidgets control per TrainConfig field, derived from the model.

A new field appears here with no form code: its type picks the control (Literal -> dropdown,
bool -> checkbox, int -> integer box, dict -> YAML text area, str -> text), its description is
the help text, its `group` places it and its `label` (or its name, made readable) names it. A
field that applies only in one mode is hidden in the others (FSDP and DeepSpeed settings, a
`shown_if` condition) but keeps its value and is saved. Every edit is validated against the whole
model; a problem shows beside its field and in the message at the top, by the Save button, and
nothing is saved until the whole config is valid.

The layout follows the width of the pane, not of the window (a CSS container query in the
form's own <style>): label, control and help side by side where the form is 720 px or wider,
else the label above its control and the help under it, each as wide as the form. The buttons and
the message stay in sight while the form scrolls (sticky), and the groups a first run rarely
needs wait behind "More settings", so the form stays within about two screens at any width.

A saved notebook keeps no live widget, so the form is displayed with a second output: a static
description of its last state, hidden by CSS while the widget lives and shown once it is gone
(companion.py, as the progress and sweep widgets' notes).
"""

from __future__ import annotations

import html
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as w
import yaml
from IPython.display import display
from pydantic import ValidationError

from ..backends.sagemaker.pricing import money, training_price
from ..config.accelerate_yaml import NESTED_MODE, nested_key
from ..config.files import accelerate_default_config_path
from ..config.instance_types import INSTANCE_TYPES, describe
from ..config.masking import masked, unmasked
from ..config.model import LOCAL_INSTANCE_TYPES, TrainConfig, field_extra, unwrap_optional
from ..config.safe_yaml import safe_yaml
from .companion import Companion
from .form_style import CSS

GROUPS = ("Compute", "Distributed", "Spot & checkpoints", "Software versions", "Advanced")
# Shown behind "More settings" unless a field in them is set or has a problem.
MORE = ("Software versions", "Advanced")
ERROR_COLOR = "#c62828"
# Words a field name spells in lower case that a label spells otherwise.
_WORDS = {"fsdp": "FSDP", "gpu": "GPU", "gpus": "GPUs", "ids": "IDs", "ec2": "EC2", "iam": "IAM", "vpc": "VPC",
          "s3": "S3", "uri": "URI", "cpu": "CPU", "aws": "AWS", "deepspeed": "DeepSpeed", "zero": "ZeRO",
          "pytorch": "PyTorch", "sagemaker": "SageMaker", "py": "Python", "param": "parameter",
          "params": "parameters", "args": "arguments", "max": "maximum", "min": "minimum"}


NOT_SET = "(not set)"


def _kind(annotation) -> tuple[str, tuple]:
    """('choice', options) | ('bool',) | ('int',) | ('dict',) | ('str',); Optional unwrapped."""
    annotation, _ = unwrap_optional(annotation)
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "choice", typing.get_args(annotation)
    if annotation is bool:
        return "bool", ()
    if annotation is int:
        return "int", ()
    if annotation is dict or origin is dict:
        return "dict", ()
    return "str", ()


def label(name: str) -> str:
    """The field's label: its own, or its name in words (fsdp_offload_params: FSDP offload parameters)."""
    if "label" in field_extra(name):
        return field_extra(name)["label"]
    text = " ".join(_WORDS.get(word, word) for word in name.split("_"))
    return text[0].upper() + text[1:]


def yaml_key(name: str) -> str:
    """Where the field is in the YAML file: `num_machines`, `deepspeed_config.zero_stage`."""
    parent = field_extra(name).get("yaml")
    return f"{parent}.{nested_key(parent, name)}" if parent else name


def fixed(field) -> bool:
    """A field with one possible value (compute_environment: always AMAZON_SAGEMAKER): the form
    offers no choice of it, the YAML gets it all the same."""
    kind, options = _kind(field.annotation)
    return kind == "choice" and len(options) == 1


def condition(name: str) -> dict:
    """{field: value} that must hold for the field to apply; {} when it always applies. FSDP and
    DeepSpeed settings apply in their mode (as to_yaml writes their section), others may say."""
    mode = NESTED_MODE.get(str(field_extra(name).get("yaml")))
    return {"distributed_type": mode} if mode else dict(field_extra(name).get("shown_if", {}))


def is_default(config: TrainConfig, name: str) -> bool:
    return getattr(config, name) == TrainConfig.model_fields[name].get_default(call_default_factory=True)


class _FormBox(w.VBox):
    """The form's widget; displayed, it also leaves the static description (see ConfigForm)."""

    def __init__(self, form: "ConfigForm", children):
        super().__init__(children)
        self._form = form

    def _ipython_display_(self):
        self._form.display(self._repr_mimebundle_())


class ConfigForm:
    """A form over a TrainConfig. `.box` is the widget; `save()` writes `path` when valid;
    `on_launch(config)` (when given) is called by the Launch button with the valid config."""

    def __init__(self, config: TrainConfig, path: Path | None,
                 on_launch: Callable[[TrainConfig], None] | None = None):
        # Absolute, as the person reads it in the title and the Save message, and as written
        # even if the kernel's working directory changes later.
        self.path = Path(path).expanduser().absolute() if path else None
        self.is_default = self.path == accelerate_default_config_path().expanduser().absolute()
        self.extra_keys = dict(config.extra_keys)
        self.controls: dict[str, Any] = {}
        self.errors: dict[str, Any] = {}
        self.rows: dict[str, Any] = {}
        self.groups: dict[str, list[str]] = {g: [] for g in GROUPS}
        self.headings: dict[str, Any] = {}
        self.problems: dict[str, str] = {}
        self.on_launch = on_launch
        self.config: TrainConfig | None = config
        self._opened = config  # what the masked credentials in its text areas stand for
        self._saved: TrainConfig = config
        self._saved_at: str | None = None
        # The static description under the widget (companion.py); its element id is also its
        # display id, and the form's view carries its class.
        self.companion = Companion("", "", prefix="sm-magic-form", css_class="sm-magic-form-static", style="")
        self.form_id, self.static_id = self.companion.live_class, self.companion.id
        for name, field in TrainConfig.model_fields.items():
            if field.exclude:
                continue
            control = self._control(name, field, getattr(config, name))
            self.controls[name] = control
            if fixed(field):  # one possible value: nothing to choose, so no row (the value is saved)
                continue
            control.observe(self._changed, names="value")
            self.groups.setdefault(field_extra(name).get("group", "Advanced"), []).append(name)
            self._row(name, field, control)
        self.message = w.HTML("").add_class("sm-magic-form-message")
        self.save_button = w.Button(description="Save", button_style="primary", icon="save",
                                    tooltip=f"Write {self.path}" if self.path else "Save").add_class("sm-magic-save")
        self.save_button.on_click(lambda _b: self.save())
        buttons = [self.save_button]
        self.launch_button = None
        if on_launch is not None:
            self.launch_button = w.Button(description="Launch", button_style="success", icon="play",
                                          tooltip="Launch the cell's job with this config").add_class("sm-magic-launch")
            self.launch_button.on_click(lambda _b: self.launch())
            buttons.append(self.launch_button)
        self.output = w.VBox([]).add_class("sm-magic-form-output")
        # Buttons and message at the top, where the person looks after pressing a button, and
        # sticky, so they stay in sight from anywhere in the form; a launched job's progress under them.
        self.actions = w.VBox([w.HBox(buttons), self.message]).add_class("sm-magic-actions")
        # While this widget lives, its style hides the static description.
        sections = [w.HTML(f"{self.companion.widget_style()}<style>{CSS}</style><b>{self._title_html()}</b>").add_class("sm-magic-title"),
                    self.actions, self.output]
        more = [n for g in MORE for n in self.groups.get(g, [])]
        self.more_toggle = w.ToggleButton(value=not all(is_default(config, n) for n in more),
                                          icon="chevron-down", tooltip=", ".join(g for g in MORE if self.groups.get(g))
                                          ).add_class("sm-magic-more-toggle")
        self.more_toggle.observe(lambda _c: self._show_applicable(), names="value")
        self.more_note = w.HTML("")
        for group, names in self.groups.items():
            if not names:
                continue
            if group == MORE[0]:
                sections.append(w.HBox([self.more_toggle, self.more_note],
                                       layout=w.Layout(margin="10px 0 0 0", align_items="center")
                                       ).add_class("sm-magic-more"))
            self.headings[group] = w.HTML(f'<h4 class="sm-magic-group">{html.escape(group)}</h4>')
            sections.append(self.headings[group])
            sections += [self.rows[n] for n in names]
        self.box = _FormBox(self, sections).add_class("sm-magic-form").add_class(self.form_id)
        self._show_applicable()

    def _title_html(self) -> str:
        if self.path is None:
            return "sm_magic config"
        where = "accelerate's default config, " if self.is_default else ""
        return f"sm_magic config: {where}<code>{html.escape(str(self.path))}</code>"

    @staticmethod
    def _control(name: str, field, value):
        kind, options = _kind(field.annotation)
        common = dict(tooltip=field.description or name)
        if name == "ec2_instance_type":  # a list to pick from; any name the config accepts can be typed
            control = w.Combobox(value=value, options=list(LOCAL_INSTANCE_TYPES) + list(INSTANCE_TYPES),
                                 ensure_option=False, placeholder="ml.g5.xlarge", **common)
        elif kind == "choice":
            # An optional choice can go back to "not set" (distributed_type: every GPU trains).
            pairs = ([(NOT_SET, None)] if unwrap_optional(field.annotation)[1] else []) + [(o, o) for o in options]
            control = w.Dropdown(options=pairs, index=[v for _, v in pairs].index(value), **common)
        elif kind == "bool":
            control = w.Checkbox(value=bool(value), indent=False, **common)
        elif kind == "dict":
            # Credentials masked: the form shows on screen, and its state may be saved with the notebook.
            text = yaml.safe_dump(masked(value), default_flow_style=False, sort_keys=True).strip() if value else ""
            control = w.Textarea(value=text, placeholder="key: value (YAML)", rows=3, **common)
        else:  # int and str edit as text, so an empty box can mean "not set"
            control = w.Text(value="" if value is None else str(value), **common)
        return control.add_class(f"sm-magic-field-{name}").add_class("sm-magic-control")

    def _row(self, name: str, field, control):
        """Label (wraps, never cut), control, help text with the YAML key; the error below. The
        line is a grid whose columns the form's CSS sets for the pane's width."""
        wraps = "line-height:1.3;white-space:normal;overflow-wrap:anywhere"
        name_html = w.HTML(f'<div style="{wraps}">{html.escape(label(name))}</div>'
                           ).add_class(f"sm-magic-label-{name}").add_class("sm-magic-label")
        help_html = w.HTML(f'<div style="{wraps};color:#666;font-size:0.85em">'
                           f'<code>{html.escape(yaml_key(name))}</code> &mdash; {html.escape(field.description or "")}'
                           "</div>").add_class(f"sm-magic-help-{name}").add_class("sm-magic-help")
        middle = control
        if name == "ec2_instance_type":
            self.instance_specs = w.HTML(self._specs_html(control.value)).add_class("sm-magic-instance-specs")
            middle = w.VBox([control, self.instance_specs])
        error = w.HTML("", layout=w.Layout(display="none"))
        self.errors[name] = error.add_class(f"sm-magic-error-{name}").add_class("sm-magic-error")
        line = w.HBox([name_html, middle, help_html]).add_class("sm-magic-line")
        if isinstance(control, w.Checkbox):
            line.add_class("sm-magic-line-bool")
        row = w.VBox([line, error])
        self.rows[name] = row.add_class(f"sm-magic-row-{name}")
        return row

    def _specs_html(self, name: str) -> str:
        text = describe(name.strip())
        if text is None:
            text = "not in the list; any ml.* name is accepted" if name.strip() else ""
        region = self.controls["region"].value if "region" in self.controls else self._opened.region
        price = training_price(name.strip(), region) if name.strip().startswith("ml.") else None
        if price is not None:  # known here (the cache a launch filled, or the package's table): no API call
            text += f"; {money(price.usd_per_hour)}/h in {region} ({price.source}; an estimate)"
        return f'<div style="color:#555;font-size:0.85em;line-height:1.3">{html.escape(text)}</div>'

    def applies(self, name: str) -> bool:
        """Whether the field applies to the values now in the form (else it is hidden)."""
        return all(self.controls[k].value == v for k, v in condition(name).items())

    def _show_applicable(self) -> None:
        # A field with a problem stays in sight even where it does not apply, so it can be fixed;
        # a problem behind "More settings" opens them.
        more = {n for g in MORE for n in self.groups.get(g, [])}
        if more & set(self.problems) and not self.more_toggle.value:
            self.more_toggle.value = True  # its observer calls this again
            return
        opened = self.more_toggle.value
        for name, row in self.rows.items():
            shown = (self.applies(name) or name in self.problems) and (opened or name not in more)
            row.layout.display = None if shown else "none"
        for group in MORE:
            if group in self.headings:
                self.headings[group].layout.display = None if opened else "none"
        count = sum(self.applies(n) for n in more)
        self.more_toggle.description = "Fewer settings" if opened else f"More settings ({count})"
        self.more_toggle.icon = "chevron-up" if opened else "chevron-down"
        self.more_note.value = ("" if opened else '<span style="color:#666;font-size:0.9em">'
                                f'{html.escape(", ".join(g for g in MORE if self.groups.get(g)))}</span>')

    # -- values and validation ---------------------------------------------------------------

    def _raw_values(self) -> tuple[dict, dict]:
        """Values from the controls, converted to the model's types; and per-field parse errors."""
        values, problems = {}, {}
        for name, control in self.controls.items():
            field = TrainConfig.model_fields[name]
            kind, _ = _kind(field.annotation)
            value = control.value
            if kind == "dict":
                try:
                    parsed = safe_yaml(value) if value.strip() else None
                except yaml.YAMLError as e:
                    mark = getattr(e, "problem_mark", None)
                    problems[name] = f"not valid YAML{f' (line {mark.line + 1})' if mark else ''}: {getattr(e, 'problem', e)}"
                    continue
                if parsed is not None and not isinstance(parsed, dict):
                    problems[name] = "expected key: value lines"
                    continue
                parsed = unmasked(parsed, getattr(self._opened, name))  # a mask left as it was: the value it hid
                value = parsed if parsed is not None else (None if unwrap_optional(field.annotation)[1] else {})
            elif kind in ("str", "int") and isinstance(value, str):
                value = value.strip()
                if value == "" and unwrap_optional(field.annotation)[1]:
                    value = None
            values[name] = value
        return values, problems

    def validate(self) -> TrainConfig | None:
        """The config if every field is valid (else None); error labels updated either way."""
        values, problems = self._raw_values()
        config = None
        try:
            config = TrainConfig(**values, extra_keys=self.extra_keys)
        except ValidationError as e:
            for item in e.errors():
                name = str(item["loc"][0]) if item["loc"] else self._model_error_field(item["msg"])
                problems.setdefault(name, item["msg"].removeprefix("Value error, "))
        for name, error in self.errors.items():
            text = problems.get(name)
            error.value = f'<span style="color:{ERROR_COLOR}">&#9888; {html.escape(text)}</span>' if text else ""
            error.layout.display = None if text else "none"
        self.problems = problems
        self.config = None if problems else config
        return self.config

    def _model_error_field(self, message: str) -> str:
        # A whole-model rule names the field it is about first.
        named = [n for n in self.controls if n in message]
        return min(named, key=message.index) if named else next(iter(self.controls))

    def _problems_html(self, lead: str, tail: str = "") -> str:
        """'Not saved: fix Number of machines (num_machines): Input should be ...; ...'"""
        parts = [f"{html.escape(label(n))} (<code>{html.escape(yaml_key(n))}</code>): {html.escape(text)}"
                 for n, text in self.problems.items()]
        return f'<span style="color:{ERROR_COLOR}">&#9888; {lead} {"; ".join(parts)}{tail}</span>'

    def _changed(self, change) -> None:
        if change["owner"] in (self.controls["ec2_instance_type"], self.controls["region"]):
            self.instance_specs.value = self._specs_html(self.controls["ec2_instance_type"].value)
        if self.validate() is None:
            self.message.value = self._problems_html("Fix", " &mdash; nothing is saved until the config is valid.")
        else:
            self.message.value = ""
            self._update_static()
        self._show_applicable()

    # -- actions ------------------------------------------------------------------------------

    def save(self) -> bool:
        config = self.validate()
        self._show_applicable()
        if config is None:
            self.message.value = self._problems_html("Not saved: fix")
            return False
        if self.path is None:
            self.message.value = "Valid (no file to save to)."
            return True
        try:
            config.to_yaml(self.path)
        except OSError as e:
            self.message.value = (f'<span style="color:{ERROR_COLOR}">Not saved: cannot write '
                                  f'{html.escape(str(self.path))}: {html.escape(e.strerror or str(e))}</span>')
            return False
        self._saved, self._saved_at = config, time.strftime("%Y-%m-%d %H:%M:%S")
        self.message.value = f'<span style="color:#2e7d32">{self.saved_text(markup=True)}</span>'
        self._update_static()
        return True

    def saved_text(self, markup: bool = False) -> str:
        """'Saved to /abs/c.yaml at 12:00:01.'; for accelerate's default config, it says so and
        who reads it (the file is shared with every `accelerate launch` on this machine)."""
        def code(text: str) -> str:
            return f"<code>{html.escape(text)}</code>" if markup else text

        at = (self._saved_at or "").split(" ")[-1]
        if self.is_default:
            return (f"Saved to accelerate's default config, {code(str(self.path))}, at {at}: "
                    f"{code('accelerate launch')} and {code('%%sagemaker_train')} without {code('--config')} use it.")
        return f"Saved to {code(str(self.path))} at {at}."

    def launch(self) -> None:
        config = self.validate()
        self._show_applicable()
        if config is None:
            self.message.value = self._problems_html("Not launched: fix")
            return
        if self.on_launch is None:
            return
        try:
            self.on_launch(config)
        except Exception as e:  # shown where the person clicked, not lost in a log
            self.message.value = f'<span style="color:{ERROR_COLOR}">Not launched: {html.escape(str(e))}</span>'

    # -- what is left when the widget is gone --------------------------------------------------

    def text_summary(self) -> str:
        where = f" for {self.path}" if self.path else ""
        return (f"sm_magic config form{where} (interactive: run the cell again in Jupyter to edit; "
                "its last state is in the next output)")

    def static_note(self) -> tuple[str, str]:
        """The form's last state as (HTML, text): what the description under the widget says.

        The widget's own style hides it while the widget lives. Once the widget is gone (a
        reopened notebook) or disconnected (a restarted kernel), it shows, and its style hides the
        widget output just before it ("Error displaying widget: model not found", or the
        disconnected form): see companion.py."""
        config = self.config or self._saved
        path = str(self.path)
        if self._saved_at:
            state = f"saved to {path} at {self._saved_at}"
        elif self.path is not None and self.path.is_file():
            state = f"as read from {path}"
        else:
            state = "not saved"
        if config != self._saved:
            state += "; edited since, not saved"
        rows = []  # (label, YAML key, value) of the settings that apply and are set
        for name in self.controls:
            value = getattr(config, name)
            if value is not None and value != {} and all(getattr(config, k) == v for k, v in condition(name).items()):
                if isinstance(value, dict):
                    value = yaml.safe_dump(masked(value), default_flow_style=True).strip()
                rows.append((label(name), yaml_key(name), str(value)))
        cells = "".join(f'<tr><td title="{html.escape(key)}" style="text-align:left">{html.escape(name)}</td>'
                        f'<td style="text-align:left"><code>{html.escape(value)}</code></td></tr>'
                        for name, key, value in rows)
        head = f"sm_magic config ({state}); run the cell to edit it."
        return (f'<b>{html.escape(head)}</b><table style="font-size:0.9em">{cells}</table>',
                "\n".join([head] + [f"  {key}: {value}" for _, key, value in rows]))

    def static_bundle(self) -> dict:
        """The description's output, as the saved notebook keeps it."""
        self.companion.note_html, self.companion.note_text = self.static_note()
        return self.companion.bundle()

    def display(self, widget_bundle: dict) -> None:
        """Display the widget, then the static description under it (updated as the form changes)."""
        widget_bundle["text/plain"] = self.text_summary()  # what nbconvert and GitHub show for the widget
        display(widget_bundle, raw=True)
        self.companion.note_html, self.companion.note_text = self.static_note()
        self.companion.show()

    def _update_static(self) -> None:
        self.companion.update(*self.static_note())
