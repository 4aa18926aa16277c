import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import sm_magic.jobs.registry
from sm_magic.jobs.registry import JobRecord, Registry, RegistryError


@pytest.fixture
def registry(tmp_path):
    return Registry(tmp_path / "registry.sqlite3")


def job(name, created=1000.0, **kwargs):
    return JobRecord(name=name, backend="local", created=created, **kwargs)


def test_add_then_get_round_trips_every_field(registry):
    record = JobRecord(
        name="train-1",
        backend="sagemaker",
        created=1700000000.5,
        status="InProgress",
        instance_type="ml.g5.xlarge",
        instance_count=2,
        location="arn:aws:sagemaker:us-east-1:123456789012:training-job/train-1",
        hyperparameters={"lr": "5e-5", "epochs": 3},
        extra={"cell": "print(1)", "tags": ["a", "b"]},
    )
    registry.add(record)
    assert registry.get("train-1") == record


def test_get_unknown_name_is_none(registry):
    assert registry.get("missing") is None


def test_list_is_newest_first_and_honours_limit(registry):
    registry.add(job("old", created=100.0))
    registry.add(job("newest", created=300.0))
    registry.add(job("middle", created=200.0))
    assert [r.name for r in registry.list()] == ["newest", "middle", "old"]
    assert [r.name for r in registry.list(limit=2)] == ["newest", "middle"]
    assert registry.list(limit=0) == []


def test_update_changes_only_named_fields(registry):
    registry.add(job("a", hyperparameters={"lr": 1}))
    registry.update("a", status="Completed", instance_type="ml.m5.large", extra={"exit": 0})
    got = registry.get("a")
    assert (got.status, got.instance_type, got.extra) == ("Completed", "ml.m5.large", {"exit": 0})
    assert got.hyperparameters == {"lr": 1} and got.backend == "local" and got.created == 1000.0


def test_a_late_in_progress_never_undoes_an_ended_status(registry):
    # Two handles on one job: the one that read it before it ended reports last.
    registry.add(job("a"))
    registry.update("a", status="Training")
    registry.update("a", status="Completed")
    registry.update("a", status="InProgress")
    assert registry.get("a").status == "Completed"
    with pytest.raises(RegistryError, match="no job named 'ghost'"):
        registry.update("ghost", status="InProgress")


def test_update_unknown_field_is_value_error(registry):
    registry.add(job("a"))
    with pytest.raises(ValueError, match="colour"):
        registry.update("a", colour="blue")
    with pytest.raises(ValueError, match="backend"):
        registry.update("a", backend="sagemaker")


def test_update_missing_job_is_registry_error(registry):
    with pytest.raises(RegistryError, match="no job named 'ghost'"):
        registry.update("ghost", status="Failed")


def test_duplicate_name_is_rejected_and_keeps_the_first(registry):
    registry.add(job("a", status="Completed"))
    with pytest.raises(RegistryError, match="already") as info:
        registry.add(job("a"))
    assert str(registry.path) in str(info.value)
    assert registry.get("a").status == "Completed"


def test_two_registry_objects_on_one_file_see_each_others_writes(tmp_path):
    path = tmp_path / "shared.sqlite3"
    first, second = Registry(path), Registry(path)
    first.add(job("from-first"))
    assert second.get("from-first") is not None
    second.update("from-first", status="Stopped")
    assert first.get("from-first").status == "Stopped"


def test_thread_writing_while_main_thread_reads(tmp_path):
    path = tmp_path / "shared.sqlite3"
    writer_registry, reader = Registry(path), Registry(path)
    errors = []

    def write():
        try:
            for i in range(100):
                writer_registry.add(job(f"job-{i}", created=float(i)))
                writer_registry.update(f"job-{i}", status="Completed")
        except Exception as exc:  # surfaced below; a thread's exception would be lost
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    while writer.is_alive():
        reader.list()
        reader.get("job-0")
    writer.join()
    assert errors == []
    records = reader.list()
    assert len(records) == 100 and records[0].name == "job-99"
    assert {r.status for r in records} == {"Completed"}


def test_several_processes_write_at_once(tmp_path):
    path = tmp_path / "shared.sqlite3"
    script = (
        "import sys, time\n"
        "from sm_magic.jobs.registry import JobRecord, Registry\n"
        "r = Registry(sys.argv[1])\n"
        "for i in range(40):\n"
        "    r.add(JobRecord(f'{sys.argv[2]}-{i}', 'local', time.time()))\n"
    )
    src = str(Path(sm_magic.jobs.registry.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(path), f"kernel{k}"], env=env)
        for k in range(4)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    assert len(Registry(path).list()) == 160


def test_one_registry_used_from_several_threads(registry):
    def add_many(prefix):
        for i in range(25):
            registry.add(job(f"{prefix}-{i}"))

    threads = [threading.Thread(target=add_many, args=(p,)) for p in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(registry.list()) == 100


def test_corrupt_file_is_reported_and_left_alone(tmp_path):
    path = tmp_path / "registry.sqlite3"
    garbage = b"this is not sqlite\n" * 100
    path.write_bytes(garbage)
    with pytest.raises(RegistryError) as info:
        Registry(path)
    message = str(info.value)
    assert str(path) in message and "move it aside" in message.lower()
    assert path.read_bytes() == garbage


def test_unwritable_location_names_path_and_env_var(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(RegistryError) as info:
        Registry(blocker / "registry.sqlite3")
    assert str(blocker / "registry.sqlite3") in str(info.value)
    assert "SM_MAGIC_REGISTRY" in str(info.value)


def test_directory_at_path_is_reported(tmp_path):
    with pytest.raises(RegistryError, match="directory"):
        Registry(tmp_path)


def test_default_path_honours_env_var(tmp_path, monkeypatch):
    target = tmp_path / "custom" / "jobs.sqlite3"
    monkeypatch.setenv("SM_MAGIC_REGISTRY", str(target))
    registry = Registry()
    assert registry.path == target
    registry.add(job("a"))
    assert target.exists()  # parent directory was created


def test_default_path_without_env_var_is_under_home(tmp_path, monkeypatch):
    monkeypatch.delenv("SM_MAGIC_REGISTRY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Registry().path == tmp_path / ".sm_magic" / "registry.sqlite3"


def test_file_uses_wal_journal(registry):
    import sqlite3

    con = sqlite3.connect(registry.path)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        con.close()
