"""What runs inside the training container: the bundle's entry command (entry.py, copied into every
bundle as sm_entry.py), the checkpoint helpers a script imports (runtime.py, public as
`sm_magic.runtime`), and the one-line failure reason with its multi-host board (failure.py,
failure_board.py).

Every bundle carries these files, and the image's Python runs them whatever its version, with
sm_magic not installed: standard library only, Python 3.8 syntax, and no import of any other part
of sm_magic.
"""
