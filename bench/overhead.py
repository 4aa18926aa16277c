"""Overhead of sm_magic's local backend against plain `accelerate launch` on the same script.

    .venv/bin/python bench/overhead.py [--runs 5]

Runs the quickstart notebook's training cell both ways, alternating, and prints each run's wall
time, the medians and their ratio (target: at most 1.10), and the time from the call to the
first line of the user script (the script's first statement prints a timestamp).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--epochs", "3", "--lr", "0.05"]
MARK = "__first_line__"


def quickstart_script() -> str:
    cells = json.loads((ROOT / "example_notebooks" / "quickstart.ipynb").read_text())["cells"]
    for cell in cells:
        source = "".join(cell["source"])
        if source.startswith("%%sagemaker_train"):
            body = source.split("\n", 1)[1]
            return f"import time; print('{MARK}', time.time(), flush=True)\n" + body
    raise SystemExit("no %%sagemaker_train cell in the quickstart notebook")


def first_line_at(text: str) -> float:
    for line in text.splitlines():
        if line.startswith(MARK):
            return float(line.split()[1])
    raise RuntimeError("the script's first line was not found in its output")


def run_sm_magic(source: str, work: Path, i: int) -> tuple[float, float]:
    import sm_magic

    t0 = time.time()
    job = sm_magic.launch(source, args=ARGS, wait=True, name=f"overhead-{os.getpid()}-{i}",
                          jobs_dir=str(work / "sm_jobs"))
    wall = time.time() - t0
    return wall, first_line_at(job.logs()) - t0


def run_accelerate(script: Path, work: Path) -> tuple[float, float]:
    model_dir = work / "model"
    model_dir.mkdir(exist_ok=True)
    accelerate = Path(sys.executable).parent / "accelerate"
    t0 = time.time()
    out = subprocess.run([str(accelerate), "launch", str(script), *ARGS], capture_output=True, text=True,
                         env={**os.environ, "SM_MODEL_DIR": str(model_dir)}, check=True)
    wall = time.time() - t0
    return wall, first_line_at(out.stdout) - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory(prefix="sm_magic-bench-") as tmp:
        work = Path(tmp)
        os.environ["SM_MAGIC_REGISTRY"] = str(work / "registry.sqlite3")
        os.environ["HF_HOME"] = str(work / "hf")  # no user accelerate config in either run
        source = quickstart_script()
        script = work / "train.py"
        script.write_text(source)
        results = {"sm_magic.launch(wait=True)": [], "accelerate launch": []}
        for i in range(runs):
            for label, run in (("sm_magic.launch(wait=True)", lambda: run_sm_magic(source, work, i)),
                               ("accelerate launch", lambda: run_accelerate(script, work))):
                wall, first = run()
                results[label].append((wall, first))
                print(f"run {i + 1} {label:28s} wall {wall:6.2f} s   first script line after {first:5.2f} s", flush=True)
    print()
    medians = {label: (statistics.median(w for w, _ in r), statistics.median(f for _, f in r))
               for label, r in results.items()}
    for label, (wall, first) in medians.items():
        print(f"median {label:28s} wall {wall:6.2f} s   first script line after {first:5.2f} s")
    ratio = medians["sm_magic.launch(wait=True)"][0] / medians["accelerate launch"][0]
    print(f"ratio sm_magic / accelerate launch: {ratio:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
