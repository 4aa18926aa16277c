"""Tables that fit a notebook cell: `compare()`'s and `%sagemaker_jobs`'s DataFrames show a
compact table (the columns that matter, short names, durations as `0:32`, numbers to 4
significant digits, the best row marked) with every column one click away (an HTML `<details>`),
while the data stays as it is: `df["accuracy_best"]` is the number the job logged.

`ShownFrame` is a DataFrame whose `_repr_html_` is that view (pandas' `_metadata` carries it);
any frame derived from it (`df.sort_values(...)`, `df[cols]`, `df.copy()`) is a plain DataFrame
again, shown as pandas shows one: a view made for these columns never meets other ones.
"""

from __future__ import annotations

import functools
import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from .literal import shown
from .table_text import cut, cut_middle, duration, is_number, number

NAME_WIDTH = 32      # characters of a job's name in the compact view (the whole name in its tooltip)
TEXT_WIDTH = 24      # characters of a hyperparameter's value, or another text cell
WIDE_TEXT = 48       # characters of a list of metrics or hyperparameters
MAX_HP_COLUMNS = 4   # hyperparameters that differ, shown in the compact view (the rest: all columns)
BEST_MARK = "\u2605"  # the best row's mark
CLASS = "sm-magic-table"
# Inline styles, not a <style> block: JupyterLab's sanitizer keeps style attributes and drops
# <style> elements (and its own table style right-aligns every cell).
_CELL = "padding:2px 8px;vertical-align:top;white-space:nowrap;"
_LEFT, _RIGHT = _CELL + "text-align:left", _CELL + "text-align:right;font-variant-numeric:tabular-nums"
_WRAPS = "padding:2px 8px;vertical-align:top;text-align:left;white-space:normal;min-width:8em;max-width:16em"


class ShownFrame(pd.DataFrame):
    """A DataFrame shown in a notebook by `_sm_html(self)` (a compact table and all its columns)."""

    _metadata = ["_sm_html"]

    @property
    def _constructor(self):
        return pd.DataFrame  # a derived frame has other rows or columns: pandas shows it

    def _repr_html_(self) -> str | None:
        render: Callable[[pd.DataFrame], str] | None = getattr(self, "_sm_html", None)
        if render is not None:
            try:
                return render(self)
            except Exception:  # noqa: BLE001 - a view that cannot be made: the table as pandas shows it
                pass
        return pd.DataFrame(self)._repr_html_()


def shown_frame(frame: pd.DataFrame, render: Callable[[pd.DataFrame], str]) -> ShownFrame:
    result = ShownFrame(frame)
    result._sm_html = render
    return result


# -- cells ------------------------------------------------------------------------------------------

def cell(value, width: int = TEXT_WIDTH) -> str:
    """A value as a compact cell shows it: numbers to 4 significant digits, text cut."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return ""
    if is_number(value):
        return number(value)
    if isinstance(value, pd.Timestamp):
        return value.strftime("%m-%d %H:%M")
    return cut(shown(value, 10_000), width)


def _td(text: str, numeric: bool = False, title: str = "", wraps: bool = False) -> str:
    """A cell: numbers right-aligned; `wraps`: a list of words that may take several lines."""
    attrs = f' class="n" style="{_RIGHT}"' if numeric else f' class="w" style="{_WRAPS}"' if wraps \
        else f' style="{_LEFT}"'
    if title:
        attrs += f' title="{html.escape(title)}"'
    return f"<td{attrs}>{html.escape(text)}</td>"


def _table(head: Sequence[str], rows: Sequence[tuple[Sequence[str], bool]], css: str = "",
           numeric: Sequence[str] = ()) -> str:
    """`rows`: each row's cells (already <td>s) and whether it is the best one; the headers in
    `numeric` are right-aligned, over their numbers."""
    out = [f'<table class="{css}" style="border-collapse:collapse;font-size:0.9em;margin:0"><thead><tr>'
           + "".join(f'<th style="{_RIGHT if h in numeric else _LEFT}">{html.escape(h)}</th>' for h in head)
           + "</tr></thead><tbody>"]
    for cells, best in rows:
        out.append(f'<tr{" class=best style=font-weight:bold" if best else ""}>' + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def full_table(frame: pd.DataFrame, durations: Sequence[str] = ()) -> str:
    """Every column, every value readable: durations as a clock, numbers to 4 significant digits,
    whole names and texts (the block scrolls sideways when wide)."""
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for column in frame.columns:
            value = row[column]
            if column in durations:
                cells.append(_td(duration(value), numeric=True))
            elif isinstance(value, pd.Timestamp):
                cells.append(_td(value.strftime("%Y-%m-%d %H:%M:%S")))
            else:
                cells.append(_td(cell(value, 10_000), numeric=is_number(value)))
        rows.append((cells, False))
    return _table([shown(c) for c in frame.columns], rows, "all-columns")


def row_limit() -> int | None:
    """Rows a view shows at most: pandas' own `display.max_rows` (60 by default; None: all)."""
    limit = pd.get_option("display.max_rows")
    return limit if isinstance(limit, int) and limit > 0 else None


def _wrap(compact: str, frame: pd.DataFrame, durations: Sequence[str], what: str) -> str:
    n_rows, n_cols = frame.shape
    limit = row_limit()
    more = ""
    if limit is not None and n_rows > limit:
        frame = frame.head(limit)
        more = (f'<div style="color:#666">{n_rows - limit} more rows not shown (pandas\' display.max_rows is {limit}); '
                "the DataFrame has them all</div>")
    return (f'<div class="{CLASS}">{compact}{more}<details style="margin-top:4px"><summary style="cursor:pointer">'
            f'All {n_cols} columns ({n_rows} row{"s" if n_rows != 1 else ""}; {html.escape(what)})</summary>'
            f'<div class="all" style="overflow-x:auto;max-width:100%">{full_table(frame, durations)}</div></details></div>')


# -- compare() ------------------------------------------------------------------------------------

def differing(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """The columns whose values are not all the same (missing counts as a value)."""
    return [c for c in columns if c in frame.columns and frame[c].astype(str).nunique(dropna=False) > 1]


def best_rows(frame: pd.DataFrame, column: str | None, way: str) -> set[int]:
    """The positions of the rows holding the best value of `column` (none without it)."""
    if column is None or column not in frame.columns:
        return set()
    values = pd.to_numeric(frame[column], errors="coerce")
    finite = values[values.map(lambda v: math.isfinite(v))]
    if finite.empty:
        return set()
    target = finite.max() if way == "max" else finite.min()
    return {i for i, v in enumerate(values) if v == target}


@dataclass
class CompactRow:
    cells: list[str]       # as shown (numbers formatted, a long name cut)
    best: bool
    name: str              # the whole name


def compare_rows(frame: pd.DataFrame, metric: str | None, way: str,
                 hp_columns: Sequence[str]) -> tuple[list[str], list[str], list[CompactRow]]:
    """compare()'s compact table, for any display: (headers, the numeric ones, rows). The best
    row marked, then name, status, the ranking metric's best value, the hyperparameters that
    differ (at most MAX_HP_COLUMNS) and the duration."""
    best_column = f"{metric}_best" if metric else None
    hps = differing(frame, hp_columns)[:MAX_HP_COLUMNS]
    marked = best_rows(frame, best_column, way)
    head = ["", "name", "status"]
    if best_column in frame.columns:
        head.append(f"{shown(metric, TEXT_WIDTH)} ({way})")
    numeric = [*head[3:], *(shown(h, TEXT_WIDTH) for h in hps if is_number(frame[h].iloc[0])), "duration"]
    head += [shown(h, TEXT_WIDTH) for h in hps] + ["duration"]
    rows = []
    for i, (_, row) in enumerate(frame.iterrows()):
        name = str(row["name"])
        cells = [BEST_MARK if i in marked else "", cut_middle(shown(name, 10_000), NAME_WIDTH), str(row.get("status", ""))]
        if best_column in frame.columns:
            cells.append(cell(row[best_column]))
        cells += [cell(row[h]) for h in hps]
        cells.append(duration(row.get("duration_s")))
        rows.append(CompactRow(cells, i in marked, name))
    return head, numeric, rows


def compare_html(frame: pd.DataFrame, metric: str | None, way: str, hp_columns: Sequence[str]) -> str:
    """compare()'s table as a notebook shows it: the compact table, then all columns one click away."""
    head, numeric, rows = compare_rows(frame, metric, way, hp_columns)
    cells = []
    for r in rows[:row_limit()]:
        tds = [_td(r.cells[0], title="best" if r.best else ""),
               _td(r.cells[1], title=r.name if r.cells[1] != r.name else "")]
        tds += [_td(text, numeric=h in numeric) for h, text in zip(head[2:], r.cells[2:])]
        cells.append((tds, r.best))
    what = f"{BEST_MARK}: best {metric}" if any(r.best for r in rows) else "no metric to rank by"
    return _wrap(_table(head, cells, "compact", numeric), frame, ("duration_s", "billable_s"), what)


def compare_text(frame: pd.DataFrame, metric: str | None, way: str, hp_columns: Sequence[str]) -> str:
    """The same compact table as lines of text (`sm-magic jobs --compare`): numbers right-aligned,
    the best row marked `*`, names cut as in a notebook (`--wide` prints every column)."""
    head, numeric, rows = compare_rows(frame, metric, way, hp_columns)
    table = [head] + [["*" if r.best else "", *r.cells[1:]] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(head))]
    lines = []
    for line in table:
        parts = [text.rjust(w) if h in numeric else text.ljust(w) for h, text, w in zip(head, line, widths)]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def compare_frame(frame: pd.DataFrame, metric: str | None, way: str, hp_columns: Sequence[str]) -> ShownFrame:
    return shown_frame(frame, functools.partial(compare_html, metric=metric, way=way, hp_columns=list(hp_columns)))


# -- %sagemaker_jobs --------------------------------------------------------------------------------

JOBS_COMPACT = ("name", "status", "duration", "metrics", "hyperparameters", "created")


def jobs_html(frame: pd.DataFrame) -> str:
    """`%sagemaker_jobs`'s list as a notebook shows it: name, status, duration, final metrics,
    hyperparameters and when; every column below."""
    head = [c for c in JOBS_COMPACT if c in frame.columns]
    rows = []
    for _, row in frame.head(row_limit() or len(frame)).iterrows():
        cells = []
        for column in head:
            value = row[column]
            if column == "name":
                name = str(value)
                cells.append(_td(cut_middle(shown(name, 10_000), NAME_WIDTH), title=name if len(name) > NAME_WIDTH else ""))
            elif column in ("metrics", "hyperparameters"):
                text = shown(value, 10_000) if isinstance(value, str) else ""
                cells.append(_td(cut(text, WIDE_TEXT), title=text if len(text) > WIDE_TEXT else "", wraps=True))
            else:
                cells.append(_td(cell(value), numeric=column == "duration"))
        rows.append((cells, False))
    return _wrap(_table(head, rows, "compact", ["duration"]), frame, (), "newest first")


def jobs_frame(frame: pd.DataFrame) -> ShownFrame:
    return shown_frame(frame, jobs_html)


__all__ = ["ShownFrame", "compare_frame", "compare_html", "compare_rows", "compare_text", "jobs_frame", "jobs_html"]
