"""Logins for the console in tests: an accounts file with one account and one API token per role."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from tandem_console.credentials import hash_password, hash_token

OPERATOR, VIEWER = "ops", "viewer"
PASSWORDS = {OPERATOR: "operator-test-password", VIEWER: "viewer-test-password"}
TOKENS = {"operator": "tdm_test-operator-token", "viewer": "tdm_test-viewer-token", "metrics": "tdm_test-metrics-token"}
SESSION_SECRET = "test-session-secret"


@functools.cache
def accounts_document() -> str:
    return json.dumps(
        {
            "users": [
                {"name": OPERATOR, "role": "operator", "password_hash": hash_password(PASSWORDS[OPERATOR])},
                {"name": VIEWER, "role": "viewer", "password_hash": hash_password(PASSWORDS[VIEWER])},
            ],
            "tokens": [
                {"name": f"{role}-token", "role": role, "token_hash": hash_token(t)} for role, t in TOKENS.items()
            ],
        }
    )


def write_accounts(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "console-accounts.json"
    path.write_text(accounts_document())
    return path


def console_env(folder: Path) -> dict[str, str]:
    return {
        "TANDEM_CONSOLE_ACCOUNTS_FILE": str(write_accounts(folder)),
        "TANDEM_CONSOLE_SESSION_SECRET": SESSION_SECRET,
    }


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}
