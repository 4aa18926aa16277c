"""The `%%sagemaker_train` line: one grammar, used by the magic in a kernel and by
`sm-magic export` on a saved notebook. Everything after the first bare `--` is the script's own
arguments, passed through untouched."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from .errors import UsageProblem
from .backends import BACKEND_NAMES

PROG = "%%sagemaker_train"


class LineError(UsageProblem, ValueError):
    """The line does not parse; the message says which flag and why."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
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


def parse(line: str) -> tuple[argparse.Namespace, list[str]]:
    try:
        own, script_args = split_script_args(line)
    except ValueError as e:  # shlex: an unclosed quote
        raise LineError(f"{PROG}: {e}") from None
    return parser().parse_args(own), script_args


_OPTIONAL = ("git_repo", "git_branch", "git_commit", "entry", "include", "simulate_interruptions")
BESIDE_NOTEBOOK = "requirements.txt"


def launch_kwargs(opts: argparse.Namespace, script_args: list[str], notebook_dir: Path) -> dict:
    """What `api.launch` / `api.dry_run` take for this line (besides the cell's source).
    `notebook_dir`: where a relative --requirements path and a requirements.txt beside the notebook
    are looked for (a repository's own requirements.txt wins for --git-repo)."""
    kwargs = dict(config=opts.config, args=script_args, name=opts.name, backend=opts.backend,
                  inputs=opts.inputs, metrics=opts.metrics, instance_type=opts.instance_type,
                  instance_count=opts.instance_count)
    kwargs.update({k: getattr(opts, k) for k in _OPTIONAL if getattr(opts, k)})
    if opts.requirements:
        kwargs["requirements"] = notebook_dir / Path(opts.requirements).expanduser()
    elif not opts.git_repo and (notebook_dir / BESIDE_NOTEBOOK).is_file():
        kwargs["requirements"] = notebook_dir / BESIDE_NOTEBOOK
    return kwargs


def help_text() -> str:
    return parser().format_help()
