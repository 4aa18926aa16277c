"""A static output that stands in for a live widget once the widget is dead.

A live widget (a job's progress, a sweep's table) needs the kernel that made it. After a kernel
restart ipywidgets keeps the old view on the page, marked with the class
`jupyter-widgets-disconnected`: its Stop button looks live and does nothing. In a notebook
reopened later the widget's output is "Error displaying widget: model not found". Either way the
person needs to be told what still works.

So the widget is displayed with a companion: a second, plain text/html output right after it,
which says so. Two CSS rules, each using `:has()`, decide which of the two shows; no JavaScript,
so they hold in a saved notebook as in a live one:

* the widget carries a `<style>` (`widget_style()`, inside the widget's own DOM, so it exists only
  while the view does) that hides the companion while the widget's view is connected;
* the companion carries a `<style>` that hides the output just before it (the dead view, or the
  "Error displaying widget" one) unless that output holds a connected view.

When the work ends while the kernel lives, the widget's output is replaced by a static summary,
and the companion is first replaced by `ended_bundle()`, which hides its own output entirely (no
note, no empty space, in the live page and in the saved notebook).

The selectors rely on CSS `:has()` (Chromium 105, Firefox 121, Safari 15.4) and on JupyterLab's
output classes (`.jp-OutputArea-child`: JupyterLab, Notebook 7 and nbconvert's HTML). Where
`:has()` works but those classes are absent (VS Code), the note is hidden while the widget lives
and shows beside the dead view after a restart. The config form (form.py) works the same way.
"""

from __future__ import annotations

import uuid

DISCONNECTED = "jupyter-widgets-disconnected"  # the class ipywidgets gives a view whose kernel went
OUTPUT = ".jp-OutputArea-child"                # one output of a cell, in JupyterLab and Notebook 7
NOTE_STYLE = "border-left:3px solid #ef6c00;padding:2px 8px;margin:2px 0"


class Companion:
    """The companion of one live widget. Give the widget `live_class` (its outermost view's
    class) and a child holding `widget_style()`; display the widget, then `show()` right after
    it; `end()` before the widget's output is replaced by what it leaves."""

    def __init__(self, note_html: str, note_text: str, prefix: str = "sm-magic-live",
                 css_class: str = "sm-magic-disconnected", style: str = NOTE_STYLE):
        self.live_class = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.id = f"{self.live_class}-companion"   # the companion's element id and display id
        self.note_html = note_html
        self.note_text = note_text
        self.css_class = css_class
        self.style = style
        self.shown = False
        self.ended = False

    def live_selector(self) -> str:
        """The widget's view while it is connected to its kernel."""
        return f".{self.live_class}:not(.{DISCONNECTED})"

    def widget_style(self) -> str:
        """The `<style>` the widget carries: while its view is connected, the companion is hidden
        (its whole output in JupyterLab and Notebook 7; its content elsewhere)."""
        live, me = self.live_selector(), f"#{self.id}"
        return f"<style>body:has({live}) {OUTPUT}:has({me}), body:has({live}) {me}{{display:none}}</style>"

    def bundle(self) -> dict:
        """The companion's output while the widget may be live: the note, and a style that hides
        the output just before it when that output holds no connected view."""
        hide_dead = f"<style>{OUTPUT}:has(+ {OUTPUT} #{self.id}):not(:has({self.live_selector()})){{display:none}}</style>"
        return {"text/html": (f'<div id="{self.id}" class="{self.css_class}" style="{self.style}">'
                              f"{hide_dead}{self.note_html}</div>"),
                "text/plain": self.note_text}

    def ended_bundle(self) -> dict:
        """The companion's output once the widget's output holds what the work left: nothing
        shown, and its own output hidden, so the cell shows that alone."""
        return {"text/html": f'<div id="{self.id}" class="sm-magic-companion-ended">'
                             f"<style>{OUTPUT}:has(#{self.id}){{display:none}}</style></div>",
                "text/plain": ""}

    def show(self) -> None:
        """Display the companion (right after the widget's own output)."""
        from IPython.display import display

        display(self.bundle(), raw=True, display_id=self.id)
        self.shown = True

    def update(self, note_html: str, note_text: str) -> None:
        """Say something else (a form's last state, say): sent only when it changed, and never
        once the work ended."""
        if (note_html, note_text) == (self.note_html, self.note_text):
            return
        self.note_html, self.note_text = note_html, note_text
        if self.shown and not self.ended:
            from IPython.display import update_display

            update_display(self.bundle(), raw=True, display_id=self.id)

    def end(self) -> None:
        """The widget's work ended while its kernel lives: the companion leaves nothing."""
        if self.shown and not self.ended:
            from IPython.display import update_display

            update_display(self.ended_bundle(), raw=True, display_id=self.id)
        self.ended = True


def note(what: str, name: str, then: str) -> tuple[str, str]:
    """The companion's note as (HTML, text): "Disconnected from the kernel (restarted, or the
    notebook reopened): job NAME keeps running without it. `%sagemaker_attach NAME` in a new cell
    follows it again (or shows how it ended)." `what` is "job" or "sweep"; `then` what the
    running work does without the kernel."""
    import html

    command = f"%sagemaker_attach {name}"
    text = (f"Disconnected from the kernel (restarted, or the notebook reopened): {what} {name} {then}. "
            f"`{command}` in a new cell follows it again (or shows how it ended).")
    markup = (f"<b>Disconnected from the kernel</b> (restarted, or the notebook reopened): {what} "
              f"<code>{html.escape(name)}</code> {html.escape(then)}. "
              f'<code class="sm-magic-attach" style="white-space:nowrap">{html.escape(command)}</code> in a new cell follows it again '
              "(or shows how it ended).")
    return markup, text


__all__ = ["Companion", "DISCONNECTED", "note"]
