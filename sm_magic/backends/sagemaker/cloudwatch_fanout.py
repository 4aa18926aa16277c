"""One CloudWatch Logs reader for every watched SageMaker job of one (profile, region).

Reading each job's streams on its own costs a call per stream per poll, so watching N jobs costs
N times one. Here a *round*, at most once per poll interval, reads the known streams of every
watched job with ONE FilterLogEvents call (followed by nextToken; a call per 100 streams past
100), and each job's `logs(name, cursor)` takes its share of the round's events. Streams are found
(DescribeLogStreams) only when a job may have one it does not know: when training (re)starts, while
a host has none or a restarted job has no new one, and once after the end if one was missing; for
several jobs at once one group-wide listing (most recently written first) serves them all, with a
per-job listing as the fallback. A job that ended and was read to the end costs no call.

Positions are cloudwatch_logs.StreamPos (event time + what was delivered in the lookback window),
so the round can start from the oldest position of all the jobs and each reader counts off what it
already had. A round that fails (Unreachable, see aws_polling) changes nothing: every reader keeps
its cursor and the next round reads the same events again. A reader behind the shared rounds (a
fresh cursor on a job already being read, e.g. `job.logs()` of a second handle) catches up with
FilterLogEvents calls of its own over its job's streams from its own position.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .aws_polling import SLACK, Link, Unreachable, watched_window
from .cloudwatch_logs import (
    BEFORE_CONTAINERS,
    LIST_PAGE_STREAMS,
    STREAMS_PER_CALL,
    STREAMS_START,
    LogCursor,
    StreamInfo,
    StreamPos,
    filter_events,
    host_order,
    lines_of,
    list_streams,
    stream_host,
    stream_job,
)

if TYPE_CHECKING:
    from ..base import BackendError, JobState

LIST_EVERY_POLLS = 3        # look for a missing stream this often
FALLBACK_POLLS = 6          # a stream the group-wide listing has not shown this long is looked for by prefix
FALLBACK_MIN_SECONDS = 5.0  # ... and at least this long; then after twice as long each time, up to
FALLBACK_MAX_POLLS = 48     # this many intervals (a job that logs nothing for long has no stream to find)
IDLE_MAX_POLLS = 3          # rounds that found nothing come after 2, then 3 poll intervals
FLUSH_GRACE_SECONDS = 10.0  # after the end, a job counts as drained once a round this much later found nothing
LOOKBACK_POLLS = 3          # positions look back this many poll intervals for late-ingested events ...
LOOKBACK_MIN_SECONDS = 10.0  # ... and at least this long
ROUND_PAGES = 20            # pages per call of one round (10,000 events each)
CATCH_UP_PAGES = 3          # pages per logs() call of a reader catching up


@dataclasses.dataclass
class Feed:
    """What the reader knows of one job: its streams, and what it needs looked for."""

    streams: dict[str, int] = dataclasses.field(default_factory=dict)  # name -> floor (ms)
    pos: LogCursor | None = None     # the cursor the rounds serve: the last one handed out by the main reader
    seen_at: float = 0.0             # monotonic time of the last logs() asked
    secondary: str | None = None
    expected: int = 1                # hosts
    may_have_streams: bool = True
    created_ms: int = 0
    ended_at: float | None = None    # monotonic time the end was first observed
    restarts: int = 0                # Restarting transitions seen
    restart_base: int = 0            # streams known when the last restart was seen
    listed: bool = False
    relist: bool = False             # training (re)started: look now
    list_at: float = 0.0             # monotonic; a missing stream is looked for again from then
    missing_since: float | None = None
    prefix_at: float = 0.0           # monotonic; the per-job fallback listing is due from then
    prefix_every: float = 0.0        # seconds between two fallback listings (doubling)
    listed_after_end: bool = False
    drained: bool = False

    def hosts(self) -> set[str]:
        return {stream_host(s)[0] for s in self.streams}

    def missing(self) -> bool:
        """A host without a stream, or a restart without a new stream."""
        return len(self.hosts()) < self.expected or (self.restarts > 0 and len(self.streams) <= self.restart_base)

    def wants_listing(self, now: float) -> bool:
        if self.drained or not self.may_have_streams:
            return False
        if not self.listed or self.relist:
            return True
        if self.ended_at is not None:
            return not self.listed_after_end and self.missing()
        return self.missing() and now >= self.list_at


@dataclasses.dataclass
class Round:
    """One shared read: each stream's events from its start time (ms) on, as found at `started`."""

    started: float
    start: dict[str, int]
    events: dict[str, list[tuple[int, str]]]
    truncated: bool = False


class LogFanout:
    """Reads the logs of every watched job of one (profile, region) through `call(operation,
    **params)` (one CloudWatch Logs call: raises Unreachable when it failed for a passing reason,
    ClientError when refused), while `link` is not backing off. `refused(error, job, what)` turns
    a refusal into the BackendError to raise."""

    def __init__(self, call: Callable[..., dict], link: Link,
                 refused: Callable[[Exception, str, str], BackendError], poll_interval: float):
        self.call, self.link, self.refused = call, link, refused
        self.interval = SLACK * poll_interval
        self.lookback = int(1000 * max(LOOKBACK_MIN_SECONDS, LOOKBACK_POLLS * poll_interval))
        self.grace = min(FLUSH_GRACE_SECONDS, poll_interval)
        self.active_window = watched_window(poll_interval)
        self.fallback_after = max(FALLBACK_POLLS * self.interval, FALLBACK_MIN_SECONDS)
        self.feeds: dict[str, Feed] = {}
        self.round: Round | None = None
        self.next_at = 0.0
        self.idle = 0
        self._lock = threading.RLock()

    # -- one job's share ---------------------------------------------------------------------

    def read(self, name: str, state: JobState | None, ended_at: float | None,
             cursor: LogCursor | None) -> tuple[list[str], LogCursor]:
        """New lines of job `name` for the reader at `cursor`, given the job's last known state
        (and when its end was observed); with several hosts each line carries an `algo-N | `
        prefix. Returns the cursor to pass next time; the same cursor when nothing was read."""
        now = time.monotonic()
        with self._lock:
            feed = self.feeds.setdefault(name, Feed())
            feed.seen_at = now
            cursor = cursor or LogCursor()
            if cursor.drained:
                return [], cursor
            self._observe(feed, state, ended_at, now)
            if self._due(now):
                try:
                    self._run_round(now)
                except Unreachable:  # the old round stands: every reader keeps its place
                    self.next_at = now + self.interval
            # A first look at a job that may have logged already (attached late, or `job.logs()`
            # in another kernel) reads now; a watched job that starts training waits for the next
            # round (at most an interval), which looks for the streams of every such job at once.
            if cursor.page is not None or (feed.may_have_streams and not feed.listed and feed.pos is None):
                return self._catch_up(name, feed, cursor, now)
            rnd = self.round
            behind = False
            share: dict[str, list[tuple[int, str]]] = {}
            for s in feed.streams:
                need = self._need(feed, cursor, s)
                if rnd is not None and s in rnd.start and rnd.start[s] <= need:
                    share[s] = rnd.events.get(s, [])
                elif feed.pos is not None and need < self._need(feed, feed.pos, s):
                    behind = True  # the rounds start past this reader (a second one): it reads on its own
                # else the next round starts from this reader's place in the stream
            if behind:
                return self._catch_up(name, feed, cursor, now)
            lines, new = self._apply(feed, cursor, share)
            read_at = rnd.started if rnd is not None else now
            if (not lines and len(share) == len(feed.streams) and not (rnd is not None and rnd.truncated)
                    and self._may_drain(feed, read_at)):
                new = dataclasses.replace(new, drained=True)
            self._hand_out(feed, cursor, new)
            return lines, new

    def _need(self, feed: Feed, cursor: LogCursor, stream: str) -> int:
        """Where a read of `stream` must start for the reader at `cursor` (ms): a stream it has
        not read from the stream's first event (less the lookback: events may predate it)."""
        return cursor.pos(stream).need(feed.streams[stream] - self.lookback, self.lookback)

    def _hand_out(self, feed: Feed, cursor: LogCursor, new: LogCursor) -> None:
        """The rounds follow the job's main reader (the first one, advancing its own cursor);
        another reader of the same job is served by them while it is not behind."""
        if feed.pos is None or cursor is feed.pos:
            feed.pos = new
            feed.drained = new.drained

    def _apply(self, feed: Feed, cursor: LogCursor, share: dict[str, list[tuple[int, str]]]
               ) -> tuple[list[str], LogCursor]:
        prefix = feed.expected > 1 or len(feed.hosts()) > 1
        lines: list[str] = []
        streams = dict(cursor.streams)
        for s in host_order(share):
            pos, fresh = cursor.pos(s).advance(share[s], self.lookback)
            streams[s] = pos
            lines += lines_of(s, fresh, prefix)
        if streams == cursor.streams:
            return lines, cursor
        return lines, dataclasses.replace(cursor, streams=streams)

    def _may_drain(self, feed: Feed, read_at: float) -> bool:
        """The job ended, nothing may still be found, and a read that began a grace period after
        the end (the last lines may be ingested a little after it) found nothing new."""
        return (feed.ended_at is not None and read_at >= feed.ended_at + self.grace
                and not feed.wants_listing(read_at))

    def _observe(self, feed: Feed, state: JobState | None, ended_at: float | None, now: float) -> None:
        secondary = state.secondary_status if state is not None else None
        if secondary != feed.secondary:
            feed.relist = feed.relist or secondary in STREAMS_START
            feed.secondary = secondary
            self._wake()
        if state is None:
            return
        restarts = sum(1 for t in state.transitions if t.status == "Restarting")
        if restarts > feed.restarts:  # a new container opens a new stream: look for it
            feed.restarts, feed.restart_base, feed.relist = restarts, len(feed.streams), True
        feed.expected = max(1, state.instance_count)
        feed.created_ms = int(state.creation_time * 1000)
        feed.may_have_streams = state.done or secondary not in BEFORE_CONTAINERS
        if state.done and feed.ended_at is None:
            feed.ended_at = ended_at if ended_at is not None else now
            self._wake()

    def _wake(self) -> None:
        """Something changed: the next round comes a poll interval after the last, not later."""
        self.idle = 0
        if self.round is not None:
            self.next_at = min(self.next_at, self.round.started + self.interval)

    # -- rounds ------------------------------------------------------------------------------

    def _active(self, now: float) -> dict[str, Feed]:
        return {n: f for n, f in self.feeds.items() if not f.drained and now - f.seen_at <= self.active_window}

    def _due(self, now: float) -> bool:
        """Once per interval (less often while nothing comes), and at once when a job was seen
        ending after the last round began: its final lines belong in the snapshot that says so."""
        if self.link.backing_off(now):
            return False
        if now >= self.next_at:
            return True
        started = self.round.started if self.round is not None else float("-inf")
        return any(f.ended_at is not None and f.ended_at > started for f in self._active(now).values())

    def _run_round(self, now: float) -> None:
        active = self._active(now)
        self._discover(active, now)
        needs = sorted(((self._feed_need(f, s), s) for f in active.values() for s in f.streams))
        start: dict[str, int] = {}
        events: dict[str, list[tuple[int, str]]] = {}
        truncated = False
        # Streams of similar positions go together: each call starts at its oldest one.
        for i in range(0, len(needs), STREAMS_PER_CALL):
            chunk = needs[i:i + STREAMS_PER_CALL]
            streams = [s for _, s in chunk]
            found, token = filter_events(self.call, lambda e: self.refused(e, "the watched jobs", "read the logs of"),
                                         streams, chunk[0][0], max_pages=ROUND_PAGES)
            truncated = truncated or token is not None
            start.update((s, chunk[0][0]) for s in streams)
            for s in streams:
                events[s] = found.get(s, [])
        news = any(ts > (self._last(active, s) or -1) for s, evs in events.items() for ts, _ in evs)
        self.round = Round(now, start, events, truncated)
        if truncated:
            self.next_at = now
        else:
            self.idle = 0 if news else self.idle + 1
            self.next_at = now + min(1 + self.idle, IDLE_MAX_POLLS) * self.interval

    def _feed_need(self, feed: Feed, stream: str) -> int:
        return self._need(feed, feed.pos or LogCursor(), stream)

    def _last(self, active: dict[str, Feed], stream: str) -> int | None:
        feed = active.get(stream_job(stream))
        return feed.pos.pos(stream).last_ts if feed is not None and feed.pos is not None else None

    # -- finding streams ---------------------------------------------------------------------

    def _discover(self, active: dict[str, Feed], now: float) -> None:
        wanting = {n: f for n, f in active.items() if f.wants_listing(now)}
        if not wanting:
            return
        if len(wanting) == 1:
            [(name, feed)] = wanting.items()
            self._list_job(name, feed, now)
            return
        # One listing of the group, most recently written first, for all of them: paged while one
        # of them still misses a stream and the page still holds streams written since the oldest
        # of them was created.
        cutoff = min(f.created_ms for f in wanting.values()) - self.lookback

        def enough(found: list[StreamInfo]) -> bool:
            self._add(active, found)
            last = found[-1].last_event if found else None
            return (all(not f.missing() for f in wanting.values())
                    or (last is not None and last < cutoff))

        pages = 2 + len(wanting) // LIST_PAGE_STREAMS
        self._add(active, list_streams(self.call, lambda e: self.refused(e, "the watched jobs", "list the log streams of"),
                                       max_pages=pages, enough=enough))
        for name, feed in wanting.items():
            self._listed(feed, now)
            if not feed.missing():
                feed.missing_since = None
                continue
            if feed.missing_since is None:
                feed.missing_since = now
            # The group's order is by lastEventTime, which the service updates late at times:
            # a stream it has not shown for a while is looked for under the job's own prefix.
            if now - feed.missing_since >= self.fallback_after and now >= feed.prefix_at:
                self._list_job(name, feed, now)
                feed.prefix_every = min(2 * feed.prefix_every or self.fallback_after,
                                        FALLBACK_MAX_POLLS * self.interval)
                feed.prefix_at = now + feed.prefix_every

    def _list_job(self, name: str, feed: Feed, now: float) -> None:
        found = list_streams(self.call, lambda e: self.refused(e, name, "list the log streams of"), prefix=f"{name}/")
        self._add({name: feed}, found)
        self._listed(feed, now)
        feed.prefix_at = now + LIST_EVERY_POLLS * self.interval

    def _listed(self, feed: Feed, now: float) -> None:
        feed.listed, feed.relist = True, False
        feed.list_at = now + LIST_EVERY_POLLS * self.interval
        feed.listed_after_end = feed.ended_at is not None

    def _add(self, feeds: dict[str, Feed], found: list[StreamInfo]) -> None:
        for info in found:
            feed = feeds.get(stream_job(info.name))
            if feed is not None and info.name not in feed.streams:
                feed.streams[info.name] = info.floor
                self.idle = 0

    # -- a reader of its own -----------------------------------------------------------------

    def _catch_up(self, name: str, feed: Feed, cursor: LogCursor, now: float) -> tuple[list[str], LogCursor]:
        """Read job `name`'s streams from this reader's own position (its own calls), a few
        pages per call; the rounds serve it again once it is no longer behind them."""
        if self.link.backing_off(now):
            return [], cursor
        refused = lambda e: self.refused(e, name, "read the logs of")  # noqa: E731
        try:
            if feed.may_have_streams and not feed.listed:
                self._list_job(name, feed, now)
            if cursor.page is not None:
                token, start, streams = cursor.page
            else:
                streams = host_order(feed.streams)[:STREAMS_PER_CALL]
                start = min((self._need(feed, cursor, s) for s in streams), default=0)
                token = None
            if not streams:
                drained = self._may_drain(feed, now)
                new = dataclasses.replace(cursor, drained=True) if drained else cursor
                self._hand_out(feed, cursor, new)
                return [], new
            found, token = filter_events(self.call, refused, list(streams), start, token, max_pages=CATCH_UP_PAGES)
        except Unreachable:
            return [], cursor
        lines, new = self._apply(feed, dataclasses.replace(cursor, page=None), found)
        page = (token, start, tuple(streams)) if token else None
        drained = (page is None and not lines and len(streams) == len(feed.streams)
                   and self._may_drain(feed, now))
        new = dataclasses.replace(new, page=page, drained=drained)
        self._hand_out(feed, cursor, new)
        return lines, new


__all__ = ["LogFanout", "StreamPos", "LogCursor"]
