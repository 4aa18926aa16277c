"""`--edit`: the config form under the cell (`%sagemaker_config --edit`), and with
`%%sagemaker_train --edit` a Launch button that launches the cell with the edited config.

A job launched from the form is followed inside the form's own output area (its summary left
there when it ends), not under the cell as follow.py follows one.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from IPython.core.error import UsageError

from ..config.files import accelerate_default_config_path
from ..config.model import ConfigError, TrainConfig
from ..config.resolve import resolve_config
from ..jobs.monitor import get_monitor
from ..plan import planner
from ..plan.request import ConfigSource, LaunchRequest
from . import follow
from .views import WIDGET_INTERVAL


def edit_config(path: Path) -> None:
    """Show the form for the config file at `path`; its Save button writes it.

    Args:
        path: the YAML the form edits (it need not exist yet).
    """
    from ..widgets.form import ConfigForm

    follow.display(ConfigForm(form_config(path, {}), path).box)


def edit_then_launch(shell, request: LaunchRequest, out: str | None) -> None:
    """The form, with a Launch button that launches the cell's request with the edited config
    (which started from the line's --config and instance flags), through the same planner.plan.

    Args:
        shell: the running InteractiveShell (`out` names the launched Job in its namespace).
        request: the cell's launch request, as the line made it.
        out: the line's `-o VAR`, or None.
    """
    import ipywidgets as w

    from ..widgets.form import ConfigForm
    from ..widgets.progress import ProgressWidget, summary_html

    given = request.config.given
    path = Path(given) if isinstance(given, (str, os.PathLike)) else accelerate_default_config_path()

    def launch(edited: TrainConfig) -> None:
        job = planner.plan(replace(request, config=ConfigSource(edited))).launch()
        if out:
            shell.user_ns[out] = job

        def done(snap):
            form.output.children = (w.HTML(summary_html(snap)),)
            progress.close()

        progress = ProgressWidget(job, on_done=done)
        form.output.children = (progress.box,)
        get_monitor().watch(job, progress.update, min_interval=WIDGET_INTERVAL)

    form = ConfigForm(form_config(path, request.config.overrides), path, on_launch=launch)
    follow.display(form.box)


def form_config(path: Path, overrides: dict) -> TrainConfig:
    """What the form starts from: the file when it exists (a new file starts from defaults),
    with the line's instance flags over it.

    Args:
        path: the YAML the form edits.
        overrides: TrainConfig fields the line's flags set.

    Returns:
        The config the form's controls start at.
    """
    try:
        return resolve_config(config_file=path if path.is_file() else None, overrides=overrides,
                              use_accelerate_default=False)
    except ConfigError as e:
        # A LOCAL_MACHINE accelerate config lands here too: saving over it would destroy it.
        raise UsageError(f"{e}\n(The form edits {path}; fix or move that file, or pass --config NEW.yaml.)") from None
