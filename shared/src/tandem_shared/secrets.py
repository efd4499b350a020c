"""Resolve secret references (`env:NAME`, `file:/path`) at the point of use, never earlier."""

from __future__ import annotations

import os
from pathlib import Path


class SecretUnavailable(LookupError):
    pass


def resolve_secret(ref: str) -> str:
    scheme, _, rest = ref.partition(":")
    if scheme == "env":
        value = os.environ.get(rest)
        if not value:
            raise SecretUnavailable(f"environment variable {rest} is not set")
        return value
    if scheme == "file":
        try:
            return Path(rest).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretUnavailable(f"secret file {rest} cannot be read: {exc.strerror}") from exc
    raise SecretUnavailable(f"unsupported secret reference scheme {scheme!r}")
