"""Write docs/config.md, the config reference, from `TrainConfig`'s fields.

Each field's group, label and YAML key are the ones the config form shows (sm_magic.widgets.form),
its type and default come from the model, its meaning is its description; the `additional_args`
keys and where each goes come from the SageMaker backend's own table. Only the intro and the
notes on each group are written here by hand. tests/test_docs.py fails when docs/config.md is not
what this script writes: after changing a field, run `python scripts/config_reference.py`.
"""

from __future__ import annotations

import sys
import typing
from pathlib import Path

from sm_magic.backends.sagemaker.args import accepted_additional_args
from sm_magic.config.model import TrainConfig, field_extra, unwrap_optional
from sm_magic.widgets.form import GROUPS, label, yaml_key

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "config.md"
COMMAND = "python scripts/config_reference.py"

INTRO = f"""\
<!-- Written by scripts/config_reference.py from TrainConfig's fields: edit the fields (sm_magic/config/model.py)
or the script's intro and notes, then run `{COMMAND}`. -->

# Config reference

`TrainConfig` (`from sm_magic import TrainConfig`) reads and writes the YAML `accelerate
config` writes for Amazon SageMaker, so the Accelerate guide's example loads unchanged and a saved
config still works with `accelerate launch`. `TrainConfig.from_yaml(path)` reads one file,
`.to_yaml(path)` writes one (atomically); `%sagemaker_config --edit` shows the config form, one
control per field below (but `compute_environment`, which has one possible value; an optional
choice offers "(not set)"), grouped as below, and its Save writes the file
(see [the config form](widgets.md#the-config-form)).

Layers, later wins: built-in defaults, accelerate's default config file
(`$HF_HOME/accelerate/default_config.yaml`, only when it is a SageMaker config), `--config FILE`,
then the magic's flags (`--instance-type` sets `ec2_instance_type`, `--instance-count`
`num_machines`). From Python, `sm_magic.launch(..., **overrides)` takes field names or those flag
names (`instance_type=`, `instance_count=`, `mixed_precision=`, ...). A misspelt key is an error
naming the closest valid key; keys accelerate knows but sm_magic does not use are kept and written
back; credentials are refused and never written. Credentials in `additional_args` (an access key
or a token in `environment`, known by its shape or its key's name: `*_TOKEN`, `*SECRET*`, ...) are
shown masked wherever the config is shown (`%sagemaker_config`, dry runs, the form and the notebook
output it leaves), saving the form keeps them as they were, and `sm-magic export` refuses to write
them into a bundle's `config.yaml`.

Limits, each a clear error before anything is written: a config file is a regular file (a FIFO
or a device is refused at once, never waited on; so are a requirements file, a metrics or inputs
TSV and a notebook given to `sm-magic export`) of UTF-8 text of at most
1 MiB, nested at most 32 levels, with no YAML anchors or aliases (accelerate never writes them; a
few hundred bytes of nested aliases would expand to gigabytes); `num_machines` at most 512;
`max_run`/`max_wait` whole seconds, 1 to 2419200; script arguments at most 2500 characters each
(SageMaker's limit on a hyperparameter value, on every backend), 64 KiB and 1000 arguments in all,
with no NUL byte.

In the tables, *field* is the name in Python (with the form's label under it), *YAML key* where
the field is in the file (`fsdp_config.fsdp_sharding_strategy`: the key `fsdp_sharding_strategy`
inside the `fsdp_config:` section), and *not set* a key that is absent (null).
"""

# What the old hand-written table said beside the fields' descriptions, by group.
NOTES = {
    "Compute": """\
`ec2_instance_type` selects the backend when no `--backend` is given: `local` (or `local_gpu`)
the local backend, `local_container` the SDK's Docker local mode, an `ml.*` type Amazon SageMaker
(see [Backends](backends.md)). A config whose `compute_environment` is not `AMAZON_SAGEMAKER`
(an accelerate `LOCAL_MACHINE` config) is refused with a hint. Job names are `base_job_name` plus
`-YYYY-mm-dd-HH-MM-SS-mmm` (UTC), as the SageMaker SDK names them; `--name` gives one exactly.
""",
    "Distributed": """\
`distributed_type`: not set (the default), every GPU trains, as with plain `accelerate launch`:
data parallel on a host with several GPUs or with several hosts, else one process; the dry run and
the job's log say which. `NO` is one process (on a multi-GPU host the dry run and the log say how
many GPUs stay idle); with `num_machines` above 1 a launch is refused (every host would run the
whole training). `DATA_PARALLEL` runs one process per GPU, 2 per host on a
CPU-only host (joined by gloo; `SM_MAGIC_CPU_PROCESSES` changes the count). `FSDP` / `DEEPSPEED`
are model parallel, one process per GPU of every host, GPUs only (see
[Model parallel](model-parallel.md)). `MODEL_PARALLEL` (SageMaker's smp library) is refused.
The FSDP settings are stored in accelerate's `fsdp_config:` section, DeepSpeed's in
`deepspeed_config:` without their `deepspeed_` prefix (`zero_stage`); a section is written when
its mode is chosen or one of its values differs from the default.
""",
    "Spot & checkpoints": """\
These are stored under `additional_args` in the YAML, where accelerate passes training-job
arguments. On SageMaker `max_run` defaults to 86400 s (the API's own default, not the SDK's
3600 s), or to `max_wait` for a spot job that may wait less; both are enforced by the local
backend as by SageMaker. How a script resumes from its checkpoints:
[Jobs that survive](survival.md).
""",
    "Software versions": """\
Unless `image_uri` is set, the training image is chosen for the instance type; the versions narrow
the choice (`2.9` matches `2.9.0`). See [The training image](backends.md#the-training-image).
""",
    "Advanced": """\
`additional_args` takes the training job's other arguments; the SageMaker backend accepts the keys
in [the table below](#additional_args-keys) and refuses any other, listing these.
""",
}

ADDITIONAL_ARGS_INTRO = """\
## `additional_args` keys

What the SageMaker backend does with each key of `additional_args` (an unknown key is an error
naming the closest accepted one). The keys that are fields of their own ({lifted}) are read
into those fields. `enable_network_isolation: true` also makes the bundle carry its wheels
(see [Requirements](backends.md#requirements)).
"""


def _md(text: str) -> str:
    """Text for a table cell: `|` would end the cell, `<...>` would be read as HTML."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def _type(field) -> str:
    annotation, optional = unwrap_optional(field.annotation)
    if typing.get_origin(annotation) is typing.Literal:
        choices = [f"`{c}`" for c in typing.get_args(annotation)]
        text = f"{choices[0]} only" if len(choices) == 1 else "one of " + ", ".join(choices)
    elif annotation is bool:
        text = "`true` / `false`"
    elif annotation is int:
        low = next((m.ge for m in field.metadata if hasattr(m, "ge")), None)
        high = next((m.le for m in field.metadata if hasattr(m, "le")), None)
        text = "whole number"
        if low is not None and high is not None:
            text += f", {low} to {high}"
        elif low is not None:
            text += f", at least {low}"
    elif annotation is dict or typing.get_origin(annotation) is dict:
        text = "mapping"
    else:
        text = "text"
        longest = next((m.max_length for m in field.metadata if hasattr(m, "max_length")), None)
        if longest is not None:
            text += f", at most {longest} characters"
    return text + " (optional)" if optional else text


def _default(field) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == {}:
        return "`{}`"
    return f"`{value}`"


def _groups() -> dict[str, list[str]]:
    """Field names by group, in the form's order; a field with no group is Advanced, as in the form."""
    groups: dict[str, list[str]] = {g: [] for g in GROUPS}
    for name, field in TrainConfig.model_fields.items():
        if not field.exclude:
            groups.setdefault(field_extra(name).get("group", "Advanced"), []).append(name)
    return {g: names for g, names in groups.items() if names}


def render() -> str:
    """docs/config.md's text."""
    parts = [INTRO]
    for group, names in _groups().items():
        parts.append(f"## {group}\n")
        if group in NOTES:
            parts.append(NOTES[group])
        rows = ["| field | YAML key | type | default | meaning |", "|---|---|---|---|---|"]
        for name in names:
            field = TrainConfig.model_fields[name]
            rows.append(f"| `{name}`<br>*{_md(label(name))}* | `{yaml_key(name)}` | {_type(field)} | "
                        f"{_default(field)} | {_md(field.description or '')} |")
        parts.append("\n".join(rows) + "\n")
    lifted = [f"`{n}`" for n in TrainConfig.model_fields if yaml_key(n).startswith("additional_args.")]
    parts.append(ADDITIONAL_ARGS_INTRO.format(lifted=", ".join(lifted)))
    rows = ["| key | in the CreateTrainingJob request |", "|---|---|"]
    rows += [f"| `{key}` | {_md(where)} |" for key, where in sorted(accepted_additional_args().items())]
    parts.append("\n".join(rows) + "\n")
    return "\n".join(parts)


def main() -> int:
    text = render()
    if OUTPUT.exists() and OUTPUT.read_text(encoding="utf-8") == text:
        print(f"{OUTPUT.relative_to(ROOT)} is up to date")
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
