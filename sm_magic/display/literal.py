"""Names from user data (metric names, job names, swept values) as every display shows them:
literally, on one line, cut to a bounded length; and plots that draw them so.

A metric name is whatever a script printed as a dict key, so it can be anything a JSON string
holds: dollars that matplotlib reads as mathtext (`a$\\foo$` is a ValueError at every drawing), a
leading underscore (which matplotlib's legend leaves out), markup, terminal escapes, a lone
surrogate (which neither UTF-8, and so no widget message, nor a font can take), or 9,000
characters (1.7 s a drawing). `shown()` is the text tables and plots show (HTML-escaped after, where
HTML); `png()` draws a figure with each text that holds user data taken as it is (no mathtext, no
TeX); `drawn()` turns a drawing that fails all the same into a one-line note for the plot's place,
so a display that draws never dies of it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable

from .table_text import cut

LABEL_MAX = 80   # characters of a name shown; a longer one ends in an ellipsis
TEXT_MAX = 2 * LABEL_MAX   # characters of a text in a plot that says a name and more

# C0 and C1 controls, bidirectional overrides (which reorder what follows) and lone surrogates.
_UNSHOWN = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _visible(m: re.Match) -> str:
    code = ord(m.group())
    if 0xD800 <= code <= 0xDFFF:
        return "\ufffd"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def shown(text, limit: int = LABEL_MAX) -> str:
    """`text` as displays show it: each control character as its escape (`\\x1b`), a lone
    surrogate as U+FFFD, at most `limit` characters."""
    return cut(_UNSHOWN.sub(_visible, str(text)), limit)


def figure(width: float, height: float):
    """A matplotlib Figure on its own Agg canvas (no pyplot: nothing global changes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=80)
    FigureCanvasAgg(fig)
    return fig


def legend(ax, lines: list, labels: list[str], **kwargs) -> None:
    """A legend of `lines` labelled `labels` as they are: given explicitly, a label that starts
    with "_" is kept (matplotlib leaves such labels out of a legend it collects itself)."""
    ax.legend(lines, [shown(label) for label in labels], **kwargs)


def png(fig) -> bytes:
    """The figure as PNG bytes. Its titles, axis labels and legend texts, the texts that hold user
    data, are drawn as they are, one line each of at most TEXT_MAX characters (tick labels are
    numbers, left as the axis formats them)."""
    for text in _user_texts(fig):
        text.set_text(shown(text.get_text(), TEXT_MAX))
        text.set_usetex(False)
        text.set_parse_math(False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _user_texts(fig) -> list:
    texts = list(fig.texts)
    for ax in fig.axes:
        texts += [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        box = ax.get_legend()
        if box is not None:
            texts += [box.get_title(), *box.get_texts()]
    return texts


def drawn(draw: Callable[[], bytes]) -> tuple[bytes, str]:
    """(draw()'s PNG, "") or, where drawing raised, (b"", a one-line note saying why)."""
    try:
        return draw(), ""
    except Exception as e:  # noqa: BLE001 - a plot is never worth the display around it
        lines = str(e).strip().splitlines()
        return b"", shown(f"The plot could not be drawn: {type(e).__name__}: {lines[0] if lines else ''}", 300)


__all__ = ["LABEL_MAX", "TEXT_MAX", "shown", "figure", "legend", "png", "drawn"]
