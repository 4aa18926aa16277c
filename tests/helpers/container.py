"""A harness that runs a CreateTrainingJob request the way SageMaker's training platform runs it.

Three parts:

- `sagemaker_wire` (fixture): moto's service on 127.0.0.1, wrapped so that the body of every
  CreateTrainingJob request is kept as sent on the wire, and a user environment pointing at it.
- `image_python(python, torch)`: a virtualenv in the machine's cache standing for the training
  image's Python (that interpreter version and that torch build, nothing else).
- `Platform(aws, request, workdir, image, gpus, network)` (fixture `sm_platform`): SageMaker's
  part for the hosts of one request, run as the platform runs them: an /opt/ml tree per host laid
  out from the request (configs, every input channel downloaded from moto's S3, checkpoints
  restored), then the request's own ContainerEntrypoint + ContainerArguments, unchanged, in
  private mount, UTS and PID namespaces where that tree is bind mounted at /opt/ml, /etc/hosts
  names algo-1..algo-N, the hostname is algo-i, the image venv is read-only under a per-host
  layer and, for network isolation, there is no network at all; a clean environment with only
  what the request and the platform set; output to a per-host log, as CloudWatch would get it.
  `run()` runs every host at once and waits; `interrupt_and_resume()` plays a spot reclaim.
  A request with a warm pool (ResourceConfig.KeepAlivePeriodInSeconds) gets each host's persistent
  cache directory, as SageMaker gives it: `warm_cache/<host>` bind mounted at WARM_CACHE and named
  in SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY, kept between runs (and between Platforms given
  the same `warm_cache`: the next job on the same warm instances), while all else is fresh.
"""

from __future__ import annotations

import fcntl
import glob
import io
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from .aws_moto import ACCOUNT, REGION, MotoAWS, become_user
from .jobscripts import wait_until
from .lanes import require

REPO = Path(__file__).resolve().parents[2]
# Outside the checkout: an image venv is several GB of CUDA torch (PyPI has no CPU build of torch for
# x86_64 Linux), built once per machine rather than once per clone. SM_MAGIC_TEST_IMAGES moves it.
IMAGES = Path(os.environ.get("SM_MAGIC_TEST_IMAGES")
              or Path(os.environ.get("XDG_CACHE_HOME") or Path(pwd.getpwuid(os.getuid()).pw_dir) / ".cache")
              / "sm_magic-tests" / "container-images")
MOUNT_POINT = Path("/opt/ml")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What the platform calls a homogeneous cluster's one group (resourceconfig.json).
GROUP = "homogeneousCluster"
# Where SageMaker mounts a warm pool's persistent cache, and the variable that names it.
WARM_CACHE = MOUNT_POINT / "sagemaker" / "warmpoolcache"
WARM_CACHE_ENV = "SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY"


# -- the wire: moto, with every CreateTrainingJob body kept ------------------------------------

class CapturingMoto(MotoAWS):
    """moto's WSGI app on 127.0.0.1 that keeps each CreateTrainingJob body (parsed JSON). moto's
    backends are process-global, so this shares its state with the session's other moto server."""

    def __init__(self):
        from moto.moto_server.threaded_moto_server import MotoRequestHandler
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        require("jobs", "starts a moto server")
        self.requests: list[dict] = []
        app = DomainDispatcherApplication(create_backend_app)

        def capture(environ, start_response):
            if environ.get("HTTP_X_AMZ_TARGET") == "SageMaker.CreateTrainingJob":
                body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
                environ["wsgi.input"] = io.BytesIO(body)  # moto reads it again
                self.requests.append(json.loads(body))
            return app(environ, start_response)

        class QuietHandler(MotoRequestHandler):
            def log_request(self, *args, **kwargs):  # a line per S3 object would bury a failure's report
                pass

        self.server = make_server("127.0.0.1", 0, capture, threaded=True, request_handler=QuietHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        host, port = self.server.server_address[:2]
        self.endpoint = f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join()

    def create_training_job_request(self) -> dict:
        """The one CreateTrainingJob request sent since the test began (PascalCase, as on the wire)."""
        assert len(self.requests) == 1, f"expected one CreateTrainingJob request, got {len(self.requests)}"
        return self.requests[0]


@pytest.fixture(scope="session")
def _capturing_moto():
    server = CapturingMoto()
    yield server
    server.stop()


@pytest.fixture
def sagemaker_wire(_capturing_moto, sm_env, monkeypatch):
    """A user whose AWS endpoint is the capturing moto (the `aws` fixture's environment), with
    the IAM role and the bucket there; `.requests` holds this test's CreateTrainingJob bodies."""
    _capturing_moto.requests.clear()
    return become_user(_capturing_moto, sm_env / "home", monkeypatch)



# -- the image's Python ------------------------------------------------------------------------

def _interpreter(version: str) -> str:
    """A working `python3.X`: the pyenv shim answers only where that version is selected, so
    fall back to pyenv's own install of it."""
    candidates = [shutil.which(f"python{version}")]
    root = Path(os.environ.get("PYENV_ROOT", Path(pwd.getpwuid(os.getuid()).pw_dir) / ".pyenv"))
    candidates += sorted(glob.glob(str(root / "versions" / f"{version}.*" / "bin" / f"python{version}")), reverse=True)
    for exe in filter(None, candidates):
        done = subprocess.run([exe, "-c", "import sys; print(sys.executable)"], capture_output=True, text=True)
        if done.returncode == 0:
            return done.stdout.strip()  # the interpreter itself: a shim's choice depends on the cwd
    raise RuntimeError(f"no working python{version} on this machine (tried {candidates})")


def _build_env() -> dict[str, str]:
    """pip as this machine's user runs it (its pip config, wherever a test has moved HOME)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["HOME"] = pwd.getpwuid(os.getuid()).pw_dir
    return env


def image_python(python: str = "3.12", torch: str = "2.9.0") -> Path:
    """The virtualenv standing for a training image's Python: CPython `python` with `torch`
    from the package index (the CUDA build, as in the GPU images: it imports without a GPU),
    and no accelerate (the job's requirements.txt installs it). Built once under build/; a
    lock makes parallel callers wait, and a directory without the completion marker (a build
    that was cut short) is built again."""
    root = IMAGES / f"py{python.replace('.', '')}-torch{torch}"
    marker = root / ".image-complete"
    if marker.is_file():
        return root
    IMAGES.mkdir(parents=True, exist_ok=True)
    with open(IMAGES / f"{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.is_file():
            started = time.monotonic()
            shutil.rmtree(root, ignore_errors=True)
            version = _build(root, python, torch)
            marker.write_text(json.dumps({"python": python, "torch": version,
                                          "seconds": round(time.monotonic() - started)}) + "\n")
            _say(root, f"built in {time.monotonic() - started:.0f} s")
    return root


def _say(root: Path, text: str) -> None:
    print(f"[image {root.name}] {text}", file=sys.stderr, flush=True)


def _build(root: Path, python: str, torch: str) -> str:
    exe = _interpreter(python)
    _say(root, f"building with {exe} and torch=={torch} from the package index (minutes, once)")
    env = _build_env()
    subprocess.run([exe, "-m", "venv", str(root)], check=True, env=env)
    pip = [str(root / "bin" / "python"), "-m", "pip", "install", "--progress-bar", "off"]
    subprocess.run(pip + ["-q", "--upgrade", "pip"], check=True, env=env)
    with subprocess.Popen(pip + [f"torch=={torch}"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as install:
        for line in install.stdout:
            if "is ignored: it is neither a file nor a directory" not in line:  # this machine's pip.conf
                _say(root, line.rstrip())
    assert install.returncode == 0, f"pip install torch=={torch} failed (exit status {install.returncode})"
    check = subprocess.run([str(root / "bin" / "python"), "-c",
                            "import importlib.util as u, torch; print(torch.__version__); "
                            "assert u.find_spec('accelerate') is None, 'accelerate is in the image'"],
                           capture_output=True, text=True, env=env)
    assert check.returncode == 0, check.stderr
    return check.stdout.strip()


_IMAGE_TAG = re.compile(r":(?P<torch>\d+\.\d+\.\d+)-(?:transformers[\d.]+-)?(?:cpu|gpu)-py(?P<major>\d)(?P<minor>\d+)")


def image_versions(request: dict) -> tuple[str, str]:
    """(Python, torch) of the request's training image, from its tag (Hugging Face and PyTorch
    DLC tags: `2.9.0-transformers5.3.0-gpu-py312-...`, `2.9.0-cpu-py312-...`)."""
    uri = request["AlgorithmSpecification"]["TrainingImage"]
    match = _IMAGE_TAG.search(uri)
    assert match, f"cannot tell the Python and torch versions of training image {uri}"
    return f"{match['major']}.{match['minor']}", match["torch"]


def image_for(request: dict) -> Path:
    return image_python(*image_versions(request))


# -- the mount point ---------------------------------------------------------------------------

# Machine-wide, as /opt/ml is: the test sessions of every checkout share one lock, and the record
# that tests created /opt/ml does not go away with the checkout that wrote it (it did: /opt/ml stayed).
MOUNT_LOCK = Path(tempfile.gettempdir()) / "sm-magic-opt-ml.lock"
MOUNT_CREATED = Path(tempfile.gettempdir()) / "sm-magic-opt-ml.created-by-tests"


@contextmanager
def mount_point(path: Path = MOUNT_POINT, lock_path: Path = MOUNT_LOCK, created: Path = MOUNT_CREATED):
    """`path` (/opt/ml) exists (empty) while hosts run: each bind mounts its own tree there, inside
    its own mount namespace. Created when missing; removed by the last user (each holds a shared
    lock meanwhile: other test sessions, or this fixture imported into several modules), and
    only when a test session created it and it is still empty, with nothing mounted on it."""
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)  # waits only for a last user's removal
        try:
            path.mkdir()  # not parents: /opt is the machine's
            created.write_text(f"{path}\n")
        except FileExistsError:
            pass
        try:
            yield path
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # still in use elsewhere: the last user removes it
            else:
                if (created.exists() and path.is_dir() and not os.path.ismount(path)
                        and not any(path.iterdir())):
                    path.rmdir()
                    created.unlink()


@pytest.fixture(scope="session")
def opt_ml_mount_point():
    done = subprocess.run(["unshare", "--mount", "--uts", "--pid", "--fork", "--net", "true"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail("the container contract tests run each host in its own mount, UTS, PID and network "
                    f"namespaces, as root, and `unshare` is not permitted here: {done.stderr.strip()}",
                    pytrace=False)
    with mount_point() as path:
        yield path


# -- one host, as the platform runs it ---------------------------------------------------------

def fake_nvidia_smi(gpus: int) -> str:
    """An nvidia-smi answering what the SDK's environment.py asks (`--list-gpus`: it counts the
    lines starting with "GPU ") and accelerate's launcher (`--query-gpu=count,name`). The GPUs
    exist for them only: torch finds no CUDA device and trains on the CPU."""
    listing = [f"GPU {i}: NVIDIA A10G (UUID: GPU-00000000-0000-0000-0000-{i:012d})" for i in range(gpus)]
    answers = {"--list-gpus": listing, "-L": listing,
               "--query-gpu=count,name": [f"{gpus}, NVIDIA A10G"] * gpus,
               "--query-gpu=name": ["NVIDIA A10G"] * gpus,
               "--query-gpu=driver_version": ["570.86.15"] * gpus}
    arms = "".join(f"  {shlex.quote(arg)}) printf '%s\\n' {shlex.join(lines)} ;;\n" for arg, lines in answers.items())
    return f"#!/bin/sh\ncase \"$1\" in\n{arms}  *) echo 'NVIDIA-SMI (a test stand-in, {gpus} GPU)' ;;\nesac\n"


@dataclass
class Host:
    """One host of a run: its process (a session leader: `os.killpg` reaches its group, and the
    host's PID namespace dies with it) and its directory, which stays for the assertions:
    `opt_ml/` (model/, output/failure, checkpoints/) and `log` (what CloudWatch would get)."""

    name: str
    root: Path
    process: subprocess.Popen
    started_at: float = 0.0  # time.time() when its container was started

    @property
    def opt_ml(self) -> Path:
        return self.root / "opt_ml"

    @property
    def checkpoints(self) -> Path:
        return self.opt_ml / "checkpoints"

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def log(self) -> str:
        return (self.root / "log").read_text(errors="replace")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def failure(self) -> str | None:
        path = self.opt_ml / "output" / "failure"
        return path.read_text(errors="replace") if path.exists() else None

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} still ran after {timeout:.0f} s (killed); its log ends:\n"
                                 f"{self.tail()}") from None

    def kill(self) -> None:
        """SIGKILL, as a reclaimed spot instance gets: the process group, and the namespace's
        init with it (torch's elastic agent starts its workers in sessions of their own; the
        kernel ends every process of a PID namespace whose init dies)."""
        if self.process.poll() is not None:
            return
        init = _children(self.process.pid)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in init:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()
        wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in init), 30,
                   f"the processes of {self.name} to end")


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def has_checkpoint(host: Host) -> bool:
    """A finished checkpoint directory in the host's checkpoints/ (hidden names are being written)."""
    return host.checkpoints.is_dir() and any(p.is_dir() and not p.name.startswith(".")
                                             for p in host.checkpoints.iterdir())


class Platform:
    """SageMaker's part for one CreateTrainingJob request (a dict, PascalCase, as sent): lays out
    each host's /opt/ml from the request and moto's S3, runs the request's own entrypoint on
    every host, and plays a spot reclaim (checkpoints synced to CheckpointConfig.S3Uri and back).

    `image`: the venv standing for the training image's Python. `gpus`: what each host's
    nvidia-smi reports. `network`: False for hosts with no network at all (default: as the
    request's EnableNetworkIsolation says)."""

    def __init__(self, aws: MotoAWS, request: dict, workdir: Path, image: Path, gpus: int = 0,
                 network: bool | None = None, warm_cache: Path | None = None):
        self.request, self.workdir, self.image, self.gpus = request, Path(workdir), Path(image), gpus
        warm = (request.get("ResourceConfig") or {}).get("KeepAlivePeriodInSeconds")
        self.warm_cache = Path(warm_cache or self.workdir / "warm-pool") if warm else None
        self.network = not request.get("EnableNetworkIsolation", False) if network is None else network
        self.s3 = aws.client("s3")
        self.name = request["TrainingJobName"]
        self.instance_type = request["ResourceConfig"]["InstanceType"]
        self.hosts = [f"algo-{i}" for i in range(1, request["ResourceConfig"]["InstanceCount"] + 1)]
        self.started: list[Host] = []
        self._runs = 0

    # -- running -----------------------------------------------------------------------------

    def start_all(self) -> list[Host]:
        """Every host of the job at once, each in a fresh tree under workdir/run-N/<host>/."""
        self._runs += 1
        return [self.start(host, self.workdir / f"run-{self._runs}" / host) for host in self.hosts]

    def run(self, timeout: float = 600) -> list[Host]:
        """Every host at once, until all have ended (their exit statuses are the test's to check)."""
        hosts = self.start_all()
        deadline = time.monotonic() + timeout
        for host in hosts:
            host.wait(max(1.0, deadline - time.monotonic()))
        return hosts

    def start(self, host: str, root: Path) -> Host:
        assert MOUNT_POINT.is_dir(), f"{MOUNT_POINT} is missing: use the opt_ml_mount_point fixture"
        root.mkdir(parents=True)
        self._lay_out(host, root / "opt_ml")
        (root / "hosts").write_text("127.0.0.1\tlocalhost\n" + "".join(f"127.0.0.1\t{h}\n" for h in self.hosts))
        for name in ("home", "image-upper", "image-work"):
            (root / name).mkdir()
        path = [str(self.image / "bin"), SYSTEM_PATH]
        if self.gpus:
            smi = root / "bin" / "nvidia-smi"
            smi.parent.mkdir()
            smi.write_text(fake_nvidia_smi(self.gpus))
            smi.chmod(0o755)
            path.insert(0, str(smi.parent))
        env = dict(self.request.get("Environment") or {})
        warm_mount = []
        if self.warm_cache is not None:
            cache = self.warm_cache / host
            cache.mkdir(parents=True, exist_ok=True)
            (root / "opt_ml" / WARM_CACHE.relative_to(MOUNT_POINT)).mkdir(parents=True)
            env[WARM_CACHE_ENV] = str(WARM_CACHE)
            warm_mount = [f"mount --bind {shlex.quote(str(cache))} {WARM_CACHE}"]
        env.update({"TRAINING_JOB_NAME": self.name,
                    "TRAINING_JOB_ARN": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{self.name}",
                    "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION, "PATH": ":".join(path),
                    "HOME": str(root / "home"), "LANG": "C.UTF-8"})
        spec = self.request["AlgorithmSpecification"]
        assert spec.get("ContainerEntrypoint"), "no ContainerEntrypoint: the image's own would run; there is none here"
        command = [*spec["ContainerEntrypoint"], *(spec.get("ContainerArguments") or [])]
        # The image is read-only under a container layer of its own per host (an overlay, as in
        # Docker): what the job installs lands in image-upper/, never in the shared venv.
        layer = f"lowerdir={self.image},upperdir={root / 'image-upper'},workdir={root / 'image-work'}"
        steps = [f"mount -t overlay image -o {shlex.quote(layer)} {shlex.quote(str(self.image))}",
                 f"mount --bind {shlex.quote(str(root / 'opt_ml'))} {MOUNT_POINT}",
                 *warm_mount,
                 f"mount --bind {shlex.quote(str(root / 'hosts'))} /etc/hosts",
                 f"hostname {shlex.quote(host)}",
                 *([] if self.network else ["ip link set lo up"]),
                 "cd /",
                 "exec " + shlex.join(["env", "-i", *(f"{k}={v}" for k, v in env.items()), *command])]
        namespaces = ["--mount", "--uts", "--pid", "--fork", "--kill-child", "--mount-proc",
                      *([] if self.network else ["--net"])]
        started_at = time.time()
        with open(root / "log", "wb") as log:
            process = subprocess.Popen(["unshare", *namespaces, "/bin/sh", "-c", " && ".join(steps)],
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       env={"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"}, start_new_session=True)
        self.started.append(Host(host, root, process, started_at))
        return self.started[-1]

    def interrupt_and_resume(self, reclaim_when=lambda hosts: all(map(has_checkpoint, hosts)),
                             timeout: float = 600, synced=lambda host, rel: True) -> tuple[list[Host], list[Host]]:
        """A spot reclaim: run the hosts until `reclaim_when(hosts)`, SIGKILL them, sync each host's
        checkpoint directory to CheckpointConfig.S3Uri (the files `synced(host name, path in the
        directory)` lets through: what reached S3 before the instances went), then run the job
        again on fresh hosts (whose checkpoint directory is restored from there). Returns (first
        run, second run)."""
        assert self.request.get("CheckpointConfig"), "the request has no CheckpointConfig to resume from"
        first = self.start_all()

        def reclaim_due():
            for host in first:
                if host.returncode is not None:
                    raise AssertionError(f"{host.name} ended (exit status {host.returncode}) before the "
                                         f"reclaim; its log ends:\n{host.tail()}")
            return reclaim_when(first)

        wait_until(reclaim_due, timeout, "the moment of the spot reclaim")
        for host in first:
            host.kill()
        for host in first:
            self._upload(host.opt_ml / self._checkpoint_path(), self.request["CheckpointConfig"]["S3Uri"],
                         lambda rel, name=host.name: synced(name, rel))
        return first, self.run(timeout)

    def close(self) -> None:
        """No host outlives its test."""
        for host in self.started:
            host.kill()

    # -- /opt/ml -----------------------------------------------------------------------------

    def _lay_out(self, host: str, opt_ml: Path) -> None:
        config = opt_ml / "input" / "config"
        config.mkdir(parents=True)
        spec = self.request["AlgorithmSpecification"]
        channels = {}
        for channel in self.request.get("InputDataConfig") or []:
            source = channel["DataSource"]["S3DataSource"]
            assert source.get("S3DataType", "S3Prefix") == "S3Prefix", f"{channel['ChannelName']}: {source}"
            channels[channel["ChannelName"]] = {
                **({"ContentType": channel["ContentType"]} if channel.get("ContentType") else {}),
                "TrainingInputMode": channel.get("InputMode") or spec.get("TrainingInputMode", "File"),
                "S3DistributionType": source.get("S3DataDistributionType", "FullyReplicated"),
                "RecordWrapperType": "None"}
            self._download(source["S3Uri"], opt_ml / "input" / "data" / channel["ChannelName"])
        resource = {"current_host": host, "current_instance_type": self.instance_type,
                    "current_group_name": GROUP, "hosts": self.hosts,
                    "instance_groups": [{"instance_group_name": GROUP, "instance_type": self.instance_type,
                                         "hosts": self.hosts}],
                    "network_interface_name": "eth0"}
        (config / "hyperparameters.json").write_text(json.dumps(self.request.get("HyperParameters") or {}))
        (config / "resourceconfig.json").write_text(json.dumps(resource))
        (config / "inputdataconfig.json").write_text(json.dumps(channels))
        (opt_ml / "model").mkdir()
        (opt_ml / "output" / "data").mkdir(parents=True)
        if self.request.get("CheckpointConfig"):
            # On a restart the platform first restores what the last run synced to S3.
            self._download(self.request["CheckpointConfig"]["S3Uri"], opt_ml / self._checkpoint_path())

    def _checkpoint_path(self) -> str:
        local = self.request["CheckpointConfig"].get("LocalPath") or "/opt/ml/checkpoints"
        assert local.startswith(f"{MOUNT_POINT}/"), f"CheckpointConfig.LocalPath {local} is outside /opt/ml"
        return local.removeprefix(f"{MOUNT_POINT}/")

    def _download(self, uri: str, dest: Path) -> None:
        """Every object under the S3 prefix, at its path below the prefix (a prefix naming one
        object: that file), as the platform fills a File-mode channel."""
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        dest.mkdir(parents=True, exist_ok=True)
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith("/"):
                    continue
                target = dest / (os.path.basename(key) if key == prefix else key[len(prefix):].lstrip("/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                self.s3.download_file(bucket, key, str(target))

    def _upload(self, directory: Path, uri: str, synced=lambda rel: True) -> None:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            rel = path.relative_to(directory).as_posix()
            if synced(rel):
                self.s3.upload_file(str(path), bucket, f"{prefix.rstrip('/')}/{rel}")


@pytest.fixture
def sm_platform(sagemaker_wire, opt_ml_mount_point, tmp_path, pytestconfig):
    """`sm_platform(gpus=..., network=...)`: a Platform for this test's one CreateTrainingJob
    request, with the image venv its TrainingImage names; every host is killed at the end."""
    made: list[Platform] = []

    def make(request: dict | None = None, *, gpus: int = 0, network: bool | None = None,
             warm_cache: Path | None = None) -> Platform:
        request = request or sagemaker_wire.create_training_job_request()
        # A first build takes minutes: its progress goes to the terminal, not the captured output.
        with pytestconfig.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
            image = image_for(request)
        workdir = tmp_path / f"platform-{len(made)}" if made else tmp_path / "platform"
        made.append(Platform(sagemaker_wire, request, workdir, image, gpus=gpus, network=network,
                             warm_cache=warm_cache))
        return made[-1]

    yield make
    for p in made:
        p.close()


if __name__ == "__main__":  # build an image ahead of the tests: python tests/helpers/container.py 3.12 2.9.0
    print(image_python(*sys.argv[1:3]))
