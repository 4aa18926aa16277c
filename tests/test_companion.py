"""The companion of a live widget (widgets/companion.py): the note that stands in for the widget
once its kernel is gone, what it says and the CSS rules that choose which of the two shows; the
order of outputs under a cell, as a real kernel sends them for a real job (`--wait -o job`).

That the rules do what they say in a browser is tests/e2e/test_browser_restart.py's part."""

import os
import re
import time

import pytest
from test_widgets import _Job, _snap

from sm_magic.widgets.companion import DISCONNECTED, Companion, note
from sm_magic.widgets.progress import ProgressWidget, show_progress

from helpers.jobscripts import EPOCHS_SCRIPT


def test_the_note_names_the_job_and_the_command_that_follows_it_again():
    markup, text = note("job", "train-7", "keeps running without it")
    assert text == ("Disconnected from the kernel (restarted, or the notebook reopened): job train-7 keeps running "
                    "without it. `%sagemaker_attach train-7` in a new cell follows it again (or shows how it ended).")
    assert '<code class="sm-magic-attach" style="white-space:nowrap">%sagemaker_attach train-7</code>' in markup
    assert "<b>Disconnected from the kernel</b>" in markup
    # Markup in a name is text.
    markup, _ = note("sweep", "<b>x</b>", "goes on")
    assert "<b>x</b>" not in markup and "&lt;b&gt;x&lt;/b&gt;" in markup


def test_the_rules_hide_the_note_while_the_widget_is_connected_and_the_dead_widget_otherwise():
    c = Companion("<i>note</i>", "note")
    other = Companion("", "")
    assert c.live_class != other.live_class and c.id != other.id  # each widget its own pair
    live = f".{c.live_class}:not(.{DISCONNECTED})"
    assert c.live_selector() == live and DISCONNECTED == "jupyter-widgets-disconnected"
    # In the widget: while a connected view of it is on the page, the companion's output is hidden.
    assert c.widget_style() == (f"<style>body:has({live}) .jp-OutputArea-child:has(#{c.id}), "
                                f"body:has({live}) #{c.id}{{display:none}}</style>")
    # In the companion: the output right before it is hidden unless it holds a connected view.
    bundle = c.bundle()
    html = bundle["text/html"]
    assert html.startswith(f'<div id="{c.id}" class="sm-magic-disconnected"')
    assert (f"<style>.jp-OutputArea-child:has(+ .jp-OutputArea-child #{c.id}):not(:has({live}))"
            "{display:none}</style>") in html
    assert html.endswith("<i>note</i></div>") and bundle["text/plain"] == "note"
    # Once the work ended: no note, and its own output hidden.
    ended = c.ended_bundle()
    assert ended == {"text/html": f'<div id="{c.id}" class="sm-magic-companion-ended"><style>'
                                  f".jp-OutputArea-child:has(#{c.id}){{display:none}}</style></div>",
                     "text/plain": ""}
    assert "note" not in ended["text/html"]


def test_an_update_is_sent_when_the_note_changed_and_never_after_the_end(monkeypatch):
    import IPython.display

    sent = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, display_id=None, **kw: sent.append(("show", obj)))
    monkeypatch.setattr(IPython.display, "update_display",
                        lambda obj, display_id=None, **kw: sent.append((display_id, obj)))
    c = Companion("a", "a", prefix="sm-magic-form", css_class="sm-magic-form-static", style="margin:0")
    assert c.live_class.startswith("sm-magic-form-") and c.id == f"{c.live_class}-companion"
    assert c.bundle()["text/html"].startswith(f'<div id="{c.id}" class="sm-magic-form-static" style="margin:0">')
    c.update("b", "b")  # not shown yet: nothing sent, but kept
    c.show()
    c.update("b", "b")  # the same: nothing sent
    c.update("<i>c</i>", "c")
    c.end()
    c.update("d", "d")
    c.end()
    assert [k for k, _ in sent] == ["show", c.id, c.id]
    assert sent[0][1]["text/plain"] == "b" and sent[1][1]["text/html"].endswith("<i>c</i></div>")
    assert sent[2][1] == c.ended_bundle()


def test_the_progress_widget_carries_its_class_and_the_rule_that_hides_its_companion():
    progress = ProgressWidget(_Job())
    assert progress.companion.live_class in progress.box._dom_classes
    assert progress.box.children[-1] is progress.style and progress.style.layout.display == "none"
    assert progress.style.value == progress.companion.widget_style()
    assert "job <code>unit-1</code> keeps running" in progress.companion.note_html


def test_show_progress_puts_the_note_under_the_widget_and_ends_it_before_the_summary(monkeypatch):
    import IPython.display

    shown, events = [], []

    class Handle:
        def update(self, data, raw=False):
            events.append(("widget", data))

    def display(obj, display_id=None, raw=False, **kw):
        shown.append((obj, display_id))
        return Handle()

    monkeypatch.setattr(IPython.display, "display", display)
    monkeypatch.setattr(IPython.display, "update_display",
                        lambda obj, display_id=None, **kw: events.append((display_id, obj)))
    widget = show_progress(_Job())
    c = widget.companion
    assert shown == [(widget.box, True), (c.bundle(), c.id)]
    widget.update(_snap())
    assert events == []  # nothing changes under the cell while the job runs
    widget.update(_snap(status="Completed", secondary="Completed"))
    assert [e[0] for e in events] == [c.id, "widget"]  # the note gone first: it never flashes
    assert events[0][1] == c.ended_bundle() and "sm-magic-summary" in events[1][1]["text/html"]
    assert widget.box.comm is None and widget.style.comm is None


@pytest.mark.jobs
def test_a_waited_job_leaves_its_summary_and_a_hidden_companion_in_a_real_kernel(sm_env):
    """`%%sagemaker_train --wait -o job` in a real kernel: the widget, the note (with the widget's
    own display id pair), the stream; at the end the note is ended before the summary replaces
    the widget, and `job` is the Job."""
    from jupyter_client.manager import start_new_kernel

    env = dict(os.environ, SM_MAGIC_REGISTRY=str(sm_env / "registry.sqlite3"),
               SM_MAGIC_JOBS_DIR=str(sm_env / "sm_jobs"), HF_HOME=str(sm_env / "hf"),
               IPYTHONDIR=str(sm_env / "ipython"), PYTHONUNBUFFERED="1")
    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=60, env=env, cwd=str(sm_env))
    try:
        _run(kc, "%load_ext sm_magic")
        msgs = _run(kc, f"%%sagemaker_train --wait -o job --name wait-1\n{EPOCHS_SCRIPT}", timeout=180)
        outputs = [(m["msg_type"], m["content"]) for m in msgs
                   if m["msg_type"] in ("display_data", "update_display_data")]
        displays = [c for t, c in outputs if t == "display_data"]
        assert len(displays) == 2, outputs
        widget, companion = displays
        assert "application/vnd.jupyter.widget-view+json" in widget["data"]
        assert widget["data"]["text/plain"].startswith("VBox(children=(HBox(children=(HTML(value='<div class=\"sm-magic-header")
        assert "%sagemaker_attach wait-1" in companion["data"]["text/html"]
        cid = companion["transient"]["display_id"]
        wid = widget["transient"]["display_id"]
        assert re.fullmatch(r"sm-magic-live-[0-9a-f]{12}-companion", cid)
        updates = [(c["transient"]["display_id"], c["data"]) for t, c in outputs if t == "update_display_data"]
        assert [d for d, _ in updates] == [cid, wid], updates
        assert 'class="sm-magic-companion-ended"' in updates[0][1]["text/html"]
        assert '<div class="sm-magic-summary"' in updates[1][1]["text/html"]
        printed = [m["content"]["text"] for m in _run(kc, "print(type(job).__name__, job.status)")
                   if m["msg_type"] == "stream"]
        assert "".join(printed).strip() == "Job Completed"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _run(kc, code: str, timeout: float = 120) -> list[dict]:
    """Execute `code`; the IOPub messages of that request, in order, once the kernel is idle."""
    msg_id = kc.execute(code)
    deadline = time.monotonic() + timeout
    mine = []
    while True:
        msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        mine.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    errors = [m["content"] for m in mine if m["msg_type"] == "error"]
    assert not errors, errors
    return mine
