"""The local job runner: `python -m sm_magic.backends.local.runner JOB_DIR`.

Started by the local backend in a session of its own, so it outlives the kernel that launched
it. It runs the bundle's entry command once per host (each in a session of its own, with the
job's token SM_MAGIC_JOB_TOKEN and its exit record SM_MAGIC_EXIT_FILE in its environment),
writes every status transition to the job's state file, ends the job on a stop request or past
max_run / max_wait, simulates spot interruptions (kill every host, then restart with the same
checkpoint directory), packs model.tar.gz and takes FailureReason from the failure file the entry
command writes (or, for a host killed before it could, from the end of its log).

Whatever ends a run of the hosts (their own end, a stop, a time limit, an interruption, a failure
of this runner), every process carrying the job's token is ended (SIGKILL, each proven through a
pidfd: see local_procs) and a scan of /proc finds none running before the job reports an ending
or restarts. State that cannot be written (a full disk, a read-only or deleted job directory)
ends the job's processes too; the ending is then retried for a bounded time (a successful run is
still packed and Completed if the disk recovers in time), after which the runner exits and the
next reader recovers the job (local_recovery). It imports only the stdlib and sm_magic's
stdlib-only modules, to start fast.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ...container.entry import RECLAIMED
from .procs import TOKEN_VAR, end_token_processes, new_token, proven_signal, signal_token, token_pids
from .recovery import host_failure_reason, unwritable_reason
from .state import JobFiles, enter, finish, pack_model, read_state, reset_exit_records, running_seconds, write_state

POLL_SECONDS = 0.05
STOP_GRACE_SECONDS = 10.0     # SageMaker allows 120 s between SIGTERM and the end
CAPACITY_WAIT_SECONDS = 1.0   # how long a simulated spot interruption waits for new capacity
RECLAIM_DRAIN_SECONDS = 2.0   # how long the entry commands may copy a reclaimed run's last output
END_TIMEOUT_SECONDS = 30.0    # how long the job's processes may take to die after SIGKILL
STATE_CHECK_SECONDS = 0.5     # how often a running job's state file is checked to still be there
# How long an ending that cannot be written is retried before the runner leaves it to the readers.
STATE_RETRY_SECONDS = float(os.environ.get("SM_MAGIC_STATE_RETRY_SECONDS") or 60)
STATE_RETRY_POLL = 0.5
# Why a job is ended early: its Stopping message, its final secondary status and message.
_ENDINGS = {
    "stop": ("Stopping the training job", "Stopped", "Training job stopped"),
    "max_run": ("The job ran past max_run ({max_run} s, MaxRuntimeInSeconds): stopping it",
                "MaxRuntimeExceeded", "Training job ran out of MaxRuntimeInSeconds"),
    "max_wait": ("The job ran past max_wait ({max_wait} s, MaxWaitTimeInSeconds): stopping it",
                 "MaxWaitTimeExceeded", "Training job ran out of MaxWaitTimeInSeconds"),
}


class StateUnwritable(Exception):
    """The state file could not be written."""

    def __init__(self, path: Path, error: OSError):
        super().__init__(f"{path}: {error}")
        self.path, self.error = path, error


class Runner:
    def __init__(self, job_dir: Path):
        self.files = JobFiles(job_dir)
        self.state = read_state(self.files.state)
        self.spec = self.state.extra["local"]
        self.token = self.spec.setdefault("token", new_token())
        self.hosts = list(self.spec["host_env"])
        self.interruptions = [float(s) for s in self.spec.get("interruptions", [])]
        self.stop_requested = False
        self.procs: dict[str, subprocess.Popen] = {}
        self.attempt_start = 0.0
        self.state_checked = 0.0
        self.succeeded = False  # every host of the last run exited 0 and nothing ended the job early

    def save(self) -> None:
        try:
            write_state(self.files.state, self.state)
        except OSError as e:
            raise StateUnwritable(self.files.state, e) from e

    def on_term(self, signum, frame) -> None:
        self.stop_requested = True

    def run(self) -> int:
        try:
            return self._run()
        finally:
            self.free_input_copies()

    def free_input_copies(self) -> None:
        """The job's own copies of its s3:// channels, once it has ended: S3 keeps the data, and a
        dataset copied per job and never freed would fill the disk (as SageMaker drops an
        instance's volume). Only paths inside the job directory, as the backend recorded them."""
        if not self.state.done:
            return
        for rel in self.spec.get("input_copies", []):
            path = self.files.dir / rel
            if ".." not in Path(rel).parts and not Path(rel).is_absolute() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)

    def _run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.state.extra["runner_pid"] = os.getpid()  # for the record; the backend proves it by runner.json
        enter(self.state, "Downloading", "Downloading input data")
        self.save()
        ending = self._ending()
        if ending:
            return self._end_early(ending, started=False)

        enter(self.state, "Training", "Training in progress")
        self.state.training_start_time = time.time()
        while True:
            self._start_hosts()
            self.save()
            ending, codes = self._wait()
            if ending != "interrupted":
                break
            ending = self._interrupt_and_restart()
            if ending:
                break
        if ending:
            return self._end_early(ending, started=True)
        if all(code == 0 for code in codes.values()):
            self.succeeded = True
            enter(self.state, "Uploading", "Uploading generated training model")
            self.save()
            self.state.model_artifacts = pack_model(self.files, self.hosts)
            finish(self.state, "Completed", "Training job completed")
        else:
            self.state.failure_reason = host_failure_reason(self.files, self.hosts, codes)
            finish(self.state, "Failed", "Training job failed")
        self.save()
        return 0

    def _ending(self) -> str | None:
        """Why the job must end now, if it must: a stop request or a time limit."""
        self._check_state_file()
        if self.stop_requested or self.files.stop_marker.exists():
            return "stop"
        now = time.time()
        max_run, max_wait = self.spec.get("max_run"), self.spec.get("max_wait")
        if max_run and running_seconds(self.state, now) > max_run:
            return "max_run"
        if max_wait and now - self.state.creation_time > max_wait:
            return "max_wait"
        return None

    def _check_state_file(self) -> None:
        """A state file deleted under a running job is written again; a job directory deleted
        (or unwritable) raises StateUnwritable, which ends the job."""
        now = time.monotonic()
        if now - self.state_checked >= STATE_CHECK_SECONDS:
            self.state_checked = now
            if not self.files.state.exists():
                self.save()

    def _start_hosts(self) -> None:
        self.files.logs.mkdir(exist_ok=True)
        reset_exit_records(self.files, self.hosts)  # a record from an earlier run must not count
        entry = [sys.executable if part == "python" else part for part in self.spec["entry_command"]]
        for host, env_overrides in self.spec["host_env"].items():
            env = {**os.environ, **env_overrides, TOKEN_VAR: self.token,
                   "SM_MAGIC_EXIT_FILE": str(self.files.exit_record(host))}
            log = open(self.files.log(host), "ab")
            try:
                self.procs[host] = subprocess.Popen(
                    entry, cwd=self.files.bundle, env=env, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True)
            finally:
                log.close()
        self.attempt_start = time.time()
        # For the record only (each entry command leads a session): nothing is signalled by these.
        self.state.extra["pgids"] = {h: p.pid for h, p in self.procs.items()}
        self.state.extra["attempts"] = self.state.extra.get("attempts", 0) + 1

    def _wait(self) -> tuple[str | None, dict[str, int]]:
        """Wait for every host. A stop request or a time limit ends them all (TERM to the entry
        commands, then KILL to every process of the job after a grace) and is returned; so is a
        simulated interruption (KILL at once). Returns once no process of the job runs."""
        codes: dict[str, int] = {}
        kill_at = None  # when every process of the job gets SIGKILL, once an ending has begun
        ending = None
        while len(codes) < len(self.procs):
            for host, proc in self.procs.items():
                if host not in codes and proc.poll() is not None:
                    codes[host] = proc.returncode
                    # One failed host ends the job, as on SageMaker.
                    if proc.returncode != 0 and kill_at is None and len(self.procs) > 1:
                        self._term_entries()
                        kill_at = time.time() + STOP_GRACE_SECONDS
            if ending is None and kill_at is None:
                ending = self._ending()
                if ending:
                    message = _ENDINGS[ending][0].format(**self.spec)
                    enter(self.state, "Stopping", message, status="Stopping")
                    self.save()
                    self._term_entries()
                    kill_at = time.time() + STOP_GRACE_SECONDS
                elif self.interruptions and time.time() - self.attempt_start >= self.interruptions[0]:
                    ending = "interrupted"
                    self._reclaim()
                    kill_at = time.time() + RECLAIM_DRAIN_SECONDS
            if kill_at is not None and time.time() > kill_at:
                signal_token(self.token, signal.SIGKILL)
            time.sleep(POLL_SECONDS)
        # Whatever the hosts left behind (ranks in sessions of their own, daemons) goes with them,
        # before the job is called ended or restarted.
        self._end_all()
        return ending, codes

    def _term_entries(self) -> None:
        """SIGTERM to each host's entry command that still runs (our own child, not reaped: its
        pid cannot have been reused), which passes it on to its launcher's process group."""
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def _reclaim(self) -> None:
        """A simulated spot reclaim: SIGKILL to every process of the job but the entry commands,
        which are told first (RECLAIMED) and copy what the killed processes printed into the
        logs before they end, as a platform's log collector keeps what reached it."""
        entries = {proc.pid for proc in self.procs.values() if proc.poll() is None}
        for proc in self.procs.values():
            if proc.pid in entries:
                try:
                    proc.send_signal(RECLAIMED)
                except ProcessLookupError:
                    pass
        for pid in token_pids(self.token):
            if pid not in entries:
                proven_signal(pid, signal.SIGKILL, token=self.token)

    def _reap(self) -> None:
        for proc in self.procs.values():
            proc.poll()

    def _end_all(self) -> None:
        """SIGKILL every process of the job until a scan of /proc finds none running."""
        survivors = end_token_processes(self.token, END_TIMEOUT_SECONDS, POLL_SECONDS, reap=self._reap)
        if survivors:
            self._log(f"processes {survivors} of the job still ran {END_TIMEOUT_SECONDS:.0f} s after SIGKILL")

    def end_processes(self) -> None:
        """End the job however far it got: TERM to the entry commands still running, up to the
        stop grace for them to end, then KILL to every process of the job."""
        if any(proc.poll() is None for proc in self.procs.values()):
            self._term_entries()
            deadline = time.monotonic() + STOP_GRACE_SECONDS
            while any(proc.poll() is None for proc in self.procs.values()) and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
        self._end_all()

    def _interrupt_and_restart(self) -> str | None:
        """Record a simulated spot interruption, wait for capacity, restart every host with the
        same checkpoint directory. Returns why the job must end instead, if it must."""
        ran = time.time() - self.attempt_start
        self.interruptions.pop(0)
        enter(self.state, "Interrupted", f"Spot capacity reclaimed after {ran:.1f} s (simulated): "
              "every process of every host was killed")
        self.save()
        self._note_in_logs(f"simulated spot interruption after {ran:.1f} s: every process was killed")
        deadline = time.time() + CAPACITY_WAIT_SECONDS
        while time.time() < deadline:
            if self._ending():
                return self._ending()
            time.sleep(POLL_SECONDS)
        checkpoints = self.spec["host_env"][self.hosts[0]]["SM_CHECKPOINT_DIR"]
        for host in self.hosts:  # new instances start with an empty /opt/ml/output
            (self.files.opt_ml(host, self.hosts) / "output" / "failure").unlink(missing_ok=True)
        enter(self.state, "Restarting", f"Restarting on new instances with the checkpoints in {checkpoints}")
        self.save()
        attempt = self.state.extra.get("attempts", 1) + 1
        self._note_in_logs(f"restarting (attempt {attempt}) with the checkpoints in {checkpoints}")
        enter(self.state, "Training", f"Training resumed (attempt {attempt})")
        return None

    def _note_in_logs(self, text: str) -> None:
        for host in self.hosts:
            try:
                with open(self.files.log(host), "a", encoding="utf-8") as log:
                    log.write(f"sm_magic: {text}\n")
            except OSError:
                pass  # a log that cannot be written is no reason to end the job

    def _log(self, text: str) -> None:
        """A line in runner.log (this process's output), if it can be written."""
        try:
            print(f"sm_magic runner: {text}", flush=True)
        except (OSError, ValueError):
            pass

    def _end_early(self, ending: str, started: bool) -> int:
        """End a stopped or timed-out job as Stopped, with what it saved packed as its model."""
        stopping, final, message = _ENDINGS[ending]
        if self.state.secondary_status != "Stopping":
            enter(self.state, "Stopping", stopping.format(**self.spec), status="Stopping")
        if started:
            enter(self.state, "Uploading", "Uploading what the job saved before it stopped")
            self.save()
            self.state.model_artifacts = pack_model(self.files, self.hosts)
        finish(self.state, "Stopped", message, secondary=final)
        self.save()
        return 0

    def give_up(self, path, error: OSError) -> int:
        """The job's files cannot be written: end every process of the job, then retry writing
        its ending for a bounded time. A run whose hosts all succeeded is still packed and
        Completed if the disk recovers in time; an ending already decided is written as it is;
        otherwise the job is Failed with the reason. Past the bound the runner exits and the
        next reader recovers the job (from the hosts' exit records)."""
        self._log(f"{path}: {error}: ending every process of the job")
        self.end_processes()
        if not self.state.done and not self.succeeded:
            self.state.failure_reason = unwritable_reason(path, error)
            finish(self.state, "Failed", "Training job failed")
        # A deleted job directory will not come back: nobody can see the job to read its end.
        retry = STATE_RETRY_SECONDS if self.files.dir.is_dir() else 0.0
        deadline = time.monotonic() + retry
        while True:
            try:
                if not self.state.done:  # succeeded: pack and complete once the disk takes it
                    self.state.model_artifacts = pack_model(self.files, self.hosts)
                    finish(self.state, "Completed", "Training job completed")
                write_state(self.files.state, self.state)
                self._log(f"the job's ending ({self.state.status}) was written after all")
                return 0
            except OSError as e:
                error = e
            if time.monotonic() >= deadline:
                break
            time.sleep(STATE_RETRY_POLL)
        self._log(f"the job's ending could not be written ({error}) within {retry:.0f} s; the next reader of "
                  "the job records it")
        return 1


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m sm_magic.backends.local.runner JOB_DIR", file=sys.stderr)
        return 2
    runner = Runner(Path(argv[0]))
    try:
        return runner.run()
    except StateUnwritable as e:
        return runner.give_up(e.path, e.error)
    except OSError as e:  # a log, an exit record, the model: the job directory refuses writes
        return runner.give_up(e.filename or runner.files.dir, e)
    except BaseException as e:  # the job record must never stay InProgress behind a dead runner
        runner.end_processes()
        if not runner.state.done:
            runner.state.failure_reason = f"InternalServerError: the local job runner failed: {e!r}"
            finish(runner.state, "Failed", "Training job failed")
        try:
            runner.save()
        except StateUnwritable as unwritable:
            runner.give_up(unwritable.path, unwritable.error)
        raise


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
