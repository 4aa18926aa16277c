"""CPU per redraw of the progress widget's metrics table and plot while a 40,000-row job grows.

    .venv/bin/python bench/widget_table_cost.py

As the widget does, the table (`metrics_html`) and the plot (`plot_png`) are redrawn with their
`series.Means` and `PlotSeries` kept across redraws: the table after each 400 new rows (100
redraws), the plot after each 4,000 (10). Two jobs: 40,000 step rows `{"step": i, "loss": ...}`,
and the same with an epoch row `{"epoch": e, "val_loss": ..., "val_accuracy": ...}` after each
1,000 steps (step and epoch rows together). Printed: this process's CPU per redraw, and for a
table drawn afresh from every row (what the summary and the text table do once, at the end).
"""

import math
import time

from sm_magic.metrics import series
from sm_magic.widgets.progress import metrics_html, plot_png

ROWS = 40_000


def job_rows(epochs: int) -> list[dict]:
    rows: list[dict] = []
    for i in range(ROWS):
        rows.append({"step": i, "loss": round(10 * math.exp(-i / 4000) + 0.01, 5)})
        if epochs and (i + 1) % (ROWS // epochs) == 0:
            e = (i + 1) // (ROWS // epochs) - 1
            rows.append({"epoch": e, "val_loss": 1 / (i + 1) ** 0.3, "val_accuracy": 1 - 1 / (i + 2) ** 0.3})
    return rows


def main() -> None:
    for epochs in (0, 40):
        rows = job_rows(epochs)
        means, thinned = series.Means(), series.PlotSeries()
        table = plot = 0.0
        redraws = 0
        for end in range(400, len(rows) + 1, 400):
            shown = rows[:end]
            started = time.process_time()
            metrics_html(shown, means)
            table += time.process_time() - started
            redraws += 1
            if end % 4000 == 0:
                started = time.process_time()
                plot_png(shown, thinned)
                plot += time.process_time() - started
        started = time.process_time()
        metrics_html(rows)
        fresh = time.process_time() - started
        what = f"{ROWS:,} step rows" + (f" and {epochs} epoch rows" if epochs else "")
        print(f"{what}: table {1000 * table / redraws:.2f} ms a redraw ({redraws} redraws), plot "
              f"{1000 * plot / 10:.0f} ms a redraw, a fresh table of every row {1000 * fresh:.0f} ms")


if __name__ == "__main__":
    main()
