"""Names shown in plots and tables, as an adversary or a careless user writes them: a metric name
that matplotlib would read as mathtext (`a$\\foo$`, which a script prints as `{"a$\\\\foo$": 1}`),
a sweep value with dollars, markup, a 9,000-character name, a leading underscore, a lone
surrogate, terminal escapes; and a plot that cannot be drawn at all. Every name is shown
literally (plots, HTML tables, text tables), and a plot that cannot be drawn is a one-line note in
its place: the job's status, log, Stop button and summary go on, and a `--wait` cell ends with the
job. Also `sm_magic.compare(42)`. Issue 23, finding 6 and `compare(42)` of finding 7.

The jobs are real local jobs, followed by the real widgets as a notebook shows them (the display
is captured: the live widget, then the static summary that replaces it); what a plot draws is read
from its figure's text artists as matplotlib draws them."""

from __future__ import annotations

import json
import time
from html.parser import HTMLParser

import pytest

import sm_magic
from sm_magic.backends.base import JobState
from sm_magic.cli.main import main as cli
from sm_magic.jobs.job import Snapshot
from sm_magic.magic import follow
from sm_magic.metrics.parser import MetricsParser
from sm_magic.sweeps.compare import CompareError
from sm_magic.widgets.progress import ProgressWidget, summary_html
from sm_magic.widgets.text import TerminalLines, render_text

from helpers.jobscripts import script, wait_until

MATHTEXT = "a$\\foo$"        # matplotlib: "Unknown symbol: \foo", a ValueError at every drawing
DOLLARS = "$\\foo$"          # the same as a swept value
MARKUP = "<script>alert(1)</script>&amp;"


def named_script(name: str, go: str | None = None) -> str:
    """A script that logs two epochs of `name` and `loss` as JSON dicts; with `go`, it then says
    "waiting for go" and waits until that file exists before its last line."""
    return script(f"""
        import json, os, time
        NAME, GO = {name!r}, {go!r}
        for epoch in range(2):
            print(f"epoch {{epoch}}: " + json.dumps({{NAME: 1.0 + epoch, "loss": 0.5 / (epoch + 1)}}), flush=True)
        if GO:
            print("waiting for go", flush=True)
            while not os.path.exists(GO):
                time.sleep(0.05)
        print("the last line", flush=True)
    """)


def rows_of(*lines: str) -> list[dict]:
    """What the job's own parser makes of lines a script prints."""
    parser = MetricsParser()
    parser.feed(list(lines))
    return parser.rows


def snap(metrics, status="Completed", name="names-1", lines=("the last line",)) -> Snapshot:
    state = JobState(name=name, status=status, secondary_status=status, creation_time=time.time() - 5,
                     training_end_time=time.time() if status != "InProgress" else None)
    return Snapshot(state=state, metrics=metrics, log_tail=list(lines), backend="local")


class _Job:
    name, backend = "names-1", "local"

    def stop(self):
        pass


# -- what a notebook shows, what a plot draws -------------------------------------------------------

class Shown:
    """One display under a cell: the live widget, then what replaced it (html, text)."""

    def __init__(self, obj):
        self.obj, self.html, self.text = obj, None, None

    def update(self, data, raw=False):
        self.html, self.text = data["text/html"], data["text/plain"]


@pytest.fixture
def notebook(monkeypatch):
    """The magics as in a kernel; each display made is recorded (a list of Shown)."""
    import IPython.display

    shown: list[Shown] = []
    monkeypatch.setattr(follow, "in_kernel", lambda shell: True)

    def display(obj, display_id=None, **kw):
        if str(display_id).endswith("-companion"):  # the note under a live widget (widgets/companion.py)
            return None
        shown.append(Shown(obj))
        return shown[-1]

    monkeypatch.setattr(IPython.display, "display", display)
    monkeypatch.setattr(IPython.display, "update_display", lambda obj, **kw: None)
    return shown


def as_drawn(text) -> str:
    """A text artist's string as matplotlib draws it: literally, or marked as TeX or mathtext."""
    from matplotlib.cbook import is_math_text

    s = text.get_text()
    if text.get_usetex():
        return f"TeX:{s}"
    if text.get_parse_math():
        return f"mathtext:{s}" if is_math_text(s) else s.replace("\\$", "$")
    return s


@pytest.fixture
def drawn(monkeypatch) -> list[list[str]]:
    """Each figure saved (in any thread): its visible texts as drawn."""
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    figures: list[list[str]] = []
    original = Figure.savefig

    def savefig(self, *args, **kwargs):
        figures.append([as_drawn(t) for t in self.findobj(Text) if t.get_visible() and t.get_text()])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return figures


class Page(HTMLParser):
    """HTML as a person reads it: header cells, data cells, images' alt texts, and any tag a
    name smuggled in."""

    def __init__(self, markup: str):
        super().__init__(convert_charrefs=True)
        self.heads: list[str] = []
        self.cells: list[str] = []
        self.tags: list[str] = []
        self._into: list[str] | None = None
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag in ("th", "td"):
            self._into = self.heads if tag == "th" else self.cells
            self._into.append("")

    def handle_endtag(self, tag):
        if tag in ("th", "td"):
            self._into = None

    def handle_data(self, data):
        if self._into is not None:
            self._into[-1] += data


def part(box, dom_class: str):
    """The child of a widget tree that carries `dom_class` (as the e2e tests find it)."""
    todo = [box]
    while todo:
        w = todo.pop()
        if dom_class in getattr(w, "_dom_classes", ()):
            return w
        todo.extend(getattr(w, "children", ()))
    raise AssertionError(f"no {dom_class} under {box}")


# -- a metric name that matplotlib reads as mathtext, in real jobs ---------------------------------

@pytest.mark.jobs
def test_a_wait_cell_whose_metric_name_reads_as_mathtext_ends_with_the_job_and_its_summary(ip, notebook, drawn):
    job = ip.run_cell_magic("sagemaker_train", "--wait --name mathtext-wait", named_script(MATHTEXT))
    assert job.status == "Completed"
    [cell] = notebook
    assert cell.html is not None, "the summary must replace the widget"
    page = Page(cell.html)
    assert MATHTEXT in page.heads and "data:image/png;base64," in cell.html
    assert any(MATHTEXT in texts for texts in drawn), drawn  # the legend shows the name as it is


@pytest.mark.jobs
def test_a_followed_job_whose_metric_name_reads_as_mathtext_keeps_its_log_and_stop_live_to_the_summary(
        ip, notebook, drawn, sm_env):
    go = sm_env / "go"
    ip.run_cell_magic("sagemaker_train", "--name mathtext-live", named_script(MATHTEXT, str(go)))
    [cell] = notebook
    log, stop, plot = (part(cell.obj, c) for c in ("sm-magic-log", "sm-magic-stop", "sm-magic-plot"))
    wait_until(lambda: "waiting for go" in log.value, 60, "the log to show the line after the metric rows")
    wait_until(lambda: bytes(plot.value).startswith(b"\x89PNG"), 30, "the plot of the rows")
    assert not stop.disabled and stop.description == "Stop"
    go.touch()
    wait_until(lambda: cell.html is not None, 60, "the summary after Completed")
    assert stop.disabled and stop.description == "Completed"
    assert "Completed" in cell.html and "the last line" in cell.html
    assert MATHTEXT in Page(cell.html).heads
    assert any(MATHTEXT in texts for texts in drawn), drawn


@pytest.mark.jobs
def test_a_sweep_over_a_value_with_dollars_ends_with_its_summary_showing_the_value(ip, notebook, drawn, live_sweeps):
    body = script("""
        import argparse, json
        p = argparse.ArgumentParser()
        p.add_argument("--tag")
        args = p.parse_args()
        for epoch in range(2):
            print(f"epoch {epoch}: " + json.dumps({"loss": 0.5 / (epoch + 1) + len(args.tag) / 100}), flush=True)
    """)
    sweep = sm_magic.sweep(body, grid={"tag": [DOLLARS, "plain"]}, name="dollars", max_parallel=2, backend="local")
    follow.follow(ip, sweep)
    [cell] = notebook
    wait_until(lambda: cell.html is not None, 180, "the sweep's summary")
    page = Page(cell.html)
    assert "2 Completed" in cell.html and DOLLARS in page.cells and "data:image/png;base64," in cell.html
    assert any(f"tag={DOLLARS}" in texts for texts in drawn), drawn  # its line in the legend


@pytest.mark.jobs
def test_compare_and_the_magic_plot_a_metric_whose_name_reads_as_mathtext(ip, notebook, drawn):
    job = sm_magic.launch(named_script(MATHTEXT), name="mathtext-compared", wait=True)
    png = sm_magic.compare.plot([job], MATHTEXT)
    assert png.startswith(b"\x89PNG")
    label = f"{MATHTEXT} (lower is better)"
    assert [texts for texts in drawn if label in texts], drawn   # the axis label says the name
    drawn.clear()
    df = ip.run_line_magic("sagemaker_jobs", f"--compare {job.name} --metric '{MATHTEXT}'")
    assert list(df["name"]) == [job.name] and f"{MATHTEXT}_best" in df.columns
    [image] = notebook
    assert image.obj.data.startswith(b"\x89PNG") and [texts for texts in drawn if label in texts], drawn


# -- other names, as the job's parser reads them from what a script prints ----------------------------

def test_a_metric_named_like_markup_shows_as_text_in_the_table_and_the_summary():
    rows = rows_of('epoch 0: ' + json.dumps({MARKUP: 1.0}))
    widget = ProgressWidget(_Job())
    widget.update(snap(rows, "InProgress"))
    for markup in (widget.metrics.value, summary_html(snap(rows))):
        page = Page(markup)
        assert MARKUP in page.heads and "script" not in page.tags


def test_a_very_long_metric_name_is_cut_short_in_the_plot_and_the_table(drawn):
    name = "x" * 9_000
    rows = rows_of(*(f"epoch {e}: " + json.dumps({name: e + 1.0}) for e in range(3)))
    html = summary_html(snap(rows))
    [texts] = drawn
    assert all(len(t) <= 100 for t in texts) and any(t.startswith("x" * 50) and t.endswith("\u2026") for t in texts)
    assert all(len(h) <= 100 for h in Page(html).heads)


def test_a_metric_whose_name_starts_with_an_underscore_has_its_line_in_the_legend(drawn):
    rows = rows_of(*(f"epoch {e}: " + json.dumps({"_hidden": e + 1.0, "loss": 1.0 / (e + 1)}) for e in range(2)))
    summary_html(snap(rows))
    [texts] = drawn
    assert "_hidden" in texts and "loss" in texts


def test_a_metric_named_by_a_lone_surrogate_is_drawn_and_its_widget_values_can_be_sent(drawn):
    rows = rows_of('epoch 0: {"\\ud800": 1.0, "loss": 0.5}', 'epoch 1: {"\\ud800": 2.0, "loss": 0.25}')
    assert "\ud800" in rows[0]
    widget = ProgressWidget(_Job())
    widget.update(snap(rows))
    assert bytes(widget.plot.value).startswith(b"\x89PNG")
    assert any("\ufffd" in texts for texts in drawn), drawn
    # What the comm sends is JSON in UTF-8: a lone surrogate cannot be encoded.
    for value in (widget.metrics.value, summary_html(snap(rows)), render_text(snap(rows))):
        value.encode("utf-8")


def test_a_metric_name_with_terminal_escapes_prints_them_visibly_not_raw(capsys):
    name = "acc\x1b]0;pwned\x07"
    rows = rows_of("epoch 0: " + json.dumps({name: 0.5}))
    TerminalLines()(snap(rows))
    printed = capsys.readouterr().out + render_text(snap(rows))
    assert "\x1b" not in printed and "\x07" not in printed
    assert "acc\\x1b]0;pwned\\x07" in printed


# -- a plot that cannot be drawn ---------------------------------------------------------------------

def test_a_plot_that_cannot_be_drawn_is_a_note_and_the_widget_still_ends_with_its_summary(monkeypatch):
    from matplotlib.figure import Figure

    def broken(self, *args, **kwargs):
        raise RuntimeError("the font cache is gone\nsecond line")

    monkeypatch.setattr(Figure, "savefig", broken)
    rows = rows_of('epoch 0: {"loss": 0.5}', 'epoch 1: {"loss": 0.25}')
    done = []
    widget = ProgressWidget(_Job(), on_done=done.append)
    widget.update(snap(rows, "InProgress", lines=("working",)))
    note = "The plot could not be drawn: RuntimeError: the font cache is gone"
    assert note in part(widget.box, "sm-magic-plot-note").value and widget.plot.layout.display == "none"
    assert "working" in widget.log.value and not widget.stop_button.disabled
    widget.update(snap(rows, lines=("the last line",)))
    assert done and widget.stop_button.description == "Completed" and "the last line" in widget.log.value
    summary = summary_html(snap(rows))
    assert note in summary and "second line" not in summary and "Completed" in summary


@pytest.mark.jobs
def test_a_sweep_whose_plot_cannot_be_drawn_still_ends_with_its_summary_and_the_note(ip, notebook, monkeypatch,
                                                                                      live_sweeps):
    from matplotlib.figure import Figure

    def broken(self, *args, **kwargs):
        raise RuntimeError("the font cache is gone")

    monkeypatch.setattr(Figure, "savefig", broken)
    sweep = sm_magic.sweep(named_script("accuracy"), grid={"seed": ["1", "2"]}, name="unplotted", max_parallel=2,
                           backend="local")
    follow.follow(ip, sweep)
    [cell] = notebook
    wait_until(lambda: cell.html is not None, 180, "the sweep's summary")
    assert "2 Completed" in cell.html and "data:image/png" not in cell.html
    assert "The plot could not be drawn: RuntimeError: the font cache is gone" in cell.html


# -- compare's argument --------------------------------------------------------------------------------

@pytest.mark.parametrize("given", [42, None, 3.5, [42], b"job-1", {"name": 1}])
def test_compare_given_no_jobs_or_names_says_what_it_takes(sm_env, given):
    for call in (lambda: sm_magic.compare(given), lambda: sm_magic.compare.plot(given, "loss")):
        with pytest.raises(CompareError, match=r"^compare takes Jobs, Sweeps and job or sweep names") as err:
            call()
        assert "\n" not in str(err.value)


@pytest.mark.jobs
def test_sm_magic_jobs_compare_prints_a_metric_name_with_escapes_visibly(sm_env, capsys):
    retitle = "\x1b]0;pwned\x07loss"   # a terminal retitled by a metric name
    sm_magic.launch(named_script(retitle), name="escaped-compared", wait=True)
    capsys.readouterr()
    assert cli(["jobs", "--compare", "escaped-compared"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out, repr(out)
    assert "\\x1b]0;pwned\\x07loss" in out.splitlines()[0], out
