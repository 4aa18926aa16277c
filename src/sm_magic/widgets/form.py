"""The config form: one ipywidgets control per TrainConfig field, derived from the model.

A new field appears here with no form code: its type picks the control (Literal -> dropdown,
bool -> checkbox, int -> integer box, dict -> YAML text area, str -> text), its description is
the help text and its `group` places it. Every edit is validated against the whole model; a
problem shows beside its field, and nothing is saved until the whole config is valid.
"""

from __future__ import annotations

import html
import typing
from pathlib import Path
from typing import Any, Callable, Optional

import yaml
from pydantic import ValidationError

from ..config import TrainConfig
from ..safe_yaml import safe_yaml

GROUPS = ("Compute", "Distributed", "Spot & checkpoints", "Software versions", "Advanced")
DESCRIPTION_WIDTH = "190px"


def _kind(annotation) -> tuple[str, tuple]:
    """('choice', options) | ('bool',) | ('int',) | ('dict',) | ('str',); Optional unwrapped."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Union and len(args) == 1:
        annotation = args[0]
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


def _optional(annotation) -> bool:
    return type(None) in typing.get_args(annotation)


class ConfigForm:
    """A form over a TrainConfig. `.box` is the widget; `save()` writes `path` when valid;
    `on_launch(config)` (when given) is called by the Launch button with the valid config."""

    def __init__(self, config: TrainConfig, path: Optional[Path],
                 on_launch: Optional[Callable[[TrainConfig], None]] = None):
        import ipywidgets as w

        self.path = Path(path) if path else None
        self.extra_keys = dict(config.extra_keys)
        self.controls: dict[str, Any] = {}
        self.errors: dict[str, Any] = {}
        self.on_launch = on_launch
        self.config: Optional[TrainConfig] = config
        rows: dict[str, list] = {g: [] for g in GROUPS}
        for name, field in TrainConfig.model_fields.items():
            if field.exclude:
                continue
            control = self._control(w, name, field, getattr(config, name))
            control.observe(self._changed, names="value")
            self.controls[name] = control
            help_text = w.HTML(f'<span style="color:#666;font-size:0.85em">{html.escape(field.description or "")}</span>',
                               layout=w.Layout(margin="0 0 0 8px", width="auto"))
            error = w.HTML("", layout=w.Layout(display="none")).add_class(f"sm-magic-error-{name}")
            self.errors[name] = error
            group = (field.json_schema_extra or {}).get("group", "Advanced")
            rows.setdefault(group, []).append(w.VBox([w.HBox([control, help_text]), error]))
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
        title = f"sm_magic config: <code>{html.escape(str(self.path))}</code>" if self.path else "sm_magic config"
        sections = [w.HTML(f"<b>{title}</b>")]
        for group, items in rows.items():
            if items:
                sections.append(w.HTML(f'<h4 style="margin:8px 0 2px 0">{html.escape(group)}</h4>'))
                sections += items
        sections += [w.HBox(buttons), self.message, self.output]
        self.box = w.VBox(sections).add_class("sm-magic-form")

    @staticmethod
    def _control(w, name: str, field, value):
        kind, options = _kind(field.annotation)
        common = dict(description=name, style={"description_width": DESCRIPTION_WIDTH},
                      layout=w.Layout(width="460px"), tooltip=field.description or name)
        if kind == "choice":
            control = w.Dropdown(options=list(options), value=value, **common)
        elif kind == "bool":
            control = w.Checkbox(value=bool(value), indent=True, **common)
        elif kind == "dict":
            text = yaml.safe_dump(value, default_flow_style=False, sort_keys=True).strip() if value else ""
            control = w.Textarea(value=text, placeholder="key: value (YAML)", rows=3, **common)
        else:  # int and str edit as text, so an empty box can mean "not set"
            control = w.Text(value="" if value is None else str(value), **common)
        return control.add_class(f"sm-magic-field-{name}")

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
                value = parsed if parsed is not None else (None if _optional(field.annotation) else {})
            elif kind in ("str", "int") and isinstance(value, str):
                value = value.strip()
                if value == "" and _optional(field.annotation):
                    value = None
            values[name] = value
        return values, problems

    def validate(self) -> Optional[TrainConfig]:
        """The config if every field is valid (else None); error labels updated either way."""
        values, problems = self._raw_values()
        config = None
        try:
            config = TrainConfig(**values, extra_keys=self.extra_keys)
        except ValidationError as e:
            for item in e.errors():
                name = str(item["loc"][0]) if item["loc"] else self._model_error_field(item["msg"])
                problems.setdefault(name, item["msg"].removeprefix("Value error, "))
        for name, label in self.errors.items():
            text = problems.get(name)
            label.value = f'<span style="color:#c62828">&#9888; {html.escape(text)}</span>' if text else ""
            label.layout.display = None if text else "none"
        self.config = None if problems else config
        return self.config

    def _model_error_field(self, message: str) -> str:
        # A whole-model rule names the field it is about first.
        named = [n for n in self.controls if n in message]
        return min(named, key=message.index) if named else next(iter(self.controls))

    def _changed(self, _change) -> None:
        if self.validate() is None:
            self.message.value = '<span style="color:#c62828">Fix the fields marked &#9888;; nothing is saved until the config is valid.</span>'
        else:
            self.message.value = ""

    # -- actions ------------------------------------------------------------------------------

    def save(self) -> bool:
        config = self.validate()
        if config is None:
            self.message.value = '<span style="color:#c62828">Not saved: fix the fields marked &#9888; first.</span>'
            return False
        if self.path is None:
            self.message.value = "Valid (no file to save to)."
            return True
        try:
            config.to_yaml(self.path)
        except OSError as e:
            self.message.value = f'<span style="color:#c62828">Not saved: cannot write {html.escape(str(self.path))}: {html.escape(e.strerror or str(e))}</span>'
            return False
        self.message.value = f'<span style="color:#2e7d32">Saved to <code>{html.escape(str(self.path))}</code></span>'
        return True

    def launch(self) -> None:
        config = self.validate()
        if config is None:
            self.message.value = '<span style="color:#c62828">Not launched: fix the fields marked &#9888; first.</span>'
            return
        try:
            self.on_launch(config)
        except Exception as e:  # shown where the person clicked, not lost in a log
            self.message.value = f'<span style="color:#c62828">Not launched: {html.escape(str(e))}</span>'
