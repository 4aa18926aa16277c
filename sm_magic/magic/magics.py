"""The Magics class: each magic parses its line and calls the core, then shows what came of it
through follow.py (a Job or a Sweep), edit.py (the config form) or listing.py (the jobs table).

Every error sm_magic raises for the user (errors.SmMagicError) becomes IPython's UsageError in
one place, `_one_line_errors` (the message alone, no traceback); a failed job keeps its own
one-line display (JobFailedError). Everything after ` -- ` on the
`%%sagemaker_train` line is the script's own arguments, passed through untouched.
"""

from __future__ import annotations

import functools
from pathlib import Path

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, cell_magic, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.utils.process import arg_split

from ..bundle import includes
from ..config.files import accelerate_default_config_path
from ..config.resolve import resolve_config
from ..errors import SmMagicError
from ..jobs.job import Job, JobFailedError
from ..jobs.lookup import attach_job
from ..plan import planner, train_line
from ..plan.checks import check_code
from ..plan.request import NotebookContext
from ..sweeps.sweep import Sweep, attach
from . import edit, follow, listing
from .sweep import sweep_cell


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
            return sweep_cell(self._shell, request, flags)
        if flags.dry_run:
            print(planner.plan(request).dry_run())
            return None
        if flags.edit:
            check_code(request.code)  # the planner's check of the script, before the form is shown
            edit.edit_then_launch(self._shell, request, flags.out)
            return None
        job = planner.plan(request).launch()
        if flags.out:
            self._shell.user_ns[flags.out] = job
        return follow.show(self._shell, job, flags.wait)

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
            edit.edit_config(Path(opts.config) if opts.config else accelerate_default_config_path())
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
        opts = self.sagemaker_jobs.parser.parse_args(arg_split(line, posix=True))
        if opts.compare is not None:
            if not opts.compare:
                raise UsageError("%sagemaker_jobs --compare NAME [NAME ...]: name the jobs to compare "
                                 "(`%sagemaker_jobs` lists them)")
            if opts.limit is not None:
                raise UsageError(f"%sagemaker_jobs --compare takes job names only; {opts.limit!r} came before "
                                 "--compare (N limits the listing)")
            return listing.compare_jobs(self._shell, opts.compare, opts.sort, opts.metric)
        if opts.sort or opts.metric:
            raise UsageError("%sagemaker_jobs: --sort and --metric go with --compare NAME [NAME ...]")
        if opts.limit is not None and not (opts.limit.isdecimal() and int(opts.limit) > 0):
            raise UsageError(f"%sagemaker_jobs [N]: N is how many of the newest jobs to list, a whole number of 1 "
                             f"or more; got {opts.limit!r}")
        return listing.jobs_table(int(opts.limit) if opts.limit is not None else None)

    @magic_arguments()
    @argument("name", help="job name")
    @argument("--tail", type=int, help="only the last N lines")
    @argument("--full", action="store_true", help="every line, the launcher's traceback too")
    @line_magic
    @_one_line_errors
    def sagemaker_logs(self, line: str):
        """Print a job's log."""
        opts = self.sagemaker_logs.parser.parse_args(arg_split(line, posix=True))
        print(attach_job(opts.name).logs(tail=opts.tail, full=opts.full))

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
    @argument("name", help="job or sweep name")
    @argument("--wait", action="store_true", help="block until the job (or every job of the sweep) ends")
    @line_magic
    @_one_line_errors
    def sagemaker_attach(self, line: str):
        """Show a job launched earlier (by this or another kernel) and follow it live; NAME may be a sweep's."""
        opts = self.sagemaker_attach.parser.parse_args(arg_split(line, posix=True))
        return follow.show(self._shell, attach(opts.name), opts.wait)


def _notebook_names(shell) -> includes.NamespaceNames:
    """The kernel's own names, for the check that a cell uses none it does not define."""
    return includes.NamespaceNames(shell.user_ns, shell.user_ns_hidden, shell.user_ns.get("In", ()))


def _cell_id(shell):
    """The running cell's id, where the frontend sends one (JupyterLab, Notebook 7, VS Code)."""
    try:
        return shell.kernel.get_parent().get("metadata", {}).get("cellId")
    except Exception:
        return None


# `%%sagemaker_train?` shows the flags, from the one grammar the magic parses with.
SageMakerMagics.sagemaker_train.__doc__ = train_line.help_text()


def load_ipython_extension(ipython) -> None:
    """Register the magics, and follow a Job or a Sweep shown as a cell's value.

    Args:
        ipython: the InteractiveShell `%load_ext sm_magic` runs in.
    """
    ipython.register_magics(SageMakerMagics)
    Job.display_hook = follow.display_hook
    Sweep.display_hook = follow.display_hook
