"""The local operator login of `make run`'s console: generated once into TANDEM_HOME, files readable by their owner
only; the password is printed once, when it is made, and read from its file after that.

The accounts file is the console's own format (`tandem_console.credentials`, scrypt password hashes); the devstack
starts the console as a process and imports none of it, so the hash is made here the same way
(`tests/unit/devstack/test_console_login.py` checks that the console accepts it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

OPERATOR = "operator"


@dataclass(frozen=True)
class ConsoleLogin:
    name: str
    password_file: Path
    accounts_file: Path
    session_secret_file: Path
    # The password, only when it was made just now (to be shown once); None when it came from an earlier run.
    new_password: str | None

    def env(self) -> dict[str, str]:
        return {
            "TANDEM_CONSOLE_ACCOUNTS_FILE": str(self.accounts_file),
            "TANDEM_CONSOLE_SESSION_SECRET": self.session_secret_file.read_text().strip(),
        }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def scrypt_hash(password: str) -> str:
    n, r, p, salt = 2**14, 8, 1, secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(text)


def ensure_console_login(data_dir: Path) -> ConsoleLogin:
    folder = data_dir / "console"
    password_file = folder / "operator-password"
    accounts_file = folder / "accounts.json"
    secret_file = folder / "session-secret"
    new_password = None
    if not password_file.exists() or not accounts_file.exists():
        new_password = secrets.token_urlsafe(18)
        _write_private(password_file, new_password + "\n")
        entry = {"name": OPERATOR, "role": "operator", "password_hash": scrypt_hash(new_password)}
        _write_private(accounts_file, json.dumps({"users": [entry]}, indent=2) + "\n")
    if not secret_file.exists():
        _write_private(secret_file, secrets.token_urlsafe(32) + "\n")
    return ConsoleLogin(OPERATOR, password_file, accounts_file, secret_file, new_password)
