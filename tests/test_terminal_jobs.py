"""A real local job drawing tqdm bars: every view of its log reads as a terminal shows it."""

import html
import io

import pytest

import sm_magic
from sm_magic.cli.main import main
from sm_magic.widgets.progress import log_html, summary_html
from sm_magic.widgets.text import StreamPrinter, render_text

from helpers.jobscripts import script

pytestmark = pytest.mark.jobs

# An epoch bar with a postfix, a nested batch bar (position=1, leave=False: drawn on the row below
# with "\n" and left with ESC[A, cleared at its end), and an epoch line the metrics parser reads,
# on the bars' stream (stdout and stderr reach the log through different pipes: no order between them).
TQDM_SCRIPT = script("""
    import sys
    from tqdm import tqdm
    for epoch in range(3):
        bar = tqdm(range(4), desc=f"epoch {epoch}", mininterval=0)
        for step in bar:
            for _ in tqdm(range(3), desc="batch", position=1, leave=False, mininterval=0):
                pass
            bar.set_postfix(loss=round(1 / (epoch + step + 1), 4))
        bar.close()
        print(f"epoch {epoch}: {{'accuracy': {0.6 + 0.1 * epoch:.1f}, 'f1': {0.5 + 0.1 * epoch:.1f}}}", file=sys.stderr)
""")

BARS = ("epoch 0: 100%|", "epoch 1: 100%|", "epoch 2: 100%|")


def _as_a_terminal_shows_it(text: str, what: str) -> None:
    assert "\r" not in text and "\x1b" not in text, f"{what}: redraws or escape codes left"
    for bar in BARS:
        assert text.count(bar) == 1, f"{what}: {bar!r} shown {text.count(bar)} times"
    assert "batch:" not in text, f"{what}: a cleared nested bar is shown"
    assert "epoch 2: {'accuracy': 0.8" in text, f"{what}: the epoch line is missing"


def test_every_view_of_a_tqdm_log_shows_each_final_bar_once(sm_env, capsys):
    job = sm_magic.launch(TQDM_SCRIPT, name="bars-1", wait=True)
    raw = job.logs(raw=True)
    assert "\x1b[A" in raw and raw.count("\repoch 0:") >= 5  # what the script wrote: every redraw

    logs = job.logs()
    _as_a_terminal_shows_it(logs, "job.logs()")
    bar_row = next(row for row in logs.splitlines() if row.startswith("epoch 2: 100%|"))
    assert bar_row.endswith(", loss=0.167]") and "4/4 [" in bar_row  # its last redraw, whole
    assert job.logs(tail=4).splitlines() == logs.splitlines()[-4:]

    # The metrics come from the raw lines, as before.
    frame = job.metrics
    assert frame["accuracy"].dropna().tolist() == [0.6, 0.7, 0.8]

    snap = job.snapshot(tail=40)
    assert snap.log_tail == logs.splitlines()[-40:]
    _as_a_terminal_shows_it("\n".join(snap.log_tail), "the snapshot's log_tail")
    _as_a_terminal_shows_it(html.unescape(log_html(snap.log_tail)), "the widget's log")
    _as_a_terminal_shows_it(html.unescape(summary_html(snap)), "the summary")
    _as_a_terminal_shows_it(render_text(snap, tail=40), "the text view")

    capsys.readouterr()
    assert main(["logs", "bars-1"]) == 0
    out = capsys.readouterr().out
    assert out == logs + "\n"
    assert main(["logs", "bars-1", "--raw"]) == 0
    assert capsys.readouterr().out == raw + "\n"

    # Followed as a stream (sm-magic wait, --wait in a terminal): each row once it is final.
    printed = io.StringIO()
    follower = sm_magic.attach("bars-1")
    follower.wait(on_snapshot=StreamPrinter(printed))
    _as_a_terminal_shows_it(printed.getvalue(), "the stream")
