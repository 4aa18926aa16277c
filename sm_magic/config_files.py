"""Where accelerate's config and sm_magic's cache live on this machine, and how a config file is
written. It imports no other sm_magic module (and no pydantic), so what needs only a path (the
wheel cache, downloaded inputs) does not load the config model."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def accelerate_default_config_path() -> Path:
    """Where `accelerate config` saves, computed as accelerate does (no accelerate import)."""
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(os.path.expanduser(home)) / "accelerate" / "default_config.yaml"


def cache_home() -> Path:
    """Where sm_magic keeps what it may fetch again (wheels, downloaded inputs): $SM_MAGIC_CACHE,
    else ~/.cache/sm_magic."""
    root = os.environ.get("SM_MAGIC_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache",
                                                             "sm_magic")
    return Path(os.path.expanduser(root))


def atomic_write(path: Path, text: str) -> None:
    """`text` written to `path` as UTF-8, whole or not at all: a reader (or `accelerate launch`)
    never sees half a file, and an interrupted save leaves the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
