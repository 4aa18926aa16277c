"""Reading a SageMaker training job's logs from CloudWatch Logs, with as few calls as a live view allows.

The log group is `/aws/sagemaker/TrainingJobs`, one stream per host and container start,
`<job>/algo-N-<epoch>`. Each stream is read forward with GetLogEvents(startFromHead=True,
nextToken) from where the cursor left it: nothing is read twice. Streams are listed
(DescribeLogStreams) until every host has one, then rarely; a quiet stream is read less often;
after the job ended and its streams are drained, no call. A read that fails keeps the stream's
old token, so its lines come next time, once.
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import TYPE_CHECKING
from collections.abc import Callable, Iterable

from .aws_polling import SLACK, Link, Unreachable

if TYPE_CHECKING:
    from .base import BackendError, JobState

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
LIST_EVERY_POLLS = 3        # look for log streams this often while a host has none
RELIST_EVERY_POLLS = 30     # ... and this often once each host has one (a restarted host opens another)
IDLE_MAX_POLLS = 3          # a stream that had nothing new is read again after 2, then 3 polls
FLUSH_GRACE_SECONDS = 10.0  # after the end, a stream counts as drained once empty this long after
LOG_PAGE_EVENTS = 10_000    # GetLogEvents' own maximum
LOG_PAGE_BYTES = 900_000    # a page this large (of 1 MB at most) may have more behind it
STREAMS_START = frozenset({"Training", "Restarting"})  # secondary statuses that start containers
STREAM_RE = re.compile(r"/(?P<host>algo-(?P<n>\d+))-(?P<epoch>\d+)$")


def stream_host(stream: str) -> tuple[str, int, int]:
    """('algo-2', 2, 1700000000) for '<job>/algo-2-1700000000'."""
    m = STREAM_RE.search(stream)
    if not m:
        return stream.rsplit("/", 1)[-1], 1 << 30, 0
    return m.group("host"), int(m.group("n")), int(m.group("epoch"))


@dataclasses.dataclass
class StreamCursor:
    """Where the reading of one log stream stands."""

    token: str | None = None  # GetLogEvents' nextForwardToken: the next read starts there
    idle: int = 0                # reads in a row that found nothing new
    next_at: float = 0.0         # monotonic; not read again before then (unless the job ended or changed)

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def found_lines(self, now: float, interval: float, full_page: bool) -> None:
        """A read found lines: read again next poll, or at once when the page may have more behind it."""
        self.idle, self.next_at = 0, 0.0 if full_page else now + interval

    def found_nothing(self, now: float, interval: float) -> None:
        """A read found nothing new: read again after 2, then 3 polls."""
        self.idle += 1
        self.next_at = now + min(1 + self.idle, IDLE_MAX_POLLS) * interval


@dataclasses.dataclass
class LogCursor:
    """Where the reading of one job's logs stands (opaque to the callers of `logs`)."""

    streams: dict[str, StreamCursor] = dataclasses.field(default_factory=dict)
    secondary: str | None = None   # the job's secondary status at the last read
    done_at: float | None = None   # monotonic time the job was first seen ended
    list_at: float = 0.0              # monotonic; the streams are listed again from then
    listed_after_end: bool = False    # listed since the job was seen ended
    next_at: float = 0.0              # monotonic; no read before then (unless the job ended)
    drained: bool = False             # ended and read to the end: no call any more

    def copy(self) -> LogCursor:
        """A copy to advance: the caller's cursor stays as it was if a read fails on the way."""
        return dataclasses.replace(self, streams={s: dataclasses.replace(c) for s, c in self.streams.items()})

    def add_streams(self, names: Iterable[str]) -> None:
        for name in names:
            self.streams.setdefault(name, StreamCursor())

    def hosts(self) -> set[str]:
        return {stream_host(s)[0] for s in self.streams}

    def in_host_order(self) -> list[str]:
        """The streams by host number, then by start (a restarted host's new stream comes after its old)."""
        return sorted(self.streams, key=lambda s: stream_host(s)[1:])


class LogReader:
    """Reads job `name`'s log streams through `call(operation, **params)` (one CloudWatch Logs API
    call; raises Unreachable for a failure that may pass, ClientError when refused), while `link`
    (the endpoint's health) is not backing off. `refused(error, what)` turns a refusal into the
    BackendError to raise."""

    def __init__(self, name: str, call: Callable[..., dict], link: Link,
                 refused: Callable[[Exception, str], BackendError], poll_interval: float):
        self.name, self.call, self.link, self.refused = name, call, link, refused
        self.poll_interval = poll_interval

    def read(self, state: JobState | None, cursor: LogCursor | None) -> tuple[list[str], LogCursor]:
        """New lines of every host's stream since `cursor`, given the job's last known state; with
        several hosts each line carries an `algo-N | ` prefix. Returns the cursor to pass next time."""
        done = bool(state is not None and state.done)
        now = time.monotonic()
        cursor = cursor or LogCursor()
        if cursor.drained or (not done and now < cursor.next_at):
            return [], cursor
        if self.link.backing_off(now):
            return [], cursor
        cur = cursor.copy()
        interval = SLACK * self.poll_interval
        secondary = state.secondary_status if state is not None else None
        changed = secondary != cur.secondary
        cur.secondary = secondary
        if done and cur.done_at is None:
            cur.done_at = now
        expected = state.instance_count if state is not None else 1
        hosts = cur.hosts()
        # Hosts open their streams when their containers start: look when training (re)starts,
        # every few polls while a host has none, rarely after that, and once after the end.
        if (changed and secondary in STREAMS_START) or now >= cur.list_at or (done and not cur.listed_after_end):
            try:
                found = self._stream_names()
            except Unreachable:  # the old cursor: the listing (and a status change) is retried
                return [], cursor
            cur.add_streams(found)
            hosts = cur.hosts()
            every = RELIST_EVERY_POLLS if cur.streams and len(hosts) >= expected else LIST_EVERY_POLLS
            cur.list_at = now + every * interval
            cur.listed_after_end = done
        prefix = expected > 1 or len(hosts) > 1
        lines: list[str] = []
        more = failed = False
        empty = True
        from botocore.exceptions import ClientError

        for stream in cur.in_host_order():
            st = cur.streams[stream]
            if not (done or changed or st.due(now)):
                continue
            params = {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True,
                      "limit": LOG_PAGE_EVENTS}
            if st.token:
                params["nextToken"] = st.token
            try:
                page = self.call("get_log_events", **params)
            except Unreachable:
                failed = True
                break
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                    continue
                raise self.refused(e, "read the logs of") from None
            events = page.get("events", [])
            st.token = page.get("nextForwardToken") or st.token
            if events:
                empty = False
                text = [line for e in events for line in (e.get("message", "").rstrip("\n").split("\n"))]
                if prefix:
                    host = stream_host(stream)[0]
                    text = [f"{host} | {line}" for line in text]
                lines.extend(text)
                full = (len(events) >= LOG_PAGE_EVENTS
                        or sum(len(e.get("message", "")) + 26 for e in events) >= LOG_PAGE_BYTES)
                more = more or full
                st.found_lines(now, interval, full)
            else:
                st.found_nothing(now, interval)
        cur.next_at = now if more and not failed else now + interval
        if done and empty and not failed and cur.done_at is not None and now - cur.done_at >= min(FLUSH_GRACE_SECONDS, self.poll_interval):
            cur.drained = True
        return lines, cur

    def _stream_names(self) -> list[str]:
        """The job's log stream names; [] while the log group or its streams do not exist yet."""
        from botocore.exceptions import ClientError

        names: list[str] = []
        params = {"logGroupName": LOG_GROUP, "logStreamNamePrefix": f"{self.name}/"}
        while True:
            try:
                page = self.call("describe_log_streams", **params)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                    return names
                raise self.refused(e, "list the log streams of") from None
            names += [s["logStreamName"] for s in page.get("logStreams", [])]
            token = page.get("nextToken")
            if not token or token == params.get("nextToken"):
                return names
            params["nextToken"] = token
