"""Resolve secret references (`env:NAME`, `file:/path`) at the point of use, never earlier.

A `file:` reference is read only inside the secrets directories (`TANDEM_SECRETS_DIRS`, separated by the platform's
path separator; by default /var/run/secrets/tandem, where the deployments mount the vendor keys): an instance's
configuration must not be able to name any file the service can read, which would then be sent as a credential.
"""

from __future__ import annotations

import os
from pathlib import Path

SECRETS_DIRS_ENV = "TANDEM_SECRETS_DIRS"
DEFAULT_SECRETS_DIR = "/var/run/secrets/tandem"


def secrets_dirs() -> list[Path]:
    raw = os.environ.get(SECRETS_DIRS_ENV) or DEFAULT_SECRETS_DIR
    return [Path(d).resolve() for d in raw.split(os.pathsep) if d]


def _inside_secrets_dirs(path: Path) -> bool:
    # Resolved: neither "..", nor a symbolic link, leads out (a Kubernetes Secret's own links stay inside).
    resolved = path.resolve()
    return path.is_absolute() and any(resolved.is_relative_to(d) for d in secrets_dirs())


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
        if not _inside_secrets_dirs(Path(rest)):
            raise SecretUnavailable(f"secret file {rest} is outside the secrets directories ({SECRETS_DIRS_ENV})")
        try:
            return Path(rest).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretUnavailable(f"secret file {rest} cannot be read: {exc.strerror}") from exc
    raise SecretUnavailable(f"unsupported secret reference scheme {scheme!r}")
