"""An HTTP proxy on 127.0.0.1 in front of the moto server that counts every request it receives
and, for a chosen fraction of them (picked by a seeded RNG), answers as a struggling AWS endpoint:
a throttling error, an HTTP 500, or a connection dropped without an answer (before or after the
request reached moto, so a lost response is tried too).

Counting happens here, at the server side of the client, so retries are counted as the calls
they are. Stdlib only; used by the tests (fault injection) and bench/api_calls.py (counting).

    proxy = FaultyProxy(moto_endpoint, fault_rate=0.2, seed=7)
    proxy.start()            # proxy.endpoint -> http://127.0.0.1:PORT
    ...
    proxy.counts             # Counter: {"SageMaker.DescribeTrainingJob": 31, ...}
    proxy.faults             # Counter: {"throttle": 4, "500": 5, "drop": 3, "drop-after": 2}
    proxy.stop()
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

FAULT_KINDS = ("throttle", "500", "drop", "drop-after")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
              "upgrade", "content-length"}


def operation(headers, method: str, path: str) -> str:
    """What a request asks for: its X-Amz-Target ("SageMaker.DescribeTrainingJob",
    "Logs_20140328.GetLogEvents"), else the method and the path's first segment (S3, IAM)."""
    target = headers.get("X-Amz-Target")
    if target:
        return target
    first = path.split("?", 1)[0].strip("/").split("/", 1)[0]
    return f"{method} /{first}"


class FaultyProxy:
    """Forwards to `upstream`; `fault_rate` of the requests matching `only` (default: all)
    get a fault instead. Thread-safe counters; fault_rate may be changed while running."""

    def __init__(self, upstream: str, fault_rate: float = 0.0, seed: int = 0,
                 kinds: tuple[str, ...] = FAULT_KINDS, only: Callable[[str], bool] | None = None):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.fault_rate = fault_rate
        self.kinds = kinds
        self.only = only
        self.rng = random.Random(seed)
        self.counts: Counter = Counter()
        self.faults: Counter = Counter()
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.endpoint = ""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "FaultyProxy":
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="faulty-proxy", daemon=True)
        self._thread.start()
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FaultyProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()
            self.faults.clear()

    def total(self, prefix: str = "") -> int:
        with self.lock:
            return sum(n for op, n in self.counts.items() if op.startswith(prefix))

    # -- decisions ---------------------------------------------------------------------------

    def _decide(self, op: str) -> str | None:
        with self.lock:
            self.counts[op] += 1
            if self.fault_rate <= 0 or (self.only is not None and not self.only(op)):
                return None
            if self.rng.random() >= self.fault_rate:
                return None
            kind = self.rng.choice(self.kinds)
            self.faults[kind] += 1
            return kind


class _Handler(BaseHTTPRequestHandler):
    owner: FaultyProxy
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects

    def log_message(self, *args) -> None:  # quiet
        pass

    def _upstream(self) -> http.client.HTTPConnection:
        conn = getattr(self, "_conn", None)
        if conn is None:
            conn = self._conn = http.client.HTTPConnection(*self.owner.upstream, timeout=60)
        return conn

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        for attempt in (1, 2):  # a kept-alive upstream connection may have been closed by moto
            conn = self._upstream()
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self._length = resp.getheader("Content-Length") if self.command == "HEAD" else None
                return resp.status, [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP], data
            except (http.client.HTTPException, OSError):
                conn.close()
                self._conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        """Close the connection without a byte of answer (the client sees it reset/closed)."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes,
               length: str | None = None) -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", length or str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        op = operation(self.headers, self.command, self.path)
        fault = self.owner._decide(op)
        if fault == "drop":
            return self._drop()
        if fault == "throttle":
            # What the JSON-protocol services (sagemaker, logs) answer; botocore reads __type.
            payload = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
            return self._reply(400, [("Content-Type", "application/x-amz-json-1.1"),
                                     ("x-amzn-ErrorType", "ThrottlingException"),
                                     ("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")], payload)
        if fault == "500":
            payload = json.dumps({"__type": "InternalFailure", "message": "We encountered an internal error."}).encode()
            return self._reply(500, [("Content-Type", "application/x-amz-json-1.1"),
                                     ("x-amzn-ErrorType", "InternalFailure")], payload)
        try:
            status, headers, data = self._forward(body)
        except (http.client.HTTPException, OSError):
            return self._drop()
        if fault == "drop-after":  # moto did the work; the answer is lost on the way back
            return self._drop()
        self._reply(status, headers, data, getattr(self, "_length", None))

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = lambda self: self._handle()


def compress_retry_time(factor: float) -> Callable[[], None]:
    """Run botocore's retry timing `factor` times faster, as a test's or a benchmark's compressed
    clock runs the poll interval faster: the backoff before a retry (rand(0,1) s for throttling,
    50 ms otherwise, doubling) and the adaptive mode's client-side rate limiter (its clock, and
    so the rates it measures and allows, and its waits). The decisions are botocore's own.
    Applies to clients created afterwards; returns a function that undoes it."""
    import time

    from botocore.retries import adaptive, bucket, standard

    class ScaledClock(bucket.Clock):
        def sleep(self, amount):
            time.sleep(amount / factor)

        def current_time(self):
            return time.time() * factor

    saved = (dict(standard.ExponentialBackoff._DEFAULT_BACKOFF_CONFIG), bucket.Clock,
             bucket.TokenBucket._sleep_amount)
    original_sleep_amount = bucket.TokenBucket._sleep_amount
    for k in saved[0]:
        standard.ExponentialBackoff._DEFAULT_BACKOFF_CONFIG[k] = saved[0][k] / factor
    bucket.Clock = ScaledClock
    bucket.TokenBucket._sleep_amount = lambda self, amount: original_sleep_amount(self, amount) / factor
    assert adaptive.bucket is bucket

    def undo() -> None:
        standard.ExponentialBackoff._DEFAULT_BACKOFF_CONFIG.update(saved[0])
        bucket.Clock = saved[1]
        bucket.TokenBucket._sleep_amount = saved[2]

    return undo
