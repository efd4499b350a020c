"""SQLite repository. One connection, used from the event loop thread; the lock guards the odd other thread.

What every request looks up (API keys, audiences, merge fields, webhooks) is cached in memory: this store is the only
writer of its file, so each write below updates or drops the cached copy, and a rolled-back transaction drops them all.
"""

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailchimp_sim.domain import Member, MergeField

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (api_key TEXT PRIMARY KEY, account_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lists (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL, web_id INTEGER NOT NULL, name TEXT NOT NULL,
    double_optin INTEGER NOT NULL, date_created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS merge_fields (
    list_id TEXT NOT NULL, merge_id INTEGER NOT NULL, tag TEXT NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (list_id, merge_id), UNIQUE (list_id, tag)
);
CREATE TABLE IF NOT EXISTS members (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, list_id TEXT NOT NULL, id TEXT NOT NULL, contact_id TEXT NOT NULL,
    unique_email_id TEXT NOT NULL, status TEXT NOT NULL, archived INTEGER NOT NULL, last_changed TEXT NOT NULL,
    doc TEXT NOT NULL, UNIQUE (list_id, id)
);
CREATE TABLE IF NOT EXISTS forgotten (list_id TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY (list_id, hash));
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY, list_id TEXT NOT NULL, doc TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0
);
"""
_TABLES = ("api_keys", "lists", "merge_fields", "members", "forgotten", "webhooks")


@dataclass(frozen=True)
class AudienceRow:
    id: str
    account_id: str
    web_id: int
    name: str
    double_optin: bool
    date_created: str


@dataclass(frozen=True)
class Webhook:
    id: str
    list_id: str
    url: str
    events: dict[str, bool]
    sources: dict[str, bool]
    signing_enabled: bool
    signing_secret: str
    disabled: bool = False


_MEMBER_FIELDS = tuple(f.name for f in fields(Member))
# The members list's `sort_field` values (SDK 3.0.80 `get_list_members_info`) and the column each sorts by.
SORT_FIELDS = {
    "last_changed": "last_changed",
    "timestamp_opt": "json_extract(doc, '$.timestamp_opt')",
    "timestamp_signup": "json_extract(doc, '$.timestamp_signup')",
}


def _member_to_doc(member: Member) -> str:
    # Not dataclasses.asdict: its recursive deep copy was a visible share of a write's CPU.
    doc = {name: getattr(member, name) for name in _MEMBER_FIELDS}
    doc["last_changed"] = member.last_changed.isoformat()
    doc["merge_fields"] = dict(member.merge_fields)
    doc["interests"] = dict(member.interests)
    return json.dumps(doc, separators=(",", ":"))


def _member_from_doc(doc: str) -> Member:
    data = json.loads(doc)
    data["last_changed"] = datetime.fromisoformat(data["last_changed"])
    data["tags"] = tuple(data["tags"])
    return Member(**data)


class Store:
    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(data_dir / "mailchimp.sqlite3", check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # A commit survives a crash of the simulator; only an OS crash or power cut can lose the last commits, which
        # a simulator need not survive. synchronous=FULL's fsync per commit was the largest cost of a member write.
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.RLock()
        self._depth = 0
        self._account_by_key: dict[str, str] = {}
        self._audiences: dict[str, AudienceRow | None] = {}
        self._merge_fields: dict[str, list[MergeField]] = {}
        self._webhooks: dict[str, list[Webhook]] = {}

    def close(self) -> None:
        self._conn.close()

    def _forget_cache(self) -> None:
        self._account_by_key.clear()
        self._audiences.clear()
        self._merge_fields.clear()
        self._webhooks.clear()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing. Nested use is a savepoint, so a batch can be one transaction around many writes."""
        with self._lock:
            savepoint = f"sp{self._depth}"
            self._conn.execute(f"SAVEPOINT {savepoint}" if self._depth else "BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if self._depth:
                    self._conn.execute(f"ROLLBACK TO {savepoint}")
                    self._conn.execute(f"RELEASE {savepoint}")
                else:
                    self._conn.execute("ROLLBACK")
                self._forget_cache()
                raise
            self._depth -= 1
            self._conn.execute(f"RELEASE {savepoint}" if self._depth else "COMMIT")

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with self._lock:
            return self._conn.execute(sql, params).fetchone()

    def _run(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self._lock:
            self._conn.execute(sql, params)

    def wipe(self) -> None:
        with self.transaction():
            for table in _TABLES:
                self._run(f"DELETE FROM {table}")
            self._forget_cache()

    # --- accounts and audiences ---

    def account_for_key(self, api_key: str) -> str | None:
        account = self._account_by_key.get(api_key)
        if account is None:
            # Unknown keys are not cached: anyone can send any number of them.
            row = self._one("SELECT account_id FROM api_keys WHERE api_key = ?", (api_key,))
            if row is None:
                return None
            account = self._account_by_key[api_key] = str(row[0])
        return account

    def add_api_key(self, api_key: str, account_id: str) -> None:
        self._run(
            "INSERT INTO api_keys (api_key, account_id) VALUES (?, ?) "
            "ON CONFLICT (api_key) DO UPDATE SET account_id = excluded.account_id",
            (api_key, account_id),
        )
        self._account_by_key.pop(api_key, None)

    def api_key_count(self, account_id: str) -> int:
        row = self._one("SELECT COUNT(*) FROM api_keys WHERE account_id = ?", (account_id,))
        return int(row[0]) if row else 0

    def insert_audience(self, audience: AudienceRow) -> bool:
        """False when the id is taken (seeding is idempotent)."""
        with self._lock:
            cursor = self._conn.execute(
                "INSERT OR IGNORE INTO lists (id, account_id, web_id, name, double_optin, date_created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    audience.id,
                    audience.account_id,
                    audience.web_id,
                    audience.name,
                    int(audience.double_optin),
                    audience.date_created,
                ),
            )
            self._audiences.pop(audience.id, None)
            return cursor.rowcount == 1

    def update_audience(self, list_id: str, name: str, double_optin: bool) -> None:
        self._run("UPDATE lists SET name = ?, double_optin = ? WHERE id = ?", (name, int(double_optin), list_id))
        self._audiences.pop(list_id, None)

    def delete_audience(self, list_id: str) -> None:
        """The audience and everything in it: members, forgotten addresses, merge fields, webhooks."""
        with self.transaction():
            for table, column in (
                ("members", "list_id"),
                ("forgotten", "list_id"),
                ("merge_fields", "list_id"),
                ("webhooks", "list_id"),
                ("lists", "id"),
            ):
                self._run(f"DELETE FROM {table} WHERE {column} = ?", (list_id,))
            self._forget_cache()

    def audience(self, list_id: str) -> AudienceRow | None:
        if list_id in self._audiences:
            return self._audiences[list_id]
        row = self._one(
            "SELECT id, account_id, web_id, name, double_optin, date_created FROM lists WHERE id = ?", (list_id,)
        )
        audience = AudienceRow(row[0], row[1], row[2], row[3], bool(row[4]), row[5]) if row else None
        if audience is not None:
            self._audiences[list_id] = audience
        return audience

    def audiences(self, account_id: str) -> list[AudienceRow]:
        rows = self._all(
            "SELECT id, account_id, web_id, name, double_optin, date_created FROM lists "
            "WHERE account_id = ? ORDER BY date_created, id",
            (account_id,),
        )
        return [AudienceRow(r[0], r[1], r[2], r[3], bool(r[4]), r[5]) for r in rows]

    def status_counts(self, list_id: str) -> dict[str, int]:
        rows = self._all(
            "SELECT status, COUNT(*) FROM members WHERE list_id = ? AND archived = 0 GROUP BY status", (list_id,)
        )
        return {str(status): int(count) for status, count in rows}

    # --- merge fields ---

    def merge_fields(self, list_id: str) -> list[MergeField]:
        cached = self._merge_fields.get(list_id)
        if cached is None:
            rows = self._all("SELECT doc FROM merge_fields WHERE list_id = ? ORDER BY merge_id", (list_id,))
            cached = self._merge_fields[list_id] = [MergeField(**json.loads(r[0])) for r in rows]
        return list(cached)

    def put_merge_field(self, list_id: str, field: MergeField) -> None:
        doc = asdict(field)
        doc["options"] = dict(field.options)
        self._run(
            "INSERT INTO merge_fields (list_id, merge_id, tag, doc) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (list_id, merge_id) DO UPDATE SET tag = excluded.tag, doc = excluded.doc",
            (list_id, field.merge_id, field.tag, json.dumps(doc)),
        )
        self._merge_fields.pop(list_id, None)

    def delete_merge_field(self, list_id: str, merge_id: int) -> None:
        self._run("DELETE FROM merge_fields WHERE list_id = ? AND merge_id = ?", (list_id, merge_id))
        self._merge_fields.pop(list_id, None)

    def next_merge_id(self, list_id: str) -> int:
        row = self._one("SELECT COALESCE(MAX(merge_id), 0) + 1 FROM merge_fields WHERE list_id = ?", (list_id,))
        return int(row[0]) if row else 1

    # --- members ---

    def member(self, list_id: str, member_id: str) -> Member | None:
        row = self._one("SELECT doc FROM members WHERE list_id = ? AND id = ?", (list_id, member_id))
        return _member_from_doc(row[0]) if row else None

    def member_by_contact_id(self, list_id: str, contact_id: str) -> Member | None:
        row = self._one("SELECT doc FROM members WHERE list_id = ? AND contact_id = ?", (list_id, contact_id))
        return _member_from_doc(row[0]) if row else None

    def save_member(self, member: Member, previous_id: str | None = None) -> None:
        """Insert or update; ``previous_id`` re-keys the row when the email (and so the hash) changed."""
        key = previous_id or member.id
        with self._lock:
            cursor = self._conn.execute(
                "UPDATE members SET id = ?, contact_id = ?, unique_email_id = ?, status = ?, archived = ?, "
                "last_changed = ?, doc = ? WHERE list_id = ? AND id = ?",
                (
                    member.id,
                    member.contact_id,
                    member.unique_email_id,
                    member.status,
                    int(member.archived),
                    member.last_changed.astimezone(UTC).isoformat(),
                    _member_to_doc(member),
                    member.list_id,
                    key,
                ),
            )
            if cursor.rowcount == 0:
                self._conn.execute(
                    "INSERT INTO members (list_id, id, contact_id, unique_email_id, status, archived, "
                    "last_changed, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        member.list_id,
                        member.id,
                        member.contact_id,
                        member.unique_email_id,
                        member.status,
                        int(member.archived),
                        member.last_changed.astimezone(UTC).isoformat(),
                        _member_to_doc(member),
                    ),
                )

    def delete_member(self, list_id: str, member_id: str) -> None:
        self._run("DELETE FROM members WHERE list_id = ? AND id = ?", (list_id, member_id))

    def query_members(
        self,
        list_id: str,
        *,
        status: str | None,
        since: datetime | None,
        before: datetime | None,
        unique_email_id: str | None,
        vip_only: bool,
        offset: int,
        count: int,
        unsubscribed_since: datetime | None = None,
        sort_field: str | None = None,
        sort_dir: str = "ASC",
    ) -> tuple[list[Member], int]:
        """``sort_field`` is one of SORT_FIELDS (checked by the caller); without it members come in insertion
        order. ``unsubscribed_since`` keeps unsubscribed members who unsubscribed at or after it."""
        where = ["list_id = ?"]
        params: list[Any] = [list_id]
        if status == "archived":
            where.append("archived = 1")
        else:
            where.append("archived = 0")
            if status:
                where.append("status = ?")
                params.append(status)
        if since is not None:
            where.append("last_changed >= ?")
            params.append(since.astimezone(UTC).isoformat())
        if before is not None:
            where.append("last_changed <= ?")
            params.append(before.astimezone(UTC).isoformat())
        if unique_email_id:
            where.append("unique_email_id = ?")
            params.append(unique_email_id)
        if vip_only:
            where.append("json_extract(doc, '$.vip') = 1")
        if unsubscribed_since is not None:
            where.append("status = 'unsubscribed' AND json_extract(doc, '$.unsubscribed_at') >= ?")
            params.append(unsubscribed_since.astimezone(UTC).replace(microsecond=0).isoformat())
        clause = " AND ".join(where)
        order = "seq"
        if sort_field is not None:
            direction = "DESC" if sort_dir.upper() == "DESC" else "ASC"
            order = f"{SORT_FIELDS[sort_field]} {direction}, seq {direction}"
        total_row = self._one(f"SELECT COUNT(*) FROM members WHERE {clause}", params)
        rows = self._all(
            f"SELECT doc FROM members WHERE {clause} ORDER BY {order} LIMIT ? OFFSET ?", [*params, count, offset]
        )
        return [_member_from_doc(r[0]) for r in rows], int(total_row[0]) if total_row else 0

    def forget(self, list_id: str, member_hash: str) -> None:
        self._run("INSERT OR IGNORE INTO forgotten (list_id, hash) VALUES (?, ?)", (list_id, member_hash))

    def is_forgotten(self, list_id: str, member_hash: str) -> bool:
        return self._one("SELECT 1 FROM forgotten WHERE list_id = ? AND hash = ?", (list_id, member_hash)) is not None

    # --- webhooks ---

    def save_webhook(self, hook: Webhook) -> None:
        doc = asdict(hook)
        disabled = doc.pop("disabled")
        self._run(
            "INSERT INTO webhooks (id, list_id, doc, disabled) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, disabled = excluded.disabled",
            (hook.id, hook.list_id, json.dumps(doc), int(disabled)),
        )
        self._webhooks.clear()

    def webhooks(self, list_id: str) -> list[Webhook]:
        cached = self._webhooks.get(list_id)
        if cached is None:
            rows = self._all("SELECT doc, disabled FROM webhooks WHERE list_id = ? ORDER BY rowid", (list_id,))
            cached = self._webhooks[list_id] = [
                Webhook(**json.loads(doc), disabled=bool(disabled)) for doc, disabled in rows
            ]
        return list(cached)

    def webhook(self, webhook_id: str) -> Webhook | None:
        row = self._one("SELECT doc, disabled FROM webhooks WHERE id = ?", (webhook_id,))
        return Webhook(**json.loads(row[0]), disabled=bool(row[1])) if row else None

    def disable_webhook(self, webhook_id: str) -> None:
        self._run("UPDATE webhooks SET disabled = 1 WHERE id = ?", (webhook_id,))
        self._webhooks.clear()

    def delete_webhook(self, webhook_id: str) -> None:
        self._run("DELETE FROM webhooks WHERE id = ?", (webhook_id,))
        self._webhooks.clear()
