"""The local job runner: `python -m sm_magic.backends.local_runner JOB_DIR`.

Started by the local backend in a session of its own, so it outlives the kernel that launched
it. It runs the bundle's entry command once per host (each in its own process group), writes
every status transition to the job's state file, ends the job on a stop request or past
max_run / max_wait, simulates spot interruptions (kill every host, then restart with the same
checkpoint directory), packs model.tar.gz and takes FailureReason from the failure file the entry
command writes (or, for a host killed before it could, from the end of its log). It imports only
the stdlib and sm_magic's stdlib-only modules, to start fast.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from ..failure import log_summary, read_failure_file
from .local_state import (JobFiles, enter, finish, kill_sessions, live_session_members, read_state,
                          running_seconds, write_state)

POLL_SECONDS = 0.05
STOP_GRACE_SECONDS = 10.0     # SageMaker allows 120 s between SIGTERM and the end
CAPACITY_WAIT_SECONDS = 1.0   # how long a simulated spot interruption waits for new capacity
# Why a job is ended early: its Stopping message, its final secondary status and message.
_ENDINGS = {
    "stop": ("Stopping the training job", "Stopped", "Training job stopped"),
    "max_run": ("The job ran past max_run ({max_run} s, MaxRuntimeInSeconds): stopping it",
                "MaxRuntimeExceeded", "Training job ran out of MaxRuntimeInSeconds"),
    "max_wait": ("The job ran past max_wait ({max_wait} s, MaxWaitTimeInSeconds): stopping it",
                 "MaxWaitTimeExceeded", "Training job ran out of MaxWaitTimeInSeconds"),
}


class Runner:
    def __init__(self, job_dir: Path):
        self.files = JobFiles(job_dir)
        self.state = read_state(self.files.state)
        self.spec = self.state.extra["local"]
        self.interruptions = [float(s) for s in self.spec.get("interruptions", [])]
        self.stop_requested = False
        self.procs: dict[str, subprocess.Popen] = {}
        self.attempt_start = 0.0

    def save(self) -> None:
        write_state(self.files.state, self.state)

    def on_term(self, signum, frame) -> None:
        self.stop_requested = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.state.extra["runner_pid"] = os.getpid()
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
            enter(self.state, "Uploading", "Uploading generated training model")
            self.save()
            self._pack_model()
            finish(self.state, "Completed", "Training job completed")
        else:
            self.state.failure_reason = self._failure_reason(codes)
            finish(self.state, "Failed", "Training job failed")
        self.save()
        return 0

    def _ending(self) -> str | None:
        """Why the job must end now, if it must: a stop request or a time limit."""
        if self.stop_requested or self.files.stop_marker.exists():
            return "stop"
        now = time.time()
        max_run, max_wait = self.spec.get("max_run"), self.spec.get("max_wait")
        if max_run and running_seconds(self.state, now) > max_run:
            return "max_run"
        if max_wait and now - self.state.creation_time > max_wait:
            return "max_wait"
        return None

    def _start_hosts(self) -> None:
        self.files.logs.mkdir(exist_ok=True)
        entry = [sys.executable if part == "python" else part for part in self.spec["entry_command"]]
        for host, env_overrides in self.spec["host_env"].items():
            env = {**os.environ, **env_overrides}
            log = open(self.files.log(host), "ab")
            try:
                self.procs[host] = subprocess.Popen(
                    entry, cwd=self.files.bundle, env=env, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True)
            finally:
                log.close()
        self.attempt_start = time.time()
        self.state.extra["pgids"] = {h: p.pid for h, p in self.procs.items()}
        self.state.extra["attempts"] = self.state.extra.get("attempts", 0) + 1

    def _wait(self) -> tuple[str | None, dict[str, int]]:
        """Wait for every host. A stop request or a time limit ends them all (TERM, then KILL
        after a grace) and is returned; so is a simulated interruption (KILL at once)."""
        codes: dict[str, int] = {}
        term_sent_at = None
        ending = None
        while len(codes) < len(self.procs):
            for host, proc in self.procs.items():
                if host not in codes and proc.poll() is not None:
                    codes[host] = proc.returncode
                    # One failed host ends the job, as on SageMaker.
                    if proc.returncode != 0 and term_sent_at is None and len(self.procs) > 1:
                        self._signal_all(signal.SIGTERM)
                        term_sent_at = time.time()
            if ending is None and term_sent_at is None:
                ending = self._ending()
                if ending:
                    message = _ENDINGS[ending][0].format(**self.spec)
                    enter(self.state, "Stopping", message, status="Stopping")
                    self.save()
                    self._signal_all(signal.SIGTERM)
                    term_sent_at = time.time()
                elif self.interruptions and time.time() - self.attempt_start >= self.interruptions[0]:
                    ending = "interrupted"
                    self._signal_all(signal.SIGKILL)
                    term_sent_at = time.time()
            if term_sent_at is not None and time.time() - term_sent_at > STOP_GRACE_SECONDS:
                self._signal_all(signal.SIGKILL)
            time.sleep(POLL_SECONDS)
        # Anything a script left behind in its group goes with it, before the job is called ended.
        self._signal_all(signal.SIGKILL)
        deadline = time.time() + 10
        sids = list(self.state.extra.get("pgids", {}).values())
        while any(live_session_members(s) for s in sids) and time.time() < deadline:
            time.sleep(POLL_SECONDS)
        return ending, codes

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
        checkpoints = self.spec["host_env"][next(iter(self.spec["host_env"]))]["SM_CHECKPOINT_DIR"]
        enter(self.state, "Restarting", f"Restarting on new instances with the checkpoints in {checkpoints}")
        self.save()
        attempt = self.state.extra.get("attempts", 1) + 1
        self._note_in_logs(f"restarting (attempt {attempt}) with the checkpoints in {checkpoints}")
        enter(self.state, "Training", f"Training resumed (attempt {attempt})")
        return None

    def _note_in_logs(self, text: str) -> None:
        for host in self.spec["host_env"]:
            with open(self.files.log(host), "a", encoding="utf-8") as log:
                log.write(f"sm_magic: {text}\n")

    def _signal_all(self, sig: int) -> None:
        """SIGKILL to every process of every host; another signal to each host's entry command
        only, which passes it on to its launcher's process group (so nothing gets it twice)."""
        leaders = list(self.state.extra.get("pgids", {}).values())
        if sig == signal.SIGKILL:
            kill_sessions(leaders, sig)
            return
        for pid in leaders:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _end_early(self, ending: str, started: bool) -> int:
        """End a stopped or timed-out job as Stopped, with what it saved packed as its model."""
        stopping, final, message = _ENDINGS[ending]
        if self.state.secondary_status != "Stopping":
            enter(self.state, "Stopping", stopping.format(**self.spec), status="Stopping")
        if started:
            enter(self.state, "Uploading", "Uploading what the job saved before it stopped")
            self.save()
            self._pack_model()
        finish(self.state, "Stopped", message, secondary=final)
        self.save()
        return 0

    def _pack_model(self) -> None:
        hosts = list(self.spec["host_env"])
        model_dir = self.files.opt_ml(hosts[0], hosts) / "model"
        target = self.files.model_tar
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(".model.tar.gz.tmp")
        with tarfile.open(tmp, "w:gz") as tar:
            for item in sorted(model_dir.iterdir()):
                tar.add(item, arcname=item.name)
        os.replace(tmp, target)
        self.state.model_artifacts = str(target)

    def _failure_reason(self, codes: dict[str, int]) -> str:
        hosts = list(self.spec["host_env"])
        # `codes` is in the order hosts ended: the first failure is the cause, not its echoes.
        host = next((h for h, c in codes.items() if c != 0), hosts[0])
        code = codes.get(host)
        exit_text = (f"killed by signal {signal.Signals(-code).name}" if code and code < 0
                     else f"exit code {code}")
        # The entry command wrote the reason, as it does in SageMaker's container; a host killed
        # before it could leaves only its log.
        reason = read_failure_file(self.files.opt_ml(host, hosts) / "output" / "failure")
        return f"AlgorithmError: {reason or log_summary(self.files.log(host))} ({exit_text})"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m sm_magic.backends.local_runner JOB_DIR", file=sys.stderr)
        return 2
    runner = Runner(Path(argv[0]))
    try:
        return runner.run()
    except BaseException as e:  # the job record must never stay InProgress behind a dead runner
        runner._signal_all(signal.SIGKILL)
        runner.state.failure_reason = f"InternalServerError: the local job runner failed: {e!r}"
        finish(runner.state, "Failed", "Training job failed")
        runner.save()
        raise


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
