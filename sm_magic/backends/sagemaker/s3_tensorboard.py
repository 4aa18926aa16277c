"""A SageMaker job's TensorBoard event files, read from S3 while it runs, with bounded calls.

The request sets TensorBoardOutputConfig: LocalPath /opt/ml/output/tensorboard (what the script
knows as $SM_OUTPUT_DIR/tensorboard), S3OutputPath the job's output path. SageMaker uploads that
directory while the job runs to `<S3OutputPath>/<job>/tensorboard-output/` (where the SDK's
`latest_job_tensorboard_artifacts_path` points), each upload a whole file again.

One read (at most one per poll interval): one ListObjectsV2 over that prefix (a page holds 1000
keys; at most LIST_PAGES), then one ranged GetObject per event file that grew, for the bytes past
what was read before (at most MAX_BYTES a file and MAX_GETS files a read; the rest comes next
read). The bytes are appended to a local mirror of the files, which tensorboard_events'
ScalarReader reads with TensorBoard's own reader: a record cut by an upload is read once whole.
No call before training starts; while nothing grows, reads come every 2nd, 3rd, ... up to every
IDLE_MAX_POLLS-th interval; once the job has ended, one more read, then none.

Several hosts upload into the same place; frameworks log from rank 0, on algo-1, and files that
name another host (`events.out.tfevents.<time>.algo-2.<pid>...`) are not read.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path

from ...metrics.tensorboard_events import Row, ScalarReader, is_event_file, require_tensorboard

LOCAL_PATH = "/opt/ml/output/tensorboard"  # SageMaker's default LocalPath, $SM_OUTPUT_DIR/tensorboard
S3_FOLDER = "tensorboard-output"
LIST_PAGES = 3
MAX_BYTES = 8 << 20
MAX_GETS = 16
IDLE_MAX_POLLS = 6
# Before these are over, the job's container has not run: nothing to list.
BEFORE_TRAINING = frozenset({"Starting", "Pending", "Downloading", "LaunchingMLInstances",
                             "PreparingTrainingStack", "DownloadingTrainingImage"})
_HOST = re.compile(r"\.algo-(\d+)\.")


def location(s3_output_path: str, job: str) -> tuple[str, str]:
    """(bucket, key prefix) of the job's TensorBoard files under its TensorBoardOutputConfig path."""
    bucket, _, prefix = s3_output_path.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/{job}/{S3_FOLDER}/" if prefix else f"{job}/{S3_FOLDER}/"


def other_host(file_name: str) -> bool:
    """Whether an event file's name says another host than algo-1 wrote it."""
    match = _HOST.search(file_name)
    return match is not None and match.group(1) != "1"


def training_began(secondary_status: str, done: bool) -> bool:
    return done or secondary_status not in BEFORE_TRAINING


class S3Scalars:
    """The read position in one job's TensorBoard files on S3 (the cursor of
    SageMakerBackend.scalars): the bytes read of each key, in a local mirror."""

    def __init__(self, s3_output_path: str, job: str):
        self.bucket, self.prefix = location(s3_output_path, job)
        self.uri = f"s3://{self.bucket}/{self.prefix}"
        self.mirror = Path(tempfile.mkdtemp(prefix="sm_magic-tensorboard-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.mirror), True)
        self.reader = ScalarReader(self.mirror)
        self.offsets: dict[str, int] = {}
        self.due_at = 0.0     # monotonic time the next read may list
        self.idle = 0         # reads in a row that found nothing new
        self.drained = False  # the job ended and was read after that: no more calls

    def due(self, now: float) -> bool:
        return not self.drained and now >= self.due_at

    def read(self, call: Callable[..., dict], poll_interval: float, ended: bool) -> list[Row]:
        """One read: list, fetch what grew, parse. `call(operation, **params)` makes one S3 call
        (the backend's, with its retries); `ended`: the job's end has been seen."""
        now = time.monotonic()
        objects = self._list(call)
        grown = sorted((key, size) for key, size in objects.items() if size > self.offsets.get(key, 0))
        if grown:
            require_tensorboard()  # before any byte is fetched
        more = len(grown) > MAX_GETS
        for key, size in grown[:MAX_GETS]:
            more |= self._fetch(call, key, size)
        rows = self.reader.read()
        more |= self.reader.pending
        self.idle = 0 if grown else min(self.idle + 1, IDLE_MAX_POLLS - 1)
        self.due_at = now if more else now + poll_interval * (1 + self.idle)
        if ended and not more:
            self.close()
        return rows

    def _list(self, call) -> dict[str, int]:
        objects: dict[str, int] = {}
        params = {"Bucket": self.bucket, "Prefix": self.prefix}
        for _ in range(LIST_PAGES):
            page = call("list_objects_v2", **params)
            for obj in page.get("Contents") or []:
                name = obj["Key"].rsplit("/", 1)[-1]
                if is_event_file(name) and not other_host(name):
                    objects[obj["Key"]] = int(obj.get("Size") or 0)
            if not page.get("IsTruncated") or not page.get("NextContinuationToken"):
                break
            params["ContinuationToken"] = page["NextContinuationToken"]
        return objects

    def _fetch(self, call, key: str, size: int) -> bool:
        """Append the bytes of `key` past what was read to its mirror; True when more remain."""
        from botocore.exceptions import ClientError

        path = self._mirror_path(key)
        start = self.offsets.get(key, 0)
        if path is None:  # a key that is no file name here ("..", "//"): not read
            self.offsets[key] = size
            return False
        end = min(size, start + MAX_BYTES)
        try:
            body = call("get_object", Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}")["Body"].read()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "InvalidRange"):
                return False  # replaced or removed since the listing: the next listing says
            raise
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            f.write(body)
        self.offsets[key] = start + len(body)
        return self.offsets[key] < size

    def _mirror_path(self, key: str) -> Path | None:
        parts = key[len(self.prefix):].split("/")
        if any(p in ("", ".", "..") for p in parts):
            return None
        return self.mirror.joinpath(*parts)

    def close(self) -> None:
        """No more reads: the mirror is removed (the rows it gave are the parser's)."""
        self.drained = True
        self.reader.close()
        self._cleanup()
