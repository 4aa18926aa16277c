"""How long a hostile `.smignore` pattern takes to match, before and after issue 23 (finding 5).

    .venv/bin/python bench/smignore_stall.py [--rev 9ab7c7e] [--before 22,24,26,28] [--limit 60]

The pattern is `*a` x14 + `*b`; the names are N "a"s (no b, so nothing matches and a backtracking
matcher tries every way to place the 14 a's). Printed, for:

* before: sm_magic as it was at REV (`git archive`, run from a temporary directory), in a child
  process killed after --limit seconds (Python's re holds the GIL and cannot be interrupted):
  IgnoreRules.match on names of each --before length, then the finding itself, an `--include`
  dry run of a directory holding that .smignore and a 40-character name;
* after: this checkout's IgnoreRules (RE2) on names of 40 to 40,000 characters, and the same dry run;
* for scale, both matchers on an ordinary .smignore (20 patterns) against 10,000 paths.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = "*a" * 14 + "*b"
ORDINARY = ["# build output", "build/", "dist/", "*.egg-info/", "__pycache__/", "*.py[co]", ".ipynb_checkpoints/",
            "/data/", "*.ckpt", "!best.ckpt", "wandb/", "runs/**", "**/tmp/", "*.log", "outputs/*/", "*.tar.gz",
            "notes/*.md", "!notes/README.md", "[Cc]ache/", "*~", "/scratch"]

MATCH = """
import sys, time
from sm_magic.bundle.smignore import IgnoreRules
rules = IgnoreRules([{pattern!r}])
started = time.perf_counter()
rules.match("a" * int(sys.argv[1]), False)
print(time.perf_counter() - started)
"""

DRY_RUN = """
import sys, time
from sm_magic.plan import planner as api
started = time.perf_counter()
api.dry_run("print(1)\\n", include=[sys.argv[1]])
print(time.perf_counter() - started)
"""

ORDINARY_MATCH = """
import sys, time
from sm_magic.bundle.smignore import IgnoreRules
rules = IgnoreRules({patterns!r})
paths = [f"src/pkg{{i % 50}}/sub{{i % 7}}/module_{{i}}.py" for i in range(10_000)]
started = time.perf_counter()
left_out = sum(rules.match(p, False) for p in paths)
print(time.perf_counter() - started)
"""


def timed(code: str, arg: str, pythonpath: str, limit: float) -> str:
    """The seconds the child prints, or how it ended."""
    env = dict(os.environ, PYTHONPATH=pythonpath)
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-c", code, arg], cwd=pythonpath, env=env,
                              capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return f"no answer after {time.perf_counter() - started:.0f} s (killed)"
    if done.returncode:
        return "failed: " + (done.stderr.strip().splitlines() or ["?"])[-1]
    return f"{float(done.stdout):.6f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default="9ab7c7e", help="the commit to time as 'before' (issue 23 reproduced on 9ab7c7e)")
    parser.add_argument("--before", default="22,24,26,28",
                        help="name lengths for the old matcher (each two more a's take about 3.5 times as long)")
    parser.add_argument("--limit", type=float, default=60, help="seconds before a child is killed")
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="smignore_stall-") as tmp:
        run(opts, Path(tmp))


def run(opts, work: Path) -> None:
    os.environ.update(SM_MAGIC_REGISTRY=str(work / "registry.sqlite3"), SM_MAGIC_JOBS_DIR=str(work / "sm_jobs"),
                      HF_HOME=str(work / "hf"))
    lib = work / "lib"
    lib.mkdir()
    (lib / ".smignore").write_text(HOSTILE + "\n")
    (lib / "helper.py").write_text("X = 1\n")
    (lib / ("a" * 40)).write_text("x\n")
    old = work / "old"
    old.mkdir()
    archive = subprocess.run(["git", "archive", opts.rev, "sm_magic"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)

    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; pattern {HOSTILE}")
    print(f"before ({opts.rev}, Python's re):")
    for n in [int(n) for n in opts.before.split(",") if n]:
        print(f"  match, a name of {n:>6,} a's:  {timed(MATCH.format(pattern=HOSTILE), str(n), str(old), opts.limit)}",
              flush=True)
    print(f"  --include dry run, a 40-character name:  {timed(DRY_RUN, str(lib), str(old), opts.limit)}", flush=True)
    print("after (this checkout, RE2):")
    for n in (40, 400, 4_000, 40_000):
        print(f"  match, a name of {n:>6,} a's:  {timed(MATCH.format(pattern=HOSTILE), str(n), str(ROOT), opts.limit)}",
              flush=True)
    print(f"  --include dry run, a 40-character name:  {timed(DRY_RUN, str(lib), str(ROOT), opts.limit)}", flush=True)
    print(f"for scale, an ordinary .smignore ({len(ORDINARY) - 1} patterns) against 10,000 paths:")
    for label, where in ((f"before ({opts.rev})", old), ("after", ROOT)):
        print(f"  {label}:  {timed(ORDINARY_MATCH.format(patterns=ORDINARY), '', str(where), opts.limit)}", flush=True)


if __name__ == "__main__":
    main()
