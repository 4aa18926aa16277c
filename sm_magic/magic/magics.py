"""IPython glue: parse the magic's line, call the core, show progress.

Every error sm_magic raises for the user (errors.SmMagicError) becomes IPython's UsageError in
one place, `_one_line_errors` (the message alone, no traceback); a failed job keeps its own
one-line display (JobFailedError). Everything after ` -- ` on the
`%%sagemaker_train` line is the script's own arguments, passed through untouched.
"""

from __future__ import annotations

import functools
import os
import queue
from dataclasses import replace
from pathlib import Path

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, cell_magic, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.utils.process import arg_split

from ..plan import planner as api, train_line
from ..bundle import includes
from ..bundle.build import check_source
from ..config.model import ConfigError, TrainConfig
from ..config.files import accelerate_default_config_path
from ..config.resolve import resolve_config
from ..errors import SmMagicError
from ..jobs.job import Job, JobFailedError
from ..jobs.monitor import get_monitor
from ..plan.request import ConfigSource, LaunchRequest, NotebookContext
from ..widgets.text import StreamPrinter, TerminalLines

WIDGET_INTERVAL = 1.0  # seconds between a display's updates: at most one message per child per second


def _one_line_errors(magic):
    """The one place a magic's errors become what the user sees: an SmMagicError (a usage
    mistake, or a backend or registry problem) as IPython's UsageError, its message alone. A
    failed job (JobFailedError) keeps its own one-line display and fails the cell as itself."""

    @functools.wraps(magic)
    def run(*args, **kwargs):
        try:
            return magic(*args, **kwargs)
        except JobFailedError:
            raise
        except SmMagicError as e:
            raise UsageError(str(e)) from None

    return run


def _in_kernel(shell) -> bool:
    # Only a kernel has a frontend that renders widgets and replaces a display in place.
    return type(shell).__name__ == "ZMQInteractiveShell"


@magics_class
class SageMakerMagics(Magics):
    """%%sagemaker_train and the job magics."""

    def __init__(self, shell=None, **kwargs):
        super().__init__(shell=shell, **kwargs)
        self.included_cells = includes.TaggedCells()  # what %%sagemaker_include cells recorded

    @property
    def _shell(self) -> InteractiveShell:
        if self.shell is None:  # a Magics made by hand; load_ext always gives the shell
            raise UsageError("sm_magic's magics run in an IPython shell: %load_ext sm_magic")
        return self.shell

    @line_cell_magic
    @_one_line_errors
    def sagemaker_train(self, line: str, cell: str = ""):
        # With --git-repo a blank cell runs the repository's entry script; a cell replaces it.
        # (IPython refuses a %% cell with no body at all, so `%sagemaker_train --git-repo URL`,
        # the line form, is the way to write one with nothing under it.)
        notebook = NotebookContext(tagged_cells=self.included_cells.as_dict(), names=_notebook_names(self._shell))
        request, flags = train_line.parse(line, cell or "", notebook)
        if flags.sweep:
            from .sweep import sweep_cell

            return sweep_cell(self._shell, request, flags)
        if flags.dry_run:
            print(api.dry_run_request(request))
            return None
        if flags.edit:
            if request.code.cell is not None and (request.code.cell.strip() or not request.code.git_repo):
                check_source(request.code.cell)
            self._edit_then_launch(request, flags)
            return None
        job = api.launch_request(request)
        if flags.out:
            self._shell.user_ns[flags.out] = job
        if flags.wait:
            return _shown(self._shell, _wait(self._shell, job))
        _follow(self._shell, job)
        return _shown(self._shell, job)

    def _edit_then_launch(self, request: LaunchRequest, flags: train_line.MagicFlags) -> None:
        """The form, with a Launch button that launches the cell's request with the edited config
        (which started from the line's --config and instance flags), through the same api.plan."""
        import ipywidgets as w

        from ..widgets.form import ConfigForm
        from ..widgets.progress import ProgressWidget, summary_html

        given = request.config.given
        path = Path(given) if isinstance(given, (str, os.PathLike)) else accelerate_default_config_path()

        def launch(edited: TrainConfig) -> None:
            job = api.launch_request(replace(request, config=ConfigSource(edited)))
            if flags.out:
                self._shell.user_ns[flags.out] = job

            def done(snap):
                form.output.children = (w.HTML(summary_html(snap)),)
                progress.close()

            progress = ProgressWidget(job, on_done=done)
            form.output.children = (progress.box,)
            get_monitor().watch(job, progress.update, min_interval=WIDGET_INTERVAL)

        form = ConfigForm(_form_config(path, request.config.overrides), path, on_launch=launch)
        _display(form.box)

    @magic_arguments()
    @argument("tags", nargs="+", metavar="TAG", help="the tag(s) a `%%%%sagemaker_train --include TAG` line names")
    @cell_magic
    @_one_line_errors
    def sagemaker_include(self, line: str, cell: str):
        """Run the cell here as usual, and keep its code under TAG: the job of a
        `%%sagemaker_train --include TAG` cell runs it first (as sm_included.py), in the training
        script's namespace. The cell must be plain Python (no magics)."""
        opts = self.sagemaker_include.parser.parse_args(arg_split(line, posix=True))
        for tag in opts.tags:
            includes.check_tag(tag)
            includes.check_cell(tag, cell)
        cell_id = _cell_id(self._shell)
        result = self._shell.run_cell(cell, store_history=False)
        if not result.success:
            raise UsageError(f"the `%%sagemaker_include {line.strip()}` cell failed (above) and was not recorded: "
                             "fix it and run it again")
        self.included_cells.record(opts.tags, cell, cell_id)

    @magic_arguments()
    @argument("--config", metavar="FILE", help="config YAML (default: accelerate's default config file)")
    @argument("--edit", action="store_true", help="edit it in a form; Save writes FILE (or accelerate's default config)")
    @line_magic
    @_one_line_errors
    def sagemaker_config(self, line: str):
        """Print the effective launch config, or edit and save it with `--edit`."""
        opts = self.sagemaker_config.parser.parse_args(arg_split(line, posix=True))
        if opts.edit:
            from ..widgets.form import ConfigForm

            path = Path(opts.config) if opts.config else accelerate_default_config_path()
            _display(ConfigForm(_form_config(path, {}), path).box)
            return
        cfg = resolve_config(config_file=opts.config)
        print(f"# backend: {cfg.backend}")
        print(cfg.shown_yaml(), end="")

    @magic_arguments()
    @argument("limit", nargs="?", metavar="N", help="only the newest N jobs")
    @argument("--compare", nargs="*", metavar="NAME",
              help="compare these jobs (a sweep's name: its jobs) instead: one row each (status, hyperparameters, "
                   "billable and wall seconds, last and best value of each metric) and a plot overlaying one metric")
    @argument("--sort", metavar="METRIC", help="with --compare: sort by this metric's best value, best first "
              "(or by any column; default: the first metric)")
    @argument("--metric", metavar="METRIC", help="with --compare: the metric the plot overlays (default: the sort metric)")
    @line_magic
    @_one_line_errors
    def sagemaker_jobs(self, line: str = ""):
        """The known jobs, newest first, with their current status, duration and final metrics (a
        DataFrame); with `--compare NAME ...`, those jobs side by side and a plot of one metric."""
        import pandas as pd

        from ..display.table_text import clock
        from ..jobs.final_metrics import compact

        opts = self.sagemaker_jobs.parser.parse_args(arg_split(line, posix=True))
        if opts.compare is not None:
            return self._compare_jobs(opts)
        if opts.sort or opts.metric:
            raise UsageError("%sagemaker_jobs: --sort and --metric go with --compare NAME [NAME ...]")
        if opts.limit is not None and not (opts.limit.isdecimal() and int(opts.limit) > 0):
            raise UsageError(f"%sagemaker_jobs [N]: N is how many of the newest jobs to list, a whole number of 1 "
                             f"or more; got {opts.limit!r}")
        found = api.list_jobs(limit=int(opts.limit) if opts.limit is not None else None)
        rows = [{"name": row.record.name, "backend": row.record.backend, "status": row.status,
                 "instance": f"{row.record.instance_type} x{row.record.instance_count}",
                 "created": pd.Timestamp(row.record.created, unit="s").floor("s"),
                 "duration": clock(row.duration) if row.duration is not None else "",
                 "cost_usd": row.cost,
                 "metrics": compact(row.metrics),
                 "hyperparameters": " ".join(f"{k}={v}" for k, v in row.record.hyperparameters.items()),
                 "sweep": row.sweep, "note": row.note}
                for row in found]
        columns = ["name", "backend", "status", "instance", "created", "duration", "metrics", "hyperparameters"]
        if any(row.cost is not None for row in found):  # a column only where a price is known (SageMaker)
            columns.insert(columns.index("duration") + 1, "cost_usd")
        if any(row.sweep for row in found):  # a column only when some job is a sweep's
            columns.append("sweep")
        if any(row.note for row in found):  # a column only when some job has something wrong
            columns.append("note")
        from ..display.table_view import jobs_frame

        return jobs_frame(pd.DataFrame(rows, columns=columns))  # shown compact in a notebook, all columns a click away

    def _compare_jobs(self, opts):
        """`%sagemaker_jobs --compare NAME ...`: the plot is shown (in a notebook), the table is
        the cell's value (so `df = _` keeps it)."""
        from ..sweeps.compare import comparison

        if not opts.compare:
            raise UsageError("%sagemaker_jobs --compare NAME [NAME ...]: name the jobs to compare "
                             "(`%sagemaker_jobs` lists them)")
        if opts.limit is not None:
            raise UsageError(f"%sagemaker_jobs --compare takes job names only; {opts.limit!r} came before --compare "
                             "(N limits the listing)")
        result = comparison(opts.compare, sort_by=opts.sort)
        metric = result.metric(opts.metric)
        if metric is not None:
            if _in_kernel(self._shell):
                from IPython.display import Image

                _display(Image(data=result.png(metric), format="png"))
            else:
                print(f"(The plot of {metric} across these jobs shows in a notebook; "
                      f"sm_magic.compare.plot(names, {metric!r}) returns it as PNG bytes.)")
        return result.frame

    @magic_arguments()
    @argument("name", help="job name")
    @argument("--tail", type=int, help="only the last N lines")
    @argument("--full", action="store_true", help="every line, the launcher's traceback too")
    @line_magic
    @_one_line_errors
    def sagemaker_logs(self, line: str):
        """Print a job's log."""
        opts = self.sagemaker_logs.parser.parse_args(arg_split(line, posix=True))
        print(_attach(opts.name).logs(tail=opts.tail, full=opts.full))

    @magic_arguments()
    @argument("name", help="job or sweep name")
    @line_magic
    @_one_line_errors
    def sagemaker_stop(self, line: str):
        """Stop a running job (it ends Stopped, keeping its model and checkpoints), or a sweep: its
        running jobs stopped, its queued ones cancelled."""
        from ..sweeps.sweep import stop_named

        opts = self.sagemaker_stop.parser.parse_args(arg_split(line, posix=True))
        print(stop_named(opts.name))

    @magic_arguments()
    @argument("name", help="job name")
    @argument("--wait", action="store_true", help="block until the job ends")
    @line_magic
    @_one_line_errors
    def sagemaker_attach(self, line: str):
        """Show a job launched earlier (by this or another kernel) and follow it live; NAME may be a sweep's."""
        opts = self.sagemaker_attach.parser.parse_args(arg_split(line, posix=True))
        from .sweep import attached_sweep

        sweep = attached_sweep(self._shell, opts.name, opts.wait)
        if sweep is not None:
            return sweep
        job = _attach(opts.name)
        if opts.wait:
            return _shown(self._shell, _wait(self._shell, job))
        _follow(self._shell, job)
        return _shown(self._shell, job)


def _attach(name: str) -> Job:
    return api.attach(name)


def _notebook_names(shell) -> includes.NamespaceNames:
    """The kernel's own names, for the check that a cell uses none it does not define."""
    return includes.NamespaceNames(shell.user_ns, shell.user_ns_hidden, shell.user_ns.get("In", ()))


def _cell_id(shell):
    """The running cell's id, where the frontend sends one (JupyterLab, Notebook 7, VS Code)."""
    try:
        return shell.kernel.get_parent().get("metadata", {}).get("cellId")
    except Exception:
        return None


def _form_config(path: Path, overrides: dict) -> TrainConfig:
    """What the form starts from: the file when it exists (a new file starts from defaults),
    with the line's instance flags over it."""
    try:
        return resolve_config(config_file=path if path.is_file() else None, overrides=overrides,
                              use_accelerate_default=False)
    except ConfigError as e:
        # A LOCAL_MACHINE accelerate config lands here too: saving over it would destroy it.
        raise UsageError(f"{e}\n(The form edits {path}; fix or move that file, or pass --config NEW.yaml.)") from None


def _display(widget) -> None:
    from IPython.display import display

    display(widget)


def _wait(shell, job: Job) -> Job:
    """Block until the job ends: the SDK-style text stream, and the progress widget in a kernel.
    Snapshots come from the monitor thread through a queue, so all output is made here."""
    widget = None
    if _in_kernel(shell):
        from ..widgets.progress import show_progress

        widget = show_progress(job)
    printer = StreamPrinter()
    snapshots: queue.Queue = queue.Queue()
    watch = get_monitor().watch(job, snapshots.put, min_interval=WIDGET_INTERVAL)
    try:
        while True:
            snap = snapshots.get()
            printer(snap)
            if widget is not None:
                widget.update(snap)
            if snap.state.done:
                break
    except KeyboardInterrupt:
        # Only this cell stops waiting; the widget goes on following the job.
        watch.callback = widget.update if widget is not None else (lambda snap: None)
        print(f"\nStopped waiting; {job.name} keeps running. `%sagemaker_stop {job.name}` ends it.")
        return job
    if snap.state.status == "Failed":
        raise JobFailedError(job, snap.state.failure_reason or "no reason given")
    return job


def _shown(shell, job: Job) -> Job:
    """The cell's value: the Job (for `job = _`), showing nothing more where a widget shows it."""
    return job.shown_in(shell.execution_count) if _in_kernel(shell) else job


def _display_job(job: Job) -> bool:
    """Job.display_hook: `job` as a cell's value in a kernel follows it with a progress view
    (the summary once it has ended)."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None or not _in_kernel(shell):
        return False
    _follow(shell, job)
    return True


def _follow(shell, job: Job) -> None:
    """Follow a job without blocking: the progress widget in a kernel, text lines in a terminal."""
    if _in_kernel(shell):
        from ..widgets.progress import show_progress

        get_monitor().watch(job, show_progress(job).update, min_interval=WIDGET_INTERVAL)
    else:
        print(f"{job.name} is running on the {job.backend} backend; its progress follows as lines "
              f"(`%sagemaker_attach {job.name} --wait` blocks until it ends).")
        get_monitor().watch(job, TerminalLines(), min_interval=WIDGET_INTERVAL)


# `%%sagemaker_train?` shows the flags, from the one grammar the magic parses with.
SageMakerMagics.sagemaker_train.__doc__ = train_line.help_text()


def load_ipython_extension(ipython) -> None:
    from .sweep import install

    ipython.register_magics(SageMakerMagics)
    Job.display_hook = _display_job
    install()  # Sweep.display_hook
