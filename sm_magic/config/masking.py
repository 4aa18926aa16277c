"""Credentials a config holds (an access key or a token in `additional_args.environment`),
hidden wherever a config is shown: `%sagemaker_config`, dry runs, the config form and the
notebook output it leaves. The key stays and its value says what kind of credential was hidden,
so the reader still sees that it is set.

A value is a credential by its shape (credentials.py's patterns: an AWS access key id, a
Hugging Face or GitHub token, ...) or by its key's name (`*_TOKEN`, `*SECRET*`, `*PASSWORD*`,
`*_API_KEY`, ...): a value of no known shape under such a key is still someone's secret.
"""

from __future__ import annotations

import re
from typing import Any

from .credentials import credentials_in_text

MASK = "<hidden: {}>"
_MASKED = re.compile(r"<hidden: [^<>]*>")
_SECRET_NAME = re.compile(r"(?i)secret|passw(?:or)?d|(?:^|[_-])(?:token|api_?key|access_?key|private_?key|"
                          r"credentials?|auth)(?:[_-]|$)")


def credential_kind(key: Any, value: Any) -> str | None:
    """What kind of credential `value` (set under `key`) is, or None if it is none."""
    if value is None or isinstance(value, (bool, dict, list)) or value == "":
        return None
    hits = credentials_in_text("", f"{key}={value}")  # the key too: an AWS secret is known by its key
    if hits:
        return hits[0].split(": ", 1)[1]
    return "a credential, by its name" if _SECRET_NAME.search(str(key)) else None


def masked(value: Any, key: Any = "") -> Any:
    """`value` (a config's data, any nesting) with every credential replaced by MASK."""
    if isinstance(value, dict):
        return {k: masked(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(item, key) for item in value]
    kind = credential_kind(key, value)
    return MASK.format(kind) if kind else value


def secrets_in(value: Any, where: str = "") -> list[str]:
    """`"where.KEY: kind"` for each credential in `value` (never the credential)."""
    if isinstance(value, dict):
        return [hit for k, v in value.items() for hit in secrets_in(v, f"{where}.{k}" if where else str(k))]
    if isinstance(value, list):
        return [hit for i, item in enumerate(value) for hit in secrets_in(item, f"{where}[{i}]")]
    kind = credential_kind(where.rsplit(".", 1)[-1], value)
    return [f"{where}: {kind}"] if kind else []


def unmasked(edited: Any, original: Any, key: Any = "") -> Any:
    """What a form's user saved: `edited` with each mask still in it (at the same place)
    replaced by the value it hid in `original`, so saving an unchanged form keeps them."""
    if isinstance(edited, dict) and isinstance(original, dict):
        return {k: unmasked(v, original.get(k), k) for k, v in edited.items()}
    if isinstance(edited, list) and isinstance(original, list) and len(edited) == len(original):
        return [unmasked(e, o, key) for e, o in zip(edited, original)]
    if isinstance(edited, str) and _MASKED.fullmatch(edited) and masked(original, key) == edited:
        return original
    return edited
