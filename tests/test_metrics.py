import math
import re

import pandas as pd
import pytest

from sm_magic.metrics.parser import MetricDefinition, MetricsError, MetricsParser, load_metrics_file, parse_metric_flag

# The three lines printed by the Accelerate SageMaker guide's example job.
GUIDE_LINES = [
    "epoch 0: {'accuracy': 0.7598039215686274, 'f1': 0.8178438661710037}",
    "epoch 1: {'accuracy': 0.8357843137254902, 'f1': 0.882249560632689}",
    "epoch 2: {'accuracy': 0.8406862745098039, 'f1': 0.8869565217391304}",
]


def parsed(lines, definitions=()):
    parser = MetricsParser(definitions)
    parser.feed(lines)
    return parser


def test_guide_lines_give_one_row_per_epoch_with_exact_values():
    frame = parsed(GUIDE_LINES).to_frame()
    assert frame.index.name == "epoch"
    assert list(frame.index) == [0, 1, 2]
    assert list(frame.columns) == ["accuracy", "f1"]
    assert frame.loc[0, "accuracy"] == 0.7598039215686274
    assert frame.loc[1, "f1"] == 0.882249560632689
    assert frame.loc[2, "accuracy"] == 0.8406862745098039
    assert frame.loc[2, "f1"] == 0.8869565217391304


def test_guide_lines_with_launcher_prefixes_and_noise():
    lines = [
        "[1,mpirank:0,algo-1]<stderr>:INFO:root:Reducer buckets have been rebuilt in this iteration.",
        "[1,mpirank:0,algo-1]<stdout>:" + GUIDE_LINES[0],
        "algo-1 | " + GUIDE_LINES[1],
        "[rank0]: 2024-05-01 12:00:00 " + GUIDE_LINES[2] + "\n",
        "2022-09-21 13:21:05,188 sagemaker-training-toolkit INFO     Reporting training SUCCESS",
    ]
    parser = parsed(lines)
    assert [row["epoch"] for row in parser.rows] == [0, 1, 2]
    assert parser.rows[2]["f1"] == 0.8869565217391304


def test_rows_are_dicts_keyed_by_epoch():
    assert parsed(GUIDE_LINES[:1]).rows == [
        {"epoch": 0, "accuracy": 0.7598039215686274, "f1": 0.8178438661710037}
    ]


def test_step_dict_lines():
    frame = parsed(["step 10: {'loss': 0.5}", "step 20: {'loss': 0.4}"]).to_frame()
    assert frame.index.name == "step"
    assert list(frame.index) == [10, 20]
    assert list(frame["loss"]) == [0.5, 0.4]


def test_json_lines():
    lines = ['{"epoch": 0, "loss": 0.5, "acc": 1}', 'algo-1 | {"epoch": 1, "loss": 0.3, "acc": 0.8}']
    frame = parsed(lines).to_frame()
    assert list(frame.index) == [0, 1]
    assert list(frame["loss"]) == [0.5, 0.3]
    assert frame["acc"].dtype == float  # ints become floats
    assert frame.loc[0, "acc"] == 1.0


def test_json_without_epoch_or_step_is_ignored():
    assert parsed(['{"loss": 0.5}', '{"config": {"epochs": 3}}']).rows == []


def test_non_numeric_and_boolean_values_are_not_metrics():
    rows = parsed(['{"epoch": 0, "loss": 0.5, "done": true, "phase": "train", "nested": {"a": 1}}']).rows
    assert rows == [{"epoch": 0, "loss": 0.5}]


def test_hugging_face_trainer_dicts_with_fractional_epoch_and_nan():
    rows = parsed(["{'loss': nan, 'grad_norm': inf, 'learning_rate': 5e-05, 'epoch': 0.5}"]).rows
    assert rows[0]["epoch"] == 0.5
    assert math.isnan(rows[0]["loss"]) and math.isnan(rows[0]["grad_norm"])
    assert rows[0]["learning_rate"] == 5e-05


def test_key_value_pairs():
    lines = ["epoch=1 loss=0.25 acc=0.9", "2024-01-01 [rank0]: epoch=2, loss=0.2, acc=0.95"]
    frame = parsed(lines).to_frame()
    assert list(frame.index) == [1, 2]
    assert list(frame["loss"]) == [0.25, 0.2]
    assert list(frame["acc"]) == [0.9, 0.95]


def test_key_value_without_epoch_or_step_makes_no_row():
    parser = parsed(["lr=5e-5", "batch_size=32 lr=5e-5", "running with --epoch=3"])
    assert parser.rows == []
    assert parser.to_frame().empty


def test_definition_value_goes_to_current_epoch_row():
    loss = parse_metric_flag("loss=loss: ([0-9.e-]+)")
    lines = [GUIDE_LINES[0], "train loss: 0.61", GUIDE_LINES[1], "some noise", "train loss: 4e-1"]
    frame = parsed(lines, [loss]).to_frame()
    assert list(frame.index) == [0, 1]
    assert list(frame["loss"]) == [0.61, 0.4]
    assert frame.loc[1, "accuracy"] == 0.8357843137254902


def test_definition_values_before_any_epoch_are_numbered_steps():
    loss = parse_metric_flag("loss=loss: ([0-9.]+)")
    frame = parsed(["loss: 0.9", "loss: 0.8", "loss: 0.7"], [loss]).to_frame()
    assert frame.index.name == "step"
    assert list(frame.index) == [0, 1, 2]
    assert list(frame["loss"]) == [0.9, 0.8, 0.7]


def test_definition_named_epoch_sets_the_current_row():
    defs = [
        MetricDefinition("epoch", r"Epoch (\d+)"),
        MetricDefinition("val_acc", r"val_acc ([0-9.]+)"),
    ]
    lines = ["Epoch 1 starting", "val_acc 0.5", "Epoch 2 starting", "Epoch 2 val_acc 0.75"]
    assert parsed(lines, defs).rows == [{"epoch": 1, "val_acc": 0.5}, {"epoch": 2, "val_acc": 0.75}]


def test_duplicate_epoch_lines_from_two_processes_give_one_row():
    parser = MetricsParser()
    assert parser.feed(["[rank0]: " + GUIDE_LINES[0], "[rank1]: " + GUIDE_LINES[0]]) == 1
    assert parser.feed(["[rank1]: " + GUIDE_LINES[0]]) == 0  # nothing changed
    assert len(parser.to_frame()) == 1


def test_later_value_for_same_epoch_overwrites():
    parser = parsed(['{"epoch": 0, "loss": 0.5}'])
    assert parser.feed(['{"epoch": 0, "loss": 0.4}']) == 1
    assert parser.rows == [{"epoch": 0, "loss": 0.4}]


def test_feed_counts_added_and_changed_rows():
    parser = MetricsParser()
    assert parser.feed(GUIDE_LINES) == 3
    assert parser.feed(["hello", "epoch 2: {'accuracy': 0.9}"]) == 1


def test_mixed_epoch_and_step_rows_use_range_index_with_key_columns():
    frame = parsed(['{"step": 5, "loss": 0.5}', '{"epoch": 1, "acc": 0.9}']).to_frame()
    assert isinstance(frame.index, pd.RangeIndex)
    assert list(frame.columns[:2]) == ["epoch", "step"]
    assert frame.loc[0, "step"] == 5 and math.isnan(frame.loc[0, "epoch"])
    assert frame.loc[1, "epoch"] == 1 and frame.loc[1, "acc"] == 0.9


def test_empty_parser_gives_empty_frame():
    frame = MetricsParser().to_frame()
    assert isinstance(frame, pd.DataFrame) and frame.empty


def test_flood_of_ordinary_lines_parses_correctly():
    noise = [f"2024-01-01 12:00:{i % 60:02d} INFO step through batch {i} lr=5e-5" for i in range(200_000)]
    parser = MetricsParser([parse_metric_flag("loss=loss: ([0-9.]+)")])
    assert parser.feed(noise[:100_000] + GUIDE_LINES + noise[100_000:]) == 3
    assert [row["epoch"] for row in parser.rows] == [0, 1, 2]


def test_overlong_lines_skip_default_formats_but_not_definitions():
    long_line = "epoch 0: {'loss': 0.5, 'pad': '" + "x" * 20_000 + "'}"
    assert parsed([long_line]).rows == []
    defs = [parse_metric_flag("loss='loss': ([0-9.]+)")]
    # The definition still runs, and its value goes to the epoch the line names.
    assert parsed([long_line], defs).rows == [{"epoch": 0, "loss": 0.5}]


# --- definitions -------------------------------------------------------------


def test_parse_metric_flag_splits_at_first_equals():
    d = parse_metric_flag("loss=loss=([0-9.]+)")
    assert d == MetricDefinition("loss", "loss=([0-9.]+)")
    assert d.to_api() == {"Name": "loss", "Regex": "loss=([0-9.]+)"}


@pytest.mark.parametrize(
    "flag, expected",
    [
        ("loss", "NAME=REGEX"),
        ("=loss: ([0-9.]+)", "name is empty"),
        ("loss=loss: ([0-9.]+", "does not compile"),
        ("loss=loss: [0-9.]+", "wrap the number in (...)"),
        ("x" * 256 + "=a(b)", "1-255 characters"),
        ("loss=", "regex is empty"),
        ("loss=(" + "a" * 500 + ")", "at most 500"),
    ],
)
def test_parse_metric_flag_errors(flag, expected):
    with pytest.raises(MetricsError, match=re.escape(expected)):
        parse_metric_flag(flag)


def test_compile_error_includes_re_message():
    with pytest.raises(MetricsError) as info:
        parse_metric_flag("loss=loss: ([0-9.]+")
    assert "missing ), unterminated subpattern" in str(info.value)
    assert "'loss'" in str(info.value)


def test_parser_rejects_invalid_definition():
    with pytest.raises(MetricsError, match="no capture group"):
        MetricsParser([MetricDefinition("loss", "loss: [0-9.]+")])


def test_load_metrics_file_skips_header_and_blank_lines(tmp_path):
    path = tmp_path / "sagemaker_metrics_definition.tsv"
    path.write_text("metric_name\tmetric_regex\naccuracy\t'accuracy': ([0-9.]+)\n\nf1\t'f1': ([0-9.]+)\n")
    defs = load_metrics_file(path)
    assert defs == [
        MetricDefinition("accuracy", "'accuracy': ([0-9.]+)"),
        MetricDefinition("f1", "'f1': ([0-9.]+)"),
    ]
    rows = parsed(GUIDE_LINES[:1], defs).rows
    assert rows == [{"epoch": 0, "accuracy": 0.7598039215686274, "f1": 0.8178438661710037}]


def test_load_metrics_file_missing(tmp_path):
    path = tmp_path / "nope.tsv"
    with pytest.raises(MetricsError, match="does not exist") as info:
        load_metrics_file(path)
    assert str(path) in str(info.value)


def test_load_metrics_file_malformed_line_names_path_and_line(tmp_path):
    path = tmp_path / "metrics.tsv"
    path.write_text("name\tregex\nacc\t'acc': ([0-9.]+)\nf1 'f1': ([0-9.]+)\n")
    with pytest.raises(MetricsError) as info:
        load_metrics_file(path)
    assert f"{path}, line 3" in str(info.value) and "tab" in str(info.value)


def test_load_metrics_file_bad_regex_names_line(tmp_path):
    path = tmp_path / "metrics.tsv"
    path.write_text("name\tregex\nacc\t'acc': [0-9.]+\n")
    with pytest.raises(MetricsError, match="line 2.*wrap the number"):
        load_metrics_file(path)


def test_definition_value_goes_to_the_epoch_its_line_names():
    parser = MetricsParser([parse_metric_flag("rows=rows=([0-9]+)")])
    parser.feed(["epoch 0: rows=2", "Epoch 1/3 rows=5"])
    frame = parser.to_frame()
    assert frame.index.name == "epoch" and list(frame["rows"]) == [2.0, 5.0]
