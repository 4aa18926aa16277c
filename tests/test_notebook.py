"""Notebooks executed by a real kernel (nbclient), as `make demo` and a user run them."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from sm_magic.jobs.registry import Registry

pytestmark = pytest.mark.jobs

ROOT = Path(__file__).resolve().parent.parent


# A cell that returns once the kernel's monitor follows no job: every display it updates is final.
WAIT_FOR_DISPLAYS = ("import time\nfrom sm_magic.jobs.monitor import get_monitor\nstart = time.monotonic()\n"
                     "while get_monitor().watched() and time.monotonic() - start < 60:\n    time.sleep(0.05)\n"
                     "assert not get_monitor().watched(), 'the monitor still follows a job after 60 s'\n")


def _execute(nb, cwd: Path):
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def _text(cell) -> str:
    parts = []
    for out in cell.outputs:
        parts.append(out.get("text", ""))
        parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def test_quickstart_notebook_trains_and_shows_metrics(sm_env):
    nb = _execute(nbformat.read(ROOT / "example_notebooks" / "quickstart.ipynb", as_version=4), sm_env)
    train = next(c for c in nb.cells if c.source.startswith("%%sagemaker_train"))
    out = _text(train)
    assert "Training - Training in progress" in out and "Completed - Training job completed" in out
    for epoch in range(3):
        assert f"epoch {epoch}: {{'accuracy': " in out
    metrics = _text(next(c for c in nb.cells if c.source == "job.metrics"))
    assert "accuracy" in metrics and "f1" in metrics
    [record] = Registry().list()
    assert record.status == "Completed"
    assert (Path(record.location) / "output" / "model.tar.gz").is_file()


def test_live_display_without_wait_ends_showing_the_result(sm_env):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext sm_magic"),
        nbformat.v4.new_code_cell("%%sagemaker_train -o job --name live-1\n"
                                  "import time\nfor e in range(3):\n    time.sleep(0.5)\n"
                                  "    print(f\"epoch {e}: {{'loss': {1.0 / (e + 1)}}}\", flush=True)\n"),
        nbformat.v4.new_code_cell("job.wait(timeout=120)\n" + WAIT_FOR_DISPLAYS + "print(job.status)"),
        # display(job) takes the path a cell's value does (Job._ipython_display_); waiting in the
        # same cell keeps the monitor thread's final update attributed to it.
        nbformat.v4.new_code_cell("display(job)\n" + WAIT_FOR_DISPLAYS),
        nbformat.v4.new_code_cell("print(Out[2] is job)\n" + WAIT_FOR_DISPLAYS),
    ]
    _execute(nb, sm_env)
    launch_cell, wait_cell = nb.cells[1], nb.cells[2]
    assert "Completed" in _text(wait_cell)
    # The cell's value is the Job (Out[2], `_`), but shown as nothing: no `<Job ... InProgress>`
    # frozen at launch time stays in the saved notebook. The outputs are the live display and its
    # companion (widgets/companion.py), which the job's end left empty and hidden.
    assert [o.output_type for o in launch_cell.outputs] == ["display_data"] * 2, launch_cell.outputs
    _ended_companion(launch_cell.outputs[1])
    assert _text(nb.cells[4]).strip().startswith("True")
    # `job` in a later cell shows the job as it is: here the finished summary.
    shown, companion = nb.cells[3].outputs
    _ended_companion(companion)
    assert shown.output_type == "display_data" and 'class="sm-magic-summary"' in shown["data"]["text/html"]
    assert "Completed" in shown["data"]["text/plain"]
    displays = [o for o in launch_cell.outputs if o.output_type == "display_data"]
    assert displays, "no live display under the cell"
    final = displays[0]["data"]["text/plain"]
    # The display was replaced in place as the job went on: it now shows the finished job.
    assert "live-1" in final and "Completed  0:" in final and "Completed / " not in final
    assert "Training - Training in progress" in final
    assert "loss" in final and "0.3333" in final
    assert "model: " in final
    # What a saved notebook keeps: static HTML with the table and an inline plot, no widget view.
    html = displays[0]["data"]["text/html"]
    assert 'class="sm-magic-summary"' in html and 'class="sm-magic-metrics"' in html
    assert '<img class="sm-magic-plot"' in html and "data:image/png;base64," in html
    assert "application/vnd.jupyter.widget-view+json" not in displays[0]["data"]


def _ended_companion(output) -> None:
    """The note that stands in for a live widget once its kernel is gone, after the job ended: no
    text, and a style that hides its own output."""
    assert output["data"]["text/plain"] == "", output
    assert 'class="sm-magic-companion-ended"' in output["data"]["text/html"], output
    assert "Disconnected" not in output["data"]["text/html"]


def test_spot_resume_notebook_is_interrupted_and_trains_every_epoch(sm_env):
    nb = _execute(nbformat.read(ROOT / "example_notebooks" / "spot_resume.ipynb", as_version=4), sm_env)
    train = next(c for c in nb.cells if c.source.startswith("%%sagemaker_train"))
    out = _text(train)
    assert "Interrupted - Spot capacity reclaimed after 8" in out and "Completed - Training job completed" in out
    timeline = _text(next(c for c in nb.cells if c.source.startswith("for t in job.transitions")))
    assert "Restarting" in timeline and "billable seconds" in timeline
    [record] = Registry().list()
    assert record.status == "Completed"
    metrics = _text(next(c for c in nb.cells if c.source == "job.metrics"))
    assert "loss" in metrics and "\n11 " in metrics  # epochs 0..11, one row each
