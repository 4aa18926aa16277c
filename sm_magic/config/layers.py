"""A config's sources as layers of keys, read and checked: a YAML file (or the flags, or a given
config), each key remembering its file and line, so that a problem is reported where the user can
fix it. `build(cls, layers)` makes the config from them, a later layer winning.

Below model.py, which builds TrainConfig.from_yaml from it, and resolve.py, which puts the layers
in order: this module never imports either, and takes the config's class as an argument.
"""

from __future__ import annotations

import difflib
import warnings
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import UsageProblem
from .accelerate_yaml import ACCELERATE_KEYS, CREDENTIAL_KEYS, legacy_keys
from .files import read_regular_file
from .safe_yaml import MAX_YAML_BYTES, YamlRefused, compose_yaml

FLAGS_LABEL = "the magic's flags"
# Flag names users type, mapped to accelerate's key names.
ALIASES = {"instance_type": "ec2_instance_type", "instance_count": "num_machines"}


class ConfigError(UsageProblem, ValueError):
    """A config that cannot be used; the message names the file, line and key, and the fix."""


def short_repr(value, limit: int = 80) -> str:
    """A value as a message quotes it: its repr, cut short."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to convert
        text = f"a {type(value).__name__} too long to show"
    return text if len(text) <= limit else text[:limit - 3] + "..."


class Layer:
    """One source of keys: its label for messages, its values and the line of each key."""

    def __init__(self, label: str, values: dict, lines: dict | None = None):
        self.label, self.values, self.lines = label, values, lines or {}

    def where(self, key: str) -> str:
        line = self.lines.get(key)
        return f"{self.label} line {line}" if line else self.label


_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16",
         b"\xfe\xff": "UTF-16"}


def read_text_file(path: Path, what: str, limit: int = MAX_YAML_BYTES) -> str:
    """A small text file's text, UTF-8 only (a UTF-8 BOM is dropped); ConfigError naming the file
    for a file that is missing, unreadable, too large or not UTF-8 text."""
    try:
        data = read_regular_file(path, limit + 1)  # a FIFO would block the kernel until interrupted
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist: check the path, or run "
                          "`%sagemaker_config` to see which config is in use") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a directory: give the file's path") from None
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if len(data) > limit:
        raise ConfigError(f"{what} {path} is larger than {limit // 1024} KiB: a config file is a few hundred "
                          "bytes; check that this is the file you meant")
    encoding = next((name for bom, name in _BOMS.items() if data.startswith(bom)), None)
    if encoding is None and b"\0" in data:
        raise ConfigError(f"{what} {path} is not UTF-8 text (it holds NUL bytes: a binary file, or UTF-16 or "
                          "UTF-32 text): save it as UTF-8 and try again")
    try:
        if encoding is None:
            return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {e.start + 1}, line {line}): save it as "
                          "UTF-8 and try again") from None
    raise ConfigError(f"{what} {path} is {encoding} text: save it as UTF-8 and try again")


def read_yaml_layer(path: Path) -> Layer:
    label = str(path)
    text = read_text_file(path, "config file")
    try:
        values, node = compose_yaml(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        if isinstance(e, YamlRefused):
            raise ConfigError(f"{label}{where}: {problem}; fix the file and run the cell again") from None
        raise ConfigError(f"{label}{where}: not valid YAML ({problem}); fix the file and run the cell again") from None
    if values is None:
        return Layer(label, {})
    if not isinstance(values, dict):
        raise ConfigError(f"{label}: expected a mapping of keys (like `ec2_instance_type: ml.p3.2xlarge`), "
                          f"found a {type(values).__name__}")
    lines = {k.value: k.start_mark.line + 1 for k, _ in node.value} if isinstance(node, yaml.MappingNode) else {}
    for old, new in (("fp16", "mixed_precision"), ("dynamo_backend", "dynamo_config")):
        if old in lines:
            lines.setdefault(new, lines[old])
    return Layer(label, legacy_keys(values), lines)


def config_file_layer(path: Path) -> Layer:
    """The layer of a config file given by name (`--config FILE`, `TrainConfig.from_yaml`): it must
    be a SageMaker config."""
    layer = read_yaml_layer(path)
    env = layer.values.get("compute_environment", "AMAZON_SAGEMAKER")
    if env != "AMAZON_SAGEMAKER":
        raise ConfigError(f"{layer.where('compute_environment')}: this is an accelerate config for "
                          f"compute_environment {env}; sm_magic runs SageMaker configs (answer "
                          "'AWS (Amazon SageMaker)' in `accelerate config`, or use `%sagemaker_config --edit`)")
    return layer


def _check_keys(layer: Layer, fields: set[str]) -> dict:
    """Split a layer into field values and extra keys; refuse misspellings and credentials."""
    known = fields | ACCELERATE_KEYS
    values, extra = {}, {}
    for key, value in layer.values.items():
        key = str(key)
        if key.lower() in CREDENTIAL_KEYS:
            raise ConfigError(f"{layer.where(key)}: `{key}` is a credential and never goes in a config "
                              "file; remove it and use `profile` or the AWS environment variables")
        if key in fields:
            values[key] = value
        elif key in ACCELERATE_KEYS:
            extra[key] = value
        else:
            close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
            if close:
                raise ConfigError(f"{layer.where(key)}: unknown key `{key}`; did you mean `{close[0]}`?")
            warnings.warn(f"{layer.where(key)}: key `{key}` is not one sm_magic knows; kept as it is "
                          "(a newer accelerate version may use it)", stacklevel=4)
            extra[key] = value
    return {"values": values, "extra": extra}


def build(cls: Any, layers: list[Layer], lifted: tuple[str, ...] = ()) -> Any:
    """`cls` (TrainConfig) from `layers`, a later one's keys winning; ConfigError naming the layer,
    line and key of each problem. `lifted`: keys that may also come inside `additional_args`."""
    fields = set(cls.model_fields) - {"extra_keys"}
    merged: dict = {}
    extra: dict = {}
    origin: dict = {}
    for layer in layers:
        split = _check_keys(layer, fields)
        for key in split["values"]:
            origin[key] = layer
        merged.update(split["values"])
        extra.update(split["extra"])
    try:
        return cls(**merged, extra_keys=extra)
    except ValidationError as e:
        raise ConfigError(_explain(e, merged, origin, lifted)) from None


def _explain(error: ValidationError, values: dict, origin: dict, lifted: tuple[str, ...]) -> str:
    problems = []
    for item in error.errors():
        if not item["loc"]:  # a rule across fields names them in its message
            problems.append(item["msg"].removeprefix("Value error, "))
            continue
        key = str(item["loc"][0])
        layer = origin.get(key) or (origin.get("additional_args") if key in lifted else None)
        msg = item["msg"].removeprefix("Value error, ")
        shown = key in values and "got" not in msg and not isinstance(values[key], dict)  # dicts may hold secrets
        got = f" (got {short_repr(values[key])})" if shown else ""
        where = f"{layer.where(key)}: {key}" if layer else key
        if layer is not None and layer.label == FLAGS_LABEL:
            where = "--" + next((a for a, k in ALIASES.items() if k == key), key).replace("_", "-")
        problems.append(f"{where}: {msg}{got}")
    return "invalid config: " + "; ".join(problems)
