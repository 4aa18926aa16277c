"""The bundle's entry command (`python sm_entry.py`) as a container runs it: real processes, the
launch it chooses, the signals it passes on, the exit status it keeps and the failure reason it
leaves in SM_OUTPUT_DIR/failure (/opt/ml/output/failure in SageMaker's container)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from sm_magic.bundle.build import BundleCode, JobSpec, build_bundle
from sm_magic.config.model import TrainConfig
from sm_magic.container.entry import launch_command, launch_env

from helpers.jobscripts import script, wait_until


def run_entry(tmp_path, source, args=(), **config):
    """Build a bundle and start its entry command with a one-host container environment."""
    bundle = build_bundle(BundleCode(source), JobSpec(TrainConfig(**config), list(args), name="entry"), dest=tmp_path / "bundle")
    out = tmp_path / "output"
    out.mkdir()
    env = {**os.environ, "SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-1", "SM_NUM_GPUS": "0",
           "SM_OUTPUT_DIR": str(out), "SM_MODEL_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "log.txt", "wb")
    proc = subprocess.Popen([sys.executable, "sm_entry.py"], cwd=bundle.path, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    return proc, tmp_path / "log.txt", out / "failure"


@pytest.mark.jobs
def test_a_failure_leaves_the_users_exception_and_line_in_the_failure_file(tmp_path):
    proc, log, failure = run_entry(tmp_path, script("""
        print("starting")
        x = 1
        y = x / 0
    """))
    assert proc.wait(timeout=120) == 1  # the script's own exit status
    assert failure.read_text().strip() == "ZeroDivisionError: division by zero [train.py, line 3]"
    text = log.read_text()
    assert "starting" in text and "Traceback" in text  # the output passed through unchanged


@pytest.mark.jobs
def test_a_script_that_writes_its_own_reason_keeps_it(tmp_path):
    proc, _, failure = run_entry(tmp_path, script("""
        import os, sys
        with open(os.path.join(os.environ["SM_OUTPUT_DIR"], "failure"), "w") as f:
            f.write("out of data: the shard list is empty")
        sys.exit(3)
    """))
    assert proc.wait(timeout=120) == 1  # accelerate's launcher ends with 1 whatever the script's status
    assert failure.read_text() == "out of data: the shard list is empty"


@pytest.mark.jobs
def test_sigterm_to_the_entry_command_alone_reaches_the_script_once(tmp_path):
    """A platform signals the container's command, not its children: the entry command passes it
    on to the launcher's group, so the script saves and leaves; a stop is not a failure."""
    proc, log, failure = run_entry(tmp_path, script("""
        import os, signal, sys, time
        seen = []
        def on_term(signum, frame):
            seen.append(signum)
            time.sleep(0.5)  # a second SIGTERM would land here
            with open(os.path.join(os.environ["SM_MODEL_DIR"], "saved.json"), "w") as f:
                json_text = '{"terms": %d}' % len(seen)
                f.write(json_text)
            sys.exit(143)
        signal.signal(signal.SIGTERM, on_term)
        print("ready", flush=True)
        while True:
            time.sleep(0.1)
    """))
    wait_until(lambda: "ready" in log.read_text(), 60, "the script to start")
    os.kill(proc.pid, signal.SIGTERM)
    status = proc.wait(timeout=60)
    assert json.loads((tmp_path / "saved.json").read_text()) == {"terms": 1}
    assert status != 0 and not failure.exists()  # the script's exit status, and no failure reason


def test_one_process_in_all_is_a_plain_launch():
    spec = {"script": "train.py", "distributed_type": "DATA_PARALLEL"}
    one_gpu = {"SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-1", "SM_NUM_GPUS": "1"}
    cmd, notes = launch_command(spec, one_gpu, "/b")
    assert "--multi_gpu" not in cmd and cmd[cmd.index("--num_processes") + 1] == "1"
    assert any("plain single-process launch" in n for n in notes)
    two_hosts = {**one_gpu, "SM_HOSTS": '["algo-1", "algo-2"]', "SM_CURRENT_HOST": "algo-2"}
    cmd, _ = launch_command(spec, two_hosts, "/b")
    assert "--multi_gpu" in cmd and cmd[cmd.index("--num_processes") + 1] == "2"
    assert cmd[cmd.index("--machine_rank") + 1] == "1"


def test_nccl_and_efa_environment_as_the_sdks_torchrun_driver_sets_it():
    spec = {"distributed_type": "DATA_PARALLEL"}
    p4d = {"SM_NUM_GPUS": "8", "SM_CURRENT_INSTANCE_TYPE": "ml.p4d.24xlarge", "SM_NETWORK_INTERFACE_NAME": "eth0"}
    env = launch_env(spec, p4d)
    assert {k: env[k] for k in ("NCCL_SOCKET_IFNAME", "NCCL_PROTO", "FI_PROVIDER", "FI_EFA_USE_DEVICE_RDMA",
                                "RDMAV_FORK_SAFE")} == {"NCCL_SOCKET_IFNAME": "eth0", "NCCL_PROTO": "simple",
                                                        "FI_PROVIDER": "efa", "FI_EFA_USE_DEVICE_RDMA": "1",
                                                        "RDMAV_FORK_SAFE": "1"}
    g5 = launch_env(spec, {"SM_NUM_GPUS": "1", "SM_CURRENT_INSTANCE_TYPE": "ml.g5.xlarge",
                           "SM_NETWORK_INTERFACE_NAME": "eth1", "NCCL_PROTO": "LL128"})
    assert g5["NCCL_SOCKET_IFNAME"] == "eth1" and "NCCL_PROTO" not in g5 and "FI_PROVIDER" not in g5
    assert "NCCL_SOCKET_IFNAME" not in launch_env(spec, {"SM_NUM_GPUS": "0"})  # no GPU, no NCCL


def test_rich_is_told_the_log_is_a_terminal_unless_the_job_says_otherwise():
    spec = {"distributed_type": "NO"}
    env = launch_env(spec, {"SM_NUM_GPUS": "0"})
    assert env["TTY_COMPATIBLE"] == env["TTY_INTERACTIVE"] == "1"
    for own in ("TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env = launch_env(spec, {"SM_NUM_GPUS": "0", own: "0"})
        assert "TTY_COMPATIBLE" not in env and "TTY_INTERACTIVE" not in env
