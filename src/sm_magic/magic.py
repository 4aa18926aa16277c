"""IPython glue: parse the magic's line, call the core, show progress.

Usage mistakes become UsageError (one line, no traceback). Everything after ` -- ` on the
`%%sagemaker_train` line is the script's own arguments, passed through untouched.
"""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.utils.process import arg_split

from . import api
from .backends import BACKEND_NAMES, BackendError
from .bundle import BundleError
from .config import ConfigError, resolve_config
from .job import Job
from .metrics import MetricsError
from .monitor import get_monitor
from .registry import RegistryError
from .widgets.text import LiveDisplay, StreamPrinter

USER_ERRORS = (ConfigError, BundleError, api.LaunchError, BackendError, MetricsError, RegistryError)


def split_script_args(line: str) -> tuple[list[str], list[str]]:
    """The magic's own tokens, and the script's arguments after the first bare `--`."""
    tokens = arg_split(line, posix=True)
    if "--" in tokens:
        i = tokens.index("--")
        return tokens[:i], tokens[i + 1:]
    return tokens, []


def _in_kernel(shell) -> bool:
    # Only a kernel has a frontend that can replace a display in place.
    return type(shell).__name__ == "ZMQInteractiveShell"


@magics_class
class SageMakerMagics(Magics):
    """%%sagemaker_train and the job magics."""

    @magic_arguments()
    @argument("--backend", choices=BACKEND_NAMES, help="where to run (default: from ec2_instance_type; 'local' when none is set)")
    @argument("--config", metavar="FILE", help="accelerate SageMaker config YAML (over accelerate's default config)")
    @argument("--name", help="exact job name (default: base_job_name plus a timestamp)")
    @argument("--instance-type", dest="instance_type", help="ec2_instance_type, e.g. ml.p3.2xlarge")
    @argument("--instance-count", dest="instance_count", type=int, help="num_machines: number of hosts")
    @argument("--input", dest="inputs", action="append", default=[], metavar="NAME=URI", help="input channel (repeatable)")
    @argument("--metric", dest="metrics", action="append", default=[], metavar="NAME=REGEX",
              help="SageMaker metric definition; the first group is the value (repeatable)")
    @argument("--wait", action="store_true", help="block until the job ends, streaming its log; fail the cell if the job fails")
    @argument("--dry-run", dest="dry_run", action="store_true", help="show what would run; launch nothing")
    @argument("-o", "--out", metavar="VAR", help="store the Job in this variable")
    @cell_magic
    def sagemaker_train(self, line: str, cell: str):
        """Run this cell as a training job: `%%sagemaker_train [flags] [-- script args]`."""
        own, script_args = split_script_args(line)
        opts = self.sagemaker_train.parser.parse_args(own)
        kwargs = dict(config=opts.config, args=script_args, name=opts.name, backend=opts.backend,
                      inputs=opts.inputs, metrics=opts.metrics, instance_type=opts.instance_type,
                      instance_count=opts.instance_count)
        try:
            if opts.dry_run:
                print(api.dry_run(cell, **kwargs))
                return None
            job = api.launch(cell, **kwargs)
        except USER_ERRORS as e:
            raise UsageError(str(e)) from None
        if opts.out:
            self.shell.user_ns[opts.out] = job
        if opts.wait:
            return _wait(job)
        _show_live(self.shell, job)
        return job

    @magic_arguments()
    @argument("--config", metavar="FILE", help="config YAML to read over accelerate's default config")
    @line_magic
    def sagemaker_config(self, line: str):
        """Print the effective launch config (defaults, accelerate's default config, FILE)."""
        opts = self.sagemaker_config.parser.parse_args(arg_split(line, posix=True))
        try:
            cfg = resolve_config(config_file=opts.config)
        except ConfigError as e:
            raise UsageError(str(e)) from None
        print(f"# backend: {cfg.backend}")
        print(cfg.to_yaml(), end="")

    @line_magic
    def sagemaker_jobs(self, line: str = ""):
        """The known jobs, newest first, with their current status (a DataFrame)."""
        import pandas as pd

        try:
            found = api.list_jobs(limit=int(line) if line.strip().isdigit() else None)
        except RegistryError as e:
            raise UsageError(str(e)) from None
        rows = [{"name": r.name, "backend": r.backend, "status": status,
                 "instance": f"{r.instance_type} x{r.instance_count}",
                 "created": pd.Timestamp(r.created, unit="s").floor("s"),
                 "hyperparameters": " ".join(f"{k}={v}" for k, v in r.hyperparameters.items())}
                for r, status in found]
        return pd.DataFrame(rows, columns=["name", "backend", "status", "instance", "created", "hyperparameters"])

    @magic_arguments()
    @argument("name", help="job name")
    @argument("--tail", type=int, help="only the last N lines")
    @line_magic
    def sagemaker_logs(self, line: str):
        """Print a job's log."""
        opts = self.sagemaker_logs.parser.parse_args(arg_split(line, posix=True))
        print(_attach(opts.name).logs(tail=opts.tail))

    @magic_arguments()
    @argument("name", help="job name")
    @line_magic
    def sagemaker_stop(self, line: str):
        """Stop a running job; it ends Stopped, keeping its model and checkpoints."""
        opts = self.sagemaker_stop.parser.parse_args(arg_split(line, posix=True))
        job = _attach(opts.name)
        if job.done:
            print(f"{job.name} already ended: {job.status}")
            return
        job.stop()
        print(f"Stopping {job.name}")

    @magic_arguments()
    @argument("name", help="job name")
    @argument("--wait", action="store_true", help="block until the job ends")
    @line_magic
    def sagemaker_attach(self, line: str):
        """Show a job launched earlier (by this or another kernel) and follow it live."""
        opts = self.sagemaker_attach.parser.parse_args(arg_split(line, posix=True))
        job = _attach(opts.name)
        if opts.wait:
            return _wait(job)
        _show_live(self.shell, job)
        return job


def _attach(name: str) -> Job:
    try:
        return api.attach(name)
    except USER_ERRORS as e:
        raise UsageError(str(e)) from None


def _wait(job: Job) -> Job:
    try:
        return job.wait(on_snapshot=StreamPrinter())
    except KeyboardInterrupt:
        print(f"\nStopped waiting; {job.name} keeps running. `%sagemaker_stop {job.name}` ends it.")
        return job


def _show_live(shell, job: Job) -> None:
    if _in_kernel(shell):
        get_monitor().watch(job, LiveDisplay(job))
    else:
        print(f"{job.name} is running on the {job.backend} backend; "
              f"`%sagemaker_attach {job.name} --wait` follows it, `job.wait()` waits for it.")


def load_ipython_extension(ipython) -> None:
    ipython.register_magics(SageMakerMagics)
