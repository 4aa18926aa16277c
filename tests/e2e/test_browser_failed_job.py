"""A failed job under `--wait`, as a person sees it in JupyterLab and in Notebook 7 (issue 24).

tests/test_one_error.py checks the folded text itself, in IPython's captured stdout, `job.logs()`,
`%sagemaker_logs`, `sm-magic logs` and `sm-magic wait`. This test checks what reaches the page: the
cell's output area, once the kernel's streams, the widget's summary and the error output are
rendered and merged by the UI. A real notebook runs `%load_ext sm_magic` and a `%%sagemaker_train
--wait` cell (local backend) whose script prints an epoch line and raises; in the output area the
user's traceback is there once, accelerate's launcher traceback is not, the folded line says how to
see it, and the cell ends in the magic's one-line error, not an IPython traceback wall.
"""

import pytest

from helpers import lab
from helpers.jobscripts import script

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]  # one worker: one server per UI

FAILING = script("""
    def check(lr):
        if lr > 1:
            raise ValueError("bad learning rate")

    def main():
        print("epoch 0: {'accuracy': 0.5, 'f1': 0.4}", flush=True)
        check(lr=5.0)

    main()
""")
CELLS = ["%load_ext sm_magic", "%%sagemaker_train --wait --name e2e-failed\n" + FAILING]
JOB = 1
TRACEBACK = "Traceback (most recent call last):"
ERROR = "ValueError: bad learning rate"
EPOCH = "epoch 0: {'accuracy': 0.5, 'f1': 0.4}"
LAUNCHER = ("CalledProcessError", "launch.py", "<frozen runpy>", "subprocess.py", "ChildFailedError")
FOLDED = "(accelerate's launcher traceback: "
HINT = "`%sagemaker_logs e2e-failed --full` or `sm-magic logs e2e-failed --full` shows them)"
MAGIC_ERROR = f"JobFailedError: training job e2e-failed failed: AlgorithmError: {ERROR} [train.py, line 3] (exit code 1)"
OUTPUTS = ".jp-OutputArea-output"
STDOUT = OUTPUTS + "[data-mime-type='application/vnd.jupyter.stdout']"
STDERR = OUTPUTS + "[data-mime-type='application/vnd.jupyter.stderr']"


def _lines(locator) -> list[str]:
    """The rendered text of every element `locator` matches, line by line, as on screen."""
    return [line.rstrip() for text in locator.all_inner_texts() for line in text.splitlines()]


def test_a_failed_job_under_wait_shows_the_users_error_once(page, lab_server, shot):
    path = lab.write_notebook(lab_server.root, "failed_job.ipynb", CELLS)
    lab.run_notebook(page, lab_server, path)  # --wait: the cell ends when the job has
    out = lab.cell_output(page, JOB)
    out.locator(".sm-magic-summary").wait_for()  # the widget replaced by its summary
    shown = _lines(out)  # what is on screen: the summary's log tail is folded away
    text = "\n".join(shown)
    streamed = _lines(out.locator(STDOUT))

    # The user's traceback once, in the streamed log, after their epoch line and before the end.
    assert text.count(TRACEBACK) == 1 and streamed.count(TRACEBACK) == 1, text
    assert shown.count(ERROR) == 1 and streamed.count(ERROR) == 1, text
    assert sum('raise ValueError("bad learning rate")' in line for line in shown) == 1, text
    assert shown.count(EPOCH) == 1, text
    # Accelerate's launcher traceback is folded into one line that says how to see it.
    assert not [word for word in LAUNCHER if word in text], text
    folded = [line for line in streamed if line.startswith(FOLDED)]
    assert len(folded) == 1 and folded[0].endswith(HINT), streamed
    end = [line for line in streamed if line.endswith("Failed - Training job failed")]
    assert len(end) == 1, streamed
    assert (streamed.index(EPOCH) < streamed.index(TRACEBACK) < streamed.index(ERROR)
            < streamed.index(folded[0]) < streamed.index(end[0])), streamed

    # The cell ends in the magic's error: the reason and where the logs are, no traceback of its own.
    assert out.locator(STDERR).count() == 1
    error = _lines(out.locator(STDERR))
    assert error == [MAGIC_ERROR, "Logs: %sagemaker_logs e2e-failed  (or job.logs())"], error
    last = out.locator(OUTPUTS).last
    assert last.get_attribute("data-mime-type") == "application/vnd.jupyter.stderr"
    shot(out, "failed-job-wait")

    # Opened, the summary's log tail (what a saved notebook keeps) ends in the user's error too,
    # still without the launcher's.
    tail = out.locator(".sm-magic-summary details", has_text="log tail")
    tail.locator("summary").click()
    opened = _lines(tail)
    assert ERROR in opened and not [word for word in LAUNCHER if word in "\n".join(opened)], opened
