"""What a notebook or a terminal shows: the progress widget and its summary (progress.py), the
metric window and plot series they draw from (series.py), text for terminals and `--wait`
(text.py), and the config form (form.py)."""
