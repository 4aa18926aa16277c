"""FailureReason from a log: the user's error, not the launcher's wrapper around it."""

from sm_magic.failure import log_summary as error_summary

ACCELERATE_WRAPPED = """\
loading
Traceback (most recent call last):
  File "/jobs/x/bundle/train.py", line 7, in <module>
    main()
  File "/jobs/x/bundle/train.py", line 5, in main
    raise KeyError("label")
KeyError: 'label'
Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/accelerate/commands/launch.py", line 999, in simple_launcher
    raise subprocess.CalledProcessError(returncode=process.returncode, cmd=cmd)
subprocess.CalledProcessError: Command '['/venv/bin/python', 'train.py']' returned non-zero exit status 1.
"""

ELASTIC_ABORT = """\
terminate called without an active exception
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
Root Cause (first observed failure):
[0]:
  time      : 2026-11-26_20:42:04
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -6 (pid: 6217)  (SIGABRT)
  error_file: <N/A>
  traceback : Signal 6 (SIGABRT) received by PID 6217
============================================================
"""


def test_user_exception_and_its_line_win_over_the_launcher(tmp_path):
    log = tmp_path / "algo-1.log"
    log.write_text(ACCELERATE_WRAPPED)
    assert error_summary(log) == "KeyError: 'label' [train.py, line 5]"


def test_the_rank_that_raised_is_named(tmp_path):
    log = tmp_path / "algo-1.log"
    log.write_text("".join(f"[rank1]: {line}\n" for line in ACCELERATE_WRAPPED.splitlines()[:7]))
    assert error_summary(log) == "KeyError: 'label' [train.py, line 5] on rank 1"


def test_a_rank_killed_without_traceback_is_named(tmp_path):
    log = tmp_path / "algo-1.log"
    log.write_text(ELASTIC_ABORT)
    reason = error_summary(log)
    assert reason.startswith("rank 1 (local_rank: 1) failed, exitcode -6")
    assert "SIGABRT" in reason and "terminate called without an active exception" in reason


def test_no_traceback_gives_the_last_lines(tmp_path):
    log = tmp_path / "algo-1.log"
    log.write_text("step 1\nstep 2\nout of patience\n")
    assert error_summary(log) == "step 1 | step 2 | out of patience"
    assert error_summary(tmp_path / "missing.log") == "the job wrote no log"
