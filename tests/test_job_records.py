"""The registry and the job directories agree: a launch registers its job or starts none, and one
broken job never breaks the listing of the others."""

import json
import sqlite3
import threading
from pathlib import Path

import pytest

import sm_magic
import sm_magic.jobs.lookup
import sm_magic.jobs.registry
from sm_magic.cli.main import main as cli
from sm_magic.jobs.registry import JobRecord, Registry
from sm_magic.plan.planner import LaunchError

from helpers.jobscripts import EPOCHS_SCRIPT, wait_until


def _registry_path(sm_env) -> Path:
    return sm_env / "registry.sqlite3"


def _lock(path: Path) -> sqlite3.Connection:
    """Another process's writer holding the registry: an open exclusive transaction."""
    Registry(path)  # the file and its table exist first, as for any user who ran a job before
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    con.execute("BEGIN EXCLUSIVE")
    return con


def _runner_processes(jobs_dir: Path) -> list[int]:
    """Job runners started on a job under `jobs_dir`, read from the process table."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(jobs_dir).encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


@pytest.mark.jobs
def test_a_registry_locked_past_the_wait_starts_nothing_and_keeps_the_name_free(sm_env, monkeypatch, capsys):
    monkeypatch.setattr(sm_magic.jobs.registry, "ADD_WAIT_S", 1.5)
    con = _lock(_registry_path(sm_env))
    try:
        with pytest.raises(LaunchError, match="stayed locked by another process .*nothing was started"):
            sm_magic.launch(EPOCHS_SCRIPT, name="locked-out", backend="local")
        assert "is locked by another process; waiting up to 1.5 s" in capsys.readouterr().out
        jobs_dir = sm_env / "sm_jobs"
        assert not (jobs_dir / "locked-out").exists()
        assert _runner_processes(jobs_dir) == []
    finally:
        con.execute("ROLLBACK")
        con.close()
    # The name was never taken: the same launch works once the registry is free.
    job = sm_magic.launch(EPOCHS_SCRIPT, name="locked-out", backend="local", wait=True)
    assert job.status == "Completed"
    assert [r.record.name for r in sm_magic.jobs.lookup.list_jobs()] == ["locked-out"]


@pytest.mark.jobs
def test_a_launch_waits_for_a_registry_that_is_released(sm_env, capsys):
    con = _lock(_registry_path(sm_env))
    released = threading.Event()

    def release_when_waited_on():
        wait_until(lambda: "is locked by another process" in capsys.readouterr().out or None,
                   60, "the launch to say it waits for the registry")
        con.execute("ROLLBACK")
        released.set()

    releaser = threading.Thread(target=release_when_waited_on)
    releaser.start()
    try:
        job = sm_magic.launch(EPOCHS_SCRIPT, name="waited", backend="local", wait=True)
    finally:
        releaser.join()
        con.close()
    assert released.is_set()
    assert job.status == "Completed"
    assert Registry(_registry_path(sm_env)).get("waited").location == str(sm_env / "sm_jobs" / "waited")


def test_a_job_that_fails_to_start_is_not_left_in_the_registry(sm_env):
    # The input's absence is found by the backend while it starts the job.
    with pytest.raises(sm_magic.backends.BackendError, match="neither a local path that exists"):
        sm_magic.launch(EPOCHS_SCRIPT, name="no-input", backend="local", inputs=["train=./missing-dir"])
    assert Registry(_registry_path(sm_env)).get("no-input") is None
    assert not (sm_env / "sm_jobs" / "no-input").exists()


def _forge(sm_env, name: str, state_bytes: bytes) -> None:
    """A job the registry last saw running, whose state file holds `state_bytes`."""
    job_dir = sm_env / "sm_jobs" / name
    job_dir.mkdir(parents=True)
    (job_dir / "state.json").write_bytes(state_bytes)
    Registry(_registry_path(sm_env)).add(JobRecord(name=name, backend="local", created=1.0, location=str(job_dir)))


BROKEN_STATES = {
    "not-json": b"{ this is not json",
    "not-utf8": b"\xff\xfe\x00garbage\x80",
    "a-list": b"[1, 2, 3]",
    "wrong-types": json.dumps({"name": 5, "creation_time": "yesterday", "transitions": 7}).encode(),
    "empty": b"",
}


@pytest.mark.jobs
def test_one_broken_state_file_never_breaks_the_listing(sm_env, capsys, ip):
    good = sm_magic.launch(EPOCHS_SCRIPT, name="good-job", backend="local", wait=True)
    for name, data in BROKEN_STATES.items():
        _forge(sm_env, name, data)
    # A job whose directory was deleted.
    Registry(_registry_path(sm_env)).add(JobRecord(name="deleted", backend="local", created=3.0,
                                                  location=str(sm_env / "sm_jobs" / "deleted")))
    # A registry row whose JSON columns were damaged by hand.
    Registry(_registry_path(sm_env)).add(JobRecord(name="bad-row", backend="local", created=2.0,
                                                  status="Completed"))
    with sqlite3.connect(_registry_path(sm_env)) as con:
        con.execute("UPDATE jobs SET extra = '{oops', hyperparameters = '[1]' WHERE name = 'bad-row'")

    capsys.readouterr()
    assert cli(["jobs"]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and err == ""
    lines = out.splitlines()
    row = {line.split()[0]: line for line in lines if line and not line.startswith((" ", "NAME"))}
    assert set(row) == {"good-job", "bad-row", "deleted", *BROKEN_STATES}
    assert row["good-job"].split()[2] == good.status == "Completed"
    for name in BROKEN_STATES:
        assert row[name].split()[2] == "Unknown", row[name]
        note = lines[lines.index(row[name]) + 1]
        assert note.strip().startswith("^ ") and len(note.strip()) > 4, note
    assert "extra column is unreadable" in lines[lines.index(row["bad-row"]) + 1]
    assert row["deleted"].split()[2] == "Unknown"
    assert "no longer exists" in lines[lines.index(row["deleted"]) + 1]

    table = ip.run_line_magic("sagemaker_jobs", "")
    assert len(table) == len(BROKEN_STATES) + 3
    by_name = table.set_index("name")
    assert by_name.loc["good-job", "status"] == "Completed" and by_name.loc["good-job", "note"] == ""
    assert (by_name.loc[list(BROKEN_STATES), "status"] == "Unknown").all()
    assert by_name.loc[list(BROKEN_STATES), "note"].str.len().min() > 0
