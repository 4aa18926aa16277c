"""Polling AWS from a backend: when a call is due, which failures may pass, and one endpoint's
health as the backend has seen it."""

from __future__ import annotations

import dataclasses
import time

SLACK = 0.8                 # "due" means due within 80% of the interval, so a poll never just misses
THROTTLE_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
    "RequestThrottled", "SlowDown", "LimitExceededException", "PriorRequestNotComplete",
    "RequestTimeout", "RequestTimeoutException", "InternalFailure", "ServiceUnavailable",
    "InternalServerError",
})


class Unreachable(Exception):
    """A call that failed after botocore's retries for a reason that may pass (throttling,
    5xx, a dropped or refused connection); the backend keeps its last answer."""


def transient(exc: BaseException) -> bool:
    """Whether `exc` may pass: throttling, a 5xx or 429, a dropped or refused connection."""
    from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError, HTTPClientError

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
