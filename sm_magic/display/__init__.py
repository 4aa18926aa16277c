"""How values read to a person, whatever shows them: durations as a clock, numbers to a few digits,
names from user data shown literally (literal.py), tables that fit a notebook cell (table_view.py)
and the notebook display of a live handle (live.py).

Imports only the standard library, pandas and errors.py: every layer above may show a value.
"""
