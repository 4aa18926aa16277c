"""`sm-magic`: the job registry and job control from a shell, no Jupyter needed; a notebook's
train cells exported as bundles, and a bundle launched.

Exit status: 0 done; 1 a runtime problem (the job failed, a backend or the registry could not
be used, a wait timed out); 2 a usage mistake (a flag, the config, the notebook or the bundle).
An error is one `sm-magic: <message>` on stderr, never a traceback."""

from __future__ import annotations

import argparse
import os
import sys

from ..backends import BACKEND_NAMES
from ..backends.sagemaker.pricing import money
from ..display.table_text import cut, cut_middle, duration, when
from ..errors import RUNTIME_EXIT, USAGE_EXIT, SmMagicError, UsageProblem
from ..jobs.final_metrics import compact
from ..jobs.job import JobFailedError
from ..jobs.lookup import attach_job, list_jobs
from ..jobs.registry import storable
from ..widgets.text import StreamPrinter
from .export import export_notebook, launch_bundle


class _UsageMistake(UsageProblem):
    """A command line argparse refuses."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (and exit status 2) through main()'s one error path."""

    def error(self, message: str):
        raise _UsageMistake(f"{message} (`{self.prog} --help` lists the options)")


# A count of jobs or lines beyond any listing or log (SQLite and islice take no more than 2**63).
MAX_COUNT = 10**9


def _at_least(low: int | float, kind=int, high: int | None = None):
    """An argparse type: a number of `kind`, at least `low` (and at most `high`)."""

    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {'whole ' if kind is int else ''}number, got {text!r}") \
                from None
        if not value >= low:  # NaN too
            raise argparse.ArgumentTypeError(f"must be {low} or more, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {text}")
        return value

    convert.__name__ = kind.__name__
    return convert


def _name(text: str) -> str:
    """An argparse type: a job or sweep name. Bytes that are not UTF-8 (argv keeps them as lone
    surrogates) name nothing the registry can hold, and would fail every print of the name."""
    if not storable(text):
        raise argparse.ArgumentTypeError(f"'{_shown(text)}' is not a job or sweep name: it holds bytes that are "
                                         "not UTF-8 text (`sm-magic jobs` lists the names)")
    return text


def _shown(text: str) -> str:
    """`text` with the bytes argv could not decode as `\\xNN` escapes."""
    try:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate argv never makes (Python code may)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


# `sm-magic jobs` fits a terminal of this many columns (`--wide`: every column, whole names).
WIDTH = 100
_COLUMNS = (("NAME", 32), ("BACKEND", 9), ("STATUS", 10), ("CREATED", 11), ("DURATION", 8))


def _jobs(opts) -> int:
    if opts.compare is not None:
        return _compare(opts)
    if opts.sort:
        raise _UsageMistake("--sort goes with --compare NAME [NAME ...] (`sm-magic jobs --help` lists the options)")
    rows = list_jobs(limit=opts.limit)
    if not rows:
        print("no jobs yet")
        return 0
    if opts.wide:
        return _jobs_wide(rows)
    left = sum(width + 1 for _, width in _COLUMNS)
    print(" ".join(f"{title:{width}s}" for title, width in _COLUMNS) + " METRICS")
    for row in rows:
        r = row.record
        cells = (cut_middle(r.name, _COLUMNS[0][1]), cut(r.backend, 9), row.status, when(r.created), duration(row.duration) or "-")
        line = " ".join(f"{text:{width}s}" for text, (_, width) in zip(cells, _COLUMNS))
        print(cut(f"{line} {compact(row.metrics, width=WIDTH - left)}".rstrip(), WIDTH))
        if row.note:  # what is wrong with the job (rare), whole, on a line of its own: no column to misalign
            print(f"  ^ {row.note}")
    return 0


def _jobs_wide(rows) -> int:
    """Every column, whole names and times: as wide as they are."""
    swept = any(row.sweep for row in rows)  # a SWEEP column only when some job is a sweep's
    name_width = max(40, *(len(row.record.name) for row in rows))
    print(f"{'NAME':{name_width}s} {'BACKEND':15s} {'STATUS':11s} {'CREATED':19s} {'INSTANCE':22s} {'DURATION':9s} "
          f"{'COST':9s} " + (f"{'SWEEP':24s} " if swept else "") + "METRICS")
    for row in rows:
        r = row.record
        instance = f"{r.instance_type} x{r.instance_count}"
        sweep = f"{row.sweep or '-':24s} " if swept else ""
        print(f"{r.name:{name_width}s} {r.backend:15s} {row.status:11s} {when(r.created, year=True):19s} {instance:22s} "
              f"{duration(row.duration) or '-':9s} {_cost(row.cost):9s} {sweep}{compact(row.metrics, width=80)}".rstrip())
        if row.note:
            print(f"{'':{name_width}s} ^ {row.note}")
    return 0


def _cost(usd: float | None) -> str:
    """A job's cost in the wide listing: "~$0.14" (an estimate, as the docs say), "-" where unknown."""
    return f"~{money(usd)}" if usd is not None else "-"


def _compare(opts) -> int:
    """`sm-magic jobs --compare NAME ...`: sm_magic.compare's table, as text."""
    import pandas as pd

    from ..sweeps.compare import comparison

    if not opts.compare:
        raise _UsageMistake("--compare NAME [NAME ...]: name the jobs to compare (`sm-magic jobs` lists them)")
    if opts.limit is not None:
        raise _UsageMistake("--limit limits the listing; --compare takes the jobs' names")
    from ..display.literal import shown

    result = comparison(opts.compare, sort_by=opts.sort)
    if not opts.wide:  # the compact table (its cells made visible by shown() as they are cut)
        print(result.text())
        return 0
    frame = result.frame
    # A metric name or a swept value is whatever a script printed: its escapes must not reach the terminal.
    frame = frame.rename(columns=shown).apply(lambda column: column.map(lambda v: shown(v) if isinstance(v, str) else v))
    with pd.option_context("display.width", 250, "display.max_columns", None, "display.max_colwidth", 60):
        print(frame.to_string(index=False))
    return 0


def _logs(opts) -> int:
    print(attach_job(opts.name).logs(tail=opts.tail, raw=opts.raw, full=opts.full))
    return 0


def _stop(opts) -> int:
    from ..sweeps.sweep import stop_named

    print(stop_named(opts.name))
    return 0


def _wait(opts) -> int:
    from ..sweeps.sweep import Sweep
    from ..sweeps.sweep import attach as attach_any

    found = attach_any(opts.name)
    if isinstance(found, Sweep):
        return _follow_sweep(found, opts.timeout)
    return _follow_to_end(found, opts.timeout)


def _follow_sweep(sweep, timeout) -> int:
    """A line per status change of the sweep's jobs until every one has ended: exit status 1 if
    a job or a launch failed."""
    from ..widgets.sweep_table import print_sweep

    print_sweep(sweep)
    sweep.wait(timeout=timeout)
    print(f"Sweep {sweep.name}: {sweep.summary()}")
    gone = sweep.launcher_gone
    if gone:
        return _fail(f"sweep {sweep.name}: {gone}; run them as a new sweep", RUNTIME_EXIT)
    failed = sweep.failed
    if failed:
        return _fail(f"sweep {sweep.name}: {len(failed)} of its jobs failed: {', '.join(p.name for p in failed)}",
                     RUNTIME_EXIT)
    return 0


def _follow_to_end(job, timeout) -> int:
    """Print the job's progress as text until it ends: exit status 1 if it failed, with the
    reason as the error line (the stream itself does not repeat it)."""
    try:
        job.wait(timeout=timeout, on_snapshot=StreamPrinter())
    except JobFailedError as e:
        return _fail(f"training job {job.name} failed: {e.reason}", RUNTIME_EXIT)
    return 0


def _export(opts) -> int:
    for path in export_notebook(opts.notebook, opts.out, force=opts.force):
        print(f"{path}  (sm-magic run {path})")
    return 0


def _run(opts) -> int:
    job = launch_bundle(opts.bundle, backend=opts.backend, name=opts.name, args=opts.script_args)
    if not opts.wait:
        print(f"{job.name} is running on the {job.backend} backend: `sm-magic wait {job.name}` follows it, "
              f"`sm-magic stop {job.name}` stops it")
        return 0
    return _follow_to_end(job, opts.timeout)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # A path or name argv could not decode, or a character the terminal's encoding lacks, is
    # printed escaped: a print never fails the command.
    if getattr(sys.stdout, "errors", None) == "strict" and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    # `sm-magic run DIR ... -- ARGS`: everything after the first bare -- is the script's arguments.
    script_args = None
    if argv[:1] == ["run"] and "--" in argv:
        i = argv.index("--")
        argv, script_args = argv[:i], argv[i + 1:]
    parser = _Parser(prog="sm-magic", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("jobs", help="list known jobs, newest first")
    p.add_argument("--limit", type=_at_least(1, high=MAX_COUNT), default=None, help="only the newest N jobs")
    p.add_argument("--compare", nargs="*", metavar="NAME", help="compare these jobs (a sweep's name: its jobs) instead: one row each with "
                   "status, hyperparameters, billable and wall seconds, and the last and best value of each metric")
    p.add_argument("--sort", metavar="METRIC", help="with --compare: sort by this metric's best value, best first "
                   "(or by any column)")
    p.add_argument("--wide", action="store_true", help=f"every column (instance, sweep; with --compare: every column "
                   f"of the comparison), whole names and times: lines as long as they are (by default the listing fits "
                   f"{WIDTH} columns)")
    p.set_defaults(run=_jobs)
    p = sub.add_parser("logs", help="print a job's log")
    p.add_argument("name", type=_name)
    p.add_argument("--tail", type=_at_least(0, high=MAX_COUNT), default=None, help="only the last N lines")
    p.add_argument("--raw", action="store_true",
                   help="the lines as logged, every progress-bar redraw and escape code kept (by default the "
                        "log reads as a terminal shows it); implies --full")
    p.add_argument("--full", action="store_true",
                   help="every line: a failed launcher's own traceback too (by default folded into one line)")
    p.set_defaults(run=_logs)
    p = sub.add_parser("stop", help="stop a running job, or a sweep (its running jobs, and its queued ones cancelled)")
    p.add_argument("name", type=_name)
    p.set_defaults(run=_stop)
    p = sub.add_parser("wait", help="follow a job or a sweep until it ends (exit status 1 if it, or one of its jobs, "
                       "failed)")
    p.add_argument("name", type=_name)
    p.add_argument("--timeout", type=_at_least(0, float), default=None, help="stop waiting after this many seconds")
    p.set_defaults(run=_wait)
    p = sub.add_parser("export", help="write each %%%%sagemaker_train cell of a notebook as a bundle directory "
                       "that runs without Jupyter (`sm-magic run DIR`)")
    p.add_argument("notebook", metavar="NOTEBOOK.ipynb")
    p.add_argument("--out", metavar="DIR", help="where the bundles go (default: NOTEBOOK_export/ here)")
    p.add_argument("--force", action="store_true", help="replace bundle directories that exist")
    p.set_defaults(run=_export)
    p = sub.add_parser("run", help="launch an exported bundle with the config it was exported with",
                       usage="sm-magic run BUNDLE_DIR [--backend B] [--name N] [--wait] [-- SCRIPT ARGS]")
    p.add_argument("bundle", metavar="BUNDLE_DIR")
    p.add_argument("--backend", choices=BACKEND_NAMES, help="where to run (default: the exported cell's --backend, else from config.yaml)")
    p.add_argument("--name", help="the job name (default: the cell's --name, else base_job_name plus a timestamp)")
    p.add_argument("--wait", action="store_true",
                   help="print the progress until the job ends (exit status 1 if it failed)")
    p.add_argument("--timeout", type=_at_least(0, float), default=None,
                   help="with --wait: stop waiting after this many seconds")
    p.set_defaults(run=_run, script_args=None)
    # The one error path: whatever a user can cause ends as one line, never a traceback.
    try:
        opts = parser.parse_args(argv)
        if opts.command == "run":
            opts.script_args = script_args
        return opts.run(opts)
    except _UsageMistake as e:
        if argv[:1] == ["run"] and str(e).startswith("unrecognized arguments: "):
            given = str(e).removeprefix("unrecognized arguments: ").split(" (`")[0]
            e = _UsageMistake(f"unrecognized arguments: {given}: script arguments go after a bare `--`: "
                              f"sm-magic run BUNDLE_DIR [--wait ...] -- {given}")
        return _fail(str(e), e.exit_code)
    except SmMagicError as e:
        return _fail(str(e), e.exit_code)
    except TimeoutError as e:
        return _fail(str(e) or "timed out", RUNTIME_EXIT)
    except OSError as e:  # a file or directory the command could not use
        where = f": {e.filename}" if e.filename else ""
        return _fail(f"{e.strerror or e}{where}", RUNTIME_EXIT)
    except KeyboardInterrupt:
        return 130


def _fail(message: str, status: int) -> int:
    print(f"sm-magic: {_shown(message.strip())}", file=sys.stderr)
    return status if status in (RUNTIME_EXIT, USAGE_EXIT) else USAGE_EXIT


if __name__ == "__main__":
    sys.exit(main())
