"""A local input directory for a SageMaker job: uploaded to S3 under
`s3://<bucket>/sm-magic-inputs/<content hash>/`, so unchanged data is never uploaded twice (a
marker object written last says an upload is complete). What is uploaded is what a bundle would
take from the directory (safe_copy.plan_tree): regular files, a link to a file inside it as that
file; a link out of it, a broken link or a special file refuses the upload, naming it; files that
commonly hold secrets are left out, with a note. (An s3:// input for a local job: s3_download.)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from ...bundle.safe_copy import plan_tree
from ..base import BackendError, local_path

UPLOAD_PREFIX = "sm-magic-inputs"
_CHUNK = 1 << 20
_HASH_DOMAIN = b"sm-magic input set v2\n"  # a new scheme gets new addresses, never an old one's


def local_files(channel: str, path: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """(name in the channel, file to read) for every file uploaded, in a stable order, and what
    was left out as a possible secret. Raises BackendError for what is never uploaded."""
    if not path.exists():
        raise BackendError(f"input channel {channel}: {path} is neither an s3:// URI nor a local path that exists")
    if not path.is_dir():
        if not path.is_file():
            raise BackendError(f"input channel {channel}: {path} is neither a directory nor a regular file")
        return [(path.name, path)], []
    plan = plan_tree(path, label=f"input directory {path}", skip_unsafe=True, error=BackendError)
    if plan.skipped:
        raise BackendError(f"input channel {channel}: {path} holds what is never uploaded: {_listed(plan.skipped)}. "
                           "Only regular "
                           "files are, and a link only to a file inside the directory (uploaded as that file): "
                           "replace each link with the file itself, or move it out; nothing was uploaded")
    return sorted(plan.files), plan.left_out


def _listed(items: list[str], most: int = 20) -> str:
    return ", ".join(items[:most]) + (f" and {len(items) - most} more" if len(items) > most else "")


def content_hash(files: list[tuple[str, Path]]) -> str:
    """sha256 over each file's name and the sha256 of its bytes, each name length-prefixed: equal
    data, equal hash, and no two different sets of names and bytes run together the same."""
    digest = hashlib.sha256(_HASH_DOMAIN)
    for name, file in files:
        each = hashlib.sha256()
        with open(file, "rb") as f:
            while chunk := f.read(_CHUNK):
                each.update(chunk)
        encoded = name.encode("utf-8", "surrogateescape")
        digest.update(len(encoded).to_bytes(8, "big") + encoded + each.digest())
    return digest.hexdigest()


def upload(s3, channel: str, uri: str, bucket: str, *, dry_run: bool = False,
           log: Callable[[str], None] | None = None) -> str:
    """The S3 URI of local data `uri` for channel `channel`, uploaded unless S3 has it already
    (or dry_run: only computed)."""
    path = local_path(uri)
    files, left_out = local_files(channel, path)
    if not files:
        raise BackendError(f"input channel {channel}: {path} is an empty directory; SageMaker would give the job "
                           "nothing")
    if left_out and log:
        log(f"input channel {channel}: left out of the upload (may hold secrets, as a bundle never takes them): "
            f"{_listed(left_out)}")
    key = f"{UPLOAD_PREFIX}/{content_hash(files)[:32]}"
    target = f"s3://{bucket}/{key}/" + (path.name if path.is_file() else "")
    if dry_run:
        return target
    from botocore.exceptions import ClientError

    marker = f"{key}.complete"  # beside the prefix, not in it: never part of the channel
    try:
        s3.head_object(Bucket=bucket, Key=marker)
        return target
    except ClientError as e:
        if str(e.response.get("Error", {}).get("Code")) not in ("404", "NoSuchKey", "NotFound"):
            raise BackendError(f"input channel {channel}: cannot check s3://{bucket}/{marker}: {e}") from None
    if log:
        size = sum(f.stat().st_size for _, f in files)
        log(f"uploading input channel {channel} ({len(files)} files, {size / 1e6:.1f} MB) to s3://{bucket}/{key}/")
    try:
        for name, file in files:
            s3.upload_file(str(file), bucket, f"{key}/{name}")
        s3.put_object(Bucket=bucket, Key=marker, Body=json.dumps({"source": str(path)}).encode())
    except Exception as e:
        raise BackendError(f"input channel {channel}: uploading {path} to s3://{bucket}/{key}/ failed: {e}") from None
    return target
