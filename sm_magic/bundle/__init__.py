"""A cell, a script or a repository becomes a job bundle, the directory every backend runs (build.py):
the user's files copied safely (safe_copy.py, smignore.py), notebook code carried by `--include`
(includes.py), the names a script uses (names.py) and code fetched from git (git_source.py).

Imports software/, metrics/ (metric definitions), config/, container/ (the files it carries),
errors.py and console.py.
"""
