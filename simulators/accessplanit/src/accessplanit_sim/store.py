"""SQLite persistence. Records are stored as JSON documents; the simulator filters and sorts in Python.

One connection, used only from the server's event loop, so no locking is needed; each write path runs in one
transaction so a user change, its audit entry and its webhook instances land together or not at all.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import seed
from .fields import CustomFieldDef

Doc = dict[str, Any]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS platform_users (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, username TEXT UNIQUE, password_hash TEXT);
CREATE TABLE IF NOT EXISTS api_keys (key_hash TEXT PRIMARY KEY, platform_user_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY, kind TEXT NOT NULL, platform_user_id TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS companies (id INTEGER PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS custom_fields (id INTEGER PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS webhooks (id INTEGER PRIMARY KEY, doc TEXT NOT NULL, secret TEXT);
CREATE TABLE IF NOT EXISTS webhook_instances (id INTEGER PRIMARY KEY, doc TEXT NOT NULL, payload TEXT NOT NULL);
"""

DATA_TABLES = ("users", "audit", "webhooks", "webhook_instances", "tokens")


def digest(secret: str) -> str:
    """Keys, tokens and passwords are stored hashed so the database never holds a usable credential."""
    return hashlib.sha256(secret.encode()).hexdigest()


def format_ms(epoch_ms: int) -> str:
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        # WAL without an fsync per commit: a simulator shares the machine with what it measures, and a commit that
        # survives the process being killed (not an OS crash) is all a stand-in owes. Answers are unchanged.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        with self._db:
            self._seed()
        self._last_ms = int(self._meta("clock_ms", "0"))
        # Parsed user documents by id, loaded on first use. Every look-up by email or filter scans the users, and
        # parsing each one's JSON per request made a look-up cost grow with the audience (the writer looks up before
        # every write). Kept in step with every write below; dropped when a transaction rolls back.
        self._users: dict[int, Doc] | None = None
        # The same documents in id order, and a count of the changes to the users: a listing sorts (and a sort is
        # cached) once per change, not once per page (`odata.SortCache`).
        self._in_order: list[Doc] | None = None
        self._users_version = 0

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        try:
            with self._db:
                yield
        except BaseException:
            self._users = None
            self._users_changed()
            raise

    # -- seed and reset -------------------------------------------------------------------------------------

    def _seed(self) -> None:
        for user in seed.PLATFORM_USERS:
            password_hash = digest(user.password) if user.password else None
            self._db.execute(
                "INSERT OR REPLACE INTO platform_users VALUES (?, ?, ?, ?)",
                (user.id, user.name, user.username, password_hash),
            )
            self._db.execute("INSERT OR REPLACE INTO api_keys VALUES (?, ?)", (digest(user.api_key), user.id))
        for company in seed.COMPANIES:
            doc = {**company, "DateCreated": seed.SEED_TIMESTAMP, "DateUpdated": seed.SEED_TIMESTAMP}
            self._db.execute(
                "INSERT OR REPLACE INTO companies VALUES (?, ?)", (int(str(company["ID"])), json.dumps(doc))
            )
        for definition in seed.CUSTOM_FIELDS:
            self._db.execute(
                "INSERT OR REPLACE INTO custom_fields VALUES (?, ?)",
                (int(definition.id), json.dumps(definition.to_json())),
            )

    def reset(self) -> None:
        """Back to the seed. The clock and ID sequences keep counting so no ID or timestamp is ever reissued."""
        with self._db:
            for table in DATA_TABLES:
                self._db.execute(f"DELETE FROM {table}")
            self._seed()
        self._users = None
        self._users_changed()

    # -- meta: clock and sequences ---------------------------------------------------------------------------

    def _meta(self, key: str, default: str) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def next_timestamp(self) -> str:
        """Now, in the API's format, strictly later than every timestamp issued before (even across restarts)."""
        self._last_ms = max(time.time_ns() // 1_000_000, self._last_ms + 1)
        self._set_meta("clock_ms", str(self._last_ms))
        return format_ms(self._last_ms)

    def next_id(self, sequence: str, first: int = 1) -> str:
        value = int(self._meta(f"seq:{sequence}", str(first - 1))) + 1
        self._set_meta(f"seq:{sequence}", str(value))
        return str(value)

    # -- auth ------------------------------------------------------------------------------------------------

    def platform_user_for_key(self, api_key: str) -> Doc | None:
        row = self._db.execute(
            "SELECT p.id, p.name FROM api_keys k JOIN platform_users p ON p.id = k.platform_user_id "
            "WHERE k.key_hash = ?",
            (digest(api_key),),
        ).fetchone()
        return {"ID": row[0], "Name": row[1]} if row else None

    def platform_user_for_password(self, username: str, password: str) -> Doc | None:
        row = self._db.execute(
            "SELECT id, name FROM platform_users WHERE lower(username) = lower(?) AND password_hash = ?",
            (username, digest(password)),
        ).fetchone()
        return {"ID": row[0], "Name": row[1]} if row else None

    def issue_token(self, kind: str, platform_user_id: str, ttl_seconds: int) -> str:
        token = secrets.token_urlsafe(32)
        with self._db:
            self._db.execute(
                "INSERT INTO tokens VALUES (?, ?, ?, ?)",
                (digest(token), kind, platform_user_id, time.time() + ttl_seconds),
            )
        return token

    def platform_user_for_token(self, token: str, kind: str) -> Doc | None:
        row = self._db.execute(
            "SELECT p.id, p.name FROM tokens t JOIN platform_users p ON p.id = t.platform_user_id "
            "WHERE t.token_hash = ? AND t.kind = ? AND t.expires_at > ?",
            (digest(token), kind, time.time()),
        ).fetchone()
        return {"ID": row[0], "Name": row[1]} if row else None

    # -- reference data --------------------------------------------------------------------------------------

    def companies(self) -> list[Doc]:
        return self._docs("SELECT doc FROM companies ORDER BY id")

    def custom_fields(self) -> list[CustomFieldDef]:
        return [
            CustomFieldDef(
                id=d["ID"],
                name=d["Name"],
                type=d["Type"],
                max_length=d["MaxLength"],
                options=tuple(d["Options"]) if d["Options"] is not None else None,
                mandatory=d["Mandatory"],
            )
            for d in self._docs("SELECT doc FROM custom_fields ORDER BY id")
        ]

    # -- users -----------------------------------------------------------------------------------------------

    def _user_docs(self) -> dict[int, Doc]:
        if self._users is None:
            rows = self._db.execute("SELECT id, doc FROM users").fetchall()
            self._users = {int(row[0]): json.loads(row[1]) for row in rows}
        return self._users

    def _users_changed(self) -> None:
        self._in_order = None
        self._users_version += 1

    def users(self) -> list[Doc]:
        """Every user in id order; each a copy, so a caller's changes never reach the cache."""
        return [dict(doc) for doc in self.users_view()]

    def users_view(self) -> Sequence[Doc]:
        """Every user in id order, not copied: for readers that change nothing (a listing copies its page)."""
        if self._in_order is None:
            docs = self._user_docs()
            self._in_order = [docs[user_id] for user_id in sorted(docs)]
        return self._in_order

    @property
    def users_version(self) -> int:
        """Changes with every change of the users (what `users_view` answers)."""
        return self._users_version

    def user(self, user_id: str) -> Doc | None:
        if not user_id.isdigit():
            return None
        doc = self._user_docs().get(int(user_id))
        return dict(doc) if doc is not None else None

    def put_user(self, doc: Doc) -> None:
        text = json.dumps(doc)
        self._db.execute("INSERT OR REPLACE INTO users VALUES (?, ?)", (int(doc["ID"]), text))
        # What the database holds, not the caller's object (which it may go on changing).
        self._user_docs()[int(doc["ID"])] = json.loads(text)
        self._users_changed()

    def remove_user(self, user_id: str) -> None:
        self._db.execute("DELETE FROM users WHERE id = ?", (int(user_id),))
        self._user_docs().pop(int(user_id), None)
        self._users_changed()

    # -- audit -----------------------------------------------------------------------------------------------

    def add_audit(self, entry: Doc) -> None:
        doc = {"ID": self.next_id("audit"), **entry}
        self._db.execute("INSERT INTO audit VALUES (?, ?)", (int(doc["ID"]), json.dumps(doc)))

    def audit(self) -> list[Doc]:
        return self._docs("SELECT doc FROM audit ORDER BY id")

    # -- webhooks --------------------------------------------------------------------------------------------

    def add_webhook(self, fields: Doc, secret: str | None) -> Doc:
        with self._db:
            doc = {"ID": self.next_id("webhook"), **fields, "DateCreated": self.next_timestamp()}
            self._db.execute("INSERT INTO webhooks VALUES (?, ?, ?)", (int(doc["ID"]), json.dumps(doc), secret))
        return doc

    def webhooks(self) -> list[Doc]:
        return self._docs("SELECT doc FROM webhooks ORDER BY id")

    def webhook_secret(self, webhook_id: str) -> str | None:
        row = self._db.execute("SELECT secret FROM webhooks WHERE id = ?", (int(webhook_id),)).fetchone()
        return row[0] if row else None

    def remove_webhook(self, webhook_id: str) -> bool:
        if not webhook_id.isdigit():
            return False
        with self._db:
            cursor = self._db.execute("DELETE FROM webhooks WHERE id = ?", (int(webhook_id),))
        return cursor.rowcount > 0

    def add_instance(self, doc: Doc, payload: bytes) -> None:
        self._db.execute(
            "INSERT INTO webhook_instances VALUES (?, ?, ?)", (int(doc["ID"]), json.dumps(doc), payload.decode())
        )

    def update_instance(self, doc: Doc) -> None:
        with self._db:
            self._db.execute("UPDATE webhook_instances SET doc = ? WHERE id = ?", (json.dumps(doc), int(doc["ID"])))

    def instances(self) -> list[Doc]:
        return self._docs("SELECT doc FROM webhook_instances ORDER BY id")

    def unfinished_instances(self) -> list[tuple[Doc, bytes]]:
        rows = self._db.execute("SELECT doc, payload FROM webhook_instances ORDER BY id").fetchall()
        pending = [(json.loads(doc), payload.encode()) for doc, payload in rows]
        return [(doc, payload) for doc, payload in pending if doc["Status"] in ("Pending", "Retrying")]

    def _docs(self, sql: str) -> list[Doc]:
        return [json.loads(row[0]) for row in self._db.execute(sql).fetchall()]
