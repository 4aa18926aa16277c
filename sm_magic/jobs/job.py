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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar
from collections.abc import Callable, Sequence

from ..errors import RuntimeProblem
from ..backends.base import Backend, BackendError, JobState, Transition, scalars_of
from .eta import Estimate, Tracker
from ..container.failure import clean_reason, error_tail
from ..display.live import LiveDisplay
from .log_folding import fold
from ..metrics.parser import MetricDefinition, MetricsParser
from ..metrics.tensorboard_events import TensorBoardMissing
from ..metrics.terminal import render, render_tail

if TYPE_CHECKING:
    from .artifacts import OutputFile

MAX_LOG_LINES = 200_000   # kept in memory per job; older lines stay in the backend's log
STATE_TTL_SECONDS = 0.5   # how long a described state is reused by property reads
SNAPSHOT_READS = 4        # backend log reads per snapshot of a running job (local: 1 MiB each)
FAILURE_LINES = 2000      # the end of a failed job's log its traceback is looked for in
FOLD_MARGIN = 200         # lines read beyond a tail so a launcher region it cuts is still folded


class JobFailedError(RuntimeProblem, RuntimeError):
    """Raised by `Job.wait()` when the job ends Failed; `.reason` is its FailureReason."""

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
    """A training job. Attributes read live state from the backend (cached for half a second)."""

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
        """The backend's name: "local", "sagemaker", ..."""
        return self._backend.name

    @property
    def poll_interval(self) -> float:
        """Seconds between two useful looks at this job (its backend's pace)."""
        return self._backend.poll_interval

    def refresh(self) -> JobState:
        """Describe the job now."""
        with self._lock:
            old = self._state.status if self._state else None
            self._state = _literal(self._backend.describe(self.name))
            self._state_at = time.monotonic()
            if self._on_status and self._state.status != old:
                self._on_status(self._state)
            return self._state

    def describe(self) -> JobState:
        """The last state if fresh (or final), else a new one."""
        with self._lock:
            if self._state is None or (not self._state.done
                                       and time.monotonic() - self._state_at > STATE_TTL_SECONDS):
                return self.refresh()
            return self._state

    status = property(lambda self: self.describe().status, doc="TrainingJobStatus: InProgress, Completed, Failed, Stopping, Stopped")
    secondary_status = property(lambda self: self.describe().secondary_status, doc="SecondaryStatus")
    transitions = property(lambda self: list(self.describe().transitions), doc="SecondaryStatusTransitions")
    failure_reason = property(lambda self: self.describe().failure_reason, doc="why the job failed, or None")
    model_data = property(lambda self: self.describe().model_artifacts, doc="model.tar.gz path or S3 URI once written")
    hyperparameters = property(lambda self: dict(self.describe().hyperparameters), doc="the script's arguments, as recorded")

    @property
    def done(self) -> bool:
        return self.describe().done

    # -- logs and metrics --------------------------------------------------------------------

    def pull_logs(self, max_reads: int | None = None) -> list[str]:
        """Fetch the lines logged since the last call (at most `max_reads` backend reads, so a
        flood cannot hold a caller forever), feed them to the metrics parser, return them."""
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
        """The job's log so far (the last `tail` lines when given), as a terminal would show it:
        a progress bar's redraws collapsed to its last state, cursor moves applied, colours
        removed (sm_magic.metrics.terminal), and a failed launcher's own traceback folded into one line
        (sm_magic.jobs.log_folding). `full=True`: every line, none folded. `raw=True`: the lines as
        logged, "\r" and escapes kept, none folded."""
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
        """A pandas DataFrame: one row per epoch (or step), one column per metric."""
        with self._lock:
            self.pull_logs()
            return self._parser.to_frame()

    def metric_rows(self) -> Sequence[dict]:
        """The metric rows so far as dicts (`{"epoch": 0, "accuracy": 0.75}`), after reading the
        new log lines: a view, not a copy (metrics.Rows), for summaries and plots of long jobs."""
        with self._lock:
            self.pull_logs()
            return self._parser.view()

    def snapshot(self, tail: int = 20) -> Snapshot:
        """State, metric rows, the last `tail` log lines and the lines new since the last snapshot."""
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
        """How far along the job is: an `eta.Estimate` (`done` of `total` `unit`s, "epoch" or
        "step"; `fraction` 0 to 1; `remaining` seconds or None; `elapsed`; `rate`), or None when
        its log shows no total. Reads the new log lines first, as `metrics` does. An ended job
        shows its final state: Completed is 1.0 done, Failed or Stopped where it stopped, with
        nothing left to estimate (`remaining` 0 or None)."""
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
        """Block until the job ends; returns the job, raises JobFailedError if it Failed
        and TimeoutError after `timeout` seconds (the job keeps running)."""
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
        """Ask the job to stop; it ends Stopped, keeping what it saved. Returns at once."""
        self._backend.stop(self.name)
        with self._lock:
            self._state_at = 0.0
        return self

    # -- the model back here -----------------------------------------------------------------

    def download(self, path: str | os.PathLike | None = None, overwrite: bool = False, *,
                 max_bytes: int | None = None) -> Path:
        """Fetch the ended job's model.tar.gz (a local path, or from S3) and unpack it into `path`
        (default: `./<job name>-model/`); returns that directory. A directory that already holds
        files is refused unless `overwrite=True` (which replaces the files of the same names), and
        so is an archive member that would land outside it (sm_magic.jobs.artifacts), and an archive
        that unpacks to more than `max_bytes` (default: no cap) or than the disk can hold, before
        anything is written.

        Example:
            >>> model_dir = job.download()           # ./<job name>-model/
            >>> model = torch.load(model_dir / "model.pt")"""
        from . import artifacts

        state = self.describe()
        return artifacts.download(self.name, self._backend, state.status, state.model_artifacts, path, overwrite,
                                  max_bytes=max_bytes)

    def output_files(self) -> list[OutputFile]:
        """What the ended job wrote: `artifacts.OutputFile(path, size)` for each file of its model
        (`model/...`, the members of model.tar.gz) and of its output (`output/...`: what it wrote
        to $SM_OUTPUT_DATA_DIR; on SageMaker the members of output.tar.gz, when there is one)."""
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
