"""failure_board: the first failure of a multi-host job, over a real TCP board on 127.0.0.1, as
the entry commands of two hosts use it (the container test runs it in two emulated hosts)."""

import socket
import threading

from sm_magic.container.failure_board import Board, consequence, first_failure, reason_with_first, tell

ROOT = "ValueError: bad batch [train.py, line 6] on rank 3"
LOST = "RuntimeError: [pair.cc:547] Connection closed by peer [127.0.0.1]:5838 [train.py, line 7] on rank 1"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_what_reads_as_a_consequence_of_another_ranks_failure():
    for reason in (LOST, "torch.distributed.DistBackendError: NCCL error in: ...",
                   "[Rank 0] Watchdog caught collective operation timeout: WorkNCCL(...)",
                   "SignalException: Process 12 got signal: 15"):
        assert consequence(reason), reason
    for reason in (ROOT, "TimeoutError: my own data loader timed out [train.py, line 3]", "KeyError: 'x'"):
        assert not consequence(reason), reason


def test_a_host_that_failed_of_the_loss_waits_for_the_first_failure_and_names_it():
    port = _port()
    board = Board("job:1", ["algo-1", "algo-2"], port)
    found = {}
    # algo-1 (the board's host) fails of losing its peer before algo-2 has reported.
    waiting = threading.Thread(target=lambda: found.update(first=first_failure(
        {"host": "algo-1", "reason": LOST, "consequence": True}, board, "127.0.0.1", port, "job:1", wait=60)))
    waiting.start()
    assert tell("127.0.0.1", port, "other-job:1", {"host": "algo-9", "reason": "x"}) is None  # not this job's
    mine = first_failure({"host": "algo-2", "reason": ROOT, "consequence": False}, None, "127.0.0.1", port, "job:1")
    waiting.join(timeout=60)
    assert mine["host"] == found["first"]["host"] == "algo-2"
    assert reason_with_first(ROOT, "algo-2", mine) == ROOT
    assert reason_with_first(LOST, "algo-1", found["first"]) == (
        f"{ROOT} (on algo-2, the first failure; algo-1 then failed of it: {LOST})")
    board.linger(timeout=1)
    assert sorted(board.reports) == ["algo-1", "algo-2"]
    board.close()


def test_a_second_failure_of_its_own_names_the_first_after_its_own():
    port = _port()
    board = Board("job:2", ["algo-1", "algo-2"], port)
    board.record({"host": "algo-1", "reason": ROOT, "consequence": False})
    other = "KeyError: 'label' [train.py, line 9] on rank 2"
    first = first_failure({"host": "algo-2", "reason": other, "consequence": False}, None, "127.0.0.1", port, "job:2")
    assert reason_with_first(other, "algo-2", first) == f"{other} (after the first failure, on algo-1: {ROOT})"
    board.close()


def test_with_no_board_to_reach_a_host_names_its_own_reason():
    port = _port()  # nothing listens there
    first = first_failure({"host": "algo-2", "reason": LOST, "consequence": True}, None, "127.0.0.1", port,
                          "job:3", wait=1)
    assert first is None and reason_with_first(LOST, "algo-2", first) == LOST
