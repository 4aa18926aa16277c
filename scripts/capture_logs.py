"""Regenerate tests/data/logs/: the raw logs of the training scripts in tests/scripts/.

Each script runs as a real local job (`sm_magic.launch`, 3 epochs, no --metric flags) and its
log file (`sm_jobs/<name>/logs/algo-1.log`) is copied byte for byte, every carriage return and
escape code kept: `<script>.log`. Parsers, the log tail and the progress estimate are tested
against these files. With --direct, the same script is also run directly with stdout and stderr to
a pipe (no job) into `<script>.direct.log`, to compare: a job's stdout is a file, not a terminal,
so the two differ only in timings (how many redraws tqdm makes, rates, the loss of an unseeded run).

    .venv/bin/python scripts/capture_logs.py [--direct] [SCRIPT ...]     # default: every script
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "tests" / "scripts"
LOGS = ROOT / "tests" / "data" / "logs"
ARGS = ["--epochs", "3"]
# Further logs of a script, run as a job with environment variables set: `<variant>.log`.
# rich draws live (redraws with cursor-up and erase-line codes) only where it believes it writes to
# a terminal, as a job's entry command tells it (sm_entry.launch_env); a job that says otherwise gets
# each bar printed once, at the end.
VARIANTS = {
    "lightning_rich": ("lightning_rich", {"TTY_COMPATIBLE": "0"}),
    "lightning_rich.tty": ("lightning_rich", {}),
}


def run_as_job(script: Path, work: Path, env: dict[str, str]) -> tuple[bytes, float, str]:
    """The job's raw log, its wall time and its final status (`env`: set while it launches; the
    job's processes inherit it)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    os.environ["SM_MAGIC_JOBS_DIR"] = str(work / "sm_jobs")
    os.environ["SM_MAGIC_REGISTRY"] = str(work / "registry.sqlite3")
    os.environ["HF_HOME"] = str(work / "hf")
    import sm_magic  # after the environment: the registry and jobs dir are read from it

    started = time.monotonic()
    job = sm_magic.launch(script.read_text(), args=ARGS)
    try:
        job.wait(timeout=300)
    except Exception as e:  # noqa: BLE001 - a failed job's log is still worth keeping
        print(f"  {script.stem}: {e}", file=sys.stderr)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seconds = time.monotonic() - started
    return (work / "sm_jobs" / job.name / "logs" / "algo-1.log").read_bytes(), seconds, job.status


def run_directly(script: Path, work: Path, extra_env: dict[str, str]) -> bytes:
    """What the script prints with stdout and stderr to one pipe, outside any job."""
    out = work / "direct_output"
    out.mkdir()
    env = dict(os.environ, **extra_env, SM_OUTPUT_DIR=str(out), PYTHONUNBUFFERED="1")  # what a job's entry command sets
    done = subprocess.run([sys.executable, str(script), *ARGS], cwd=work, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=300, check=False)
    return done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--direct", action="store_true", help="also save each script's output outside a job")
    parser.add_argument("scripts", nargs="*", help="script names (default: all in tests/scripts)")
    options = parser.parse_args()
    runs = {p.stem: (p.stem, {}) for p in sorted(SCRIPTS.glob("*.py"))} | VARIANTS
    names = options.scripts or list(runs)
    unknown = [n for n in names if n not in runs]
    if unknown:
        parser.error(f"no script or variant named {', '.join(unknown)}; there are: {', '.join(runs)}")
    LOGS.mkdir(parents=True, exist_ok=True)
    for name in names:
        script_name, env = runs[name]
        script = SCRIPTS / f"{script_name}.py"
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            log, seconds, status = run_as_job(script, work, env)
            direct = run_directly(script, work, env) if options.direct else None
        (LOGS / f"{name}.log").write_bytes(log)
        if direct is not None:
            (LOGS / f"{name}.direct.log").write_bytes(direct)
        print(f"{name}: job {status} in {seconds:.1f} s, log {len(log)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
