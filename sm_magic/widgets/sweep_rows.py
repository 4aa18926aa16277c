"""The rows of the sweep widget's table (widgets/sweep_widget.py): each point's latest and best
metric values folded from its new rows only, its progress, the table's HTML bounded in rows and
in text, and the metric the overlay shows first."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

from ..display.literal import shown
from ..display.table_text import cut
from ..jobs.job import Snapshot
from ..jobs.states import CANCELLED, ENDED, FAILED, LAUNCH_FAILED, LAUNCHING, QUEUED
from ..metrics.direction import direction
from ..metrics.parser import ROW_KEYS
from ..metrics.series import PlotSeries
from .progress import STATUS_COLORS
from .sweep_table import status_counts
from .text import fmt_value

MAX_ROWS = 100        # points the table shows at most (running and failed ones first); a line says how many more
MAX_TEXT = 40         # characters of a swept value (or a job's label in the plot) shown
MAX_NOTE = 160        # characters of a point's note (why it waits, why it failed) shown
# ENDED (states.py): the words of a point nothing more will happen to.
_PENDING_COLORS = {QUEUED: "#757575", LAUNCHING: "#1565c0", CANCELLED: "#757575", LAUNCH_FAILED: "#c62828"}
STYLE = ("<style>.sm-magic-sweep-rows{border-collapse:collapse;font-size:0.9em}"
          ".sm-magic-sweep-rows th,.sm-magic-sweep-rows td{text-align:left;padding:1px 8px;white-space:nowrap;"
          "vertical-align:top}.sm-magic-sweep-rows td.n{text-align:right}"
          ".sm-magic-sweep-rows small{color:#666}"
          ".sm-magic-sweep-rows progress{width:4em;height:0.8em;vertical-align:middle;margin-right:4px}</style>")


def esc(value) -> str:
    return html.escape(str(value))


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None


def status_color(status: str) -> str:
    word = status.split(" ")[0]
    return STATUS_COLORS.get(word) or _PENDING_COLORS.get(word, "#1565c0")


class Folded:
    """One job's latest and best value of each metric, folded from its rows as they arrive: each
    call reads the rows new since the last, plus the latest RECHECK afresh (a validation metric
    may still join its epoch's row), so its cost does not grow with the job's rows."""

    RECHECK = PlotSeries.RECHECK

    def __init__(self, ways: dict[str, str]):
        self.ways = ways            # metric -> "max" | "min", shared by the jobs of a sweep
        self._reset()

    def _reset(self) -> None:
        self.count = 0
        self.latest: dict[str, float] = {}   # in order of first appearance
        self.best: dict[str, float] = {}
        self.position: dict[str, object] = {}  # the latest epoch / step seen

    def _add(self, latest: dict, best: dict, position: dict, row: dict) -> None:
        for name, value in row.items():
            if name in ROW_KEYS:
                position[name] = value
                continue
            number = _number(value)
            if number is None:
                continue
            latest[name] = number
            way = self.ways.get(name)
            if way is None:
                way = self.ways[name] = direction(name)
            old = best.get(name)
            if old is None or (number > old if way == "max" else number < old):
                best[name] = number

    def update(self, rows: Sequence[dict]) -> tuple[dict[str, float], dict[str, float], dict[str, object]]:
        """(latest, best, {"epoch": e, "step": s} of the latest row that had them)."""
        if len(rows) < self.count:  # not the rows it has folded: start again
            self._reset()
        end = max(self.count, len(rows) - self.RECHECK)
        for i in range(self.count, end):
            self._add(self.latest, self.best, self.position, rows[i])
        self.count = end
        latest, best, position = dict(self.latest), dict(self.best), dict(self.position)
        for i in range(end, len(rows)):
            self._add(latest, best, position, rows[i])
        return latest, best, position


def default_metric(names: Sequence[str]) -> str | None:
    """The metric the plot shows until someone picks another: the first validation loss, else the
    first loss-like one, else the first."""
    lower = [(n, n.lower()) for n in names]
    for n, low in lower:
        if "loss" in low and any(w in low for w in ("val", "eval", "test")):
            return n
    for n, low in lower:
        if "loss" in low:
            return n
    return names[0] if names else None


def progress_html(snap: Snapshot | None, position: Mapping[str, object]) -> str:
    """A bar and its percent when the job's total is known (eta.py, from the snapshot), else the
    latest epoch or step logged."""
    if snap is not None and snap.estimate is not None:
        e = snap.estimate
        return f'<progress value="{e.fraction:.3f}" title="{e.unit} {e.done:g}/{e.total:g}"></progress>{100 * e.fraction:.0f}%'
    for key in ROW_KEYS:
        if key in position:
            return f"{key} {esc(fmt_value(position[key]))}"
    return ""


def table_html(rows: list[dict], metrics: list[str], more_metrics: int, ways: Mapping[str, str]) -> str:
    """One row per point (at most MAX_ROWS: running, launching and failed ones first, then the
    others in order), its values, status, progress, each metric's latest / best, elapsed, note."""
    names = list(dict.fromkeys(k for r in rows for k in r["point"].values))
    # The best job per metric (across the sweep): its value is in bold.
    leader: dict[str, float] = {}
    for m in metrics:
        values = [r["best"][m] for r in rows if m in r["best"]]
        if values:
            leader[m] = max(values) if ways.get(m) == "max" else min(values)
    listed = shown_rows(rows)
    head = ["job"] + [esc(shown(n)) for n in names] + ["status", "progress"]
    head += [f"{esc(shown(m))}<br><small>last / {'max' if ways.get(m) == 'max' else 'min'}</small>"
             for m in metrics]
    head += ["elapsed", ""]
    body = []
    for r in listed:
        p = r["point"]
        cells = [f"<td>{esc(p.name)}</td>"]
        cells += [f"<td>{esc(shown(p.values.get(n, ''), MAX_TEXT))}</td>" for n in names]
        cells.append(f'<td style="color:{status_color(r["status"])}">{esc(r["status"])}</td>')
        cells.append(f"<td>{progress_html(r['snap'], r['position'])}</td>")
        for m in metrics:
            if m not in r["latest"]:
                cells.append("<td></td>")
                continue
            best = r["best"][m]
            best_text = esc(fmt_value(best))
            if leader.get(m) == best:
                best_text = f"<b>{best_text}</b>"
            cells.append(f'<td class="n">{esc(fmt_value(r["latest"][m]))} <small>/</small> {best_text}</td>')
        cells.append(f'<td class="n">{r["elapsed"]}</td>')
        note = r["note"]
        cells.append(f'<td style="color:#c62828;white-space:normal" title="{esc(note[:300])}">'
                     f"{esc(cut(note, MAX_NOTE))}</td>" if note else "<td></td>")
        body.append(f'<tr data-job="{esc(p.name)}">' + "".join(cells) + "</tr>")
    notes = []
    if len(listed) < len(rows):
        kept = {id(r) for r in listed}
        hidden = status_counts([r for r in rows if id(r) not in kept])
        notes.append(f"{len(rows) - len(listed)} more jobs not shown ("
                     + ", ".join(f"{n} {w}" for w, n in hidden.items()) + "; sweep.entries has them all)")
    if more_metrics:
        notes.append(f"{more_metrics} more metric{'s' if more_metrics != 1 else ''} "
                     "(sweep.compare() has them all)")
    foot = (f'<tr class="sm-magic-sweep-more"><td colspan="{len(head)}" style="color:#666">'
            f"{esc('; '.join(notes))}</td></tr>" if notes else "")
    return (f'{STYLE}<table class="sm-magic-sweep-rows"><thead><tr>'
            + "".join(f"<th>{h}</th>" for h in head)
            + f"</tr></thead><tbody>{''.join(body)}{foot}</tbody></table>")


def shown_rows(rows: list[dict]) -> list[dict]:
    """At most MAX_ROWS rows, in the sweep's order: running, launching and failed points first,
    then the others in order."""
    if len(rows) <= MAX_ROWS:
        return rows

    def rank(item: tuple[int, dict]) -> tuple[int, int]:
        i, r = item
        word = r["status"].split(" ")[0]
        first = (not r["ended"] and word != QUEUED) or word in (FAILED, LAUNCH_FAILED)
        return (0 if first else 1, i)

    keep = sorted(sorted(enumerate(rows), key=rank)[:MAX_ROWS], key=lambda item: item[0])
    return [r for _, r in keep]


__all__ = ["ENDED", "MAX_ROWS", "MAX_TEXT", "Folded", "default_metric", "esc", "status_color", "table_html"]
