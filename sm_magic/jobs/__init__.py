"""A job once it is submitted, whatever runs it: the `Job` handle (job.py), the kernel's one poller
(monitor.py), the registry of jobs started here (registry.py), progress and time left (eta.py),
final metrics, the model's files back on this machine (artifacts.py), a failed job's log as a user
reads it (log_folding.py) and the one set of state words (states.py).

Imports backends/ (through the contract in backends/base.py and get_backend), metrics/, config/,
display/, container/ and errors.py.
"""
