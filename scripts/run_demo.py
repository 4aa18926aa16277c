"""`make demo`: run the quickstart notebook headless on the local backend and say where things are."""

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "example_notebooks" / "quickstart.ipynb"
WORKDIR = ROOT / "build" / "demo"
EXECUTED = WORKDIR / "quickstart.executed.ipynb"


def main() -> int:
    from sm_magic import attach
    from sm_magic.jobs.registry import Registry

    WORKDIR.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    started = time.time()
    print(f"Running {NOTEBOOK.relative_to(ROOT)} (kernel working directory {WORKDIR.relative_to(ROOT)}) ...", flush=True)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(WORKDIR)}})
    try:
        client.execute()
    except CellExecutionError as e:
        nbformat.write(nb, EXECUTED)
        print(f"The quickstart notebook failed; the executed copy is {EXECUTED}\n{e}", file=sys.stderr)
        return 1
    nbformat.write(nb, EXECUTED)

    jobs_dir = WORKDIR / "sm_jobs"
    records = [r for r in Registry().list() if r.created >= started and Path(r.location).parent == jobs_dir]
    if not records:
        print("The notebook ran but launched no job I can find in the registry.", file=sys.stderr)
        return 1
    job = attach(records[0].name)
    print(f"Executed notebook: {EXECUTED}")
    print(f"Job:               {job.name} ({job.status})")
    print(f"Job directory:     {records[0].location}")
    print(f"Model:             {job.model_data}")
    print("Final metrics:")
    print(job.metrics.tail(1).to_string())
    return 0 if job.status == "Completed" else 1


if __name__ == "__main__":
    sys.exit(main())
