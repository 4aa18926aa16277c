"""The local-container backend: the SDK's Docker local mode (ModelTrainer, Mode.LOCAL_CONTAINER).

The bundle runs in the real training image on this machine, through the SDK's container drivers
and `docker compose`, one container per host. It needs a Docker engine: without one, submit
refuses at once and points to the `local` backend, which needs no Docker.

Jobs are laid out like the local backend's (`sm_jobs/<name>/` with the bundle, state.json and
logs/), so describe, logs and stop are the local backend's. A runner process in its own session
(`python -m sm_magic.backends.local_container JOB_DIR`) drives the SDK, so the job outlives the
kernel and the kernel stays free; everything the SDK and docker compose print goes to the log.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..bundle.build import Bundle
from ..config.model import TrainConfig
from .base import BackendError, SubmitOptions, Traits
from .local.backend import LocalBackend, gpu_count
from .local.state import JobFiles, enter, finish, live_group_members, read_state, write_state

DOCKER_TIMEOUT = 20  # seconds `docker info` may take before the engine counts as not answering
LOG_HOST = "algo-1"  # docker compose prefixes every line with its container, so one log holds all hosts


def docker_running() -> bool:
    """True when a Docker engine answers `docker info`."""
    return _docker_problem() is None


def _docker_problem() -> str | None:
    if shutil.which("docker") is None:
        return "there is no docker command"
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=DOCKER_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"`docker info` did not answer within {DOCKER_TIMEOUT} s"
    except OSError as e:
        return f"`docker info` could not run: {e.strerror}"
    if done.returncode == 0:
        return None
    lines = [l.strip() for l in (done.stderr or done.stdout).splitlines() if l.strip()]
    return f"`docker info` failed: {lines[-1] if lines else f'exit status {done.returncode}'}"


def _compose_problem() -> str | None:
    """The SDK's local mode runs `docker compose` (or the older `docker-compose`)."""
    try:
        if subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=DOCKER_TIMEOUT,
                          stdin=subprocess.DEVNULL).returncode == 0:
            return None
    except (OSError, subprocess.TimeoutExpired):
        pass
    return None if shutil.which("docker-compose") else "neither `docker compose` nor `docker-compose` is installed"


class LocalContainerBackend(LocalBackend):
    """Runs jobs in the SDK's Docker local mode; job files under `jobs_dir` as the local backend."""

    name = "local-container"
    poll_interval = 1.0
    simulates_interruptions = False  # the SDK's local mode has no spot capacity to lose
    traits = Traits(in_image=True, job_dir=True)

    @classmethod
    def image_instance_type(cls, config: TrainConfig) -> str:
        """The SDK's local mode names its images by platform: "local" a CPU image, "local_gpu" a GPU one."""
        return "local_gpu" if not config.use_cpu and gpu_count() > 0 else "local"

    def submit(self, bundle: Bundle, config: TrainConfig, options: SubmitOptions = SubmitOptions()) -> str:
        if options.interruptions:
            raise BackendError("simulated interruptions run on the local backend only, not local-container")
        problem = _docker_problem()
        if problem is not None:
            raise BackendError(f"Docker is not running here ({problem}). The local-container backend runs the "
                               "job in the SDK's Docker local mode and needs a Docker engine: start Docker, or "
                               "use --backend local (ec2_instance_type: local), which runs the same bundle on "
                               "this machine without Docker.")
        problem = _compose_problem()
        if problem is not None:
            raise BackendError(f"Docker Compose is missing here ({problem}); the SDK's Docker local mode runs "
                               "its containers with it. Install the Docker Compose plugin, or use --backend "
                               "local, which runs the same bundle on this machine without Docker.")
        spec = self._spec(bundle, config)  # refuses a bad config before anything is written
        return self._in_new_job_dir(bundle.name, lambda files: self._start_container(bundle, config, files, spec))

    def _spec(self, bundle: Bundle, config: TrainConfig) -> dict:
        """What the runner needs, all checked here (the SDK import is paid by the runner)."""
        from .sagemaker.args import check_additional_args
        from .sagemaker.request import api_hyperparameters, entry_command, image_for, job_environment

        options = check_additional_args(config)
        instance_type = self.image_instance_type(config)
        inputs = {}
        for channel, uri in bundle.inputs.items():
            if not uri.startswith("s3://"):
                path = Path(uri.removeprefix("file://")).absolute()
                if not path.exists():
                    raise BackendError(f"input channel {channel}: {uri} is neither an s3:// URI nor a local "
                                       "path that exists")
                uri = str(path)
            inputs[channel] = uri
        return {
            "image": image_for(bundle, config.model_copy(update={"ec2_instance_type": instance_type})).uri,
            "instance_type": instance_type,
            "instance_count": config.num_machines,
            "command": entry_command(bundle),
            "environment": job_environment(config, options.get("environment")),
            "hyperparameters": api_hyperparameters(bundle.hyperparameters),
            "inputs": inputs,
            "region": config.region,
            "profile": config.profile,
            "base_job_name": config.base_job_name,
        }

    def _start_container(self, bundle: Bundle, config: TrainConfig, files: JobFiles, spec: dict) -> str:
        shutil.move(str(bundle.path), files.bundle)
        files.logs.mkdir()
        return self._start_runner(bundle, config, files, "sm_magic.backends.local_container",
                                  {"local_container": spec})


# -- the runner (its own process) ----------------------------------------------------------------

class _Runner:
    def __init__(self, job_dir: Path):
        self.files = JobFiles(job_dir)
        self.state = read_state(self.files.state)
        self.spec = self.state.extra["local_container"]
        self.root = self.files.dir / "container"
        self.stopping = False

    def save(self) -> None:
        write_state(self.files.state, self.state)

    def on_term(self, signum, frame) -> None:
        """Stop: docker compose, told to stop, stops its containers; the SDK call then returns."""
        self.stopping = True
        me = os.getpid()
        for pid in live_group_members(os.getpgid(0)):
            if pid != me:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.state.extra["runner_pid"] = os.getpid()
        enter(self.state, "Downloading", "Preparing the containers")
        self.save()
        if self.stopping or self.files.stop_marker.exists():
            finish(self.state, "Stopped", "Training job stopped")
            self.save()
            return 0
        # Everything the SDK and docker compose print becomes the job's log.
        log = os.open(self.files.log(LOG_HOST), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        enter(self.state, "Training", "Training in progress")
        self.state.training_start_time = time.time()
        self.save()
        error = None
        try:
            self._train()
        except BaseException as e:  # noqa: BLE001 - any failure ends the job, with its reason
            error = e
            print(f"sm_magic: {type(e).__name__}: {e}", flush=True)
        failure = self._container_failure()
        if self.stopping or self.files.stop_marker.exists():
            finish(self.state, "Stopped", "Training job stopped")
        elif error is not None or failure:
            self.state.failure_reason = failure or f"{type(error).__name__}: {error}"
            finish(self.state, "Failed", "Training job failed")
        else:
            enter(self.state, "Uploading", "Collecting the model artifacts")
            model = self.root / "compressed_artifacts" / "model.tar.gz"
            self.state.model_artifacts = str(model) if model.exists() else None
            finish(self.state, "Completed", "Training job completed")
        self.save()
        return 0

    def _container_failure(self) -> str | None:
        """What a container wrote to /opt/ml/output/failure (collected into artifacts/output)."""
        path = self.root / "artifacts" / "output" / "failure"
        try:
            text = path.read_text(errors="replace").strip()
        except OSError:
            return None
        return text or None

    def _train(self) -> None:
        import logging

        import boto3

        from .sagemaker.request import REQUIREMENTS_FILE, SDK_CONFIG, QuietHyperparameterWarning, import_sdk

        import_sdk()
        from sagemaker.core.helper.session_helper import Session
        from sagemaker.core.training.configs import Compute, InputData, SourceCode
        from sagemaker.train.model_trainer import Mode, ModelTrainer

        spec = self.spec
        self.root.mkdir(exist_ok=True)
        bundle = self.files.bundle
        # A Session only for telemetry opt-out and, when inputs are in S3 or the image is in ECR,
        # the user's usual boto3 credentials; nothing is uploaded in local mode.
        session = Session(boto_session=boto3.Session(profile_name=spec["profile"], region_name=spec["region"]),
                          sagemaker_config=SDK_CONFIG)
        logging.getLogger("sagemaker.core.utils.utils").addFilter(QuietHyperparameterWarning())
        trainer = ModelTrainer(
            training_mode=Mode.LOCAL_CONTAINER, sagemaker_session=session, base_job_name=spec["base_job_name"],
            source_code=SourceCode(source_dir=str(bundle), command=spec["command"],
                                   requirements=REQUIREMENTS_FILE if (bundle / REQUIREMENTS_FILE).is_file() else None),
            compute=Compute(instance_type=spec["instance_type"], instance_count=spec["instance_count"]),
            training_image=spec["image"], environment=spec["environment"],
            hyperparameters=spec["hyperparameters"], local_container_root=str(self.root),
            input_data_config=[InputData(channel_name=c, data_source=u) for c, u in spec["inputs"].items()] or None,
        )
        trainer.train(wait=True)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m sm_magic.backends.local_container JOB_DIR", file=sys.stderr)
        return 2
    return _Runner(Path(argv[0])).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
