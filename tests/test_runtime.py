"""sm_magic.runtime: checkpoints that survive a kill, and the copy every bundle carries."""

import json
import multiprocessing
import os
import subprocess
import sys

import pytest

from sm_magic.bundle.build import BundleCode, JobSpec, build_bundle
from sm_magic.config.model import TrainConfig
from sm_magic.container.entry import launch_env
from sm_magic.runtime import checkpoint_dir, checkpoints, latest_checkpoint, resume, save_checkpoint


def writer(value):
    def save(path):
        with open(os.path.join(path, "state.json"), "w") as f:
            json.dump({"value": value}, f)
    return save


def test_fresh_start_then_resume_from_the_newest_checkpoint(tmp_path, capsys):
    loaded = []
    assert resume(load=loaded.append, directory=str(tmp_path)) == 0
    assert loaded == []
    for step in range(3):
        path = save_checkpoint(None, step, save=writer(step), directory=str(tmp_path))
        assert path == str(tmp_path / f"ckpt-{step}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-1", "ckpt-2"]  # keep=2
    assert resume(load=loaded.append, directory=str(tmp_path)) == 3
    assert loaded == [str(tmp_path / "ckpt-2")]
    assert json.loads((tmp_path / "ckpt-2" / "state.json").read_text()) == {"value": 2}
    out = capsys.readouterr().out
    assert "no complete checkpoint" in out and "resumed from checkpoint 2" in out


def test_a_save_killed_midway_leaves_the_previous_checkpoint_as_the_latest(tmp_path):
    save_checkpoint(None, 4, save=writer(4), directory=str(tmp_path))
    # What a kill leaves: a half-written temporary directory, or a copy without its marker.
    (tmp_path / ".tmp-ckpt-5").mkdir()
    (tmp_path / ".tmp-ckpt-5" / "state.json").write_text("{")
    (tmp_path / "ckpt-6").mkdir()
    assert latest_checkpoint(str(tmp_path)) == (4, str(tmp_path / "ckpt-4"))
    # Saving step 5 again (the resumed run redoes it) replaces the leftover.
    save_checkpoint(None, 5, save=writer(5), directory=str(tmp_path), keep=5)
    assert not (tmp_path / ".tmp-ckpt-5").exists()
    assert latest_checkpoint(str(tmp_path)) == (5, str(tmp_path / "ckpt-5"))
    assert json.loads((tmp_path / "ckpt-5" / "state.json").read_text()) == {"value": 5}


def test_save_failing_in_the_user_code_keeps_the_last_checkpoint(tmp_path):
    save_checkpoint(None, 0, save=writer(0), directory=str(tmp_path))

    def broken(path):
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(None, 1, save=broken, directory=str(tmp_path))
    assert latest_checkpoint(str(tmp_path)) == (0, str(tmp_path / "ckpt-0"))


def test_save_needs_something_to_save_with(tmp_path):
    with pytest.raises(TypeError, match="Accelerator, or save=fn"):
        save_checkpoint(None, 0, directory=str(tmp_path))
    with pytest.raises(ValueError, match="0 or more"):
        save_checkpoint(None, -1, save=writer(0), directory=str(tmp_path))


def test_checkpoint_dir_comes_from_the_job_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SM_CHECKPOINT_DIR", str(tmp_path / "ck"))
    assert checkpoint_dir() == str(tmp_path / "ck")
    # On SageMaker nothing names the directory: the entry command sets it from the config.
    spec = {"checkpoint_dir": "/opt/ml/checkpoints"}
    assert launch_env(spec, {"SM_NUM_GPUS": "0"})["SM_CHECKPOINT_DIR"] == "/opt/ml/checkpoints"
    assert "SM_CHECKPOINT_DIR" not in launch_env(spec, {"SM_NUM_GPUS": "0", "SM_CHECKPOINT_DIR": "/x"})


def test_the_bundle_carries_a_stdlib_only_runtime(tmp_path):
    cfg = TrainConfig(checkpoint_local_path="/opt/ml/checkpoints/custom")
    bundle = build_bundle(BundleCode("from sm_magic.runtime import resume\nprint(resume(load=print))\n"),
                          JobSpec(cfg, [], name="j"), dest=tmp_path / "b")
    spec = json.loads((bundle.path / "sm_launch.json").read_text())
    assert spec["checkpoint_dir"] == "/opt/ml/checkpoints/custom"
    # -S -I: no site-packages and no user environment, as in a container without sm_magic.
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import sm_magic.runtime as r; "
             "print(r.__file__); print(r.resume(load=print))")
    env = {"SM_CHECKPOINT_DIR": str(tmp_path / "ck"), "PATH": os.environ["PATH"]}
    save_checkpoint(None, 7, save=writer(7), directory=str(tmp_path / "ck"))
    out = subprocess.run([sys.executable, "-S", "-I", "-c", probe, str(bundle.path)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == str(bundle.path / "sm_magic" / "runtime.py")
    assert lines[-1] == "8" and str(tmp_path / "ck" / "ckpt-7") in out.stdout


class HostAccelerator:
    """Accelerate's side of save_checkpoint for one single-process host of two: the main
    process saves the model, every process its RNG state; barriers across both hosts."""

    def __init__(self, rank, barrier):
        self.process_index, self.barrier = rank, barrier
        self.is_local_main_process, self.is_main_process, self.num_processes = True, rank == 0, 2

    def wait_for_everyone(self):
        self.barrier.wait()

    def save_state(self, path):
        os.makedirs(path, exist_ok=True)
        if self.is_main_process:
            open(os.path.join(path, "model.safetensors"), "w").write("w")
        open(os.path.join(path, f"random_states_{self.process_index}.pkl"), "w").write("r")


def _host(rank, barrier, directory, steps, found):
    os.environ.update(SM_HOSTS='["algo-1", "algo-2"]', SM_CURRENT_HOST=f"algo-{rank + 1}")
    acc = HostAccelerator(rank, barrier)
    for step in range(steps):
        save_checkpoint(acc, step, directory=directory)
        path = os.path.join(directory, f"ckpt-{step}")
        complete = dict((s, m) for s, _, m in checkpoints(directory)).get(step, "gone") is None and sorted(
            os.listdir(path)) == ["model.safetensors", "random_states_0.pkl", "random_states_1.pkl",
                                  "sm_magic_checkpoint-algo-1.json", "sm_magic_checkpoint-algo-2.json"]
        found.put((rank, step, complete))
        barrier.wait()


def test_two_hosts_sharing_the_directory_never_lose_a_checkpoint(tmp_path):
    # Both hosts' first processes finish each checkpoint (on SageMaker each has its own
    # directory); sharing one, as the local backend's hosts do, they must not undo each other.
    ctx = multiprocessing.get_context("fork")
    barrier, found = ctx.Barrier(2), ctx.Queue()
    hosts = [ctx.Process(target=_host, args=(rank, barrier, str(tmp_path), 100, found)) for rank in (0, 1)]
    for h in hosts:
        h.start()
    results = [found.get(timeout=60) for _ in range(200)]
    for h in hosts:
        h.join(timeout=60)
    assert [r for r in results if not r[2]] == []
    assert latest_checkpoint(str(tmp_path)) == (99, str(tmp_path / "ckpt-99"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-98", "ckpt-99"]


def test_saving_a_step_again_replaces_it(tmp_path):
    save_checkpoint(None, 3, save=writer("first"), directory=str(tmp_path))
    save_checkpoint(None, 3, save=writer("second"), directory=str(tmp_path))
    assert json.loads((tmp_path / "ckpt-3" / "state.json").read_text()) == {"value": "second"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-3"]


def _save_as(host, directory, step, monkeypatch):
    """Host `host`'s part of checkpoint `step`, in its own directory, as on SageMaker."""
    monkeypatch.setenv("SM_HOSTS", '["algo-1", "algo-2"]')
    monkeypatch.setenv("SM_CURRENT_HOST", host)

    def save(path):
        with open(os.path.join(path, f"part-{host}.bin"), "w") as f:
            f.write(host * (step + 1))
    return save_checkpoint(None, step, save=save, directory=str(directory), keep=5)


def _sync(source, dest, skip=()):
    """What S3 gets from a host's checkpoint directory (minus `skip`), laid into `dest`."""
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = path.relative_to(source)
        if not any(rel.as_posix().startswith(s) for s in skip):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_bytes(path.read_bytes())


def test_a_checkpoint_one_host_never_synced_is_skipped_for_the_newest_complete_one(tmp_path, monkeypatch, capsys):
    """Two hosts, each its own checkpoint directory synced to one S3 prefix; the reclaim came
    before algo-1's part of checkpoint 1 reached S3, while algo-2's (its marker too) did."""
    one, two, restored = tmp_path / "algo-1", tmp_path / "algo-2", tmp_path / "restored"
    for step in (0, 1):
        _save_as("algo-1", one, step, monkeypatch)
        _save_as("algo-2", two, step, monkeypatch)
    _sync(one, restored, skip=("ckpt-1",))
    _sync(two, restored)
    assert sorted(p.name for p in (restored / "ckpt-1").iterdir()) == ["part-algo-2.bin",
                                                                       "sm_magic_checkpoint-algo-2.json"]
    loaded = []
    assert resume(load=loaded.append, directory=str(restored)) == 1
    assert loaded == [str(restored / "ckpt-0")]
    out = capsys.readouterr().out
    assert "checkpoint 1 is incomplete (algo-1's part is missing): not resuming from it" in out
    assert "resumed from checkpoint 0" in out
    assert latest_checkpoint(str(restored)) == (0, str(restored / "ckpt-0"))


def test_a_file_that_arrived_cut_short_makes_its_checkpoint_incomplete(tmp_path, monkeypatch):
    for host in ("algo-1", "algo-2"):
        _save_as(host, tmp_path / host, 3, monkeypatch)
        _sync(tmp_path / host, tmp_path)
    assert checkpoints(str(tmp_path)) == [(3, str(tmp_path / "ckpt-3"), None)]
    (tmp_path / "ckpt-3" / "part-algo-1.bin").write_text("algo")
    assert checkpoints(str(tmp_path))[0][2] == "part-algo-1.bin from algo-1 is incomplete"
    (tmp_path / "ckpt-3" / "part-algo-1.bin").unlink()
    assert checkpoints(str(tmp_path))[0][2] == "part-algo-1.bin from algo-1 is missing"
    assert latest_checkpoint(str(tmp_path)) is None
