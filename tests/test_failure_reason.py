"""FailureReason from a log, and the tail a failed job shows: the user's error, not the
launcher's wrapper around it."""

from sm_magic.container import failure
from sm_magic.container.failure import error_tail
from sm_magic.container.failure import log_summary as error_summary

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


# The tail a failed job shows comes from the same parser: the traceback the reason names.

def test_the_tail_is_the_users_traceback_not_the_launchers():
    lines = ACCELERATE_WRAPPED.splitlines()
    assert error_tail(lines) == lines[1:7]
    assert error_tail(lines, limit=3) == lines[4:7]  # bounded, still ending with the exception


def test_the_tail_is_the_failing_ranks_lines_even_when_ranks_interleave():
    user = ACCELERATE_WRAPPED.splitlines()[1:7]
    rank1 = [f"[rank1]: {line}" for line in user]
    rank0 = [f"[rank0]: {line}" for line in ["Traceback (most recent call last):",
                                             '  File "/jobs/x/bundle/train.py", line 9, in main',
                                             "    acc.wait_for_everyone()",
                                             "RuntimeError: Connection closed by peer"]]
    # rank 1 raised first; rank 0's lines, written at the same time, land between its own.
    log = [rank1[0], rank0[0], *rank1[1:4], *rank0[1:], *rank1[4:], *ACCELERATE_WRAPPED.splitlines()[7:]]
    assert error_tail(log) == rank1
    assert failure.error_summary("\n".join(log)) == "KeyError: 'label' [train.py, line 5] on rank 1"


def test_with_several_hosts_the_tail_is_the_one_the_reason_names():
    user = ACCELERATE_WRAPPED.splitlines()[1:7]
    other = ["Traceback (most recent call last):", '  File "/jobs/x/bundle/train.py", line 9, in main',
             "RuntimeError: Connection closed by peer"]
    log = [*(f"algo-1 | [rank0]: {line}" for line in other), *(f"algo-2 | [rank3]: {line}" for line in user)]
    tail = error_tail(log, "AlgorithmError: KeyError: 'label' [train.py, line 5] on rank 3 (exit code 1)")
    assert tail == [f"algo-2 | [rank3]: {line}" for line in user]


def test_the_tail_keeps_the_exceptions_chained_to_the_users():
    chained = ACCELERATE_WRAPPED.splitlines()[1:7] + [
        "", "During handling of the above exception, another exception occurred:", "",
        "Traceback (most recent call last):", '  File "/jobs/x/bundle/train.py", line 9, in main',
        "    raise ValueError('bad batch size')", "ValueError: bad batch size"]
    tail = error_tail(chained + ACCELERATE_WRAPPED.splitlines()[7:])
    assert tail == chained and tail[-1] == "ValueError: bad batch size"


def test_without_a_user_traceback_the_tail_leaves_out_only_the_launchers_wrapper():
    log = ["step 1", "dataset has no rows", *ACCELERATE_WRAPPED.splitlines()[7:]]
    assert error_tail(log) == ["step 1", "dataset has no rows"]
    assert error_tail(ELASTIC_ABORT.splitlines())[-3:] == ELASTIC_ABORT.splitlines()[-3:]

