"""A 6-job local sweep against running its 6 cells one after another.

    .venv/bin/python bench/sweep_local.py [--runs 2] [--epochs 3]

The job is the quickstart notebook's training cell (Accelerate, synthetic data, CPU). The grid is
lr=0.01,0.05,0.1 x seed=0,1: `sm_magic.sweep(source, grid, backend="local", wait=True)` with the
default parallelism (one job per CPU here), against six `sm_magic.launch(..., wait=True)` calls in
a row, which is what six `%%sagemaker_train --wait` cells run one by one do. Both ways alternate
for --runs rounds; each prints its wall time, the medians and their ratio. Every job must complete.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRID = {"lr": ["0.01", "0.05", "0.1"], "seed": ["0", "1"]}


def quickstart_script() -> str:
    cells = json.loads((ROOT / "example_notebooks" / "quickstart.ipynb").read_text())["cells"]
    for cell in cells:
        source = "".join(cell["source"])
        if source.startswith("%%sagemaker_train"):
            return source.split("\n", 1)[1]
    raise SystemExit("no %%sagemaker_train cell in the quickstart notebook")


def run_sweep(source: str, epochs: int, tag: str) -> tuple[float, int]:
    import sm_magic

    t0 = time.time()
    sweep = sm_magic.sweep(source, grid=GRID, args=["--epochs", str(epochs)], name=f"bench-sweep-{tag}",
                           backend="local", wait=True)
    wall = time.time() - t0
    if sweep.status != "Completed":
        raise SystemExit(f"sweep {sweep.name}: {sweep.summary()}")
    return wall, sweep.max_parallel


def run_cells(source: str, epochs: int, tag: str) -> float:
    import sm_magic
    from sm_magic.sweeps.grid import point_args, points

    t0 = time.time()
    for i, values in enumerate(points(GRID), start=1):
        job = sm_magic.launch(source, args=point_args(values, ["--epochs", str(epochs)]), name=f"bench-cell-{tag}-{i}",
                              backend="local", wait=True)
        if job.status != "Completed":
            raise SystemExit(f"job {job.name}: {job.status}")
    return time.time() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    opts = parser.parse_args()
    source = quickstart_script()
    sweeps, cells = [], []
    with tempfile.TemporaryDirectory(prefix="sm_magic-bench-") as tmp:
        os.environ["SM_MAGIC_REGISTRY"] = str(Path(tmp) / "registry.sqlite3")
        os.environ["SM_MAGIC_JOBS_DIR"] = str(Path(tmp) / "sm_jobs")
        os.environ["HF_HOME"] = str(Path(tmp) / "hf")  # no user accelerate config
        for run in range(1, opts.runs + 1):
            wall, parallel = run_sweep(source, opts.epochs, str(run))
            sweeps.append(wall)
            print(f"run {run} sweep, {parallel} at a time    {wall:6.2f} s", flush=True)
            wall = run_cells(source, opts.epochs, str(run))
            cells.append(wall)
            print(f"run {run} six cells, one by one  {wall:6.2f} s", flush=True)
    sweep_median, cells_median = statistics.median(sweeps), statistics.median(cells)
    print(f"\n{os.cpu_count()} CPUs, 6 jobs of {opts.epochs} epochs")
    print(f"median sweep      {sweep_median:6.2f} s")
    print(f"median six cells  {cells_median:6.2f} s")
    print(f"sweep / cells: {sweep_median / cells_median:.2f}")


if __name__ == "__main__":
    sys.exit(main())
