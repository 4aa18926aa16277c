"""Credential-shaped strings in a bundle's text files, found before anything is uploaded.

Only where each is (file and line) and what kind it is are ever reported, never the string.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Collection
from pathlib import Path

MAX_SCAN_BYTES = 5 * 1024 * 1024  # larger files are not checked for credentials (data, weights)

# --- credentials in the bundle's text --------------------------------------------------------------

_CREDENTIALS = [
    ("an AWS access key id", re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)(?P<v>[A-Z0-9]{16})(?![A-Za-z0-9])")),
    ("an AWS secret access key", re.compile(
        r"(?i)aws_?secret_?access_?key[\"'\]\s]*[:=]+\s*[\"']?(?P<v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])")),
    ("a private key", re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?:\r?\n|\\n)(?:Proc-Type:|[A-Za-z0-9+/=]{16})")),
    ("a GitHub token", re.compile(
        r"(?<![A-Za-z0-9_])(?:gh[pousr]_(?P<v>[A-Za-z0-9]{36,})|github_pat_(?P<w>[A-Za-z0-9_]{22,}))")),
    ("a Hugging Face token", re.compile(
        r"(?<![A-Za-z0-9_])hf_(?=[A-Za-z0-9]*[A-Z])(?=[A-Za-z0-9]*[a-z])(?P<v>[A-Za-z0-9]{30,})(?![A-Za-z0-9_])")),
    ("a Slack token", re.compile(r"(?<![A-Za-z0-9])xox[abprs]-(?P<v>[A-Za-z0-9-]{10,})")),
]


def _placeholder(value: str | None) -> bool:
    """`AKIAXXXXXXXXXXXXXXXX`, `ghp_000...`: a placeholder, not a credential."""
    return value is not None and len(set(value.lower())) < 6


def credentials_in_text(name: str, text: str) -> list[str]:
    """`"NAME line N: <kind>"` for each credential-shaped string in `text` (never the string)."""
    hits = []
    for kind, regex in _CREDENTIALS:
        for m in regex.finditer(text):
            value = m.groupdict().get("v") or m.groupdict().get("w")
            if _placeholder(value):
                continue
            hits.append((text.count("\n", 0, m.start()) + 1, kind))
    return [f"{name} line {line}: {kind}" for line, kind in sorted(hits)]


def find_credentials(root: Path, skip_top: Collection[str] = ()) -> list[str]:
    """Credential-shaped strings in the text files under `root` (binary files and files over
    MAX_SCAN_BYTES are not read), as `"path line N: <kind>"`."""
    root = Path(root)
    hits: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in skip_top]
            filenames = [f for f in filenames if f not in skip_top]
        dirnames.sort()
        for filename in sorted(filenames):
            path = os.path.join(dirpath, filename)
            try:
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_SCAN_BYTES:
                    continue
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if b"\0" in data[:8192]:
                continue
            rel = filename if rel_dir == "." else f"{rel_dir}/{filename}".replace(os.sep, "/")
            hits += credentials_in_text(rel, data.decode("utf-8", errors="replace"))
    return hits

