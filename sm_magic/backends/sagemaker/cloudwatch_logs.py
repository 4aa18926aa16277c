"""SageMaker training logs in CloudWatch Logs: where a reader stands in each stream, how new
events are told from ones already delivered, and how streams are found.

The log group is `/aws/sagemaker/TrainingJobs`, one stream per host and container start,
`<job>/algo-N-<epoch>`. Events are read with FilterLogEvents (cloudwatch_fanout: one call
for the streams of many jobs), which selects by event time, not by position. So a reader's place
in a stream is the latest event time it delivered plus a count of the events it delivered in the
last `lookback` milliseconds before that: a read from (latest - lookback) returns those again
and they are counted off, while an event ingested late (time-stamped in that window but not yet
searchable at the last read) is new and delivered. Nothing is repeated, nothing within the
lookback is lost, and no event id is needed (identical lines at one millisecond are counted, so
each is delivered once).
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..base import BackendError

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
LOG_PAGE_EVENTS = 10_000    # FilterLogEvents' own maximum
LIST_PAGE_STREAMS = 50      # DescribeLogStreams' own maximum
STREAMS_PER_CALL = 100      # FilterLogEvents takes at most 100 logStreamNames
# Secondary statuses before any container runs: no stream can exist yet, so none is looked for.
BEFORE_CONTAINERS = frozenset({"Starting", "Pending", "LaunchingMLInstances", "PreparingTrainingStack",
                               "Downloading", "DownloadingTrainingImage"})
STREAMS_START = frozenset({"Training", "Restarting"})  # secondary statuses that start containers
STREAM_RE = re.compile(r"/(?P<host>algo-(?P<n>\d+))-(?P<epoch>\d+)$")


def stream_host(stream: str) -> tuple[str, int, int]:
    """('algo-2', 2, 1700000000) for '<job>/algo-2-1700000000'."""
    m = STREAM_RE.search(stream)
    if not m:
        return stream.rsplit("/", 1)[-1], 1 << 30, 0
    return m.group("host"), int(m.group("n")), int(m.group("epoch"))


def stream_job(stream: str) -> str:
    return stream.rsplit("/", 1)[0]


def host_order(streams: Iterable[str]) -> list[str]:
    """By host number, then by start: a restarted host's new stream comes after its old one."""
    return sorted(streams, key=lambda s: stream_host(s)[1:])


@dataclasses.dataclass
class StreamPos:
    """Where a reader stands in one stream: the latest event time delivered (ms) and how many
    events of each (time, text) it delivered from (latest - lookback) on."""

    last_ts: int | None = None
    seen: dict = dataclasses.field(default_factory=dict)

    def need(self, floor: int, lookback: int) -> int:
        """The event time a read must start from so that nothing is missed."""
        return floor if self.last_ts is None else self.last_ts - lookback

    def advance(self, events: list[tuple[int, str]], lookback: int) -> tuple[StreamPos, list[str]]:
        """The position after `events` (one stream's, as a read returned them: in time order) and
        the messages among them not delivered before. Events older than the window were delivered
        (the read that found them came before); in the window, the counts tell."""
        if not events:
            return self, []
        old, seen = self.last_ts, dict(self.seen)
        used: Counter = Counter()
        fresh: list[str] = []
        for ts, message in events:
            if old is not None and ts < old - lookback:
                continue
            key = (ts, hash(message))
            used[key] += 1
            if used[key] > seen.get(key, 0):
                seen[key] = used[key]
                fresh.append(message)
        last = max(ts for ts, _ in events) if old is None else max(old, max(ts for ts, _ in events))
        seen = {k: n for k, n in seen.items() if k[0] >= last - lookback}
        return StreamPos(last, seen), fresh


@dataclasses.dataclass
class LogCursor:
    """Where one reader of one job's logs stands (opaque to the callers of `logs`)."""

    streams: dict[str, StreamPos] = dataclasses.field(default_factory=dict)
    page: tuple | None = None      # (nextToken, startTime, streams) of a catch-up read to go on with
    drained: bool = False          # the job ended and was read to the end: no call any more

    def pos(self, stream: str) -> StreamPos:
        return self.streams.get(stream) or StreamPos()


def lines_of(stream: str, messages: list[str], prefix: bool) -> list[str]:
    """An event may hold several lines; with several hosts each carries an `algo-N | ` prefix."""
    text = [line for m in messages for line in m.rstrip("\n").split("\n")]
    if prefix:
        host = stream_host(stream)[0]
        text = [f"{host} | {line}" for line in text]
    return text


@dataclasses.dataclass
class StreamInfo:
    name: str
    floor: int              # no event of the stream is older than this (ms), lookback aside
    last_event: int | None  # lastEventTimestamp: updated by the service eventually, maybe late


def _info(s: dict) -> StreamInfo:
    times = [t for t in (s.get("creationTime"), s.get("firstEventTimestamp")) if t is not None]
    return StreamInfo(s["logStreamName"], min(times) if times else 0, s.get("lastEventTimestamp"))


def list_streams(call: Callable[..., dict], refused: Callable[[Exception], BackendError],
                 prefix: str | None = None, max_pages: int = 20,
                 enough: Callable[[list[StreamInfo]], bool] = lambda found: False) -> list[StreamInfo]:
    """DescribeLogStreams: the streams named `prefix...`, or (no prefix) the whole group's, most
    recently written first, paged until `enough(found so far)` says stop. [] while the log group
    does not exist yet. Raises Unreachable (the caller keeps what it had) or `refused(error)`."""
    from botocore.exceptions import ClientError

    params: dict = {"logGroupName": LOG_GROUP}
    if prefix:
        params["logStreamNamePrefix"] = prefix
    else:  # the service refuses a prefix together with this order
        params.update(orderBy="LastEventTime", descending=True, limit=LIST_PAGE_STREAMS)
    found: list[StreamInfo] = []
    for _ in range(max_pages):
        try:
            page = call("describe_log_streams", **params)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return found
            raise refused(e) from None
        found += [_info(s) for s in page.get("logStreams", [])]
        token = page.get("nextToken")
        if not token or token == params.get("nextToken") or enough(found):
            break
        params["nextToken"] = token
    return found


def filter_events(call: Callable[..., dict], refused: Callable[[Exception], BackendError], streams: list[str],
                  start: int, token: str | None = None, max_pages: int = 20
                  ) -> tuple[dict[str, list[tuple[int, str]]], str | None]:
    """FilterLogEvents over `streams` (at most 100) from event time `start` (ms), following
    nextToken (a page may be partly full, or empty, and still have more behind it) for up to
    `max_pages` pages. Returns each stream's events (time, message) in the order read and the
    token to go on from, or None once the search is complete."""
    from botocore.exceptions import ClientError

    assert len(streams) <= STREAMS_PER_CALL
    events: dict[str, list[tuple[int, str]]] = {s: [] for s in streams}
    params: dict = {"logGroupName": LOG_GROUP, "logStreamNames": list(streams), "startTime": max(0, start),
                    "limit": LOG_PAGE_EVENTS}
    for _ in range(max_pages):
        if token:
            params["nextToken"] = token
        try:
            page = call("filter_log_events", **params)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return events, None
            raise refused(e) from None
        for ev in page.get("events", []):
            events.setdefault(ev.get("logStreamName", ""), []).append((int(ev.get("timestamp") or 0),
                                                                        ev.get("message", "")))
        new = page.get("nextToken")
        if not new or new == token:
            return events, None
        token = new
    return events, token
