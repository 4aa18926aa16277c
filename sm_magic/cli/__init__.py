"""The `sm-magic` command (main.py): the job registry and job control from a shell, and a notebook's
`%%sagemaker_train` cells as bundles (export.py, `sm-magic export` and `sm-magic run`).

A surface on top: may import every layer below, widgets/ for its text views; nothing imports it.
"""
