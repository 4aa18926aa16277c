"""`sm-magic`: the job registry and job control from a shell, no Jupyter needed."""

from __future__ import annotations

import argparse
import sys
import time

from .api import LaunchError, attach, list_jobs
from .backends import BackendError
from .job import JobFailedError
from .registry import RegistryError
from .widgets.text import StreamPrinter


def _jobs(opts) -> int:
    rows = list_jobs(limit=opts.limit)
    if not rows:
        print("no jobs yet")
        return 0
    print(f"{'NAME':40s} {'BACKEND':10s} {'STATUS':11s} {'CREATED':19s} INSTANCE")
    for r, status in rows:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created))
        print(f"{r.name:40s} {r.backend:10s} {status:11s} {created:19s} {r.instance_type} x{r.instance_count}")
    return 0


def _logs(opts) -> int:
    print(attach(opts.name).logs(tail=opts.tail))
    return 0


def _stop(opts) -> int:
    job = attach(opts.name)
    if job.done:
        print(f"{job.name} already ended: {job.status}")
        return 0
    job.stop()
    print(f"Stopping {job.name}")
    return 0


def _wait(opts) -> int:
    job = attach(opts.name)
    try:
        job.wait(timeout=opts.timeout, on_snapshot=StreamPrinter())
    except JobFailedError:
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sm-magic", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("jobs", help="list known jobs, newest first")
    p.add_argument("--limit", type=int, default=None)
    p.set_defaults(run=_jobs)
    p = sub.add_parser("logs", help="print a job's log")
    p.add_argument("name")
    p.add_argument("--tail", type=int, default=None)
    p.set_defaults(run=_logs)
    p = sub.add_parser("stop", help="stop a running job")
    p.add_argument("name")
    p.set_defaults(run=_stop)
    p = sub.add_parser("wait", help="follow a job until it ends (exit status 1 if it failed)")
    p.add_argument("name")
    p.add_argument("--timeout", type=float, default=None)
    p.set_defaults(run=_wait)
    opts = parser.parse_args(argv)
    try:
        return opts.run(opts)
    except (LaunchError, BackendError, RegistryError, TimeoutError) as e:
        print(f"sm-magic: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
