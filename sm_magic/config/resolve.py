"""The effective TrainConfig, from layers where a later one wins: built-in defaults (or a given
config), accelerate's default config file (only when it is a SageMaker config), `--config FILE`,
then the magic's flags.

Each layer remembers the file and line of each key (layers.py), so a problem is reported where the
user can fix it: a misspelt key names the closest valid one, a bad value names its file and line
(or its flag), and a file that is not UTF-8 YAML says so before anything else is read.
"""

from __future__ import annotations

import os
from pathlib import Path

from .files import accelerate_default_config_path
from .layers import ALIASES, FLAGS_LABEL, Layer, build, config_file_layer, read_yaml_layer
from .model import LIFTED_ARGS, TrainConfig


def resolve_config(config_file: str | os.PathLike | None = None, overrides: dict | None = None,
                   *, use_accelerate_default: bool = True, base: TrainConfig | None = None) -> TrainConfig:
    """The effective config: defaults (or `base`), accelerate's SageMaker default config,
    `config_file`, then `overrides` (flag values; None means "not given")."""
    layers: list[Layer] = []
    if base is not None:
        layers.append(Layer("the given config", {**base.model_dump(), **base.extra_keys}))
    elif use_accelerate_default:
        default = accelerate_default_config_path()
        if default.is_file():
            layer = read_yaml_layer(default)
            if layer.values.get("compute_environment") == "AMAZON_SAGEMAKER":
                layers.append(layer)
    if config_file is not None:
        layers.append(config_file_layer(Path(config_file)))
    if overrides:
        flags = {ALIASES.get(k, k): v for k, v in overrides.items() if v is not None}
        layers.append(Layer(FLAGS_LABEL, flags))
    return build(TrainConfig, layers, LIFTED_ARGS)
