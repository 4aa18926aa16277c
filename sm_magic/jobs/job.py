"""Job: one handle on a training job, whatever runs it.

Status words are SageMaker's (`TrainingJobStatus`, `SecondaryStatus`). The handle reads the log
incrementally (never from the start twice) and feeds every line to the metrics parser, so
`job.metrics` and `job.logs()` cost only the new lines; the TensorBoard scalars a backend reads
(backends.base.ScalarSource) join the parser's rows by step the same way. Safe to use from the
monitor thread and the notebook at once.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ..backends.base import Backend, BackendError, JobState, Transition, scalars_of
from ..container.failure import clean_reason, error_tail
from ..display.live import LiveDisplay
from ..errors import RuntimeProblem
from ..metrics.parser import MetricDefinition, MetricsParser
from ..metrics.tensorboard_events import TensorBoardMissing
from ..metrics.terminal import render, render_tail
from .eta import Estimate, Tracker
from .log_folding import fold

if TYPE_CHECKING:
    from .artifacts import OutputFile

MAX_LOG_LINES = 200_000   # kept in memory per job; older lines stay in the backend's log
STATE_TTL_SECONDS = 0.5   # how long a described state is reused by property reads
SNAPSHOT_READS = 4        # backend log reads per snapshot of a running job (local: 1 MiB each)
FAILURE_LINES = 2000      # the end of a failed job's log its traceback is looked for in
FOLD_MARGIN = 200         # lines read beyond a tail so a launcher region it cuts is still folded


class JobFailedError(RuntimeProblem, RuntimeError):
    """Raised by `Job.wait()` when the job ends Failed.

    Attributes:
        job: the `Job` that failed.
        reason: its FailureReason, the one line saying why (the script's own error where it
            raised one).

    Example:
        try:
            job.wait()
        except sm_magic.JobFailedError as e:
            print(e.reason, job.logs(tail=50))
    """

    def __init__(self, job: "Job", reason: str):
        self.job, self.reason = job, reason
        super().__init__(f"training job {job.name} failed: {reason}\n"
                         f"Logs: %sagemaker_logs {job.name}  (or job.logs())")

    def _render_traceback_(self) -> list[str]:
        # IPython shows these lines instead of a traceback: the reason is the whole story.
        return [f"\x1b[31mJobFailedError\x1b[0m: {self}"]


@dataclass
class Snapshot:
    """What a progress display shows at one moment."""

    state: JobState
    metrics: Sequence[dict]  # metrics.Rows from a job: shared with the parser, never copied
    log_tail: list[str]
    new_lines: list[str] = field(default_factory=list)
    backend: str = ""
    taken_at: float = field(default_factory=time.time)
    estimate: Estimate | None = None  # how far along and how long left, when a total is known


class Job(LiveDisplay):
    """A handle on one training job, whatever backend runs it.

    `sm_magic.launch(...)` returns one, and so does `sm_magic.attach(name)` for a job launched
    earlier, by this kernel or another. The attributes read the job's live state from its backend
    (a state read is reused for half a second); status words are SageMaker's. A Job as a cell's
    value shows its progress view. Safe to use from several threads at once.

    Args:
        name: the job's name, as its backend knows it.
        backend: the `Backend` that runs it (`sm_magic.backends.get_backend(name)`).
        metric_definitions: regexes for metrics the log parser would not find by itself
            (`--metric NAME=REGEX`).
        on_status: called with the new `JobState` each time the status changes.

    Example:
        job = sm_magic.launch(open("train.py").read(), args=["--epochs", "3"])
        job.wait()
        print(job.status, job.metrics.tail())
    """

    #: A Job as a cell's value (LiveDisplay): the magics follow it with a progress view.
    display_hook: ClassVar[Callable[["Job"], bool] | None] = None

    def __init__(self, name: str, backend: Backend, metric_definitions: Sequence[MetricDefinition] = (),
                 on_status: Callable[[JobState], None] | None = None):
        self.name = name
        self._backend = backend
        self._parser = MetricsParser(metric_definitions)
        self._lines: deque[str] = deque(maxlen=MAX_LOG_LINES)
        self._dropped = 0
        self._reported = 0  # lines read when the last snapshot was taken (read + dropped)
        self._warned = 0  # parser warnings already added to the log
        self._cursor = None
        self._scalar_cursor = None  # the backend's TensorBoard reader (backends.base.ScalarSource)
        self._scalars_off = False  # said once why TensorBoard scalars cannot be read: not tried again
        self._state: JobState | None = None
        self._state_at = 0.0
        self._on_status = on_status
        self._lock = threading.RLock()
        self._tracker: Tracker | None = None  # made at the first estimate: it needs the arguments

    # -- state -------------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        """The name of the backend that runs the job: "local", "sagemaker" or "local-container"."""
        return self._backend.name

    @property
    def poll_interval(self) -> float:
        """Seconds between two useful looks at this job (its backend's pace)."""
        return self._backend.poll_interval

    def refresh(self) -> JobState:
        """Describe the job now, whatever was read last.

        Returns:
            The job's `JobState` (backends.base): status, secondary status, transitions, failure
            reason, model artifacts, times and hyperparameters.

        Raises:
            BackendError: the backend could not be asked (e.g. AWS unreachable, the job's
                directory gone).
        """
        with self._lock:
            old = self._state.status if self._state else None
            self._state = _literal(self._backend.describe(self.name))
            self._state_at = time.monotonic()
            if self._on_status and self._state.status != old:
                self._on_status(self._state)
            return self._state

    def describe(self) -> JobState:
        """The job's state: the last one read if it is under half a second old or final, else a
        fresh one (`refresh`).

        Returns:
            The job's `JobState`; the properties below (`status`, `transitions`, ...) read it.

        Example:
            state = job.describe()
            print(state.status, state.secondary_status, state.billable_seconds)
        """
        with self._lock:
            if self._state is None or (not self._state.done
                                       and time.monotonic() - self._state_at > STATE_TTL_SECONDS):
                return self.refresh()
            return self._state

    @property
    def status(self) -> str:
        """The job's TrainingJobStatus, SageMaker's word as a plain str: "InProgress",
        "Completed", "Failed", "Stopping" or "Stopped".

        Example:
            if job.status == "Failed":
                print(job.failure_reason)
        """
        return self.describe().status

    @property
    def secondary_status(self) -> str:
        """The job's SecondaryStatus, what it is doing now: "Starting", "Downloading",
        "Training", "Uploading", "Completed", "Failed", "Stopped", "Interrupted", "Restarting",
        "MaxRuntimeExceeded", ..."""
        return self.describe().secondary_status

    @property
    def transitions(self) -> list[Transition]:
        """The job's timeline, SageMaker's SecondaryStatusTransitions: a new list of
        `Transition(status, start, end, message)`, oldest first; times in seconds since the epoch,
        `end` None for the current one.

        Example:
            for t in job.transitions:
                print(t.status, t.message, t.seconds)
        """
        return list(self.describe().transitions)

    @property
    def failure_reason(self) -> str | None:
        """Why the job failed, in one line (the script's own error where it raised one), or None."""
        return self.describe().failure_reason

    @property
    def model_data(self) -> str | None:
        """Where the job's model.tar.gz is once written: a path on this machine (local backends)
        or an S3 URI (SageMaker); None before then, and for a job that saved nothing.
        `download()` brings it here unpacked."""
        return self.describe().model_artifacts

    @property
    def hyperparameters(self) -> dict[str, str]:
        """The script's arguments as recorded with the job (`{"epochs": "3", "lr": "5e-05"}`):
        a new dict, values as strings. The script itself gets them exactly as typed."""
        return dict(self.describe().hyperparameters)

    @property
    def done(self) -> bool:
        """Whether the job has ended: Completed, Failed or Stopped."""
        return self.describe().done

    # -- logs and metrics --------------------------------------------------------------------

    def pull_logs(self, max_reads: int | None = None) -> list[str]:
        """Fetch the lines logged since the last call and feed them to the metrics parser.

        `logs()`, `metrics` and `progress` call this first; a caller that streams a job's log
        calls it in a loop.

        Args:
            max_reads: at most this many backend reads (None: until nothing is new), so a flood
                of output cannot hold the caller forever.

        Returns:
            The new lines, raw (progress-bar redraws and escapes kept), with a `[sm_magic] ...`
            line for what the parser gave up on or TensorBoard scalars that cannot be read.

        Example:
            for line in job.pull_logs():
                print(line)
        """
        with self._lock:
            new: list[str] = []
            reads = 0
            while max_reads is None or reads < max_reads:
                lines, self._cursor = self._backend.logs(self.name, self._cursor)
                reads += 1
                if not lines:
                    break
                new.extend(lines)
            # A bounded pull (a snapshot of a running job) reads the event files once, too.
            scalar_notes = self._pull_scalars(None if max_reads is None else 1)
            if new or scalar_notes:
                self._parser.feed(new)
                new.extend(scalar_notes)
                # What the parser gave up on (a metric regex over its time budget) is said once,
                # as a log line: the log tail, job.logs() and `sm-magic logs/wait` all show it.
                notes = self._parser.warnings[self._warned:]
                if notes:
                    self._warned += len(notes)
                    new.extend(f"[sm_magic] {note}" for note in notes)
                overflow = len(self._lines) + len(new) - MAX_LOG_LINES
                if overflow > 0:
                    self._dropped += overflow
                self._lines.extend(new)
                if self._tracker is not None:
                    self._tracker.feed(new)
            return new

    def _pull_scalars(self, max_reads: int | None = None) -> list[str]:
        """Give the parser, as step rows, the TensorBoard scalars the job wrote since the last call
        (backends that read event files), in at most `max_reads` reads (each bounded); returns a
        note for the log when they cannot be read, said once, after which they are not tried again."""
        read = scalars_of(self._backend)
        reads = 0
        while read is not None and not self._scalars_off and (max_reads is None or reads < max_reads):
            try:
                rows, self._scalar_cursor = read(self.name, self._scalar_cursor)
            except TensorBoardMissing as e:
                self._scalars_off = True
                return [f"[sm_magic] {e}"]
            except BackendError as e:
                self._scalars_off = True
                return [f"[sm_magic] the job's TensorBoard scalars are not read: {e}"]
            reads += 1
            if not rows:
                break
            for step, values in rows:
                self._parser.add_row("step", step, values)
        return []

    def logs(self, tail: int | None = None, raw: bool = False, full: bool = False) -> str:
        """The job's log so far, as a terminal would show it.

        A progress bar's redraws are collapsed to its last state, cursor moves applied and colours
        removed (sm_magic.metrics.terminal), and a failed launcher's own traceback is folded into
        one line (sm_magic.jobs.log_folding). Reads the new lines from the backend first. The last
        200,000 lines are kept in memory; older ones are counted in a first line.

        Args:
            tail: only the last `tail` lines (None: all that are kept).
            raw: the lines exactly as logged, "\r" and escapes kept, none folded.
            full: every line rendered, none folded.

        Returns:
            The lines joined with newlines ("" while the job has logged nothing).

        Raises:
            BackendError: the backend could not read the log.

        Example:
            print(job.logs(tail=20))
        """
        with self._lock:
            self.pull_logs()
            if raw:
                lines = list(self._lines)
                if tail is not None:
                    lines = lines[-tail:] if tail > 0 else []
            elif full:
                lines = render(self._lines) if tail is None else render_tail(self._lines, tail)
            elif tail is None:
                lines = fold(render(self._lines), self.name)
            else:
                # Folded over a wider window, so a region the tail cuts is still known as one.
                lines = fold(render_tail(self._lines, tail + FOLD_MARGIN), self.name)
                lines = lines[-tail:] if tail > 0 else []
            if tail is None and self._dropped:
                lines.insert(0, f"[{self._dropped} earlier lines are not kept in memory]")
            return "\n".join(lines)

    @property
    def metrics(self):
        """The metrics the job has logged so far, as a pandas DataFrame.

        One row per epoch (or step), one column per metric: read from what the script prints
        (`epoch 0: {'accuracy': 0.9}`, `epoch=2, loss=0.2`, Hugging Face Trainer, Lightning, Keras
        and tqdm lines, `--metric` regexes; docs/metrics.md lists them) and from TensorBoard
        scalars under $SM_OUTPUT_DIR/tensorboard. Reads the new log lines first; each read is a
        new frame (a copy).

        Returns:
            A `pandas.DataFrame`, empty while no metric has been logged.

        Example:
            df = job.metrics
            df.plot(x="epoch", y="accuracy")
        """
        with self._lock:
            self.pull_logs()
            return self._parser.to_frame()

    def metric_rows(self) -> Sequence[dict]:
        """The metric rows so far as dicts, after reading the new log lines: a view, not a copy
        (metrics.Rows), for summaries and plots of long jobs.

        Returns:
            A sequence of dicts such as `{"epoch": 0, "accuracy": 0.75}`; read it, never change it.
        """
        with self._lock:
            self.pull_logs()
            return self._parser.view()

    def snapshot(self, tail: int = 20) -> Snapshot:
        """What a progress view shows now: the state (read fresh), the metric rows, the last
        `tail` log lines (a failed job's: its traceback) and the lines new since the last snapshot.

        Args:
            tail: how many of the newest log lines to include, rendered as a terminal shows them.

        Returns:
            A `Snapshot`. A running job's log is read a bounded slice per snapshot, so the state
            stays current while it floods; an ended job's is read to the end.
        """
        with self._lock:
            state = self.refresh()
            # A running job's flood is read a bounded slice per snapshot, so the state shown stays
            # current; once the job has ended, everything is read.
            if state.done:
                self.pull_logs()
            else:
                self.pull_logs(max_reads=SNAPSHOT_READS)
            # New: every line read since the last snapshot, whoever read it (job.logs(), or the
            # status hook that records an ended job's final metrics), so a stream misses none.
            total = self._dropped + len(self._lines)
            new = list(itertools.islice(reversed(self._lines), min(total - self._reported, len(self._lines))))[::-1]
            self._reported = total
            # Only the tail is copied: the buffer may hold 200,000 lines. A failed job's tail is
            # the user's traceback, not the launcher's wrapper printed after it (failure.error_tail).
            failed = state.status == "Failed" and tail
            # Rendered as a terminal shows it (the buffer keeps the raw lines for the parser):
            # only a bounded window of the newest lines is read.
            log_tail = render_tail(self._lines, FAILURE_LINES if failed else tail)
            if failed:
                log_tail = error_tail(log_tail, state.failure_reason, tail)
            # A view, not a copy: a long job has tens of thousands of rows (job.metrics copies).
            rows = self._parser.view()
            return Snapshot(state=state, metrics=rows, log_tail=log_tail, new_lines=new, backend=self.backend,
                            estimate=self._estimate(state, rows))

    @property
    def progress(self) -> Estimate | None:
        """How far along the job is, and how long it has left.

        Reads the new log lines first, as `metrics` does. The total comes from the log (the job's
        tqdm bar, `step N/M`, `Epoch N/M`) or the script's `--epochs` (`--num_train_epochs`,
        `--max_epochs`, ...) against the latest epoch seen (sm_magic.jobs.eta).
        An ended job shows its final state: Completed is 1.0 done, Failed or Stopped where it
        stopped, with nothing left to estimate (`remaining` 0 or None).

        Returns:
            An `eta.Estimate`: `done` of `total` `unit`s ("epoch" or "step"), `fraction` 0.0 to
            1.0, `remaining` seconds (None until a rate is known), `elapsed` seconds and `rate`
            units per second; or None while the log shows no total.

        Example:
            p = job.progress
            if p is not None:
                print(f"{p.fraction:.0%}, {p.remaining or 0:.0f} s left")
        """
        with self._lock:
            state = self.describe()
            self.pull_logs()
            return self._estimate(state, self._parser.view())

    def _estimate(self, state: JobState, rows: Sequence[dict]) -> Estimate | None:
        # The tracker is made once the job's arguments are known (its --epochs), and reads what
        # was read before it; pull_logs feeds it from then on.
        if self._tracker is None:
            self._tracker = Tracker(state.hyperparameters)
            self._tracker.feed(self._lines)
        end = state.training_end_time if state.done and state.training_end_time else time.time()
        return self._tracker.estimate(rows, state.training_start_time, end, state.status)

    # -- control -----------------------------------------------------------------------------

    def wait(self, timeout: float | None = None, poll: float | None = None,
             on_snapshot: Callable[[Snapshot], None] | None = None) -> "Job":
        """Block until the job ends (Completed, Failed or Stopped).

        Args:
            timeout: give up after this many seconds (None: wait as long as it runs); the job
                keeps running.
            poll: seconds between two looks at the job (default: its backend's pace).
            on_snapshot: called with each `Snapshot` taken while waiting (a text or widget view).

        Returns:
            The job itself, ended: Completed or Stopped.

        Raises:
            JobFailedError: the job ended Failed; its `reason` is the FailureReason.
            TimeoutError: `timeout` passed before the job ended.

        Example:
            job = sm_magic.launch(source).wait(timeout=3600)
            print(job.metrics)
        """
        poll = poll if poll is not None else self.poll_interval
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            snap = self.snapshot()
            if on_snapshot:
                on_snapshot(snap)
            if snap.state.done:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"training job {self.name} still {snap.state.status} after {timeout} s; "
                                   "it keeps running (job.stop() ends it)")
            time.sleep(poll)
        if snap.state.status == "Failed":
            raise JobFailedError(self, snap.state.failure_reason or "no reason given")
        return self

    def stop(self) -> "Job":
        """Ask the job to stop; returns at once, without waiting for it to end.

        The job goes Stopping, then Stopped, keeping what it saved (its model directory and
        checkpoints). Stopping a job that has already ended does nothing.

        Returns:
            The job itself, so `job.stop().wait()` waits for the end.

        Raises:
            BackendError: the backend could not be asked (e.g. SageMaker unreachable); the job
                keeps running.

        Example:
            job.stop().wait()
        """
        self._backend.stop(self.name)
        with self._lock:
            self._state_at = 0.0
        return self

    # -- the model back here -----------------------------------------------------------------

    def download(self, path: str | os.PathLike | None = None, overwrite: bool = False, *,
                 max_bytes: int | None = None) -> Path:
        """Bring the ended job's model here: its model.tar.gz (a local path, or fetched from S3
        with the job's credentials) unpacked into a directory.

        Everything is checked before anything is written (sm_magic.jobs.artifacts): a member that
        would land outside the directory (absolute, `..`, a link that climbs, a device) refuses
        the archive, and so does one that unpacks to more than `max_bytes` or than the disk can
        hold (1 GiB is kept free). A refused or broken archive leaves nothing behind.

        Args:
            path: the directory to unpack into, made if missing (default: `./<job name>-model/`).
            overwrite: unpack into a directory that already holds files, replacing the files of
                the same names and keeping the rest (default: such a directory is refused).
            max_bytes: refuse an archive whose members add up to more (default: no cap but the
                disk's room).

        Returns:
            The directory the model is in, as an absolute `Path`.

        Raises:
            DownloadError: the job has not ended, failed or saved no model, the target is a file
                or already holds files, or the archive is refused or cannot be read; the message
                says what to do (nothing was written).

        Example:
            model_dir = job.wait().download()          # ./<job name>-model/
            state = torch.load(model_dir / "model.pt")
        """
        from . import artifacts

        state = self.describe()
        return artifacts.download(self.name, self._backend, state.status, state.model_artifacts, path, overwrite,
                                  max_bytes=max_bytes)

    def output_files(self) -> list[OutputFile]:
        """List what the ended job wrote, without unpacking it.

        On SageMaker the archives are fetched from S3 to a scratch directory to be read, then
        removed.

        Returns:
            An `artifacts.OutputFile(path, size)` for each regular file: its model as
            `model/...` (the members of model.tar.gz) and its output as `output/...` (what it
            wrote to $SM_OUTPUT_DATA_DIR; on SageMaker the members of output.tar.gz, when there
            is one). Sizes in bytes.

        Raises:
            DownloadError: the job is still running (its files are complete when it ends), or an
                archive cannot be read.

        Example:
            for f in job.output_files():
                print(f.path, f.size)
        """
        from . import artifacts

        state = self.describe()
        return artifacts.output_files(self.name, self._backend, state.status, state.model_artifacts)

    def __repr__(self) -> str:
        state = self.describe()
        return (f"<Job {self.name} backend={self.backend} status={state.status} "
                f"secondary={state.secondary_status}>")


def _literal(state: JobState) -> JobState:
    """`state` with its FailureReason and status messages as every display shows them: the
    training script chose that text (its failure file), so its escapes are removed and its length
    capped (failure.clean_reason), on every backend."""
    reason = clean_reason(state.failure_reason) if state.failure_reason else state.failure_reason
    messages = [clean_reason(t.message) for t in state.transitions]
    if reason == state.failure_reason and all(m == t.message for m, t in zip(messages, state.transitions)):
        return state
    return replace(state, failure_reason=reason,
                   transitions=[replace(t, message=m) for t, m in zip(state.transitions, messages)])


def format_transition(t: Transition) -> str:
    """'2026-11-26 20:31:02 Training - Training in progress (12 s)', as the SDK prints them."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t.start))
    took = f" ({t.seconds:.0f} s)" if t.seconds is not None and t.seconds >= 1 else ""
    return f"{stamp} {t.status} - {t.message}{took}"
