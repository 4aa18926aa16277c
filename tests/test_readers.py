"""Readers that cannot be stalled (issue 11, findings 6 and 7): a catastrophic metric regex or a
hostile log line costs the kernel's main thread no more than a few milliseconds at a time, and
no line stops the lines after it from being read."""

import random
import re
import sys
import threading
import time

import pytest

import sm_magic
from sm_magic.cli.main import main
from sm_magic.metrics import log_dicts
from sm_magic.metrics import regex as metric_regex
from sm_magic.metrics.parser import MetricsError, MetricsParser, parse_metric_flag

from helpers.jobscripts import script

CATASTROPHIC = "x=(a+)+$"  # stdlib re: 10 s on 26 "a"s and a "!", doubling per "a"
PATHOLOGICAL = ["x=" + "a" * n + "!" for n in range(26, 41)]
DEEP_JSON = '{"epoch": 1, "x": ' + "[" * 4000 + "]" * 4000 + "}"  # under the 10,000-character bound
DEEP_DICT = "epoch 1: {'x': " + "(" * 3000 + ")" * 3000 + "}"
NORMAL = ["epoch 0: {'accuracy': 0.5}", "loss: 0.25", "epoch 1: {'accuracy': 0.75}", "loss: 0.125"]


# The longest the main thread may wait while the parser works. The old code held the GIL for 10 s on
# one 26-"a" line; now a gap is a switch interval (5 ms) or so, and under four pytest workers on two
# cores the scheduler alone has made gaps of 0.52 s.
STALL = 2.0


def main_thread_longest_gap(work) -> tuple[float, float]:
    """Run `work` on a background thread while this (main) thread ticks; return the longest gap
    between ticks and how long the work took. The end is signalled by an Event, never a sleep."""
    done = threading.Event()
    failure = []

    def run():
        try:
            work()
        except BaseException as exc:  # reported on the main thread below
            failure.append(exc)
        finally:
            done.set()

    started = time.perf_counter()
    thread = threading.Thread(target=run)
    last, longest = time.perf_counter(), 0.0
    thread.start()
    while not done.wait(0.001):
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    thread.join()
    if failure:
        raise failure[0]
    return max(longest, time.perf_counter() - last), time.perf_counter() - started


# --- definitions: RE2 --------------------------------------------------------------


def test_catastrophic_regex_meets_pathological_lines_in_linear_time():
    parser = MetricsParser([parse_metric_flag(f"x={CATASTROPHIC}"), parse_metric_flag("loss=loss: ([0-9.]+)")])
    started = time.thread_time()  # this thread's CPU: what the parser costs, however busy the machine
    parser.feed(PATHOLOGICAL * 100 + NORMAL + ["x=" + "a" * 9_000 + "!"])
    assert time.thread_time() - started < 0.5  # stdlib re: hours (the 40-"a" line alone doubles 14 times)
    assert parser.rows == [{"epoch": 0, "accuracy": 0.5, "loss": 0.25}, {"epoch": 1, "accuracy": 0.75, "loss": 0.125}]
    assert parser.warnings == []


def test_first_capture_group_is_the_value_on_re2():
    # Group 1, not group 2; spans are found in UTF-8 bytes, values come back as text.
    parser = MetricsParser([parse_metric_flag("lr=(?:lr|learning rate)[=:] *([0-9.e-]+) \\(iter ([0-9]+)\\)"),
                            parse_metric_flag("acc=(?i)ACC=([0-9.]+)")])
    parser.feed(["epoch 3 lr=5e-05 (iter 10)", "ACC=0.9", "épöch ü learning rate: 0.001 (iter 20) acc=0.95"])
    assert parser.rows == [{"epoch": 3, "lr": 0.001, "acc": 0.95}]


def test_re2_only_syntax_is_accepted():
    # \z and \pN are RE2 (and Java) syntax that Python's re refuses: they run on RE2.
    parser = MetricsParser([parse_metric_flag(r"loss=loss: (\pN+\.\pN+)\z")])
    parser.feed(["epoch 0 loss: 0.5", "epoch 1 loss: 0.25 (smoothed)"])
    assert parser.rows == [{"epoch": 0, "loss": 0.5}]


def test_validation_errors_read_as_before():
    with pytest.raises(MetricsError, match=re.escape("the regex 'loss: ([0-9.]+' does not compile: "
                                                     "missing ), unterminated subpattern")):
        parse_metric_flag("loss=loss: ([0-9.]+")
    with pytest.raises(MetricsError, match="has no capture group"):
        parse_metric_flag("loss=(?=loss)loss: [0-9.]+")  # Python re only, and still needs a group
    with pytest.raises(MetricsError, match="does not compile"):
        parse_metric_flag("loss=(a)\\2")  # invalid for RE2 and for Python re: re's message


def test_main_thread_keeps_ticking_while_parser_chews_pathological_input():
    parser = MetricsParser([parse_metric_flag(f"x={CATASTROPHIC}")])
    hostile = ["a/" * 4_990 + " epoch=1", "epoch 1: {'x': " + "1<" * 4_900 + "1}", DEEP_JSON, DEEP_DICT]

    def work():
        for _ in range(20):
            parser.feed(PATHOLOGICAL * 50 + hostile + NORMAL)

    longest, took = main_thread_longest_gap(work)
    assert longest < STALL, f"main thread stalled {longest:.3f} s (work took {took:.3f} s)"
    assert [row["epoch"] for row in parser.rows] == [0, 1]


# --- definitions: Python re in the worker process ---------------------------------


def test_backreference_and_lookahead_regexes_run_in_the_worker():
    parser = MetricsParser([parse_metric_flag(r"val=val=([0-9.]+) \(again \1\)"),
                            parse_metric_flag("loss=loss(?=:): ([0-9.]+)")])
    parser.feed(["epoch 0 val=0.5 (again 0.5) loss: 0.3", "epoch 1 val=0.6 (again 0.7) loss= 9",
                 "epoch 2 val=0.7 (again 0.7) loss: 0.1"])
    assert parser.rows == [{"epoch": 0, "val": 0.5, "loss": 0.3}, {"epoch": 2, "val": 0.7, "loss": 0.1}]
    assert parser.warnings == []


def test_catastrophic_lookahead_regex_is_disabled_and_said_once():
    regex = "x=(?=a)(a+)+$"  # RE2 lacks lookahead: Python re, in the worker, on a budget
    parser = MetricsParser([parse_metric_flag(f"x={regex}"), parse_metric_flag(r"y=y=(?=\d)([0-9]+)")])

    def work():
        parser.feed(["epoch 0 y=1", *PATHOLOGICAL, "epoch 1 y=2"])
        parser.feed(["epoch 2 y=3", *PATHOLOGICAL])

    longest, took = main_thread_longest_gap(work)
    assert longest < STALL and took < 5
    assert parser.rows == [{"epoch": 0, "y": 1.0}, {"epoch": 1, "y": 2.0}, {"epoch": 2, "y": 3.0}]
    assert parser.warnings == [
        f"metric 'x' disabled: its regex {regex!r} needs Python's re (it uses syntax RE2 lacks), and it took "
        f"over 0.1 s on one log line; no more of its values are read from this log. Without backreferences "
        f"and lookaround a regex runs on RE2, in linear time."
    ]


def test_worker_stuck_in_a_search_is_killed_at_the_chunk_deadline(monkeypatch):
    # Where no per-line timer exists (Windows), only the kernel's deadline ends a search.
    monkeypatch.setattr(metric_regex, "_FALLBACK_LINE_SECONDS", 3600.0)
    monkeypatch.setattr(metric_regex, "_FALLBACK_CHUNK_SECONDS", 0.3)
    worker = metric_regex.Worker()
    monkeypatch.setattr(metric_regex, "worker", worker)
    try:
        parser = MetricsParser([parse_metric_flag("x=x=(?=a)(a+)+$"), parse_metric_flag("z=z=(?!-)([0-9]+)")])
        started = time.perf_counter()
        parser.feed(["epoch 0 x=aaa z=1", "x=" + "a" * 40 + "!", "epoch 1 z=2"])
        assert time.perf_counter() - started < 5
        assert parser.rows == [{"epoch": 0, "z": 1.0}, {"epoch": 1, "z": 2.0}]
        assert len(parser.warnings) == 1 and "metric 'x' disabled" in parser.warnings[0]
        assert "took over 0.3 s on 2 log lines" in parser.warnings[0]
        parser.feed(["epoch 2 z=3"])  # a new worker for the definitions still running
        assert parser.rows[-1] == {"epoch": 2, "z": 3.0}
    finally:
        worker.close()


def test_worker_that_cannot_start_disables_only_its_definitions(monkeypatch):
    monkeypatch.setattr(metric_regex, "worker", metric_regex.Worker())
    monkeypatch.setattr(sys, "executable", "")
    parser = MetricsParser([parse_metric_flag("a=a(?=:): ([0-9]+)"), parse_metric_flag("b=b: ([0-9]+)")])
    parser.feed(["epoch 0 a: 1 b: 2"])
    assert parser.rows == [{"epoch": 0, "b": 2.0}]
    assert parser.warnings == [
        "metric 'a' disabled: its regex 'a(?=:): ([0-9]+)' needs Python's re (it uses syntax RE2 lacks), and the "
        "regex worker process could not run it (no Python executable to start it with (sys.executable is "
        "empty)); no more of its values are read from this log. Without backreferences and lookaround a "
        "regex runs on RE2, in linear time."
    ]


# --- default formats -----------------------------------------------------------------


@pytest.mark.parametrize("line", [
    DEEP_JSON,
    '{"epoch": 1, "x": ' + "[" * 900 + "]" * 900 + "}",  # json's recursion limit, deeper in a stack
    DEEP_DICT,
    "epoch 1: {'x': " + "{'a': " * 1_500 + "1" + "}" * 1_500 + "}",
    "epoch 1: {'x': " + "-" * 9_900 + "1}",
    "epoch 1: {'x': " + "+" * 9_900 + "1}",
    "epoch 1: {'x': " + "1+" * 4_900 + "1}",
    "epoch 1: {'x': " + "1<" * 4_900 + "1}",
    "epoch 1: {'x': " + "9" * 9_900 + "}",
    '{"epoch": 1, "x": ' + "9" * 9_900 + "}",
    "epoch 1: {'x': " + "nan, " * 1_900 + "}",
    "a/" * 4_990 + " epoch=1",
    "epoch 1: {'x': " + "lambda:" * 1_400 + "1}",
    "epoch 1: {\x00: 1, 'y': b'\xff'}",
])
def test_hostile_default_line_is_skipped_and_later_lines_still_parse(line):
    parser = MetricsParser()
    started = time.perf_counter()
    parser.feed([line, "epoch 2: {'accuracy': 0.5}", '{"epoch": 3, "loss": 0.25}', "epoch=4 loss=0.125"])
    assert time.perf_counter() - started < 0.5
    assert [row["epoch"] for row in parser.rows][-3:] == [2, 3, 4]


def test_huge_numbers_next_to_definitions_do_not_break_feed():
    # int() refuses strings of over 4,300 digits; an "epoch <5000 digits>" mention must not raise.
    parser = MetricsParser([parse_metric_flag("loss=loss: ([0-9.]+)"), parse_metric_flag("epoch=EPOCH ([0-9]+)")])
    parser.feed(["epoch " + "9" * 5_000 + " loss: 1", "EPOCH " + "9" * 5_000, "epoch 2 loss: 3"])
    assert parser.rows[-1] == {"epoch": 2, "loss": 3.0}


def test_deep_json_line_fed_from_deep_in_a_stack():
    parser = MetricsParser()

    def nested(depth):  # the monitor thread and job.wait() call feed() from some depth
        return nested(depth - 1) if depth else parser.feed([DEEP_JSON, '{"epoch": 2, "loss": 0.5}'])

    nested(sys.getrecursionlimit() - 100)
    assert parser.rows == [{"epoch": 2, "loss": 0.5}]


def test_nesting_up_to_the_bound_is_still_read():
    nested = '{"epoch": 1, "loss": 0.5, "cfg": ' + '{"a": ' * 30 + "1" + "}" * 30 + "}"
    assert MetricsParser().feed([nested]) == 1


def test_long_python_dict_is_read_as_json():
    # Over _MAX_LITERAL characters literal_eval is not used (it holds the GIL ~1 us a character).
    names = [f"m{i}" for i in range(300)]
    line = "epoch 5: {" + ", ".join(f"'{n}': 0.{i + 1}" for i, n in enumerate(names)) + ", 'x': nan, 'ok': True}"
    assert len(line) > log_dicts._MAX_LITERAL
    parser = MetricsParser()
    parser.feed([line])
    (row,) = parser.rows
    assert row["epoch"] == 5 and row["m0"] == 0.1 and row["m299"] == 0.3 and row["x"] != row["x"]
    assert "ok" not in row


def test_key_value_pairs_match_the_old_regex():
    old = re.compile(r"(?<![\w.\-])([A-Za-z_][\w.\-/]*)=([^\s,;=]+)")
    rng = random.Random(11)
    for _ in range(20_000):
        line = "".join(rng.choice("ab_1./-= ,;=é") for _ in range(rng.randint(0, 16)))
        assert log_dicts.kv_pairs(line) == dict(old.findall(line)), line


# --- jobs and the CLI ------------------------------------------------------------------

HOSTILE_JOB = script("""
    import json
    print('{"epoch": 0, "x": ' + "[" * 5000 + "]" * 5000 + "}")
    print('{"epoch": 0, "x": ' + "[" * 4900 + "]" * 4900 + "}")  # under the line bound: parsed
    print("x=" + "a" * 30 + "!")
    print("epoch 0: {'accuracy': 0.5}")
    print("epoch 1: {'accuracy': 0.75}")
    print(json.dumps({"epoch": 2, "accuracy": 0.875}))
""")


@pytest.mark.jobs
def test_local_job_with_hostile_lines_keeps_its_metrics(sm_env, capsys):
    job = sm_magic.launch(HOSTILE_JOB, name="hostile-1", backend="local", wait=True,
                          metrics=[f"x={CATASTROPHIC}", "y=y=(?=a)(a+)+$"])
    assert job.status == "Completed"
    assert list(job.metrics["accuracy"]) == [0.5, 0.75, 0.875]
    assert "x=" + "a" * 30 + "!" in job.logs()

    capsys.readouterr()
    started = time.perf_counter()
    assert main(["logs", "hostile-1"]) == 0
    assert main(["wait", "hostile-1"]) == 0
    assert time.perf_counter() - started < 10
    out = capsys.readouterr().out
    assert "epoch 1: {'accuracy': 0.75}" in out and "Traceback" not in out


@pytest.mark.jobs
def test_disabled_definition_is_said_once_in_the_log(sm_env, capsys):
    script_text = script("""
        print("x=" + "a" * 30 + "!")
        for epoch in range(3):
            print(f"epoch {epoch}: x=aa y=0.{epoch + 1}")
    """)
    job = sm_magic.launch(script_text, name="hostile-2", backend="local", wait=True,
                          metrics=["x=x=(?=a)(a+)+$", "y=y=([0-9.]+)"])
    notes = [line for line in job.logs().splitlines() if line.startswith("[sm_magic] ")]
    assert len(notes) == 1 and "metric 'x' disabled" in notes[0] and "took over 0.1 s" in notes[0]
    assert list(job.metrics["y"]) == [0.1, 0.2, 0.3]
    assert main(["logs", "hostile-2"]) == 0  # a fresh handle reads the log again and says it again
    assert capsys.readouterr().out.count("[sm_magic] metric 'x' disabled") == 1
