"""HTML tables as a person reads them (the tests of the notebook views)."""

from __future__ import annotations

from html.parser import HTMLParser


class Tables(HTMLParser):
    """The first table (the compact one) as a person reads it, the rows marked best, and what the
    <details> block holds."""

    def __init__(self, markup: str):
        super().__init__()
        self.tables: list[dict] = []
        self.details = self.summary = ""
        self._in = {"details": 0, "summary": 0, "style": 0, "thead": 0}
        self._cell: list[str] | None = None
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        if tag in self._in:
            self._in[tag] += 1
        if tag == "table":
            self.tables.append({"head": [], "rows": [], "best": [], "in_details": bool(self._in["details"])})
        elif tag == "tr" and not self._in["thead"]:
            self.tables[-1]["rows"].append([])
            self.tables[-1]["best"].append(dict(attrs).get("class") == "best")
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in self._in:
            self._in[tag] -= 1
        if tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell).strip()
            table = self.tables[-1]
            (table["head"] if self._in["thead"] else table["rows"][-1]).append(text)
            self._cell = None

    def handle_data(self, data):
        if self._in["style"]:
            return
        if self._cell is not None:
            self._cell.append(data)
        if self._in["summary"]:
            self.summary += data

    def column(self, header: str, table: int = 0) -> dict[str, str]:
        """{first cell of each row: its cell under `header`} of one table."""
        if len(self.tables) <= table:
            return {}  # not shown yet
        t = self.tables[table]
        i = t["head"].index(header)
        return {row[0]: row[i] for row in t["rows"] if row}
