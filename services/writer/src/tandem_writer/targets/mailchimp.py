"""Mailchimp target: member upserts and email changes through one pooled HTTP client per account.

Every request runs inside a slot of a concurrency limiter shared by all writer replicas (Redis), so Tandem never
opens more than Mailchimp's 10 simultaneous connections per account and never causes a 429 itself.

Group commit: under a backlog the 10 slots, not Mailchimp's work per member, limit throughput, and a request per
member costs the writer (and Mailchimp) a round trip each. Plain upserts to one audience therefore queue up per
account and audience; a sender that gets a slot takes its share of what is queued (spread over the connections
not in use, at most `batch_max`) and sends it as one batch subscribe (`POST /lists/{id}`, `update_existing`), which
Mailchimp applies to each member exactly as a PUT. One
member alone still goes as the PUT it always was, so at low load nothing changes. Each command keeps its own
outcome. Email changes and bodies the batch endpoint does not take keep their own request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
from redis.asyncio import Redis

from tandem_shared.concurrency import (
    ConcurrencyLimiter,
    Lease,
    LimiterUnavailable,
    RedisConcurrencyLimiter,
    SlotUnavailable,
)
from tandem_shared.contracts import (
    ErrorInfo,
    InstanceConfig,
    Operation,
    SyncCommand,
    System,
    email_key,
    subscriber_hash,
)
from tandem_shared.logging import get_logger
from tandem_shared.secrets import SecretUnavailable, resolve_secret
from tandem_writer.outcome import WriteOutcome
from tandem_writer.settings import WriterSettings
from tandem_writer.targets.mailchimp_classify import classify_response, classify_transport, holds_server_slot

log = get_logger("tandem.writer.mailchimp")

# Member fields worth keeping in the trace; the full document repeats the audience's every field and link.
_MEMBER_SUMMARY_FIELDS = (
    "id",
    "email_address",
    "unique_email_id",
    "contact_id",
    "status",
    "merge_fields",
    "last_changed",
    "list_id",
)


def member_summary(member: dict[str, Any]) -> dict[str, Any]:
    return {k: member[k] for k in _MEMBER_SUMMARY_FIELDS if k in member}


def upsert_body(payload: dict[str, Any], status_if_new: str) -> dict[str, Any] | ErrorInfo:
    """The PUT body. A sync never sets `status`: `status_if_new` applies to new members only, so an existing
    member's choice (unsubscribed, cleaned, pending) is never overridden."""
    email = payload.get("email_address")
    if not isinstance(email, str) or not email.strip():
        return ErrorInfo(
            error_class="InvalidCommand",
            message="the command's Mailchimp member has no email_address",
            permanent=True,
            field="email_address",
        )
    body = {k: v for k, v in payload.items() if k != "status"}
    body.setdefault("status_if_new", status_if_new)
    return body


# The member fields Mailchimp's batch subscribe takes (shared/reference/mailchimp-api.md §7.1); a body with any
# other field (tags, for instance) keeps its own PUT.
BATCH_MEMBER_FIELDS = frozenset(
    {
        "email_address",
        "email_type",
        "status",
        "status_if_new",
        "merge_fields",
        "interests",
        "language",
        "vip",
        "location",
        "ip_signup",
        "ip_opt",
        "timestamp_signup",
        "timestamp_opt",
    }
)
# Mailchimp's own ceiling per batch subscribe call.
BATCH_MAX_MEMBERS = 500


def batchable(body: dict[str, Any]) -> bool:
    return body.keys() <= BATCH_MEMBER_FIELDS


def patch_body(upsert: dict[str, Any]) -> dict[str, Any]:
    """The PATCH body for an email change: the new address and profile, no status of any kind."""
    return {k: v for k, v in upsert.items() if k not in ("status", "status_if_new")}


def limiter_name(api_root: str, api_key: str) -> str:
    """One semaphore per Mailchimp account, named without revealing the key."""
    digest = hashlib.sha256(f"{api_root}|{api_key}".encode()).hexdigest()[:24]
    return f"mailchimp:{digest}"


@dataclass(frozen=True)
class Account:
    client: httpx.AsyncClient
    semaphore: str


@dataclass(eq=False)
class _Queued:
    """One upsert waiting for a sender; `alone` sends it as its own PUT even when others are queued."""

    body: dict[str, Any]
    done: asyncio.Future[WriteOutcome]
    alone: bool = False

    @property
    def member_id(self) -> str:
        return subscriber_hash(self.body["email_address"])

    def resolve(self, outcome: WriteOutcome) -> None:
        if not self.done.done():  # its writer may have been cancelled (shutdown) while the request ran
            self.done.set_result(outcome)


@dataclass(eq=False)
class _AudienceQueue:
    """The upserts of one account and audience waiting for a connection slot, and the senders serving them."""

    pending: deque[_Queued] = field(default_factory=deque)
    senders: int = 0  # tasks waiting for a slot or sending
    waiting: int = 0  # of those, the ones waiting for a slot

    def take(self, limit: int) -> list[_Queued]:
        """The oldest queued upserts for one request: one that must go alone, or up to `limit` for distinct
        members (a second upsert of one address waits for the next request, so each answer has one owner)."""
        if not self.pending:
            return []
        if self.pending[0].alone or limit <= 1:
            return [self.pending.popleft()]
        taken: list[_Queued] = []
        members: set[str] = set()
        kept: deque[_Queued] = deque()
        while self.pending and len(taken) < limit:
            item = self.pending.popleft()
            if item.alone or item.member_id in members:
                kept.append(item)
                continue
            members.add(item.member_id)
            taken.append(item)
        kept.extend(self.pending)
        self.pending = kept
        return taken

    def fail_all(self, outcome: WriteOutcome) -> None:
        while self.pending:
            self.pending.popleft().resolve(outcome)


class MailchimpTarget:
    system = System.MAILCHIMP

    def __init__(
        self,
        *,
        limiter: ConcurrencyLimiter,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        max_connections: int = 10,
        server_timeout_s: float = 120.0,
        batch_max: int = 1,
    ) -> None:
        if not 1 <= batch_max <= BATCH_MAX_MEMBERS:
            raise ValueError(f"batch_max must be between 1 and {BATCH_MAX_MEMBERS}")
        self._limiter = limiter
        self._timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self._max_connections = max_connections
        self._server_timeout_s = server_timeout_s
        self._batch_max = batch_max
        self._accounts: dict[str, Account] = {}
        self._queues: dict[tuple[str, str], _AudienceQueue] = {}
        self._senders: set[asyncio.Task[None]] = set()

    @classmethod
    def from_settings(cls, settings: WriterSettings, redis: Redis) -> MailchimpTarget:
        limiter = RedisConcurrencyLimiter(
            redis,
            limit=settings.mailchimp_max_connections,
            lease_s=settings.mailchimp_lease_s,
            max_wait_s=settings.mailchimp_slot_wait_s,
        )
        return cls(
            limiter=limiter,
            timeout_s=settings.http_timeout_s,
            max_connections=settings.mailchimp_max_connections,
            server_timeout_s=settings.mailchimp_timed_out_slot_hold_s,
            batch_max=settings.mailchimp_batch_max,
        )

    def _account(self, instance: InstanceConfig) -> Account:
        api_key = resolve_secret(instance.mailchimp.api_key)
        root = instance.mailchimp.api_root(api_key)
        name = limiter_name(root, api_key)
        account = self._accounts.get(name)
        if account is None:
            client = httpx.AsyncClient(
                base_url=root,
                auth=httpx.BasicAuth("tandem", api_key),
                timeout=self._timeout,
                limits=httpx.Limits(
                    max_connections=self._max_connections, max_keepalive_connections=self._max_connections
                ),
            )
            account = Account(client, name)
            self._accounts[name] = account
        return account

    async def _call(self, account: Account, method: str, path: str, body: dict[str, Any]) -> httpx.Response | ErrorInfo:
        try:
            async with self._limiter.slot(account.semaphore) as lease:
                return await self._request(account, lease, method, path, body)
        except SlotUnavailable as exc:
            return _slot_error(exc)
        except LimiterUnavailable as exc:
            return _slot_error(exc)

    async def _request(
        self, account: Account, lease: Lease, method: str, path: str, body: dict[str, Any]
    ) -> httpx.Response | ErrorInfo:
        """One request, inside a slot the caller holds."""
        try:
            return await account.client.request(method, path, json=body)
        except httpx.TransportError as exc:
            if holds_server_slot(exc):
                lease.keep_for(self._server_timeout_s)
            return classify_transport(exc)
        except httpx.InvalidURL as exc:
            return ErrorInfo(
                error_class="InvalidApiBaseUrl", message=f"Mailchimp API URL is invalid: {exc}", permanent=True
            )

    async def write(self, command: SyncCommand, instance: InstanceConfig) -> WriteOutcome:
        body = upsert_body(command.payload, instance.mailchimp.status_if_new)
        if isinstance(body, ErrorInfo):
            return WriteOutcome(False, f"Not sent to Mailchimp: {body.message}", error=body)
        try:
            account = self._account(instance)
        except SecretUnavailable as exc:
            error = ErrorInfo(
                error_class="SecretUnavailable", message=f"Mailchimp API key unavailable: {exc}", permanent=True
            )
            return WriteOutcome(False, f"Not sent to Mailchimp: {error.message}", error=error)
        audience = instance.mailchimp.audience_id
        old_email = command.identity.old_email
        if (
            command.operation is Operation.CHANGE_EMAIL
            and old_email
            and email_key(old_email) != email_key(body["email_address"])
        ):
            return await self._change_email(account, audience, old_email, body)
        return await self._queued_upsert(account, audience, body, alone=command.operation is not Operation.UPSERT)

    async def _upsert(self, account: Account, audience: str, body: dict[str, Any], note: str = "") -> WriteOutcome:
        email = body["email_address"]
        result = await self._call(account, "PUT", _member_path(audience, email), body)
        return _upserted(result, email, note)

    async def _queued_upsert(
        self, account: Account, audience: str, body: dict[str, Any], *, alone: bool = False
    ) -> WriteOutcome:
        queue = self._queues.setdefault((account.semaphore, audience), _AudienceQueue())
        # Queued even when it cannot share a batch: only senders wait for a slot, however many commands are in hand.
        item = _Queued(body, asyncio.get_running_loop().create_future(), alone=alone or not batchable(body))
        queue.pending.append(item)
        self._ensure_sender(account, audience, queue)
        try:
            return await asyncio.shield(item.done)
        except asyncio.CancelledError:
            # Not yet taken: it is never sent. Taken: the request finishes without us; the command stays
            # uncommitted and its repeat is an upsert, harmless.
            with contextlib.suppress(ValueError):
                queue.pending.remove(item)
            raise

    def _ensure_sender(self, account: Account, audience: str, queue: _AudienceQueue) -> None:
        """A sender already waiting for a slot takes what is queued along; otherwise one more starts, up to one per
        connection Mailchimp allows. Only senders wait on the limiter, so a backlog of thousands of commands is at
        most `max_connections` waiters per audience, not one poller of Redis each."""
        if queue.pending and queue.waiting == 0 and queue.senders < self._max_connections:
            queue.senders += 1
            queue.waiting += 1
            sender = asyncio.create_task(self._send(account, audience, queue), name=f"mailchimp-sender-{audience}")
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)

    async def _send(self, account: Account, audience: str, queue: _AudienceQueue) -> None:
        """Serves the queue one request per slot until nothing is left for it to take. Starts counted as waiting."""
        waiting = True
        try:
            while queue.pending:
                if not waiting:
                    queue.waiting += 1
                    waiting = True
                taken: list[_Queued] = []
                try:
                    async with self._limiter.slot(account.semaphore) as lease:
                        queue.waiting -= 1
                        waiting = False
                        taken = queue.take(self._share(queue))
                        # More than one request's worth queued: the next sender waits for a slot meanwhile.
                        self._ensure_sender(account, audience, queue)
                        if len(taken) == 1:
                            await self._send_alone(account, lease, audience, taken[0])
                        elif taken:
                            await self._send_batch(account, lease, audience, queue, taken)
                except (SlotUnavailable, LimiterUnavailable) as exc:
                    # No slot within the wait bound (or no limiter at all): everything queued gets the transient
                    # outcome a PUT would. Failing all, not only the oldest, keeps any command's wait within one
                    # bound, far inside its claim's lifetime (`inflight_ttl_s`).
                    queue.fail_all(_failed(_slot_error(exc)))
                except asyncio.CancelledError:
                    for item in taken:
                        item.resolve(_failed(_STOPPING))
                    raise
                except Exception as exc:  # a bug here must not leave writers waiting forever
                    log.exception("Mailchimp sender failed", audience=audience)
                    error = ErrorInfo(
                        error_class=type(exc).__name__, message=f"Mailchimp write failed: {exc}", permanent=False
                    )
                    for item in taken:
                        item.resolve(_failed(error))
                    if not taken:  # it failed before taking anything: it would fail again at once
                        queue.fail_all(_failed(error))
        finally:
            if waiting:
                queue.waiting -= 1
            queue.senders -= 1

    def _share(self, queue: _AudienceQueue) -> int:
        """How many queued upserts this sender takes: what is queued, spread over the connections not sending yet
        (this one included), at most `batch_max`. Mailchimp allows ten connections; a backlog goes out as ten
        medium batches side by side rather than one big batch after another, so every allowed connection works and
        no member waits behind a batch it could have had a connection of its own for."""
        sending = queue.senders - queue.waiting  # this sender included: it holds a slot now
        free = max(1, self._max_connections - sending + 1)
        return min(self._batch_max, max(1, math.ceil(len(queue.pending) / free)))

    async def _send_alone(self, account: Account, lease: Lease, audience: str, item: _Queued) -> None:
        email = item.body["email_address"]
        result = await self._request(account, lease, "PUT", _member_path(audience, email), item.body)
        item.resolve(_upserted(result, email))

    async def _send_batch(
        self, account: Account, lease: Lease, audience: str, queue: _AudienceQueue, taken: list[_Queued]
    ) -> None:
        body = {"members": [item.body for item in taken], "update_existing": True}
        result = await self._request(account, lease, "POST", f"/lists/{audience}", body)
        if isinstance(result, ErrorInfo):
            for item in taken:
                item.resolve(_failed(result))
            return
        if not result.is_success:
            error = classify_response(result.status_code, result.content, result.headers.get("content-type", ""))
            if error.permanent:
                # Refused as a whole (a 400 about one member's shape, a key, the audience): each member's own PUT
                # says what is wrong with it, exactly as it would have without batching.
                _again(queue, taken)
            else:
                for item in taken:
                    item.resolve(_refused(result))
            return
        answers = _batch_answers(result)
        if answers is None:
            for item in taken:
                item.resolve(_unexpected(result))
            return
        again = []
        for item in taken:
            member = answers.get(item.member_id)
            if member is None:
                again.append(item)
                continue
            email = item.body["email_address"]
            item.resolve(
                WriteOutcome(
                    True,
                    f"Mailchimp member {member.get('email_address', email)} is {member.get('status', 'unknown')}",
                    response=member_summary(member),
                )
            )
        # A member the batch refused (or did not mention) is written again on its own with the PUT: the batch
        # reports a refusal as a bare message and code, without the HTTP status, title and field details that
        # `classify_response` needs to tell permanent from transient and to explain it; the PUT gives exactly the
        # answer the command would have had without batching. An upsert repeated is harmless.
        _again(queue, again)

    async def _change_email(
        self, account: Account, audience: str, old_email: str, body: dict[str, Any]
    ) -> WriteOutcome:
        new_email = body["email_address"]
        path = f"/lists/{audience}/members/{subscriber_hash(old_email)}"
        result = await self._call(account, "PATCH", path, patch_body(body))
        if isinstance(result, ErrorInfo):
            return _failed(result)
        if result.status_code == 404:
            # Nothing to move (never synced, archived, or a retry after the move already happened): the new
            # address is what matters, so it is upserted instead.
            return await self._upsert(account, audience, body, note=f"{old_email} is not in the audience; ")
        if not result.is_success:
            return _refused(result)
        member = _member(result)
        if member is None:
            return _unexpected(result)
        return WriteOutcome(
            True,
            f"Mailchimp member {old_email} is now {member.get('email_address', new_email)}",
            response=member_summary(member),
        )

    async def close(self) -> None:
        for sender in list(self._senders):
            sender.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        for queue in self._queues.values():
            queue.fail_all(_failed(_STOPPING))
        self._queues.clear()
        for account in self._accounts.values():
            await account.client.aclose()
        self._accounts.clear()
        await self._limiter.close()


_STOPPING = ErrorInfo(
    error_class="Shutdown", message="the writer stopped before the write was confirmed", permanent=False
)


def _member_path(audience: str, email: str) -> str:
    return f"/lists/{audience}/members/{subscriber_hash(email)}"


def _slot_error(exc: SlotUnavailable | LimiterUnavailable) -> ErrorInfo:
    error_class = "ConcurrencyLimit" if isinstance(exc, SlotUnavailable) else "LimiterUnavailable"
    return ErrorInfo(error_class=error_class, message=str(exc), permanent=False)


def _again(queue: _AudienceQueue, items: Iterable[_Queued]) -> None:
    """Back to the front of the queue, each to be sent alone, oldest first."""
    for item in reversed(list(items)):
        item.alone = True
        queue.pending.appendleft(item)


def _upserted(result: httpx.Response | ErrorInfo, email: str, note: str = "") -> WriteOutcome:
    """A PUT's answer as the command's outcome."""
    if isinstance(result, ErrorInfo):
        return _failed(result)
    if not result.is_success:
        return _refused(result)
    member = _member(result)
    if member is None:
        return _unexpected(result)
    return WriteOutcome(
        True,
        f"{note}Mailchimp member {member.get('email_address', email)} is {member.get('status', 'unknown')}",
        response=member_summary(member),
    )


def _batch_answers(response: httpx.Response) -> dict[str, dict[str, Any]] | None:
    """The member documents of a batch subscribe's answer by member id (subscriber hash); None if it has none."""
    try:
        document = response.json()
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    new, updated = document.get("new_members"), document.get("updated_members")
    if not isinstance(new, list) or not isinstance(updated, list):
        return None
    answers: dict[str, dict[str, Any]] = {}
    for member in (*new, *updated):
        if isinstance(member, dict) and isinstance(member.get("email_address"), str):
            answers[subscriber_hash(member["email_address"])] = member
    return answers


def _member(response: httpx.Response) -> dict[str, Any] | None:
    try:
        member = response.json()
    except ValueError:
        return None
    return member if isinstance(member, dict) else None


def _failed(error: ErrorInfo) -> WriteOutcome:
    return WriteOutcome(False, f"Mailchimp write failed: {error.message}", error=error)


def _refused(response: httpx.Response) -> WriteOutcome:
    error = classify_response(response.status_code, response.content, response.headers.get("content-type", ""))
    return WriteOutcome(False, f"Mailchimp refused the write: {error.message}", error=error)


def _unexpected(response: httpx.Response) -> WriteOutcome:
    # A 2xx without the member document (a proxy in between?): the PUT/PATCH is safe to repeat.
    error = ErrorInfo(
        error_class="UnexpectedResponse",
        message=f"Mailchimp answered {response.status_code} without a member document",
        permanent=False,
    )
    return WriteOutcome(False, f"Mailchimp write unconfirmed: {error.message}", error=error)
