"""From what a training script prints or writes to metric rows: the log line parser and its
formats (parser.py, log_formats.py, log_dicts.py), regexes that cannot stall (regex.py), a terminal's
view of a log (terminal.py), TensorBoard event files, which way a metric is better (direction.py),
and what a display draws of the rows (series.py, row_kinds.py, plot_series.py, overlay.py).

Imports config/, display/, container/ (failure lines) and errors.py; nothing about jobs or backends.
"""
