"""What a notebook or a terminal shows of a job or a sweep while it runs: the progress widget and
the static summary it leaves (progress.py), the sweep widget (sweep_widget.py, sweep_table.py,
sweep_rows.py), text for terminals and `--wait` (text.py), the stand-in shown once a widget's kernel
is gone (companion.py) and the config form (form.py, form_style.py).

Imports sweeps/, jobs/ and every layer below; only magic/ and cli/ import it.
"""
