"""The local backend: a job on this machine, laid out like a SageMaker container, no Docker.

`sm_jobs/<name>/` holds the bundle, an `opt_ml/` tree like `/opt/ml` (input/config/*.json,
input/data/<channel>, model/, output/, checkpoints/), one log per host, and state.json. A job
runner process in its own session runs the bundle's entry command, so the job outlives a kernel
restart; this class only writes the job directory, starts the runner and reads its files.

A job owns its processes: each carries the job's token (SM_MAGIC_JOB_TOKEN) and is found by it
in /proc, and nothing is signalled before it is proven to be the job's (local_procs). The runner
is proven by the identity recorded when it was started (runner.json: pid, start time, boot id);
a runner that fails the proof is gone, and whoever describes the job next ends its processes and
records the outcome (local_recovery). A job directory that no longer exists raises
JobMissingError.
"""

from __future__ import annotations

import dataclasses
import errno
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
from typing import Any

from ...bundle.build import Bundle
from ...config.model import TrainConfig
from ...console import progress
from ...metrics.tensorboard_events import ScalarReader
from ..base import BackendClass, BackendError, JobState, SubmitOptions, Traits, local_path
from . import procs as local_procs
from . import s3_download
from .changed_files import ChangedFiles, unchanged_since
from .recovery import failed_in_memory, recover
from .state import JobFiles, enter, job_token, read_runner, read_state, write_json, write_state

MAX_LOG_CHUNK = 1 << 20  # bytes read per logs() call, so a flood never fills memory
MAX_LOCAL_HOSTS = 64     # hosts one machine runs at most, however many CPUs it has
MIN_LOCAL_HOSTS = 4      # ... and at least, however few (a small machine can still rehearse 4)
STARTING_GRACE_SECONDS = 60  # a job whose runner identity is not recorded yet counts as starting


class JobMissingError(BackendError):
    """The local job's directory no longer exists (deleted or moved): nothing of it can be read."""

    def __init__(self, name: str, path: Path):
        super().__init__(f"local job {name}: its directory {path} no longer exists (deleted or moved); "
                         "its state, logs and model are gone")
        self.name, self.path = name, path


def max_local_hosts() -> int:
    """How many hosts the local backend runs on this machine: one per CPU, within the bounds."""
    return min(MAX_LOCAL_HOSTS, max(MIN_LOCAL_HOSTS, os.cpu_count() or 1))


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


class LocalBackend(BackendClass):
    """Runs jobs under `jobs_dir` (default: $SM_MAGIC_JOBS_DIR or ./sm_jobs)."""

    name = "local"
    poll_interval = 0.2  # seconds; describing a local job is one small file read
    simulates_interruptions = True
    traits = Traits(job_dir=True)

    @classmethod
    def host_gpus(cls) -> int | None:
        return gpu_count()  # every host of a local job is given every GPU here

    @classmethod
    def max_hosts(cls) -> int | None:
        return max_local_hosts()

    def __init__(self, jobs_dir: str | os.PathLike | None = None):
        self.jobs_dir = Path(jobs_dir).absolute() if jobs_dir else default_jobs_dir()
        self._runners: dict[str, subprocess.Popen] = {}
        # Many jobs are polled every quarter second: what did not change is not read again.
        self._states: ChangedFiles[JobState] = ChangedFiles()
        self._runner_records: ChangedFiles[dict | None] = ChangedFiles()
        self._log_lists: ChangedFiles[list[Path]] = ChangedFiles()

    def job_dir(self, name: str) -> Path:
        return self.jobs_dir / name

    def job_location(self, name: str) -> str:
        return str(self.job_dir(name))

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
        self._check_hosts(config)
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

    def _check_hosts(self, config: TrainConfig) -> None:
        cap = max_local_hosts()
        if config.num_machines > cap:
            raise BackendError(
                f"instance_count {config.num_machines} is more than this machine can host: the local backend runs "
                f"every host as processes with its own opt_ml tree here, at most {cap} (one per CPU, "
                f"{os.cpu_count()} here, at least {MIN_LOCAL_HOSTS} and at most {MAX_LOCAL_HOSTS}). Use "
                f"--instance-count {cap} or fewer, or run the job on SageMaker (--instance-type ml.*).")

    def dry_run(self, bundle: Bundle, config: TrainConfig) -> str:
        """The config, hyperparameters, bundle files, inputs and metric definitions the job would get."""
        out = ["Config:", *("  " + l for l in config.shown_yaml().splitlines()),
               "", f"Hyperparameters: {json.dumps(bundle.hyperparameters)}",
               "", "Bundle files: " + ", ".join(sorted(f.name for f in bundle.path.iterdir()))]
        if bundle.inputs:
            out += ["Inputs: " + ", ".join(f"{k}={v}" for k, v in bundle.inputs.items())]
        if bundle.metric_definitions:
            out += ["Metric definitions: " + ", ".join(f"{m.name}={m.regex}" for m in bundle.metric_definitions)]
        return "\n".join(out)

    def submit(self, bundle: Bundle, config: TrainConfig, options: SubmitOptions = SubmitOptions()) -> str:
        """Start the job; `options.interruptions` simulates spot capacity being reclaimed that many
        seconds into each successive run of the hosts (each ends one run; the job restarts)."""
        self._check_hosts(config)  # before anything is written, whoever called check_config
        bundle = dataclasses.replace(bundle, inputs=self._local_inputs(bundle))
        return self._in_new_job_dir(
            bundle.name, lambda files: self._start(bundle, config, files, list(options.interruptions)))

    def _local_inputs(self, bundle: Bundle) -> dict[str, str]:
        """Every channel as a local path that exists, or an s3:// URI (downloaded in _start)."""
        inputs = {}
        for channel, uri in bundle.inputs.items():
            if uri.startswith("s3://"):
                inputs[channel] = uri
            elif not local_path(uri).exists():
                raise BackendError(f"input channel {channel}: {uri} is neither a local path that exists nor an "
                                   "s3:// URI")
            else:
                inputs[channel] = str(local_path(uri))
        return inputs

    def _fetch_s3_inputs(self, bundle: Bundle, config: TrainConfig, files: JobFiles, hosts: list[str]) -> list[str]:
        """Each host its own copy of each s3:// channel, as each SageMaker instance downloads its
        own: what one job writes there is never what another reads. The copies' paths in the job
        directory, for the runner to free when the job ends (S3 keeps the data)."""
        copies = []
        for channel, uri in bundle.inputs.items():
            if uri.startswith("s3://"):
                targets = [files.opt_ml(host, hosts) / "input/data" / channel for host in hosts]
                s3_download.fetch(_s3_client(config), channel, uri, targets, log=progress)
                copies += [str(t.relative_to(files.dir)) for t in targets]
        return copies

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
        copies = self._fetch_s3_inputs(bundle, config, files, hosts)
        spec = {"entry_command": list(bundle.entry_command), "host_env": host_env, "input_copies": copies,
                "token": local_procs.new_token(),
                "interruptions": interruptions, "max_run": config.max_run,
                "max_wait": config.max_wait if config.use_spot_instances else None}
        return self._start_runner(bundle, config, files, "sm_magic.backends.local.runner", {"local": spec})

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
            runner = subprocess.Popen(
                [sys.executable, "-m", module, str(files.dir)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, cwd=files.dir)
        # The runner is our child and not reaped yet, so its pid is still its own: what proves it
        # later (to this or any other reader) is recorded now.
        try:
            identity = local_procs.identity(runner.pid)
            if identity is None:
                raise OSError(errno.ESRCH, "the job runner ended at once", str(files.runner_log))
            write_json(files.runner_record, identity)
        except OSError as e:
            runner.kill()
            runner.wait()
            token = job_token(state)
            if token:
                local_procs.end_token_processes(token, timeout=10)
            raise BackendError(f"could not start the job runner for {bundle.name}: {e.filename}: "
                               f"{e.strerror or e}") from None
        self._runners[bundle.name] = runner
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
            if not uri.startswith("s3://"):  # the user's own directory; s3:// ones are copied in
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
        """The job's files; JobMissingError when its directory is gone."""
        files = JobFiles(self.job_dir(name))
        if not files.dir.is_dir():
            raise JobMissingError(name, files.dir)
        return files

    def _read_state(self, name: str, files: JobFiles) -> JobState:
        try:
            return self._states.read(files.state, read_state).copy()
        except FileNotFoundError:
            if not files.dir.is_dir():
                raise JobMissingError(name, files.dir) from None
            raise BackendError(f"local job {name} has no state file ({files.state}): the job is being "
                               "created, or its state was deleted") from None
        except (OSError, ValueError) as e:
            raise BackendError(f"the state of local job {name} cannot be read ({files.state}: "
                               f"{getattr(e, 'strerror', None) or e})") from None

    def describe(self, name: str) -> JobState:
        """The job's state. A job whose runner is gone is ended and recorded here (by whichever
        reader comes first); when that record cannot be written, the ending is returned (Failed,
        with the reason) without raising. A deleted job directory raises JobMissingError."""
        files = self._files(name)
        state = self._read_state(name, files)
        if state.done or self._runner_alive(name, files, state):
            return state
        try:
            return recover(files, lambda current: not self._runner_alive(name, files, current))
        except FileNotFoundError:
            if not files.dir.is_dir():
                raise JobMissingError(name, files.dir) from None
            return self._read_state(name, files)
        except OSError as e:  # the lock, the state: nothing a reader may crash on
            return failed_in_memory(state, files.state, e)

    def _runner_alive(self, name: str, files: JobFiles, state: JobState) -> bool:
        """Proven, never guessed from a pid: our own child still running, or the process that
        runner.json identifies (pid, start time, boot id) still running."""
        proc = self._runners.get(name)
        if proc is not None and proc.poll() is None:
            return True
        try:
            identity = self._runner_records.read(files.runner_record, lambda _: read_runner(files))
        except FileNotFoundError:
            identity = None
        except OSError as e:
            raise BackendError(f"the runner record of local job {name} cannot be read ({files.runner_record}: "
                               f"{e.strerror})") from None
        if identity is None:  # being started (by another kernel): not recorded yet
            return proc is None and time.time() - state.creation_time < STARTING_GRACE_SECONDS
        return local_procs.alive(identity)

    def logs(self, name: str, cursor: Any = None) -> tuple[list[str], dict]:
        """New complete lines of every host's log; several hosts' lines carry a `host | ` prefix.
        Needs the job directory only (not its state file)."""
        files = self._files(name)
        cursor = dict(cursor or {})
        try:
            paths = self._log_lists.read(files.logs, lambda d: sorted(d.glob("*.log"), key=_host_order))
        except FileNotFoundError:
            paths = []
        lines: list[str] = []
        for path in paths:
            host = path.stem
            offset = cursor.get(host, 0)
            if offset and unchanged_since(path, offset):
                continue  # nothing appended: not opened
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    chunk = f.read(MAX_LOG_CHUNK)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise BackendError(f"the log of local job {name} cannot be read ({path}: {e.strerror})") from None
            end = chunk.rfind(b"\n") + 1
            if end == 0 and len(chunk) == MAX_LOG_CHUNK:
                end = _overlong_cut(chunk)
            elif end < len(chunk) and self._finished(files):
                end = len(chunk)  # the last line of a finished job
            if end == 0:
                continue
            # Lines end at "\n" only: "\r" and escapes stay inside (a tqdm bar's redraws are one
            # line, which terminal.render shows as its last state; str.splitlines would cut them).
            text = chunk[:end].decode("utf-8", "replace").split("\n")
            if chunk[end - 1] == 0x0A:
                text.pop()
            lines.extend(text if len(paths) == 1 else [f"{host} | {line}" for line in text])
            cursor[host] = offset + end
        return lines, cursor

    def scalars(self, name: str, cursor: ScalarReader | None = None) -> tuple[list, ScalarReader]:
        """TensorBoard scalars written under algo-1's $SM_OUTPUT_DIR/tensorboard since `cursor`,
        as (step, {name: value}) rows (tensorboard_events.ScalarReader: only what was appended
        is read). Other hosts' files are not read: frameworks log from rank 0, on algo-1."""
        files = self._files(name)
        reader = cursor or ScalarReader(files.opt_ml("algo-1", ["algo-1"]) / "output" / "tensorboard")
        try:
            return reader.read(), reader
        except OSError as e:
            raise BackendError(f"the TensorBoard files of local job {name} cannot be read ({e.filename}: "
                               f"{e.strerror})") from None

    @staticmethod
    def _finished(files: JobFiles) -> bool:
        """Whether the job has ended (read only when a log's last line is partial): a job whose
        state file is gone will not finish that line either."""
        try:
            return read_state(files.state).done
        except FileNotFoundError:
            return True
        except (OSError, ValueError):
            return False

    def stop(self, name: str) -> None:
        """Ask the runner to stop the job (SIGTERM, to the proven runner only); a job whose
        runner is gone is ended and recorded at once (see describe)."""
        files = self._files(name)
        state = self._read_state(name, files)
        if state.done:
            return
        try:
            files.stop_marker.touch()
        except OSError:
            pass  # a read-only job directory: the signal below still reaches the runner
        proc = self._runners.get(name)
        if proc is not None and proc.poll() is None:
            # Our own unreaped child (its pid is its own). Until it has recorded its pid it may not
            # handle SIGTERM yet; it reads the stop marker before it starts any host.
            if state.extra.get("runner_pid") == proc.pid:
                proc.send_signal(signal.SIGTERM)
            return
        if "runner_pid" not in state.extra and self._runner_alive(name, files, state):
            return  # starting: the stop marker is enough
        try:
            identity = read_runner(files)
        except OSError:
            identity = None
        if identity is not None and local_procs.proven_signal(identity.get("pid") or 0, signal.SIGTERM,
                                                              ident=identity):
            return
        self.describe(name)  # not proven alive: recover the job now (a starting one reads its stop marker)


def _overlong_cut(chunk: bytes) -> int:
    """Where to cut a full chunk with no newline (a bar redrawn for a MiB, or one huge line):
    before its last "\r", so each piece holds whole redraws, else on a UTF-8 character boundary."""
    cut = chunk.rfind(b"\r")
    if cut > 0:
        return cut
    cut = len(chunk)
    while cut > len(chunk) - 4 and chunk[cut - 1] & 0xC0 == 0x80:
        cut -= 1  # inside a character: cut before its first byte
    if cut > 0 and chunk[cut - 1] >= 0xC0:
        cut -= 1
    return cut if cut > 0 else len(chunk)


def _host_order(path: Path):
    stem = path.stem.rsplit("-", 1)[-1]
    return (0, int(stem), "") if stem.isdigit() else (1, 0, path.stem)
