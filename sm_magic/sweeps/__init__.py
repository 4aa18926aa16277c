"""A grid of script arguments, one job per point: the grid (grid.py), its points (points.py), the
`Sweep` handle and its queue (sweep.py), launching it (launch.py), its record and following it from
another process (record.py, follow.py), and `compare`, several jobs side by side (compare.py).

Imports plan/, jobs/ and everything below them.
"""
