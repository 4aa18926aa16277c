"""From a launch request to a job: the typed request (request.py) and the magic's line grammar
(train_line.py), checks that refuse a launch before anything is written (checks.py), the software a
job gets (software.py), the one planner (planner.py) whose plan is launched or shown as a dry run
(dry_run_text.py).

Imports jobs/, backends/, bundle/, software/, metrics/, config/, display/, container/, errors.py
and console.py.
"""
