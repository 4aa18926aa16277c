"""Step rows and epoch rows together, as real jobs log them: the widget's table, the text table,
the static summary and the plot of a job that logs only epochs, only steps, a step line per step
and an epoch line per epoch, and Hugging Face's Trainer (its real log, tests/data/logs): one row
per epoch where epochs exist, no empty column, no stray row, the best epoch marked, the plot's x
axis named for what it is."""

import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_widgets import _Job, _snap

from sm_magic.metrics import series
from sm_magic.metrics.parser import MetricsParser
from sm_magic.widgets.progress import ProgressWidget, metrics_html, plot_lines, plot_png, summary_html
from sm_magic.widgets.text import BEST_MARK, metrics_table, render_text

from helpers.jobscripts import script, wait_until

LOGS = Path(__file__).parent / "data" / "logs"


def parsed(lines) -> list[dict]:
    parser = MetricsParser()
    parser.feed(list(lines))
    return parser.rows


def hf_lines() -> list[str]:
    """A real Hugging Face Trainer job's log (tiny BERT, 3 epochs, eval each epoch, a log dict
    every half epoch), as the backend reads it: lines with tqdm's \\r redraws and ESC[A inside."""
    with open(LOGS / "hf_trainer.log", encoding="utf-8", newline="") as log:
        return log.read().split("\n")


def mixed_lines(epochs=5, steps=8, worse_last=True) -> list[str]:
    """A custom loop: a JSON line per step, the Accelerate guide's `epoch N: {...}` per epoch.
    val_loss is lowest at epoch 3 (the last epoch is worse)."""
    lines = []
    for e in range(epochs):
        for s in range(steps):
            step = e * steps + s
            lines.append(json.dumps({"step": step, "loss": round(1 / (step + 1), 5)}))
        val = 0.5 - 0.05 * e + (0.2 if worse_last and e == epochs - 1 else 0)
        lines.append(f"epoch {e}: {{'val_loss': {val:.3f}, 'val_accuracy': {0.6 + 0.05 * e:.3f}}}")
    return lines


class _Table(HTMLParser):
    """A metrics table's header, sections and data rows: [(section, cells, classes of cells)]."""

    def __init__(self, html: str):
        super().__init__()
        self.head: list[str] = []
        self.rows: list[tuple[str, list[str], list[str]]] = []
        self.titles: list[str] = []
        self.notes: list[str] = []
        self._tag, self._cells, self._classes, self._in_head, self._text = "", [], [], False, ""
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "thead":
            self._in_head = True
        elif tag == "tr":
            self._cells, self._classes, self._row_class = [], [], attrs.get("class") or ""
        elif tag in ("td", "th"):
            self._tag, self._text, self._cell_class = tag, "", attrs.get("class") or ""

    def handle_data(self, data):
        if self._tag:
            self._text += data

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._cells.append(self._text.strip())
            self._classes.append(self._cell_class)
            self._tag = ""
        elif tag == "thead":
            self._in_head = False
        elif tag == "tr":
            if self._in_head:
                self.head = self._cells
            elif self._row_class == "sm-magic-section":
                self.titles.append(self._cells[0])
            elif self._row_class == "sm-magic-hidden-rows":
                self.notes.append(self._cells[0])
            else:
                self.rows.append((self.titles[-1] if self.titles else "", self._cells, self._classes))


def text_cells(table: list[str]) -> tuple[list[str], list[list[str]]]:
    """The text table's header and its data rows' cells, read by the columns' right edges."""
    header, rows = table[0], []
    edges = [(m.start(), m.end()) for m in re.finditer(r"\S+", header)]
    for line in table[1:]:
        if line.endswith(":") or line.startswith(("...", BEST_MARK)):
            continue   # a section title, or a note
        start, cells = 0, []
        for _, end in edges:
            cells.append(line[start:end].strip())
            start = end
        rows.append(cells)
    return header.split(), rows


def assert_no_empty_column(head: list[str], rows: list[list[str]]):
    assert rows
    for i, name in enumerate(head):
        assert any(r[i] for r in rows), f"column {name} is empty in every shown row: {rows}"


@pytest.fixture
def x_label(monkeypatch):
    """x_label(rows): the plot's x label, read from the figure matplotlib drew."""
    from matplotlib.figure import Figure

    labels, savefig = [], Figure.savefig

    def grab(fig, *args, **kwargs):
        labels.append(fig.axes[0].get_xlabel())
        return savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", grab)

    def label(rows) -> str:
        labels.clear()
        assert plot_png(rows).startswith(b"\x89PNG")
        return labels[0]

    return label


# -- a real Hugging Face Trainer job ------------------------------------------------------------

def test_a_trainer_job_shows_one_row_per_epoch_with_its_eval_metrics_and_its_steps_mean():
    rows = parsed(hf_lines())
    assert any(not float(r["epoch"]).is_integer() for r in rows)      # steps at fractions of an epoch
    table = _Table(metrics_html(rows))
    assert [r[1][0].rstrip(f" {BEST_MARK}") for r in table.rows] == ["1", "2", "3"]   # one row per epoch
    assert table.head[:5] == ["epoch", "loss", "grad_norm", "learning_rate", "eval_loss"]
    assert table.head[-1].endswith("per_second")                      # timing and throughput last
    assert_no_empty_column(table.head, [r[1] for r in table.rows])
    assert "latest steps" not in table.titles and len(table.titles) == 1   # the job ended: no stray rows
    assert "loss, grad_norm, learning_rate: the mean of its steps" in table.titles[0]
    # The epoch's own metric as logged, the step metric as the mean of the epoch's steps.
    first_epoch = [r for r in rows if 0 < r["epoch"] <= 1]
    loss = table.head.index("loss")
    assert float(table.rows[0][1][loss]) == pytest.approx(sum(r["loss"] for r in first_epoch) / len(first_epoch),
                                                           rel=1e-3)
    evals = {r["epoch"]: r["eval_loss"] for r in rows if "eval_loss" in r}
    best = min(evals, key=evals.get)
    marked = [r for r in table.rows if BEST_MARK in r[1][0]]
    assert len(marked) == 1 and marked[0][1][0] == f"{best} {BEST_MARK}"
    assert marked[0][2][0] == "sm-magic-best" and marked[0][2][table.head.index("eval_loss")] == "sm-magic-best"
    assert table.notes == [f"{BEST_MARK} best eval_loss (lowest)"]


def test_a_trainer_job_without_eval_marks_no_best_epoch():
    # Without its eval dicts the only epoch-level metrics are the final summary's (train_loss,
    # train_runtime ...): on one epoch's row, no contest.
    rows = parsed(line for line in hf_lines() if "eval_loss" not in line)
    w = series.window(rows)
    assert w.summary_of == "epoch" and w.best is None
    assert BEST_MARK not in metrics_html(rows) + "\n".join(metrics_table(rows))


def test_a_trainer_job_as_text_and_as_its_summary():
    rows = parsed(hf_lines())
    table = metrics_table(rows)
    head, cells = text_cells(table)
    assert [c[0].rstrip(f" {BEST_MARK}") for c in cells] == ["1", "2", "3"]
    assert_no_empty_column(head, cells)
    assert table[1].startswith("per epoch (") and "latest steps:" not in table
    assert table[-1] == f"{BEST_MARK} best eval_loss (lowest)"
    summary = summary_html(_snap("Completed", "Completed", metrics=rows))
    assert 'alt="metrics per epoch"' in summary and _Table(summary.split("</details>", 1)[1]).head == _Table(
        metrics_html(rows)).head
    text = render_text(_snap("Completed", "Completed", metrics=rows))
    assert "\n".join(table) in text


def test_a_trainer_job_while_it_runs_shows_the_running_epochs_latest_steps_under_it():
    lines = hf_lines()
    seen_running = False
    for n in range(1, len(lines) + 1):
        rows = parsed(lines[:n])
        if not rows:
            continue
        table = _Table(metrics_html(rows))
        body = [r[1] for r in table.rows]
        assert_no_empty_column(table.head, body)
        latest = [r for r in table.rows if r[0] == "latest steps"]
        for _, cells, _ in latest:   # only the running epoch's steps: no epoch row among them
            assert not float(cells[0]).is_integer()
        if latest and any(r[0].startswith("per epoch") for r in table.rows):
            seen_running = True
            epochs = [r[1][0].rstrip(f" {BEST_MARK}") for r in table.rows if r[0].startswith("per epoch")]
            running = math.ceil(float(latest[-1][1][0]))
            assert epochs[-1] == str(running)          # the running epoch's row: its steps' mean so far
    assert seen_running


def test_a_trainer_job_is_plotted_over_epochs_without_timing_or_learning_rate(x_label):
    rows = parsed(hf_lines())
    assert x_label(rows) == "epoch"
    key, lines = plot_lines(rows)
    assert key == "epoch" and "eval_loss" in lines and "loss" in lines
    assert not any("runtime" in name or "per_second" in name for name in lines)
    assert "learning_rate" not in lines     # 1e-5 beside a loss of 0.6 would force a log axis
    assert set(lines) == {"loss", "grad_norm", "eval_loss", "train_loss"}
    xs, _ = lines["loss"]
    assert xs == sorted(xs) and xs[0] == 0.5                          # the loss at its fraction of an epoch
    assert lines["eval_loss"][0] == [1, 2, 3]


# -- a step line per step and an epoch line per epoch -------------------------------------------

def test_steps_and_epochs_show_one_row_per_epoch_with_its_step_range_and_the_best_marked(x_label):
    rows = parsed(mixed_lines())
    assert any("step" in r for r in rows) and any("step" not in r for r in rows)
    table = _Table(metrics_html(rows))
    assert table.head == ["epoch", "step", "loss", "val_loss", "val_accuracy"]
    assert [r[1][:2] for r in table.rows] == [["0", "0\u20137"], ["1", "8\u201315"], ["2", "16\u201323"],
                                              [f"3 {BEST_MARK}", "24\u201331"], ["4", "32\u201339"]]
    assert table.titles == ["per epoch (loss: the mean of its steps)"]   # no "latest" section, no stray row
    assert float(table.rows[0][1][2]) == pytest.approx(sum(1 / (s + 1) for s in range(8)) / 8, rel=1e-3)
    assert table.notes == [f"{BEST_MARK} best val_loss (lowest)"]
    head, cells = text_cells(metrics_table(rows))
    assert head == table.head and cells == [r[1] for r in table.rows]
    assert x_label(rows) == "step"
    key, lines = plot_lines(rows)
    assert lines["val_loss"][0] == [7, 15, 23, 31, 39]                 # each epoch at its last step
    assert lines["loss"][0] == list(range(40))


def test_while_an_epoch_runs_its_latest_steps_are_shown_under_the_epochs():
    rows = parsed(mixed_lines()[:-4])   # epoch 4's first 5 steps, no epoch 4 line yet
    w = series.window(rows)
    assert [s["epoch"] for s in w.summaries] == [0, 1, 2, 3, 4]
    assert w.summaries[-1]["step"] == "32\u201336" and "val_loss" not in w.summaries[-1]
    assert [r["step"] for r in w.rows] == [32, 33, 34, 35, 36]
    table = _Table(metrics_html(rows))
    assert table.titles[1] == "latest steps"
    assert_no_empty_column(table.head, [r[1] for r in table.rows])
    text = metrics_table(rows)
    assert "latest steps:" in text and text.index("latest steps:") == 2 + len(w.summaries)


def test_many_epochs_show_the_latest_and_the_best_and_say_how_many_are_not_shown():
    lines = []
    for e in range(40):
        lines += [json.dumps({"step": e * 100 + s, "loss": 1 / (e * 100 + s + 1)}) for s in range(100)]
        lines.append(f"epoch {e}: {{'val_accuracy': {0.99 if e == 5 else 0.5 + e / 100}}}")
    rows = parsed(lines)
    w = series.window(rows)
    assert [s["epoch"] for s in w.summaries] == [5] + list(range(30, 40))
    assert w.best is w.summaries[0] and w.best_metric == "val_accuracy"
    html = metrics_html(rows)
    assert "29 more epochs not shown (the latest and the best are; job.metrics has all 4,040 rows)" in html
    assert f"{BEST_MARK} best val_accuracy (highest)" in html


# -- only epochs, only steps --------------------------------------------------------------------

def test_only_epoch_rows_are_shown_as_logged_with_the_best_marked(x_label):
    rows = parsed([f"epoch {e}: {{'loss': {1 / (e + 1):.3f}, 'val_loss': {v}, 'accuracy': 0.{e + 5}}}"
                   for e, v in enumerate([0.6, 0.4, 0.45])])
    table = _Table(metrics_html(rows))
    assert table.head == ["epoch", "loss", "val_loss", "accuracy"] and table.titles == []
    assert [r[1][0] for r in table.rows] == ["0", f"1 {BEST_MARK}", "2"]
    assert table.notes == [f"{BEST_MARK} best val_loss (lowest)"]
    head, cells = text_cells(metrics_table(rows))
    assert head == table.head and cells == [r[1] for r in table.rows]
    assert x_label(rows) == "epoch"
    one = parsed(["epoch 0: {'loss': 0.5}"])
    assert BEST_MARK not in metrics_html(one) + "\n".join(metrics_table(one))   # one epoch is no contest


def test_only_step_rows_show_every_row_then_ranges_and_the_latest_steps(x_label):
    few = parsed(json.dumps({"step": s, "loss": 1 / (s + 1)}) for s in range(12))
    table = _Table(metrics_html(few))
    assert table.head == ["step", "loss"] and len(table.rows) == 12 and not table.titles and not table.notes
    assert x_label(few) == "step"
    many = parsed(json.dumps({"step": s, "loss": 1 / (s + 1)}) for s in range(3000))
    table = _Table(metrics_html(many))
    assert table.titles == ["mean per step range", "latest steps"]
    assert [r[1][0] for r in table.rows if r[0] == "latest steps"] == [str(s) for s in range(2990, 3000)]
    assert_no_empty_column(table.head, [r[1] for r in table.rows])
    assert BEST_MARK not in "".join(table.notes)                       # a step's best means little


def test_a_long_per_step_job_with_epochs_keeps_a_bounded_table_and_an_epoch_axis_only_without_steps():
    rows = [{"step": i, "epoch": i // 1000, "loss": 10 * math.exp(-i / 4000)} for i in range(40_000)]
    html = metrics_html(rows)
    table = _Table(html)
    assert len(table.rows) == series.SUMMARY_ROWS + series.STEP_ROWS and len(html) < 5_000
    assert_no_empty_column(table.head, [r[1] for r in table.rows])
    assert plot_lines(rows)[0] == "step"      # steps carrying their epoch: drawn over steps, not in columns


def test_the_widget_draws_a_mixed_job_as_it_arrives_like_a_fresh_table(monkeypatch):
    from sm_magic.widgets import progress

    clock = iter(range(0, 10**6, 60))   # a minute between updates: each one redraws the table
    monkeypatch.setattr(progress.time, "monotonic", lambda: float(next(clock)))
    lines = mixed_lines(epochs=30, steps=40)
    widget = ProgressWidget(_Job())
    for n in range(0, len(lines) + 1, 97):
        rows = parsed(lines[:n])
        widget.update(_snap("InProgress", metrics=rows))
        if rows:    # the widget's table, drawn from its kept Means, is the one drawn afresh
            assert widget.metrics.value == metrics_html(rows)
    rows = parsed(lines)
    widget.update(_snap("Completed", "Completed", metrics=rows))
    assert widget.metrics.value == metrics_html(rows) and "latest steps" not in widget.metrics.value


def test_the_comparison_plot_draws_a_mixed_job_over_its_steps_and_a_trainer_job_over_epochs():
    from sm_magic.metrics.overlay import overlay_lines

    mixed, trainer = parsed(mixed_lines()), parsed(hf_lines())
    key, lines = overlay_lines({"mixed": mixed}, "val_loss")
    assert key == "step" and lines["mixed"][0] == [7, 15, 23, 31, 39]
    assert overlay_lines({"hf": trainer}, "eval_loss") == ("epoch", {"hf": ([1, 2, 3], [
        r["eval_loss"] for r in trainer if "eval_loss" in r])})


def test_a_mixed_jobs_table_kept_across_redraws_sums_each_step_once(monkeypatch):
    rows = []
    for e in range(40):
        rows += [{"step": e * 1000 + s, "loss": 1 / (e * 1000 + s + 1)} for s in range(1000)]
        rows.append({"epoch": e, "val_loss": 1 / (e + 1)})
    means, summed, real_add = series.Means(), [], series._Sums.add
    monkeypatch.setattr(series._Sums, "add", lambda self, row: summed.append(row) or real_add(self, row))
    for n in (500, 999, 1001, 5_000, 20_000, len(rows)):
        w = series.window(rows[:n], means=means)
        steps = sum("step" in r for r in rows[:n])
        # Each step once as it arrives (into a step range while no epoch has come), and the
        # steps before the first epoch once more, into that epoch, when it comes.
        assert len(summed) == steps + (1000 if n > 1000 else 0)
    monkeypatch.setattr(series._Sums, "add", real_add)
    assert w == series.window(rows)                     # the same as summing every row afresh


# -- a real job ---------------------------------------------------------------------------------

MIXED_JOB = script("""
    import json, os, sys, time
    gate = sys.argv[1]
    for epoch in range(3):
        for i in range(6):
            step = epoch * 6 + i
            print(json.dumps({"step": step, "loss": round(1 / (step + 1), 4)}), flush=True)
            if epoch == 2 and i == 2:
                while not os.path.exists(gate):   # the test looks at the running epoch
                    time.sleep(0.05)
        print(f"epoch {epoch}: {{'val_loss': {[0.5, 0.3, 0.4][epoch]}, 'val_accuracy': {0.6 + epoch / 10}}}",
              flush=True)
""")


@pytest.mark.jobs
def test_a_real_job_logging_steps_and_epochs_shows_its_running_epoch_then_its_summary(sm_env):
    import sm_magic

    gate = sm_env / "go"
    job = sm_magic.launch(MIXED_JOB, args=[str(gate)])
    widget = ProgressWidget(job)
    snap = wait_until(lambda: (s := job.snapshot()) and len(s.metrics) >= 17 and s, 60, "epoch 2's third step")
    widget.update(snap)
    table = _Table(widget.metrics.value)
    assert [r[1][:2] for r in table.rows if r[0].startswith("per epoch")] == [
        ["0", "0\u20135"], [f"1 {BEST_MARK}", "6\u201311"], ["2", "12\u201314"]]
    assert [r[1][1] for r in table.rows if r[0] == "latest steps"] == ["12", "13", "14"]
    gate.touch()
    job.wait(timeout=60)
    final = job.snapshot()
    html = summary_html(final)
    table = _Table(html.split("</details>", 1)[1])
    assert table.head == ["epoch", "step", "loss", "val_loss", "val_accuracy"]
    assert [r[1][0] for r in table.rows] == ["0", f"1 {BEST_MARK}", "2"] and table.titles == [
        "per epoch (loss: the mean of its steps)"]
    assert 'alt="metrics per step"' in html
    text = render_text(final)
    assert "per epoch (loss: the mean of its steps):" in text and "latest steps" not in text
    assert f"{BEST_MARK} best val_loss (lowest)" in text
