"""The effective TrainConfig, from layers where a later one wins: built-in defaults (or a given
config), accelerate's default config file (only when it is a SageMaker config), `--config FILE`,
then the magic's flags.

Each layer remembers the file and line of each key, so a problem is reported where the user can
fix it: a misspelt key names the closest valid one, a bad value names its file and line (or its
flag), and a file that is not UTF-8 YAML says so before anything else is read.
"""

from __future__ import annotations

import difflib
import os
import warnings
from pathlib import Path

import yaml
from pydantic import ValidationError

from .accelerate_yaml import ACCELERATE_KEYS, CREDENTIAL_KEYS, legacy_keys
from .model import LIFTED_ARGS, ConfigError, TrainConfig, short_repr
from .files import accelerate_default_config_path, read_regular_file
from .safe_yaml import MAX_YAML_BYTES, YamlRefused, compose_yaml

FLAGS_LABEL = "the magic's flags"
# Flag names users type, mapped to accelerate's key names.
ALIASES = {"instance_type": "ec2_instance_type", "instance_count": "num_machines"}


class _Layer:
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


def _read_yaml_layer(path: Path) -> _Layer:
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
        return _Layer(label, {})
    if not isinstance(values, dict):
        raise ConfigError(f"{label}: expected a mapping of keys (like `ec2_instance_type: ml.p3.2xlarge`), "
                          f"found a {type(values).__name__}")
    lines = {k.value: k.start_mark.line + 1 for k, _ in node.value} if isinstance(node, yaml.MappingNode) else {}
    for old, new in (("fp16", "mixed_precision"), ("dynamo_backend", "dynamo_config")):
        if old in lines:
            lines.setdefault(new, lines[old])
    return _Layer(label, legacy_keys(values), lines)


def _check_keys(layer: _Layer) -> dict:
    """Split a layer into field values and extra keys; refuse misspellings and credentials."""
    fields = set(TrainConfig.model_fields) - {"extra_keys"}
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
                          "(a newer accelerate version may use it)", stacklevel=3)
            extra[key] = value
    return {"values": values, "extra": extra}


def resolve_config(config_file: str | os.PathLike | None = None, overrides: dict | None = None,
                   *, use_accelerate_default: bool = True, base: TrainConfig | None = None) -> TrainConfig:
    """The effective config: defaults (or `base`), accelerate's SageMaker default config,
    `config_file`, then `overrides` (flag values; None means "not given")."""
    layers: list[_Layer] = []
    if base is not None:
        layers.append(_Layer("the given config", {**base.model_dump(), **base.extra_keys}))
    elif use_accelerate_default:
        default = accelerate_default_config_path()
        if default.is_file():
            layer = _read_yaml_layer(default)
            if layer.values.get("compute_environment") == "AMAZON_SAGEMAKER":
                layers.append(layer)
    if config_file is not None:
        layer = _read_yaml_layer(Path(config_file))
        env = layer.values.get("compute_environment", "AMAZON_SAGEMAKER")
        if env != "AMAZON_SAGEMAKER":
            raise ConfigError(f"{layer.where('compute_environment')}: this is an accelerate config for "
                              f"compute_environment {env}; sm_magic runs SageMaker configs (answer "
                              "'AWS (Amazon SageMaker)' in `accelerate config`, or use `%sagemaker_config --edit`)")
        layers.append(layer)
    if overrides:
        flags = {ALIASES.get(k, k): v for k, v in overrides.items() if v is not None}
        layers.append(_Layer(FLAGS_LABEL, flags))

    merged, extra, origin = {}, {}, {}
    for layer in layers:
        split = _check_keys(layer)
        for key in split["values"]:
            origin[key] = layer
        merged.update(split["values"])
        extra.update(split["extra"])
    try:
        return TrainConfig(**merged, extra_keys=extra)
    except ValidationError as e:
        raise ConfigError(_explain(e, merged, origin)) from None


def _explain(error: ValidationError, values: dict, origin: dict) -> str:
    problems = []
    for item in error.errors():
        if not item["loc"]:  # a rule across fields names them in its message
            problems.append(item["msg"].removeprefix("Value error, "))
            continue
        key = str(item["loc"][0])
        layer = origin.get(key) or (origin.get("additional_args") if key in LIFTED_ARGS else None)
        msg = item["msg"].removeprefix("Value error, ")
        shown = key in values and "got" not in msg and not isinstance(values[key], dict)  # dicts may hold secrets
        got = f" (got {short_repr(values[key])})" if shown else ""
        where = f"{layer.where(key)}: {key}" if layer else key
        if layer is not None and layer.label == FLAGS_LABEL:
            where = "--" + next((a for a, k in ALIASES.items() if k == key), key).replace("_", "-")
        problems.append(f"{where}: {msg}{got}")
    return "invalid config: " + "; ".join(problems)
