"""The log as a terminal shows it (sm_magic.metrics.terminal): redraws, cursor moves, colours, hosts.

The expected screens of the real logs in tests/data/logs were checked against pyte, a VT100
emulator, fed the same bytes (it agreed on every row; it only wraps rows wider than its screen).
"""

from collections import deque
from pathlib import Path

import pytest

from sm_magic.backends.local.backend import LocalBackend
from sm_magic.metrics import terminal
from sm_magic.metrics.terminal import LogStream, redraws, render, render_tail, strip_escapes

LOGS = Path(__file__).parent / "data" / "logs"
ESC = "\x1b"


def raw_lines(name: str) -> list[str]:
    """A captured log split as the backends split it: on "\\n" only."""
    lines = (LOGS / name).read_bytes().decode("utf-8").split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def shows(*text: str) -> list[str]:
    """The screen after printing `text` (joined), split into lines as a backend would."""
    lines = "".join(text).split("\n")
    return render(lines[:-1] if lines[-1] == "" else lines)


# -- one row ---------------------------------------------------------------------------------

def test_plain_lines_come_back_as_they_are():
    lines = ["epoch 1: {'loss': 0.5}", "", "  indented\ttab", "ünïcode ━━ 100%"]
    assert render(lines) == lines


def test_a_carriage_return_redraw_shows_its_last_state():
    assert shows("\r 10%|#    | 1/10\r 50%|#####| 5/10\r100%|#####| 10/10\n") == ["100%|#####| 10/10"]


def test_a_shorter_redraw_leaves_what_it_does_not_cover_as_a_terminal_does():
    assert shows("loss=0.123456\rloss=0.5\n") == ["loss=0.523456"]
    assert shows("loss=0.123456\rloss=0.5     \n") == ["loss=0.5"]  # tqdm pads to the old width


def test_erase_and_backspace():
    assert shows("abcdef\r\x1b[Kxy\n") == ["xy"]
    assert shows("abcdef\rxy\x1b[0K\n") == ["xy"]
    assert shows("abcdef\x1b[2Kxy\n") == ["      xy"]  # the row is erased, the cursor stays
    assert shows("abcdef\x1b[3D\x1b[1Kz\n") == ["   zef"]  # erased up to the cursor, inclusive
    assert shows("50%\b\b\b60%\n") == ["60%"]
    assert shows("\b\bab\n") == ["ab"]  # no column left of the first


def test_column_moves():
    assert shows("abcdef\x1b[3GX\n") == ["abXdef"]
    assert shows("ab\x1b[3CX\n") == ["ab   X"]
    assert shows("abcdef\x1b[2DX\n") == ["abcdXf"]
    assert shows("ab\x1b[99999CX\n") == ["ab" + " " * (terminal.MAX_COLUMN - 2) + "X"]


def test_colours_hyperlinks_and_modes_are_removed():
    line = ("\x1b[?25l\x1b[1;32mEpoch 1\x1b[0m \x1b]8;id=1;https://x.org\x1b\\link\x1b]8;;\x1b\\ "
            "\x1b]0;title\x07done\x1b[?25h")
    assert render([line]) == ["Epoch 1 link done"]
    assert strip_escapes(line) == "Epoch 1 link done"
    assert render(["half an escape \x1b"]) == ["half an escape"]


def test_redraws_keep_their_states_for_the_metrics_parser():
    assert redraws("\r 10%|#  | loss=0.9\r\x1b[32m 20%|## | loss=0.8\x1b[0m") == [" 10%|#  | loss=0.9",
                                                                               " 20%|## | loss=0.8"]


def test_many_redraws_of_one_row():
    bar = "".join(f"\r{i * 100 // 10_000:3d}%|{'#' * (i * 10 // 10_000):<10}| {i}/10000 [loss={1 / i:.4f}]"
                  for i in range(1, 10_001))
    assert render([bar]) == ["100%|##########| 10000/10000 [loss=0.0001]"]
    # The same with an escape in it takes the general path: the same row.
    assert render([bar + "\x1b[K"]) == ["100%|##########| 10000/10000 [loss=0.0001]"]


# -- rows --------------------------------------------------------------------------------------

def test_nested_bars_move_up_and_redraw_the_row_above():
    # tqdm: the outer bar on row 0, the inner one (position=1) reached with "\n" and left with ESC[A.
    assert shows("\router 0/2",
                 "\n\rinner 1/3\x1b[A", "\n\rinner 3/3\x1b[A",
                 "\n\r          \x1b[A\router 1/2",
                 "\n\rinner 3/3\x1b[A",
                 "\n\r          \x1b[A\router 2/2", "\n", "done\n") == ["outer 2/2", "done"]


def test_cursor_up_down_and_line_moves():
    assert shows("a\nb\nc\x1b[2Ax\x1b[Bz\n") == ["ax", "b z", "c"]
    assert shows("a\nb\x1b[1F", "X\x1b[1E", "Y\n") == ["X", "Y"]
    assert shows("top\x1b[5A", "\nnext\n") == ["top", "next"]  # up stops at the first row
    assert shows("a\x1b[9B", "b\n") == ["ab"]  # and down at the last


def test_erase_below_and_screen():
    assert shows("a\nb\nc\x1b[2A\r\x1b[J", "\nx\n") == ["", "x"]
    assert shows("a\nb\x1b[2J", "\nc\n") == ["", "", "c"]
    assert shows("keep\nbar 1\nbar 2\x1b[1A\r\x1b[J", "end\n") == ["keep", "end"]


def test_blank_rows_at_the_end_are_dropped():
    # A bar with leave=False clears its row and returns to it: nothing shows there.
    assert shows("loss 0.5\n", "\r 50%|##  |\r          \r") == ["loss 0.5"]


def test_several_hosts_each_have_their_own_rows():
    lines = ["algo-1 | \rstep 1/2", "algo-2 | \rstep 1/2",
             "algo-1 | \rinner 1\x1b[A\rstep 2/2", "algo-2 | \rstep 2/2",
             "algo-1 | \r       \x1b[A", "algo-2 | done"]
    assert render(lines) == ["algo-1 | step 2/2", "algo-2 | step 1/2", "algo-1 |", "algo-2 | step 2/2",
                             "algo-2 | done"]


# -- real logs ----------------------------------------------------------------------------------

def test_hugging_face_trainer_log_shows_each_log_dict_once_and_the_final_bar():
    raw = raw_lines("hf_trainer.log")
    assert any(ESC in line for line in raw) and any("\r" in line for line in raw)
    shown = render(raw)
    dicts = [row.strip() for row in shown if "{'" in row]
    # Each of the Trainer's log dicts, once, in order (6 training, 3 eval, 1 summary): as a
    # terminal shows the log, not one row per redraw.
    assert len(dicts) == sum(line.count("{'") for line in raw) == 10
    assert [d.split("'")[1] for d in dicts] == ["loss"] * 2 + ["eval_loss"] + ["loss"] * 2 + ["eval_loss"] \
        + ["loss"] * 2 + ["eval_loss", "train_runtime"]
    assert shown[-1].startswith("100%|██████████| 24/24 [")
    assert len(shown) == 11
    assert not any(ESC in row or "\r" in row for row in shown)
    # The widget's tail: the last rows, the same rows.
    assert render_tail(raw, 5) == shown[-5:]


def test_lightning_tqdm_log_shows_each_epoch_bar_with_its_validation_metrics():
    shown = render(raw_lines("lightning_bar.log"))
    bars = [row for row in shown if row.startswith("Epoch ")]
    assert bars[-1].startswith("Epoch 2: 100%|██████████| 32/32 [")
    assert bars[-1].endswith("train_loss=0.548, val_loss=0.498, val_acc=0.781]")
    assert not any(row.startswith("Validation") for row in shown)  # its bars are cleared (leave=False)
    assert not any(ESC in row or "\r" in row for row in shown)


def test_rich_live_log_shows_its_last_frame_without_colours():
    shown = render(raw_lines("lightning_rich.tty.log"))
    assert not any(ESC in row or "\r" in row for row in shown)
    assert shown[-3].startswith("Epoch 2/2  ━") and shown[-3].endswith("train_loss: 0.548")
    assert shown[-2].strip() == "val_loss: 0.498" and shown[-1].strip() == "val_acc: 0.781"


def test_tqdm_postfix_log_shows_one_row_per_epoch():
    raw = raw_lines("tqdm_postfix.log")
    shown = render(raw)
    epochs = [row for row in shown if row.startswith("epoch ")]
    assert [row.split(":")[0] for row in epochs] == ["epoch 0", "epoch 1", "epoch 2"]
    assert all("32/32" in row and "loss=" in row for row in epochs)


@pytest.mark.parametrize("name", sorted(p.name for p in LOGS.glob("*.log")))
def test_a_tail_is_the_end_of_the_whole_screen(name):
    raw = raw_lines(name)
    whole = render(raw)
    for n in (1, 3, 12, 40):
        assert render_tail(raw, n) == whole[-n:]
    assert render_tail(raw, 0) == []


@pytest.mark.parametrize("name", sorted(p.name for p in LOGS.glob("*.log")))
@pytest.mark.parametrize("piece", [1, 2, 7, 10_000])
def test_a_log_that_arrives_in_pieces_shows_every_final_row(name, piece):
    raw = raw_lines(name)
    stream = LogStream()
    out: list[str] = []
    for i in range(0, len(raw), piece):
        out += stream.feed(raw[i:i + piece])
    out += stream.flush()
    whole = render(raw)
    assert not any(ESC in row or "\r" in row for row in out)
    if piece >= len(raw) or not any("\x1b[" in line for line in raw):
        assert out == whole
    else:
        # A row handed out before a later piece moved the cursor up to it is handed out again,
        # changed: every final row is there, in order, maybe after an earlier state of itself.
        it = iter(out)
        assert all(any(row == got for got in it) for row in whole)


def test_a_plain_log_streams_each_line_at_once():
    stream = LogStream()
    assert stream.feed(["a", "b"]) == ["a", "b"]
    assert stream.feed(["\r 10%\r 20%"]) == [" 20%"]
    assert stream.flush() == []


def test_a_stream_holds_rows_a_nested_bar_may_still_redraw():
    stream = LogStream()
    assert stream.feed(["\router 0/2", "\rinner 1/3\x1b[A"]) == []  # the inner bar may come back
    assert stream.feed(["\r         \x1b[A\router 1/2"]) == []
    assert stream.feed(["\rinner 3/3\x1b[A", "\r         \x1b[A\router 2/2", "", "done"]) == ["outer 2/2", ""]
    assert stream.flush() == ["done"]
    # Cut before the first cursor move is seen: the row is handed out, then again once final.
    stream = LogStream()
    assert stream.feed(["\router 0/2"]) == ["outer 0/2"]
    assert stream.feed(["\rinner 1/3\x1b[A", "\r         \x1b[A\router 2/2"]) == []
    assert stream.feed(["", "done"]) == ["outer 2/2", ""]
    assert stream.flush() == ["done"]


# -- cost: bounded work, counted (timings are in bench/terminal_render.py) ----------------------

class CountingLines(deque):
    """A log buffer that counts the lines read from its end."""

    read = 0

    def __reversed__(self):
        for line in super().__reversed__():
            self.read += 1
            yield line


def test_a_tail_of_a_long_log_reads_a_bounded_window():
    buffer = CountingLines(f"step {i}: loss={1 / (i + 1):.4f}" for i in range(200_000))
    assert render_tail(buffer, 12) == [f"step {i}: loss={1 / (i + 1):.4f}" for i in range(199_988, 200_000)]
    assert buffer.read <= 12 + terminal.TAIL_MARGIN
    # Redraws of the same two rows (a nested bar for 100,000 lines): the window grows, bounded.
    nested = CountingLines(["\router 0"] + [f"\rinner {i}\x1b[A\router {i}" for i in range(100_000)])
    assert render_tail(nested, 12) == ["outer 99999", "inner 99999"]
    assert nested.read <= 2 * terminal.TAIL_WINDOW_MAX  # windows growing fourfold: 62 + 248 + 992 + 2000


def test_memory_per_host_is_bounded():
    stream = LogStream()
    for i in range(5_000):
        stream.feed([f"line {i}", "\r  \x1b[A"])  # the cursor moves up once: rows are held a while
    screen = stream._screen
    assert all(len(h.rows) <= terminal.SCREEN_ROWS for h in screen.hosts.values())
    assert len(screen.rows) <= 2


# -- the local backend splits on "\n" only ------------------------------------------------------

def _log_job(tmp_path, data: bytes, hosts=("algo-1",)):
    for host in hosts:
        logs = tmp_path / "jobs" / "j" / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        (logs / f"{host}.log").write_bytes(data)
    return LocalBackend(tmp_path / "jobs")


def test_local_logs_keep_redraws_and_escapes_inside_a_line(tmp_path):
    data = (LOGS / "hf_trainer.log").read_bytes()
    backend = _log_job(tmp_path, data)
    lines, _ = backend.logs("j")
    assert lines == raw_lines("hf_trainer.log")
    assert len(lines) == data.count(b"\n") + (not data.endswith(b"\n"))
    # Other separators str.splitlines() cuts at stay too.
    backend = _log_job(tmp_path, "a\x0bb\x0cc\x1cd\x85e\u2028g\r\nf\n".encode())
    assert backend.logs("j")[0] == ["a\x0bb\x0cc\x1cd\x85e\u2028g\r", "f"]


def test_local_logs_of_several_hosts_carry_their_prefix_once_per_line(tmp_path):
    backend = _log_job(tmp_path, b"\rstep 1\rstep 2\ndone\n", hosts=("algo-1", "algo-2"))
    lines, _ = backend.logs("j")
    assert lines == ["algo-1 | \rstep 1\rstep 2", "algo-1 | done", "algo-2 | \rstep 1\rstep 2", "algo-2 | done"]
    assert render(lines) == ["algo-1 | step 2", "algo-1 | done", "algo-2 | step 2", "algo-2 | done"]


def test_an_overlong_line_is_cut_between_redraws(tmp_path, monkeypatch):
    monkeypatch.setattr("sm_magic.backends.local.backend.MAX_LOG_CHUNK", 64)
    bar = "".join(f"\r{i:3d}%|━━━━| {i}/100" for i in range(101)) + "\n"
    backend = _log_job(tmp_path, bar.encode())
    lines, cursor = [], None
    while True:
        got, cursor = backend.logs("j", cursor)
        if not got:
            break
        lines += got
    assert "".join(lines) == bar[:-1]
    assert all(line.startswith("\r") for line in lines)  # whole redraws in each piece
    assert render(lines[-1:]) == ["100%|━━━━| 100/100"]


def test_an_overlong_line_with_no_redraw_is_cut_between_characters(tmp_path, monkeypatch):
    monkeypatch.setattr("sm_magic.backends.local.backend.MAX_LOG_CHUNK", 64)
    text = "━" * 100 + "\n"  # 3 bytes each: 64 is not a multiple
    backend = _log_job(tmp_path, text.encode())
    lines, cursor = [], None
    while True:
        got, cursor = backend.logs("j", cursor)
        if not got:
            break
        lines += got
    assert "".join(lines) == text[:-1]


def test_cloudwatch_events_are_split_on_newlines_only():
    from sm_magic.backends.sagemaker.cloudwatch_logs import lines_of

    events = ["\r 10%|#  |\r 20%|## |\x1b[A", "a\nb\n", "x\x0by\u2028z"]
    assert lines_of("job/algo-1-1700000000", events, prefix=False) == [
        "\r 10%|#  |\r 20%|## |\x1b[A", "a", "b", "x\x0by\u2028z"]
    assert render(lines_of("job/algo-2-1700000000", events[:1], prefix=True)) == ["algo-2 |  20%|## |"]
