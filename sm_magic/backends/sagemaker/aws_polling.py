"""Polling AWS from a backend: when a call is due, which failures may pass, one endpoint's
health as the backend has seen it, and the one ListTrainingJobs that answers for many jobs."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

SLACK = 0.8                 # "due" means due within 80% of the interval, so a poll never just misses
WATCHED_POLLS = 3           # a job asked about within this many poll intervals counts as watched ...
WATCHED_SECONDS = 30.0      # ... or within this long: a monitor going round many jobs on a busy
                            # machine (or a compressed clock) may take longer than 3 intervals
THROTTLE_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
    "RequestThrottled", "SlowDown", "LimitExceededException", "PriorRequestNotComplete",
    "RequestTimeout", "RequestTimeoutException", "InternalFailure", "ServiceUnavailable",
    "InternalServerError",
})


def watched_window(poll_interval: float) -> float:
    """How long after the last look a job still counts as watched (shared calls include it)."""
    return max(WATCHED_POLLS * poll_interval, WATCHED_SECONDS)


class Unreachable(Exception):
    """A call that failed after botocore's retries for a reason that may pass (throttling,
    5xx, a dropped or refused connection); the backend keeps its last answer."""


def transient(exc: BaseException) -> bool:
    """Whether `exc` may pass: throttling, a 5xx or 429, a dropped or refused connection."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, (BotoConnectionError, HTTPClientError)):
        return True
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return code in THROTTLE_CODES or status >= 500 or status == 429
    return False


def short(exc: BaseException) -> str:
    """The exception's first line, at most 200 characters."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


@dataclasses.dataclass
class Link:
    """One service endpoint's health as this backend has seen it."""

    service: str
    failures: int = 0
    since: float = 0.0           # wall clock of the first failure in this run of failures
    error: str = ""
    retry_at: float = 0.0        # monotonic; until then calls fail fast instead of waiting again

    def ok(self) -> None:
        self.failures, self.error = 0, ""

    def fail(self, exc: BaseException, retry_at: float) -> None:
        if not self.failures:
            self.since = time.time()
        self.failures += 1
        self.error = short(exc)
        self.retry_at = retry_at

    def backing_off(self, now: float) -> bool:
        """Failed, and not yet due to be tried again at monotonic time `now`."""
        return bool(self.failures) and now < self.retry_at


def api_seconds(value) -> float | None:
    """An API time (datetime, or seconds) as seconds since the epoch."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


def list_summaries(call: Callable[..., dict], watched: set[str], oldest: float, max_pages: int) -> dict:
    """ListTrainingJobs through `call(operation, **params)`: each job's (TrainingJobStatus,
    SecondaryStatus, LastModifiedTime), newest first: the watched jobs are on the first page
    unless the account starts many jobs; paging stops once all of them were seen, or past the
    oldest of them (created at `oldest`). (No CreationTimeAfter: moto 5.2 compares it with naive
    datetimes and fails.)"""
    jobs: dict = {}
    params: dict[str, Any] = {"SortBy": "CreationTime", "SortOrder": "Descending", "MaxResults": 100}
    for _ in range(max_pages):
        page = call("list_training_jobs", **params)
        summaries = page.get("TrainingJobSummaries", [])
        for s in summaries:
            jobs[s["TrainingJobName"]] = (s.get("TrainingJobStatus"), s.get("SecondaryStatus"),
                                          api_seconds(s.get("LastModifiedTime")))
        if (not page.get("NextToken") or watched <= jobs.keys()
                or (summaries and (api_seconds(summaries[-1].get("CreationTime")) or 0) < oldest - 1)):
            break
        params["NextToken"] = page["NextToken"]
    return jobs
