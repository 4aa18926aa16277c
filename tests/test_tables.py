"""Tables that read well where they are shown: how a cell reads (durations, significant digits,
names cut in the middle), compare()'s and `%sagemaker_jobs`'s compact notebook view (columns that
matter first, the best row marked, every column one click away, the data untouched), and
`sm-magic jobs` in 100 columns, run as a real command over real local jobs."""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pandas as pd
import pytest

import sm_magic
from sm_magic.display.table_text import cut, cut_middle, duration, number
from sm_magic.display.table_view import BEST_MARK, ShownFrame, compare_html, compare_text, jobs_frame
from sm_magic.jobs import states

from helpers.html_tables import Tables as _Html
from helpers.jobscripts import EPOCHS_SCRIPT, SM_MAGIC, script

# -- cells ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seconds, text", [(32.501716, "0:33"), (32.4, "0:32"), (0, "0:00"), (62, "1:02"), (3723, "1:02:03"),
                                           (36000, "10:00:00"), (None, ""), (math.nan, ""), (np.float64(5.4), "0:05")])
def test_a_duration_reads_as_a_clock(seconds, text):
    assert duration(seconds) == text


@pytest.mark.parametrize("value, text", [(0.912345, "0.9123"), (32.501716, "32.5"), (0.5, "0.5"), (3, "3"),
                                         (np.int64(64), "64"), (123456.7, "123457"), (1.23456e-05, "1.235e-05"),
                                         (-0.0012345, "-0.001234"), (math.nan, ""), (None, ""), (math.inf, "inf"),
                                         (np.float64(2.71828), "2.718"), ("adam", "adam")])
def test_a_number_reads_to_four_significant_digits(value, text):
    assert number(value) == text


def test_long_text_is_cut_with_an_ellipsis_and_a_name_keeps_its_start_and_end():
    assert cut("abcdef", 6) == "abcdef" and cut("abcdefg", 6) == "abcde\u2026"
    name = "lr-sweep-2026-12-07-07-35-12-123-7"
    short = cut_middle(name, 20)
    assert len(short) == 20 and short.startswith("lr-sweep-2") and short.endswith("12-123-7") and "\u2026" in short
    assert cut_middle("lrs-1", 20) == "lrs-1"


# -- the compact view of compare() ---------------------------------------------------------------

def _frame() -> pd.DataFrame:
    """A comparison as compare() makes it: sorted by accuracy's best, lr swept, epochs the same."""
    return pd.DataFrame({
        "name": ["lr-sweep-2026-12-07-07-35-12-123-2", "lr-sweep-2026-12-07-07-35-12-123-1", "lr-sweep-3"],
        "status": ["Completed", "Completed", "Failed"],
        "lr": [0.05, 0.01, 0.5], "epochs": [3, 3, 3], "optimizer": ["adam", "adam", "adam"],
        "billable_s": [305.0, 312.0, math.nan], "duration_s": [32.501716, 3723.2, 5.0],
        "accuracy_last": [0.9, 0.88, 0.49], "accuracy_best": [0.912345, 0.88, 0.52],
        "loss_last": [0.29, 0.36, 2.3], "loss_best": [0.27, 0.36, 1.9],
        "created": pd.to_datetime(["2026-12-02 00:13:21"] * 3),
    })


def test_the_compact_view_shows_the_columns_that_matter_first_and_marks_the_best_row():
    frame = _frame()
    view = _Html(compare_html(frame, "accuracy", "max", ["lr", "epochs", "optimizer"]))
    compact, full = view.tables
    assert not compact["in_details"] and full["in_details"]
    # name, status, the ranking metric's best, the hyperparameters that differ (epochs and optimizer do not), duration.
    assert compact["head"] == ["", "name", "status", "accuracy (max)", "lr", "duration"]
    assert compact["best"] == [True, False, False]
    first, second, third = compact["rows"]
    assert first[0] == BEST_MARK and second[0] == third[0] == ""
    assert first[3:] == ["0.9123", "0.05", "0:33"] and second[5] == "1:02:03"
    assert len(first[1]) <= 32 and "\u2026" in first[1] and first[1].endswith("-2")  # a long name, cut in its middle
    assert third[1] == "lr-sweep-3"
    # One click away: every column, every row, still readable (durations as clocks, 4 significant digits).
    assert full["head"] == list(frame.columns) and len(full["rows"]) == 3
    assert full["rows"][0][full["head"].index("duration_s")] == "0:33"
    assert full["rows"][0][full["head"].index("name")] == "lr-sweep-2026-12-07-07-35-12-123-2"
    assert "All 12 columns" in view.summary and "best accuracy" in view.summary


def test_a_min_metric_marks_its_lowest_row_and_no_metric_marks_none():
    frame = _frame()
    view = _Html(compare_html(frame, "loss", "min", ["lr"]))
    assert view.tables[0]["head"][3] == "loss (min)" and view.tables[0]["best"] == [True, False, False]
    view = _Html(compare_html(frame.drop(columns=[c for c in frame.columns if c.startswith(("loss", "accuracy"))]),
                              None, "min", ["lr"]))
    assert view.tables[0]["head"] == ["", "name", "status", "lr", "duration"] and not any(view.tables[0]["best"])


def test_the_compact_table_as_text_marks_the_best_row_and_right_aligns_numbers():
    lines = compare_text(_frame(), "loss", "min", ["lr", "epochs", "optimizer"]).splitlines()
    assert lines[0].split() == ["name", "status", "loss", "(min)", "lr", "duration"]
    assert [line[:1] for line in lines[1:]] == ["*", " ", " "]
    assert lines[1].split()[1:] == ["lr-sweep-2026-12\u2026-07-35-12-123-2", "Completed", "0.27", "0.05", "0:33"]
    assert lines[2].endswith("1:02:03") and lines[3].endswith("   0:05")  # right-aligned under "duration"
    assert lines[2].index("0.36") + len("0.36") == lines[0].index("(min)") + len("(min)")
    assert max(map(len, lines)) <= 100


@pytest.mark.jobs
def test_compare_returns_the_data_as_documented_and_shows_it_compact(sm_env):
    sweep = sm_magic.sweep(EPOCHS_SCRIPT, grid={"lr": ["0.01", "0.1"], "epochs": ["2"]}, name="lrs")
    sweep.wait(timeout=120)
    df = sm_magic.compare("lrs")
    # The data: numbers stay numbers, the documented columns in their order.
    assert isinstance(df, pd.DataFrame) and isinstance(df, ShownFrame)
    assert list(df.columns) == ["name", "status", "lr", "epochs", "billable_s", "duration_s", "cost_usd", "accuracy_last",
                                "accuracy_best", "f1_last", "f1_best", "created"]
    assert df["accuracy_best"].dtype.kind == "f" and df["duration_s"].dtype.kind == "f"
    assert df["duration_s"].iloc[0] == pytest.approx(sweep[0].describe().training_end_time
                                                     - sweep[0].describe().creation_time, abs=2)
    # The view: compact, the best row marked; a frame derived from it is a plain DataFrame.
    view = _Html(df._repr_html_())
    assert view.tables[0]["head"] == ["", "name", "status", "accuracy (max)", "lr", "duration"]
    assert [row[1] for row in view.tables[0]["rows"]] == list(df["name"])
    assert view.tables[0]["rows"][0][0] == BEST_MARK
    assert all(row[-1].count(":") == 1 for row in view.tables[0]["rows"])  # 0:05, not 5.123456
    derived = df.sort_values("lr")
    assert type(derived) is pd.DataFrame and "sm-magic-table" not in derived._repr_html_()


@pytest.mark.jobs
def test_the_job_list_in_a_notebook_is_compact_with_every_column_one_click_away(ip):
    ip.run_cell_magic("sagemaker_train", "--wait --name listed-1 -- --epochs 2", EPOCHS_SCRIPT)
    table = ip.run_line_magic("sagemaker_jobs", "")
    assert list(table["name"]) == ["listed-1"] and list(table["status"]) == [states.COMPLETED]
    view = _Html(table._repr_html_())
    compact, full = view.tables
    assert compact["head"] == ["name", "status", "duration", "metrics", "hyperparameters", "created"]
    assert full["head"] == list(table.columns) and "instance" in full["head"] and "backend" in full["head"]
    assert compact["rows"][0][:2] == ["listed-1", "Completed"] and compact["rows"][0][2].count(":") == 1


def test_a_long_table_shows_pandas_max_rows_and_says_how_many_more():
    frame = pd.DataFrame({"name": [f"job-{i}" for i in range(75)], "status": ["Completed"] * 75,
                          "lr": [i / 100 for i in range(75)], "duration_s": [5.0] * 75,
                          "loss_best": [1 - i / 100 for i in range(75)]})
    with pd.option_context("display.max_rows", 60):
        markup = compare_html(frame, "loss", "min", ["lr"])
    view = _Html(markup)
    assert len(view.tables[0]["rows"]) == 60 and len(view.tables[1]["rows"]) == 60
    assert "15 more rows not shown" in markup and "All 5 columns (75 rows" in view.summary
    assert view.tables[0]["best"].count(True) == 0  # the best (job-74) is past the 60 shown: not marked wrongly
    with pd.option_context("display.max_rows", None):
        assert len(_Html(compare_html(frame, "loss", "min", ["lr"])).tables[0]["rows"]) == 75


def test_a_job_list_view_keeps_its_data():
    frame = pd.DataFrame({"name": ["a" * 60], "backend": ["local"], "status": ["Completed"], "duration": ["0:05"],
                          "metrics": ["accuracy=0.9 f1=0.85"], "hyperparameters": ["--lr=0.1 " * 10],
                          "created": pd.to_datetime(["2026-12-02 00:13:21"])})
    shown = jobs_frame(frame)
    assert shown.equals(frame) and shown["name"].iloc[0] == "a" * 60
    compact = _Html(shown._repr_html_()).tables[0]
    assert len(compact["rows"][0][0]) == 32 and len(compact["rows"][0][4]) == 48
    assert compact["rows"][0][5] == "12-02 00:13"


# -- `sm-magic jobs` in 100 columns ----------------------------------------------------------------

MANY_METRICS = script("""
    for epoch in range(2):
        print(f"epoch {epoch}: {{'validation_accuracy': {0.5 + epoch / 10}, 'validation_loss_per_token': 1.23456,"
              f" 'train_samples_per_second': 1234.5678, 'grad_norm': 0.1}}")
""")
FAILS = script("""
    raise SystemExit("no data")
""")


def sm_magic_command(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SM_MAGIC), *argv], capture_output=True, text=True, timeout=120)


@pytest.mark.jobs
def test_sm_magic_jobs_fits_100_columns_with_the_state_words_and_wide_shows_everything(sm_env):
    long_name = "a-rather-long-experiment-name-for-the-tokenizer-ablation-7"
    sm_magic.launch(MANY_METRICS, name=long_name, wait=True)
    default = sm_magic.launch(EPOCHS_SCRIPT, wait=True, args=["--epochs", "1"])  # base name and timestamp
    with pytest.raises(sm_magic.jobs.job.JobFailedError):
        sm_magic.launch(FAILS, name="fails", wait=True)
    sweep = sm_magic.sweep(EPOCHS_SCRIPT, grid={"lr": ["0.01", "0.1"]}, name="lrs")
    sweep.wait(timeout=120)

    listing = sm_magic_command("jobs")
    assert listing.returncode == 0 and listing.stderr == "", listing.stderr
    lines = listing.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100, "\n".join(lines)
    assert lines[0].split() == ["NAME", "BACKEND", "STATUS", "CREATED", "DURATION", "METRICS"]
    by_status = {line.split()[0]: line.split()[2] for line in lines[1:]}
    assert set(by_status.values()) == {states.COMPLETED, states.FAILED}
    assert by_status["fails"] == states.FAILED and by_status["lrs-1"] == by_status["lrs-2"] == states.COMPLETED
    assert by_status[default.name] == states.COMPLETED  # a default name is whole
    cut_name = next(name for name in by_status if name.startswith("a-rather"))
    assert cut_name.endswith("ablation-7") and "\u2026" in cut_name and len(cut_name) <= 32
    long_line = next(line for line in lines if line.startswith("a-rather"))
    assert "=" in long_line.split()[6] and long_line.endswith("(+3)")  # 4 metrics: one shown and how many more
    for line in lines[1:]:
        assert line.split()[5].count(":") == 1 and len(line.split()[5]) <= 7, line  # DURATION as 0:05
    wide = sm_magic_command("jobs", "--wide")
    assert wide.returncode == 0
    assert any(line.startswith(long_name + " ") for line in wide.stdout.splitlines()), wide.stdout
    assert "INSTANCE" in wide.stdout.splitlines()[0] and "SWEEP" in wide.stdout.splitlines()[0]
