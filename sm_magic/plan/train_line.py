"""The `%%sagemaker_train` line: one grammar, used by the magic in a kernel and by
`sm-magic export` on a saved notebook; `parse` makes the line and its cell a typed launch request
(request.LaunchRequest) for planner.plan. Everything after the first bare `--` is the script's own
arguments, passed through untouched."""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass
from pathlib import Path

from ..backends import BACKEND_NAMES
from ..errors import UsageProblem
from .request import (
    KEEP_ALIVE_FIELD,
    CodeSource,
    ConfigSource,
    JobOptions,
    KeepAliveError,
    LaunchRequest,
    NotebookContext,
    keep_alive_seconds,
)

PROG = "%%sagemaker_train"


class LineError(UsageProblem, ValueError):
    """The line does not parse; the message says which flag and why."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        if message.startswith("unrecognized arguments: "):
            given = message.removeprefix("unrecognized arguments: ")
            message += f": script arguments go after a bare `--`: `{PROG} [FLAGS] -- {given}`"
        raise LineError(f"{PROG}: {message}")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, add_help=False, usage=f"{PROG} [flags] [-- script args]",
                description="Run the cell as a training job.")
    a = p.add_argument
    a("--backend", choices=BACKEND_NAMES, help="where to run (default: from ec2_instance_type; 'local' when none is set)")
    a("--config", metavar="FILE", help="accelerate SageMaker config YAML (over accelerate's default config)")
    a("--name", help="exact job name (default: base_job_name plus a timestamp)")
    a("--instance-type", dest="instance_type", help="ec2_instance_type, e.g. ml.p3.2xlarge")
    a("--instance-count", dest="instance_count", type=int, help="num_machines: number of hosts")
    a("--keep-alive", dest="keep_alive", metavar="MINUTES",
      help="SageMaker: keep the instances MINUTES after the job (a warm pool, billed meanwhile); the next "
      "matching job starts on them and reuses the requirements installed there (0 to 360)")
    a("--max-cost", dest="max_cost", type=float, metavar="DOLLARS",
      help="SageMaker: refuse the launch if its worst case (instances x price x max_run) costs more")
    a("--input", dest="inputs", action="append", default=[], metavar="NAME=URI", help="input channel (repeatable)")
    a("--metric", dest="metrics", action="append", default=[], metavar="NAME=REGEX",
      help="SageMaker metric definition; the first group is the value (repeatable)")
    a("--simulate-interruption", dest="simulate_interruptions", action="append", default=[], type=float,
      metavar="SECONDS", help="local backend: a spot interruption SECONDS into a run of the hosts, "
      "which then restart from their checkpoints (repeatable: one per restart)")
    a("--git-repo", dest="git_repo", metavar="URL", help="take the code from this git repository")
    a("--git-branch", dest="git_branch", metavar="BRANCH", help="with --git-repo: this branch's head")
    a("--git-commit", dest="git_commit", metavar="SHA", help="with --git-repo: exactly this commit")
    a("--entry", metavar="PATH", help="the entry script inside the repository (default train.py); "
      "a cell body, if any, replaces it")
    a("--include", dest="include", action="append", default=[], metavar="TAG|FILE",
      help="bundle helper code too: the cells marked `%%%%sagemaker_include TAG`, or a file (repeatable)")
    a("--requirements", metavar="FILE", help="a requirements file for the job's container, used instead of the "
      "one generated from the cell's imports (default: requirements.txt beside the notebook, if any)")
    a("--sweep", dest="sweep", action="append", default=[], metavar="NAME=V1,V2",
      help="one job per combination of the values (repeatable: the grid); each job gets --NAME VALUE as script "
      "arguments, before the ones after --")
    a("--sweep-max-parallel", dest="sweep_max_parallel", type=int, metavar="K",
      help="with --sweep: at most K jobs at once, the rest queued (default: local backends, one host per CPU; "
      "SageMaker, all)")
    a("--yes", action="store_true", help="with --sweep: launch it even when it makes more than 100 jobs")
    a("--wait", action="store_true", help="block until the job ends, streaming its log; fail the cell if the job fails")
    a("--edit", action="store_true", help="show the config form; its Launch button starts the job")
    a("--dry-run", dest="dry_run", action="store_true", help="show what would run; launch nothing")
    a("-o", "--out", metavar="VAR", help="store the Job in this variable")
    return p


def split_script_args(line: str) -> tuple[list[str], list[str]]:
    """The line's own tokens, and the script's arguments after the first bare `--`."""
    tokens = shlex.split(line, posix=True)
    if "--" in tokens:
        i = tokens.index("--")
        return tokens[:i], tokens[i + 1:]
    return tokens, []


@dataclass(frozen=True)
class MagicFlags:
    """The flags only the magic acts on (a launch request has no use for them)."""

    wait: bool = False      # block until the job ends
    edit: bool = False      # the config form first; its Launch button launches
    dry_run: bool = False   # show what would run, launch nothing
    out: str | None = None  # the variable that gets the Job
    sweep: tuple[str, ...] = ()             # --sweep NAME=V1,V2 flags, as given (sweep_grid.parse_flags)
    sweep_max_parallel: int | None = None   # --sweep-max-parallel K
    yes: bool = False                       # --yes: a sweep of more than 100 jobs


BESIDE_NOTEBOOK = "requirements.txt"


def parse(line: str, cell: str | None = "", notebook: NotebookContext | None = None
          ) -> tuple[LaunchRequest, MagicFlags]:
    """The line (as the kernel expanded it) and the cell's text as a launch request, and the
    magic's own flags. `notebook`: where relative paths are relative to and what the notebook
    defines (request.NotebookContext); by default the working directory. Without --requirements,
    a requirements.txt in that directory is the job's (except for --git-repo, where the
    repository's own wins). Nothing is checked here but the line's grammar: planner.plan checks the
    request."""
    try:
        own, script_args = split_script_args(line)
    except ValueError as e:  # shlex: an unclosed quote
        raise LineError(f"{PROG}: {e}") from None
    opts = parser().parse_args(own)
    if not opts.sweep and (opts.sweep_max_parallel is not None or opts.yes):
        given = " and ".join(f for f, v in (("--sweep-max-parallel", opts.sweep_max_parallel is not None),
                                            ("--yes", opts.yes)) if v)
        raise LineError(f"{PROG}: {given} go{'es' if ' and ' not in given else ''} with --sweep NAME=V1,V2: "
                        "add the sweep, or remove it")
    notebook = notebook or NotebookContext()
    directory = notebook.directory or Path.cwd()
    requirements = None
    if opts.requirements:
        requirements = directory / Path(opts.requirements).expanduser()
    elif not opts.git_repo and (directory / BESIDE_NOTEBOOK).is_file():
        requirements = directory / BESIDE_NOTEBOOK
    code = CodeSource(cell=cell, git_repo=opts.git_repo, git_branch=opts.git_branch, git_commit=opts.git_commit,
                      entry=opts.entry, include=tuple(opts.include), requirements=requirements)
    job = JobOptions(name=opts.name, backend=opts.backend, inputs=list(opts.inputs), metrics=list(opts.metrics),
                     simulate_interruptions=tuple(opts.simulate_interruptions))
    overrides = {k: v for k, v in (("instance_type", opts.instance_type), ("instance_count", opts.instance_count),
                                   ("max_cost", opts.max_cost)) if v is not None}
    if opts.keep_alive is not None:
        try:
            overrides[KEEP_ALIVE_FIELD] = keep_alive_seconds(opts.keep_alive)
        except KeepAliveError as e:
            raise LineError(f"{PROG}: {e}") from None
    request = LaunchRequest(code, job, ConfigSource(opts.config, overrides), script_args, notebook)
    return request, MagicFlags(wait=opts.wait, edit=opts.edit, dry_run=opts.dry_run, out=opts.out,
                               sweep=tuple(opts.sweep), sweep_max_parallel=opts.sweep_max_parallel, yes=opts.yes)


def help_text() -> str:
    return parser().format_help()
