"""The browser harness itself: a plain ipywidgets notebook renders in a real JupyterLab and
Notebook 7."""

import pytest

from helpers import lab

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]  # one worker: one server per UI


def test_ipywidgets_progress_renders(lab_server, page):
    path = lab.write_notebook(lab_server.root, "smoke.ipynb", [
        "import ipywidgets as w\nw.IntProgress(value=3, max=10, description='smoke')",
    ])
    lab.run_notebook(page, lab_server, path)
    bar = lab.wait_for(page, ".jp-OutputArea-output :is(.widget-hprogress, .widget-progress)")
    assert "smoke" in lab.cell_output(page, 0).inner_text()
    # The bar's fill is 3/10 of the track.
    fill = bar.locator(".progress-bar").first
    frac = fill.evaluate("(el) => el.getBoundingClientRect().width / el.parentElement.getBoundingClientRect().width")
    assert abs(frac - 0.3) < 0.05, frac
