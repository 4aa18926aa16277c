"""One cell, every backend: input channels move to where the job runs.

- A local path given to the SageMaker backend is uploaded to S3 under
  `s3://<bucket>/sm-magic-inputs/<content hash>/`, so unchanged data is never uploaded twice (a
  marker object written last says an upload is complete).
- An s3:// URI given to the local backend is downloaded into a cache (`$SM_MAGIC_CACHE/s3`),
  where objects whose ETag has not changed are not downloaded again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from collections.abc import Callable

from ..config_files import cache_home
from .base import BackendError

UPLOAD_PREFIX = "sm-magic-inputs"
_CHUNK = 1 << 20


def local_path(uri: str) -> Path:
    return Path(uri.removeprefix("file://")).expanduser().absolute()


def _files(path: Path) -> list[tuple[str, Path]]:
    """(relative name, file) for a file or every file under a directory, in a stable order."""
    if path.is_file():
        return [(path.name, path)]
    return sorted((p.relative_to(path).as_posix(), p) for p in path.rglob("*") if p.is_file())


def content_hash(path: Path) -> str:
    """sha256 over the relative names and bytes of every file: equal data, equal hash."""
    digest = hashlib.sha256()
    for name, file in _files(path):
        digest.update(name.encode() + b"\0")
        with open(file, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def upload(s3, channel: str, uri: str, bucket: str, *, dry_run: bool = False,
           log: Callable[[str], None] | None = None) -> str:
    """The S3 URI of local data `uri` for channel `channel`, uploaded unless S3 has it already
    (or dry_run: only computed)."""
    path = local_path(uri)
    if not path.exists():
        raise BackendError(f"input channel {channel}: {uri} is neither an s3:// URI nor a local path that exists")
    if path.is_dir() and not _files(path):
        raise BackendError(f"input channel {channel}: {path} is an empty directory; SageMaker would give the job "
                           "nothing")
    key = f"{UPLOAD_PREFIX}/{content_hash(path)[:32]}"
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
    files = _files(path)
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


def cache_root() -> Path:
    return cache_home() / "s3"


def download(s3, channel: str, uri: str, *, log: Callable[[str], None] | None = None) -> Path:
    """A local copy of every object under `uri` (as SageMaker lays a channel out: each key's part
    after the prefix), kept in the cache; only objects new or changed since are downloaded."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    try:
        objects = [o for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                   for o in page.get("Contents", []) if not o["Key"].endswith("/")]
    except Exception as e:
        from botocore.exceptions import NoCredentialsError

        why = "no AWS credentials found" if isinstance(e, NoCredentialsError) else str(e)
        raise BackendError(f"input channel {channel}: cannot list {uri} ({why}); the local backend downloads s3:// "
                           "inputs with your AWS credentials (`aws configure`, AWS_PROFILE or `profile` in the "
                           "config), or give a local path") from None
    if not objects:
        raise BackendError(f"input channel {channel}: no objects under {uri}")
    dest = cache_root() / bucket / hashlib.sha256(prefix.encode()).hexdigest()[:16]
    manifest_path = dest.with_name(dest.name + ".json")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        manifest = {}
    wanted = {}
    for o in objects:
        rel = o["Key"][len(prefix):].lstrip("/") or o["Key"].rsplit("/", 1)[-1]
        wanted[rel] = (o["Key"], o.get("ETag", ""))
    stale = [rel for rel, (_, etag) in wanted.items() if manifest.get(rel) != etag or not (dest / rel).is_file()]
    if stale and log:
        log(f"downloading input channel {channel}: {len(stale)} of {len(wanted)} objects from {uri}")
    for rel in stale:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.part")
        try:
            s3.download_file(bucket, wanted[rel][0], str(tmp))
        except Exception as e:
            tmp.unlink(missing_ok=True)
            raise BackendError(f"input channel {channel}: downloading s3://{bucket}/{wanted[rel][0]} failed: "
                               f"{e}") from None
        os.replace(tmp, target)
        manifest[rel] = wanted[rel][1]
    for rel in set(manifest) - set(wanted):  # deleted in S3 since: not part of the channel any more
        (dest / rel).unlink(missing_ok=True)
        del manifest[rel]
    dest.mkdir(parents=True, exist_ok=True)
    tmp = manifest_path.with_name(f".{manifest_path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(manifest))
    os.replace(tmp, manifest_path)
    return dest
