"""The local backend: a job on this machine, laid out like a SageMaker container, no Docker.

`sm_jobs/<name>/` holds the bundle, an `opt_ml/` tree like `/opt/ml` (input/config/*.json,
input/data/<channel>, model/, output/, checkpoints/), one log per host, and state.json. A job
runner process in its own session runs the bundle's entry command, so the job outlives a kernel
restart; this class only writes the job directory, starts the runner and reads its files.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from ..bundle import Bundle
from ..config import TrainConfig
from . import s3_inputs
from .base import BackendError, JobState, progress
from .local_state import JobFiles, enter, finish, kill_sessions, pid_alive, read_state, write_state

MAX_LOG_CHUNK = 1 << 20  # bytes read per logs() call, so a flood never fills memory


def default_jobs_dir() -> Path:
    return Path(os.environ.get("SM_MAGIC_JOBS_DIR") or "sm_jobs").absolute()


def gpu_count() -> int:
    """GPUs this host offers a job, without importing torch."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    return len(glob.glob("/dev/nvidia[0-9]*"))


def _s3_client(config: TrainConfig):
    import boto3

    return boto3.Session(profile_name=config.profile, region_name=config.region).client("s3")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalBackend:
    """Runs jobs under `jobs_dir` (default: $SM_MAGIC_JOBS_DIR or ./sm_jobs)."""

    name = "local"
    poll_interval = 0.2  # seconds; describing a local job is one small file read

    def __init__(self, jobs_dir: str | os.PathLike | None = None):
        self.jobs_dir = Path(jobs_dir).absolute() if jobs_dir else default_jobs_dir()
        self._runners: dict[str, subprocess.Popen] = {}

    def job_dir(self, name: str) -> Path:
        return self.jobs_dir / name

    # -- submit ------------------------------------------------------------------------------

    def check_writable(self) -> None:
        """Fail before anything is built when job directories cannot be created."""
        try:
            self.jobs_dir.mkdir(parents=True, exist_ok=True)
            os.rmdir(tempfile.mkdtemp(prefix=".probe-", dir=self.jobs_dir))  # unique per thread
        except OSError as e:
            raise BackendError(f"cannot write job directories under {self.jobs_dir}: {e.strerror}. "
                               "Run from a writable directory or set SM_MAGIC_JOBS_DIR.") from None

    def check_config(self, config: TrainConfig) -> None:
        """Refuse, before anything is written, what this machine cannot run."""
        mode = config.distributed_type
        if mode in ("FSDP", "DEEPSPEED") and (config.use_cpu or gpu_count() == 0):
            where = "use_cpu is set" if config.use_cpu else "this machine has no GPU"
            raise BackendError(
                f"distributed_type {mode} shards the model across GPUs and {where}: accelerate runs "
                f"{mode} on GPUs only (on CPU it would quietly fall back to plain data parallel). Run "
                "it on SageMaker (--instance-type ml.g5.12xlarge, for example), or use DATA_PARALLEL here.")
        if mode == "DEEPSPEED" and importlib.util.find_spec("deepspeed") is None:
            raise BackendError("distributed_type DEEPSPEED needs the deepspeed package, which is not installed "
                               "here: `pip install deepspeed`, or run the job on SageMaker")

    def submit(self, bundle: Bundle, config: TrainConfig, *, interruptions: Sequence[float] = ()) -> str:
        """Start the job; `interruptions` simulates spot capacity being reclaimed that many
        seconds into each successive run of the hosts (each ends one run; the job restarts)."""
        bundle = dataclasses.replace(bundle, inputs=self._local_inputs(bundle, config))
        return self._in_new_job_dir(
            bundle.name, lambda files: self._start(bundle, config, files, list(interruptions)))

    def _local_inputs(self, bundle: Bundle, config: TrainConfig) -> dict[str, str]:
        """Every channel as a local path: s3:// data downloaded (once: cached), as SageMaker would."""
        inputs = {}
        for channel, uri in bundle.inputs.items():
            if uri.startswith("s3://"):
                inputs[channel] = str(s3_inputs.download(_s3_client(config), channel, uri, log=progress))
            elif not s3_inputs.local_path(uri).exists():
                raise BackendError(f"input channel {channel}: {uri} is neither a local path that exists nor an "
                                   "s3:// URI")
            else:
                inputs[channel] = str(s3_inputs.local_path(uri))
        return inputs

    def _in_new_job_dir(self, name: str, start) -> str:
        """`start(files)` in a new job directory; if it fails, no directory is left behind."""
        self.check_writable()
        files = JobFiles(self.job_dir(name))
        try:
            files.dir.mkdir()
        except FileExistsError:
            raise BackendError(f"a job named {name} already exists in {self.jobs_dir}: "
                               "choose another --name") from None
        try:
            return start(files)
        except BaseException:
            shutil.rmtree(files.dir, ignore_errors=True)
            raise

    def _start(self, bundle: Bundle, config: TrainConfig, files: JobFiles, interruptions: list[float]) -> str:
        shutil.move(str(bundle.path), files.bundle)
        hosts = [f"algo-{i}" for i in range(1, config.num_machines + 1)]
        port = _free_port()
        host_env = {host: self._layout_host(files, host, hosts, bundle, config, port) for host in hosts}
        spec = {"entry_command": list(bundle.entry_command), "host_env": host_env,
                "interruptions": interruptions, "max_run": config.max_run,
                "max_wait": config.max_wait if config.use_spot_instances else None}
        return self._start_runner(bundle, config, files, "sm_magic.backends.local_runner", {"local": spec})

    def _start_runner(self, bundle: Bundle, config: TrainConfig, files: JobFiles, module: str,
                      extra: dict) -> str:
        """Write the job's first state (Starting) and start the runner `module` on the job
        directory, in a session of its own so that it outlives the kernel."""
        now = time.time()
        state = JobState(name=bundle.name, creation_time=now, instance_type=config.ec2_instance_type,
                         instance_count=config.num_machines, hyperparameters=bundle.hyperparameters)
        state.extra.update(extra)
        enter(state, "Starting", "Preparing the instances for training", status="InProgress", now=now)
        write_state(files.state, state)
        with open(files.runner_log, "ab") as log:
            self._runners[bundle.name] = subprocess.Popen(
                [sys.executable, "-m", module, str(files.dir)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, cwd=files.dir)
        return bundle.name

    def _layout_host(self, files: JobFiles, host: str, hosts: list[str], bundle: Bundle,
                     config: TrainConfig, port: int) -> dict[str, str]:
        """Make one host's opt_ml tree; returns the SM_* environment pointing into it."""
        root = files.opt_ml(host, hosts)
        for sub in ("input/config", "input/data", "model", "output/data"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        # One checkpoint directory for every host: on SageMaker each host syncs its own with the
        # same S3 prefix, and a restarted job gets the merged contents on every host.
        checkpoints = files.opt_ml(hosts[0], hosts) / "checkpoints"
        if host == hosts[0]:
            checkpoints.mkdir()
        else:
            (root / "checkpoints").symlink_to(checkpoints)
        for channel, uri in bundle.inputs.items():
            (root / "input/data" / channel).symlink_to(uri)
        resource = {"current_host": host, "hosts": hosts, "network_interface_name": "lo",
                    "current_instance_type": config.ec2_instance_type}
        channels = {c: {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}
                    for c in bundle.inputs}
        cfg = root / "input/config"
        (cfg / "hyperparameters.json").write_text(json.dumps(bundle.hyperparameters, indent=1))
        (cfg / "resourceconfig.json").write_text(json.dumps(resource, indent=1))
        (cfg / "inputdataconfig.json").write_text(json.dumps(channels, indent=1))
        gpus = 0 if config.use_cpu else gpu_count()
        env = {
            "TRAINING_JOB_NAME": bundle.name,
            "SM_MODEL_DIR": str(root / "model"),
            "SM_OUTPUT_DIR": str(root / "output"),
            "SM_OUTPUT_DATA_DIR": str(root / "output/data"),
            "SM_OUTPUT_INTERMEDIATE_DIR": str(root / "output/intermediate"),
            "SM_INPUT_DIR": str(root / "input"),
            "SM_INPUT_CONFIG_DIR": str(cfg),
            "SM_CHECKPOINT_DIR": str(checkpoints),
            "SM_CHANNELS": json.dumps(sorted(bundle.inputs)),
            "SM_HOSTS": json.dumps(hosts),
            "SM_CURRENT_HOST": host,
            "SM_CURRENT_INSTANCE_TYPE": config.ec2_instance_type,
            "SM_NUM_GPUS": str(gpus),
            "SM_NUM_CPUS": str(os.cpu_count() or 1),
            "SM_HPS": json.dumps(bundle.hyperparameters),
            "SM_USER_ARGS": json.dumps(bundle.args),
            "SM_MODULE_DIR": str(files.bundle),
            "SM_NETWORK_INTERFACE_NAME": "lo",
            "SM_MAGIC_MAIN_ADDR": "127.0.0.1",
            "SM_MAGIC_MAIN_PORT": str(port),
            "PYTHONUNBUFFERED": "1",
        }
        for channel in bundle.inputs:
            env[f"SM_CHANNEL_{channel.upper()}"] = str(root / "input/data" / channel)
        return env

    # -- describe / logs / stop --------------------------------------------------------------

    def _files(self, name: str) -> JobFiles:
        files = JobFiles(self.job_dir(name))
        if not files.state.is_file():
            raise BackendError(f"no local job named {name} under {self.jobs_dir}")
        return files

    def describe(self, name: str) -> JobState:
        files = self._files(name)
        state = read_state(files.state)
        if not state.done and not self._runner_alive(name, state):
            # Re-read: the runner may have written its last state just before it exited.
            state = read_state(files.state)
            if not state.done:
                kill_sessions(list(state.extra.get("pgids", {}).values()))
                state.failure_reason = ("InternalServerError: the local job runner ended before the job "
                                        f"did; see {files.runner_log}")
                finish(state, "Failed", "Training job failed")
                write_state(files.state, state)
        return state

    def _runner_alive(self, name: str, state: JobState) -> bool:
        proc = self._runners.get(name)
        if proc is not None and proc.poll() is None:
            return True
        pid = state.extra.get("runner_pid")
        if pid is None:  # not started yet, or started by another kernel that is gone
            return proc is None and time.time() - state.creation_time < 60
        return pid_alive(pid)

    def logs(self, name: str, cursor: Any = None) -> tuple[list[str], dict]:
        """New complete lines of every host's log; several hosts' lines carry a `host | ` prefix."""
        files = self._files(name)
        cursor = dict(cursor or {})
        paths = sorted(files.logs.glob("*.log"), key=lambda p: int(p.stem.rsplit("-", 1)[-1]))
        lines: list[str] = []
        finished = lambda: read_state(files.state).done  # noqa: E731 - read only when a line is partial
        for path in paths:
            host = path.stem
            offset = cursor.get(host, 0)
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read(MAX_LOG_CHUNK)
            end = chunk.rfind(b"\n") + 1
            if end < len(chunk) and (len(chunk) == MAX_LOG_CHUNK and end == 0 or finished()):
                end = len(chunk)  # an over-long line, or the last line of a finished job
            if end == 0:
                continue
            text = chunk[:end].decode("utf-8", "replace").splitlines()
            lines.extend(text if len(paths) == 1 else [f"{host} | {line}" for line in text])
            cursor[host] = offset + end
        return lines, cursor

    def stop(self, name: str) -> None:
        files = self._files(name)
        state = read_state(files.state)
        if state.done:
            return
        files.stop_marker.touch()
        pid = state.extra.get("runner_pid")
        if pid and pid_alive(pid):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
