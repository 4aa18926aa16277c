"""What a notebook or a terminal shows: the progress widget and its summary (progress.py), the
metric table they draw (series.py: per epoch, per step, or steps summarised per epoch, as
row_kinds.py reads the rows) and the plot's thinned series (plot_series.py), text for terminals and `--wait`
(text.py), and the config form (form.py)."""
