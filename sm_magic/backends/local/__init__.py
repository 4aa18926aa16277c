"""The local backend: a job on this machine laid out like a SageMaker container, no Docker
(backend.py), run by a detached runner process (runner.py) whose state and files live in the job
directory (state.py, changed_files.py), with its processes found and signalled safely (procs.py),
its endings explained (recovery.py) and its s3:// inputs fetched (s3_download.py).

Imports backends/base.py and the layers below backends/; never another backend.
"""
