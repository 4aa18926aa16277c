"""What following a Job and following a Sweep differ in: the live widget, the terminal's lines
and the wait. follow.py does the rest (kernel or terminal, follow or wait, the cell's value, the
display hook) once for both, through `view_of(handle)`.
"""

from __future__ import annotations

import queue
from typing import Any, Protocol, TypeVar

from ..jobs.job import Job, JobFailedError
from ..jobs.monitor import get_monitor
from ..sweeps.grid import values_text
from ..sweeps.sweep import Sweep
from ..widgets.text import StreamPrinter, TerminalLines

WIDGET_INTERVAL = 1.0  # seconds between a display's updates: at most one message per child per second

H = TypeVar("H", bound=Job | Sweep)  # the handle show() is given is the one it returns
H_contra = TypeVar("H_contra", contravariant=True)


class LiveView(Protocol[H_contra]):
    """How one kind of live handle is followed under a cell: what JobView and SweepView give."""

    def widget(self, handle: H_contra) -> None:
        """In a kernel: show its live widget under the cell, kept up to date until it ends (then
        replaced by its static summary).

        Args:
            handle: the Job or Sweep to show.
        """

    def lines(self, handle: H_contra) -> None:
        """In a terminal: say what follows, then print its progress as lines, without blocking.

        Args:
            handle: the Job or Sweep to follow.
        """

    def wait(self, handle: H_contra, widget: bool) -> None:
        """Block until it ends, following it meanwhile; Ctrl-C stops only the waiting.

        Args:
            handle: the Job or Sweep to wait on.
            widget: show its live widget too (in a kernel).
        """


class JobView:
    """A Job: the progress widget, or TerminalLines; its wait streams the log as the SDK does."""

    def widget(self, job: Job) -> None:
        """The progress widget, fed by the kernel's monitor (LiveView.widget)."""
        from ..widgets.progress import show_progress

        get_monitor().watch(job, show_progress(job).update, min_interval=WIDGET_INTERVAL)

    def lines(self, job: Job) -> None:
        """A line for each transition and metric row, then the result (LiveView.lines)."""
        print(f"{job.name} is running on the {job.backend} backend; its progress follows as lines "
              f"(`%sagemaker_attach {job.name} --wait` blocks until it ends).")
        get_monitor().watch(job, TerminalLines(), min_interval=WIDGET_INTERVAL)

    def wait(self, job: Job, widget: bool) -> None:
        """The SDK-style text stream, and the progress widget where `widget` (LiveView.wait);
        raises JobFailedError when the job fails. One watch feeds both, through a queue, so all output
        is made on this thread (and a snapshot's new log lines, which a second watch of the same
        job would take, all reach the stream)."""
        shown = None
        if widget:
            from ..widgets.progress import show_progress

            shown = show_progress(job)
        printer = StreamPrinter()
        snapshots: queue.Queue = queue.Queue()
        watch = get_monitor().watch(job, snapshots.put, min_interval=WIDGET_INTERVAL)
        try:
            while True:
                snap = snapshots.get()
                printer(snap)
                if shown is not None:
                    shown.update(snap)
                if snap.state.done:
                    break
        except KeyboardInterrupt:
            # Only this cell stops waiting; the widget goes on following the job.
            watch.callback = shown.update if shown is not None else (lambda snap: None)
            print(f"\nStopped waiting; {job.name} keeps running. `%sagemaker_stop {job.name}` ends it.")
            return
        if snap.state.status == "Failed":
            raise JobFailedError(job, snap.state.failure_reason or "no reason given")


class SweepView:
    """A Sweep: the sweep widget, or a line per status change; its wait ends with a line per job."""

    def widget(self, sweep: Sweep) -> None:
        """The sweep widget; it follows the sweep itself (LiveView.widget)."""
        from ..widgets.sweep_widget import show_sweep_widget

        show_sweep_widget(sweep, interval=WIDGET_INTERVAL)

    def lines(self, sweep: Sweep) -> None:
        """A line each time a point's status changes (LiveView.lines)."""
        from ..widgets.sweep_table import print_sweep

        print(f"Sweep {sweep.name}: {len(sweep.entries)} jobs on the {sweep.backend} backend, at most "
              f"{sweep.max_parallel} at a time (`%sagemaker_attach {sweep.name} --wait` blocks until it ends).")
        print_sweep(sweep, interval=WIDGET_INTERVAL)

    def wait(self, sweep: Sweep, widget: bool) -> None:
        """Follow it as without --wait (the sweep's views follow themselves, so the wait only
        blocks), until every point has ended, then one line per job: its name, values and
        status (LiveView.wait). A failed job does not raise (Sweep.wait)."""
        if widget:
            self.widget(sweep)
        else:
            self.lines(sweep)
        try:
            sweep.wait()
        except KeyboardInterrupt:
            print(f"\nStopped waiting; sweep {sweep.name} goes on. `sm_magic.attach({sweep.name!r}).stop()` ends it.")
            return
        width = max(len(p.name) for p in sweep.entries)
        print(f"Sweep {sweep.name}: {sweep.summary()}")
        for p in sweep.entries:
            note = f"  ({p.error})" if p.error else ""
            print(f"{p.name.ljust(width)}  {values_text(p.values)}  {p.status}{note}")
        names = tuple(p.name for p in sweep.entries)
        for error in sweep.errors:
            if not error.startswith(names):  # a point's own error is on its line
                print(f"! {error}")


JOB = JobView()
SWEEP = SweepView()


def view_of(handle: Job | Sweep) -> LiveView[Any]:
    """The view that follows `handle`.

    Args:
        handle: a Job or a Sweep.

    Returns:
        JOB or SWEEP.
    """
    return SWEEP if isinstance(handle, Sweep) else JOB
