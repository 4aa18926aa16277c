"""The job bundle's one entry command: `python sm_entry.py`.

Copied verbatim into every bundle and run by every backend (on SageMaker as the training
command), so it is stdlib only and imports nothing from sm_magic but the bundle's own copies of
sm_magic/container/failure.py and failure_board.py. It reads sm_launch.json and the SageMaker container
environment (SM_HOSTS, SM_CURRENT_HOST, SM_NUM_GPUS, ...), works out this host's rank, the
process count and the main address, and runs `accelerate launch ... <script> <args>` as its
child: arguments go through as a list, never a shell string. The child's output passes through
unchanged; SIGTERM (a stop, a spot reclaim, max_run) is passed on so that the script gets it
exactly once; its exit status is kept; and when it fails, the reason (the user's exception and
line) goes to /opt/ml/output/failure, where SageMaker takes FailureReason from; on several hosts,
each host's file leads with the job's first failure (failure_board.py).

With a warm pool (the job's environment names the requirements file in REQUIREMENTS_ENV), this
command installs the requirements itself, into the pool's persistent cache directory: a virtual
environment over the image's own packages, keyed by the requirements and the image's Python, so
that the next job on the same warm instance with the same requirements installs nothing.
"""

import fcntl
import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PORT = 29500
CPU_PROCESSES_PER_HOST = 2
# Instance types with EFA, and those whose EFA does RDMA: the SageMaker SDK's own lists
# (sagemaker/train/container_drivers/common/utils.py), for the environment its torchrun driver sets.
EFA_INSTANCES = frozenset({"ml.g4dn.8xlarge", "ml.g4dn.12xlarge", "ml.g5.48xlarge", "ml.p3dn.24xlarge",
                           "ml.p4d.24xlarge", "ml.p4de.24xlarge", "ml.p5.48xlarge", "ml.p5e.48xlarge",
                           "ml.trn1.32xlarge"})
EFA_RDMA_INSTANCES = frozenset({"ml.p4d.24xlarge", "ml.p4de.24xlarge", "ml.p5.48xlarge", "ml.p5e.48xlarge",
                                "ml.trn1.32xlarge"})
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# The local runner's simulated spot reclaim: it kills the launcher's processes next; this command
# keeps copying what they printed and reports no failure of its own (on SageMaker nobody sends it).
RECLAIMED = signal.SIGUSR2
DRAIN_SECONDS = 1.0  # at most this long output is still read after the launcher ended, while it flows
# Set in the job's environment when this command, not the SDK's driver, installs the requirements.
REQUIREMENTS_ENV = "SM_ENTRY_REQUIREMENTS"
# SageMaker sets it in a job that uses a warm pool: a directory that outlives the job on the instance.
WARM_CACHE_ENV = "SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY"
WARM_DIR = "sm_magic-requirements"
WARM_KEEP = 3  # installed environments kept in the cache (the newest used)
COMPLETE = ".complete"  # written last, atomically: an environment without it is never used


class InstallFailed(Exception):
    """pip could not install the requirements; pip's own output is in the log above."""


def requirements_key(requirements):
    """What an installed environment depends on: the requirements file, the wheels carried beside
    it (network isolation), and the image's Python (version, interpreter and site-packages), with
    those site-packages directories."""
    import site

    digest = hashlib.sha256()
    with open(requirements, "rb") as f:
        digest.update(f.read())
    wheels = os.path.join(os.path.dirname(requirements), "sm_wheels")
    if os.path.isdir(wheels):
        for name in sorted(os.listdir(wheels)):
            digest.update(f"\0{name}:{os.path.getsize(os.path.join(wheels, name))}".encode())
    sites = site.getsitepackages()
    digest.update(json.dumps([sys.version, os.path.realpath(sys.executable), sites]).encode())
    return digest.hexdigest()[:20], sites


def _pip(python, requirements, cwd):
    print(f"sm_magic: pip install -r {os.path.basename(requirements)}", flush=True)
    done = subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                           "-r", requirements], cwd=cwd, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise InstallFailed(f"installing the job's requirements failed (pip exit status {done.returncode}); "
                            "pip's output is in the job's log")


def _prune(root, keep):
    """Leave the `keep` most recently used environments (and the one in use), remove the rest."""
    entries = [os.path.join(root, n) for n in os.listdir(root) if not n.startswith(".")]
    used = sorted(entries, key=lambda p: os.path.getmtime(os.path.join(p, COMPLETE))
                  if os.path.isfile(os.path.join(p, COMPLETE)) else 0.0, reverse=True)
    for path in used[keep:]:
        shutil.rmtree(path, ignore_errors=True)


def install_requirements(env, bundle_dir=HERE, python=sys.executable):
    """Install the requirements named by REQUIREMENTS_ENV; returns the Python to launch with.

    In a warm pool's cache: reuse the environment whose key matches (nothing installed), else make
    one (a venv with the image's site-packages behind it, so the image's torch stays the image's)
    and mark it complete only once pip succeeded. Without a cache: into the image, as the SDK's
    driver does."""
    name = env.get(REQUIREMENTS_ENV)
    requirements = os.path.join(bundle_dir, name) if name else None
    if requirements is None or not os.path.isfile(requirements):
        return python
    cache = env.get(WARM_CACHE_ENV)
    if not cache or not os.path.isdir(cache):
        print("sm_magic: no warm pool cache directory: installing the requirements into the image", flush=True)
        _pip(python, requirements, bundle_dir)
        return python
    started = time.monotonic()
    key, image_sites = requirements_key(requirements)
    root = os.path.join(cache, WARM_DIR)
    os.makedirs(root, exist_ok=True)
    target = os.path.join(root, key)
    venv_python = os.path.join(target, "bin", "python")
    with open(os.path.join(root, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = os.path.join(target, COMPLETE)
        if os.path.isfile(marker):
            with open(marker, encoding="utf-8") as f:
                made = json.load(f)
            os.utime(marker)  # most recently used: kept when the cache is pruned
            print(f"sm_magic: warm pool cache: requirements unchanged (key {key}, installed by job "
                  f"{made.get('job') or '?'}): reused, nothing installed", flush=True)
            return venv_python
        earlier = [n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n, COMPLETE))]
        kept = (f"; this instance was kept from an earlier job (its cache holds {len(earlier)} other "
                f"environment{'s' if len(earlier) != 1 else ''})") if earlier else ""
        print(f"sm_magic: warm pool cache: no environment for these requirements (key {key}{kept}): installing "
              f"into {target}", flush=True)
        shutil.rmtree(target, ignore_errors=True)  # a half-finished install is never used
        made = subprocess.run([python, "-m", "venv", "--without-pip", target], stdin=subprocess.DEVNULL)
        if made.returncode != 0:  # an image whose Python has no venv module: as the SDK's driver would
            shutil.rmtree(target, ignore_errors=True)
            print("sm_magic: warm pool cache: the image's Python cannot make a virtual environment: installing "
                  "the requirements into the image (again in the next job)", flush=True)
            _pip(python, requirements, bundle_dir)
            return python
        sites = subprocess.run([venv_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip()
        with open(os.path.join(sites, "_sm_magic_image.pth"), "w", encoding="utf-8") as f:
            f.write("".join(f"{p}\n" for p in image_sites))  # the image's packages (and its pip), behind ours
        _pip(venv_python, requirements, bundle_dir)
        partial = marker + ".partial"
        with open(partial, "w", encoding="utf-8") as f:
            json.dump({"job": env.get("TRAINING_JOB_NAME"), "key": key, "at": time.time()}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, marker)
        _prune(root, WARM_KEEP)
        print(f"sm_magic: warm pool cache: installed in {time.monotonic() - started:.1f} s; the next job on "
              "this instance with the same requirements reuses it", flush=True)
        return venv_python


def launch_command(spec, env, bundle_dir=HERE, python=sys.executable):
    """The accelerate command line for this host, and notes to print before it runs."""
    notes = []
    hosts = json.loads(env.get("SM_HOSTS") or '["algo-1"]')
    current = env.get("SM_CURRENT_HOST") or hosts[0]
    gpus = int(env.get("SM_NUM_GPUS") or 0)
    use_cpu = bool(spec.get("use_cpu")) or gpus == 0
    precision = spec.get("mixed_precision") or "no"
    if precision == "fp16" and use_cpu:
        notes.append("fp16 needs a GPU and this host has none: training in full precision (fp32)")
        precision = "no"

    cmd = [python, "-m", "accelerate.commands.launch",
           "--config_file", os.path.join(bundle_dir, "accelerate_config.yaml"),
           "--mixed_precision", precision]
    distributed = spec.get("distributed_type")
    per_host = int(env.get("SM_MAGIC_CPU_PROCESSES") or CPU_PROCESSES_PER_HOST) if use_cpu else gpus
    if distributed is None:
        # Not chosen: as plain `accelerate launch` does, every GPU of every host trains (data
        # parallel); one process where there is one GPU or none, on one host.
        if len(hosts) > 1 or (not use_cpu and gpus > 1):
            distributed = "DATA_PARALLEL"
            notes.append(f"distributed_type not set: data parallel, {per_host * len(hosts)} processes "
                         f"({per_host} per host, {'on CPU' if use_cpu else 'one per GPU'}); "
                         "set distributed_type NO for one process")
        else:
            distributed = "NO"
    elif distributed == "NO" and not use_cpu and gpus > 1:
        notes.append(f"distributed_type NO: one process, so {gpus - 1} of this host's {gpus} GPUs stay idle "
                     "(set distributed_type DATA_PARALLEL, or leave it unset, to train on all of them)")
    if distributed == "DATA_PARALLEL" and per_host * len(hosts) < 2:
        # accelerate refuses --multi_gpu with one process; one process in all is a plain launch.
        notes.append("data parallel with one process in all (one host, one "
                     f"{'CPU process' if use_cpu else 'GPU'}): a plain single-process launch")
        distributed = "NO"
    if distributed in ("DATA_PARALLEL", "FSDP", "DEEPSPEED"):
        main_host = sorted(hosts)[0]
        # FSDP and DeepSpeed come from accelerate_config.yaml (its distributed_type and section).
        cmd += {"DATA_PARALLEL": ["--multi_gpu"], "FSDP": ["--use_fsdp"], "DEEPSPEED": ["--use_deepspeed"]}[distributed]
        cmd += ["--num_machines", str(len(hosts)),
                "--machine_rank", str(sorted(hosts).index(current)),
                "--num_processes", str(per_host * len(hosts)),
                "--main_process_ip", env.get("SM_MAGIC_MAIN_ADDR") or main_host,
                "--main_process_port", str(env.get("SM_MAGIC_MAIN_PORT") or DEFAULT_PORT)]
        if use_cpu:
            notes.append(f"no GPU: {per_host} CPU processes per host (gloo)")
    else:
        cmd += ["--num_processes", "1", "--num_machines", "1"]
        if use_cpu:
            cmd.append("--cpu")
    cmd.append(os.path.join(bundle_dir, spec["script"]))
    cmd += list(spec.get("args", []))
    return cmd, notes


def launch_env(spec, env):
    """Environment changes for the launched processes (a variable the job's environment already
    sets is left as it is, but for the two accelerate must see as written here)."""
    # The job's environment says ACCELERATE_USE_SAGEMAKER / DATA_PARALLEL, as accelerate's own
    # launcher sets it; taken literally, accelerate would then use SageMaker's smddp library
    # (absent from the images). This command does the distribution itself (accelerate across
    # SM_HOSTS), so the processes it starts are told so.
    updates = {"ACCELERATE_SAGEMAKER_DISTRIBUTED_TYPE": "NO"}
    if not env.get("SM_CHECKPOINT_DIR"):
        # SageMaker syncs this directory with CheckpointConfig.S3Uri but names it nowhere.
        from sm_magic.container.runtime import DEFAULT_DIR  # the bundle carries it, beside this file

        updates["SM_CHECKPOINT_DIR"] = spec.get("checkpoint_dir") or DEFAULT_DIR
    # rich (Lightning's default progress bar) draws nothing to a file until the work ends; told
    # the log is a terminal it redraws once a second, and the log's readers collapse the redraws
    # (sm_magic.metrics.terminal), so epochs and metrics show while the job runs.
    # Either one set by the job is its own choice, and the other stays unset with it.
    if "TTY_COMPATIBLE" not in env and "TTY_INTERACTIVE" not in env:
        updates.update(TTY_COMPATIBLE="1", TTY_INTERACTIVE="1")
    gpus = int(env.get("SM_NUM_GPUS") or 0)
    if spec.get("use_cpu") or gpus == 0:
        # Without it accelerate starts N unconnected single processes on a CPU-only host;
        # with it they join one gloo process group (MULTI_CPU).
        updates["ACCELERATE_USE_CPU"] = "true"
    if spec.get("use_cpu"):
        updates["CUDA_VISIBLE_DEVICES"] = ""
    elif gpus:
        # What the SDK's torchrun driver sets for NCCL (setup_env in torchrun_driver.py).
        nccl = {"NCCL_SOCKET_IFNAME": env.get("SM_NETWORK_INTERFACE_NAME") or "eth0", "NCCL_PROTO": "simple"}
        instance = env.get("SM_CURRENT_INSTANCE_TYPE", "")
        if instance in EFA_INSTANCES:
            nccl["FI_PROVIDER"] = "efa"
        if instance in EFA_RDMA_INSTANCES:
            nccl.update(FI_EFA_USE_DEVICE_RDMA="1", RDMAV_FORK_SAFE="1")
        updates.update({k: v for k, v in nccl.items() if k not in env})
    return updates


def failure_path(env):
    """Where SageMaker reads FailureReason from (SM_OUTPUT_DIR locally)."""
    return os.path.join(env.get("SM_OUTPUT_DIR") or "/opt/ml/output", "failure")


def _group_running(pgid):
    """Whether a process of group `pgid` still runs (a zombie does not), read from /proc; True
    when /proc cannot tell (then the output pipe's end decides, as it always did)."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return True
    for name in names:
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if len(fields) > 2 and fields[0] != "Z" and fields[2] == str(pgid):
                return True
    return False


def _ignores(pid, signum):
    """Whether process `pid` ignores `signum`, read from /proc (False when /proc cannot tell)."""
    try:
        with open("/proc/%d/status" % pid, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("SigIgn:"):
                    return bool(int(line.split()[1], 16) & (1 << (signum - 1)))
    except (OSError, ValueError, IndexError):
        pass
    return False


def _peek(child):
    """The child's exit status as Popen gives it (negative: the signal that killed it), or None
    while it runs, leaving it unreaped: a zombie keeps its pid, which is also its process group's
    id, from being reused while this command may still signal that group. Raises
    ChildProcessError once it has been reaped. Without os.waitid, Popen.poll (which reaps)."""
    if not hasattr(os, "waitid"):
        return child.poll()
    info = os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    if info is None:
        return None
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


# noqa below: one select loop over the child's output, the signals to pass on and its group's end;
# every branch reads and sets that loop's state.
def supervise(cmd, env, cwd, out, on_failure):  # noqa: C901
    """Run `cmd` as a child in a process group of its own, copy its output to `out` as it comes,
    pass SIGTERM/SIGINT/SIGHUP on (a platform signals this process alone) so that the launcher
    and each process it started get it exactly once, and return its exit status (negative: killed
    by a signal) once it and every process of its group have ended (a daemon in a session of its
    own that holds the output open does not keep this host running). `on_failure(tail_text,
    status)` is called when it failed on its own (not after a signal was passed on).

    A signal goes to the launcher alone: launchers that handle it pass it on themselves
    (accelerate's terminates its child's process tree, torch's elastic agent signals each rank's
    session), so a copy to their group as well would reach the script twice and re-enter a
    checkpoint-on-stop handler. A launcher that dies of it (one with no handler, as older
    accelerate versions' plain launcher) passed it on to nobody, and one that ignores it passes
    nothing on either: then this command sends it to the launcher's group. A repeated signal is
    not passed on again: the script already has it."""
    child = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, preexec_fn=os.setpgrp)
    received = []
    passed = set()
    # Sent to the launcher alone and not known to be handled yet: if it dies of one (it had no
    # handler, or Python's default for SIGINT), it passed it on to nobody, and its group gets it.
    unhandled = set()

    def to_group(signum):
        try:
            os.killpg(child.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def forward(signum, frame):
        received.append(signum)
        if signum in passed or child.returncode is not None:
            return
        passed.add(signum)
        try:
            ended = _peek(child) is not None
        except ChildProcessError:
            return  # reaped: its group id may belong to someone else by now
        if ended or _ignores(child.pid, signum):
            to_group(signum)
            return
        try:
            os.kill(child.pid, signum)
        except (ProcessLookupError, PermissionError):
            return
        unhandled.add(signum)

    def settle_unhandled():
        if not unhandled:
            return
        try:
            status = _peek(child)
        except ChildProcessError:
            return
        if status is None:
            return
        for signum in list(unhandled):
            unhandled.discard(signum)
            if status == -signum:
                to_group(signum)

    previous = {s: signal.signal(s, forward) for s in _FORWARDED}
    previous[RECLAIMED] = signal.signal(RECLAIMED, lambda signum, frame: received.append(signum))
    tail = bytearray()
    if child.stdout is None:  # started with stdout=PIPE: it has one
        raise RuntimeError("the launcher's output pipe is missing")
    fd = child.stdout.fileno()
    drain_until = None
    try:
        while True:
            settle_unhandled()
            wait = 0.1 if drain_until is None else min(0.05, max(0.0, drain_until - time.monotonic()))
            if not select.select([fd], [], [], wait)[0]:
                if drain_until is not None:
                    break
                if _peek(child) is not None and not _group_running(child.pid):
                    # The launcher and every process of its group ended: what they wrote is
                    # still read, but a process in a session of its own holding the pipe open
                    # (a daemon) does not keep this host running.
                    drain_until = time.monotonic() + DRAIN_SECONDS
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            try:
                out.write(chunk)
                out.flush()
            except OSError:  # a log that cannot be written (a full disk) must not end the training
                pass
            tail += chunk
            del tail[:-65536]
            if drain_until is not None and time.monotonic() >= drain_until:
                break
        settle_unhandled()  # the output may end before the processes that held it
        status = child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if status != 0 and not received:
        on_failure(tail.decode("utf-8", "replace"), status)
    return status


def record_exit(status, env=os.environ):
    """The local backend's runner names a file (SM_MAGIC_EXIT_FILE, written to its full size
    beforehand) where this host's exit status must survive the runner: overwritten in place, so
    a full disk still takes it. Absent elsewhere (SageMaker's container): nothing is written."""
    path = env.get("SM_MAGIC_EXIT_FILE")
    if not path:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, str(status).ljust(31).encode() + b"\n", 0)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def main():
    with open(os.path.join(HERE, "sm_launch.json"), encoding="utf-8") as f:
        spec = json.load(f)
    sys.path.insert(0, HERE)
    from sm_magic.container.failure import error_summary, write_failure_file

    try:
        python = install_requirements(os.environ)
    except (InstallFailed, OSError, subprocess.CalledProcessError) as e:
        write_failure_file(failure_path(os.environ), str(e) if isinstance(e, InstallFailed)
                           else f"installing the job's requirements failed: {e}")
        record_exit(1)
        sys.exit(1)
    cmd, notes = launch_command(spec, os.environ, python=python)
    for note in notes:
        print(f"sm_magic: {note}", flush=True)
    env = dict(os.environ)
    env.update(launch_env(spec, os.environ))
    env.pop("SM_MAGIC_EXIT_FILE", None)  # this command's own record, not its children's
    from sm_magic.container.failure_board import Board, consequence, first_failure, reason_with_first

    hosts = sorted(json.loads(os.environ.get("SM_HOSTS") or '["algo-1"]'))
    current = os.environ.get("SM_CURRENT_HOST") or hosts[0]
    addr = os.environ.get("SM_MAGIC_MAIN_ADDR") or hosts[0]
    port = int(os.environ.get("SM_MAGIC_MAIN_PORT") or DEFAULT_PORT) + 1
    job = f"{os.environ.get('TRAINING_JOB_NAME', '')}:{port}"
    board = None
    if len(hosts) > 1 and current == hosts[0]:
        try:
            board = Board(job, hosts, port)
        except OSError as e:  # the hosts' failure files then each name their own reason
            print(f"sm_magic: no failure board on port {port} ({e.strerror})", flush=True)

    def on_failure(tail, status):
        # The platform adds the exit status. The reason is not printed to the log as well: it is
        # the job's FailureReason, which every display shows once.
        reason = error_summary(tail)
        if board is not None:
            board.reported_here = True
        if len(hosts) > 1:
            report = {"host": current, "reason": reason, "consequence": consequence(reason)}
            reason = reason_with_first(reason, current, first_failure(report, board, addr, port, job))
        write_failure_file(failure_path(os.environ), reason)

    status = supervise(cmd, env, HERE, sys.stdout.buffer, on_failure)
    record_exit(status)
    if board is not None and board.reported_here:
        board.linger()  # the other hosts may still report, or ask for the first failure
    if status < 0:
        # Die of the same signal, so whatever waits for this process sees what happened.
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    sys.exit(status)


if __name__ == "__main__":
    main()
