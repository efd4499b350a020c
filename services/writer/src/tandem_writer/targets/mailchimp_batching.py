"""Group commit of Mailchimp upserts: one request per free connection slot, carrying what is queued.

Under a backlog the 10 slots, not Mailchimp's work per member, limit throughput, and a request per member costs the
writer (and Mailchimp) a round trip each. Plain upserts to one audience therefore queue up per account and
audience; a sender that gets a slot takes its share of what is queued (spread over the connections not in use, at
most `batch_max`) and sends it as one batch subscribe (`POST /lists/{id}`, `update_existing`), which Mailchimp
applies to each member exactly as a PUT. One member alone still goes as the PUT it always was, so at low load
nothing changes. Each command keeps its own outcome.

While requests are out, a trickle of upserts (a backfill's, arriving as fast as the mapper decides them) would
otherwise start a request for every few members, each connection carrying a handful: the writer's and Mailchimp's
cost per member is mostly per request. So an upsert that arrives while a request is out waits for a sender already
there (one finishing its request takes what queued meanwhile) unless a request's worth (`fill`) is queued; and a
sender that comes back for more, or starts for a full queue, takes at least `fill`. A change arriving when nothing
is out starts its request at once, and a backlog found at once is still spread over every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tandem_shared.contracts import ErrorInfo, subscriber_hash
from tandem_shared.logging import get_logger
from tandem_shared.vendors.mailchimp.bodies import (
    batch_answers,
    batch_subscribe_body,
    batchable,
    invalid_item_error,
    invalid_items,
)
from tandem_shared.vendors.mailchimp.client import MailchimpClient, MailchimpError, MailchimpSession, member_path
from tandem_shared.vendors.priority import Priority
from tandem_writer.domain.outcome import WriteOutcome
from tandem_writer.targets.mailchimp_outcomes import (
    STOPPING,
    failed,
    member_is,
    not_written,
    refused,
    unexpected,
    upserted,
)

log = get_logger("tandem.writer.mailchimp")


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


def _again(queue: _AudienceQueue, items: Iterable[_Queued]) -> None:
    """Back to the front of the queue, each to be sent alone, oldest first."""
    for item in reversed(list(items)):
        item.alone = True
        queue.pending.appendleft(item)


class UpsertBatcher:
    """Queues upserts per (account, audience) and serves them with at most `max_connections` senders each."""

    def __init__(self, *, max_connections: int, batch_max: int) -> None:
        self._max_connections = max_connections
        self._batch_max = batch_max
        # A request's worth while other requests are out (see the module's docstring).
        self._fill = max(1, batch_max // 4)
        self._queues: dict[tuple[str, str], _AudienceQueue] = {}
        self._senders: set[asyncio.Task[None]] = set()

    async def upsert(
        self, client: MailchimpClient, audience: str, body: dict[str, Any], *, alone: bool = False
    ) -> WriteOutcome:
        queue = self._queues.setdefault((client.name, audience), _AudienceQueue())
        # Queued even when it cannot share a batch: only senders wait for a slot, however many commands are in hand.
        item = _Queued(body, asyncio.get_running_loop().create_future(), alone=alone or not batchable(body))
        queue.pending.append(item)
        self._ensure_sender(client, audience, queue, arriving=True)
        try:
            return await asyncio.shield(item.done)
        except asyncio.CancelledError:
            # Not yet taken: it is never sent. Taken: the request finishes without us; the command stays
            # uncommitted and its repeat is an upsert, harmless.
            with contextlib.suppress(ValueError):
                queue.pending.remove(item)
            raise

    def _ensure_sender(
        self,
        client: MailchimpClient,
        audience: str,
        queue: _AudienceQueue,
        *,
        arriving: bool = False,
        filling: bool = False,
    ) -> None:
        """A sender already waiting for a slot takes what is queued along; otherwise one more starts, up to one per
        connection Mailchimp allows. Only senders wait on the limiter, so a backlog of thousands of commands is at
        most `max_connections` waiters per audience, not one poller of Redis each. For an upsert `arriving` while
        requests are out, only once a request's worth is queued (the senders out take it otherwise); `filling`: for
        more of what queued while requests were out (the new sender takes at least a request's worth too)."""
        if queue.pending and queue.waiting == 0 and queue.senders < self._max_connections:
            if arriving and queue.senders > 0:
                if len(queue.pending) < self._fill:
                    return
                filling = True
            queue.senders += 1
            queue.waiting += 1
            sender = asyncio.create_task(
                self._send(client, audience, queue, filling=filling), name=f"mailchimp-sender-{audience}"
            )
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)

    async def _send(
        self, client: MailchimpClient, audience: str, queue: _AudienceQueue, *, filling: bool = False
    ) -> None:
        """Serves the queue one request per slot until nothing is left for it to take. Starts counted as waiting;
        `filling`: started for a request's worth queued while others were out (it takes at least that)."""
        waiting = True
        try:
            while queue.pending:
                if not waiting:
                    queue.waiting += 1
                    waiting = True
                taken: list[_Queued] = []
                try:
                    async with client.slot(Priority.LIVE) as session:
                        queue.waiting -= 1
                        waiting = False
                        taken = queue.take(self._share(queue, filling=filling))
                        # More than one request's worth queued: the next sender waits for a slot meanwhile.
                        self._ensure_sender(client, audience, queue, filling=filling)
                        # Back for more, this sender finds what arrived while its request was out.
                        filling = True
                        if len(taken) == 1:
                            await self._send_alone(session, audience, taken[0])
                        elif taken:
                            await self._send_batch(session, audience, queue, taken)
                except MailchimpError as exc:
                    # No slot within the wait bound (or no limiter at all): everything queued gets the transient
                    # outcome a PUT would. Failing all, not only the oldest, keeps any command's wait within one
                    # bound, far inside its claim's lifetime (`inflight_ttl_s`).
                    queue.fail_all(failed(exc.error))
                except asyncio.CancelledError:
                    for item in taken:
                        item.resolve(failed(STOPPING))
                    raise
                except Exception as exc:  # a bug here must not leave writers waiting forever
                    log.exception("Mailchimp sender failed", audience=audience)
                    error = ErrorInfo(
                        error_class=type(exc).__name__, message=f"Mailchimp write failed: {exc}", permanent=False
                    )
                    for item in taken:
                        item.resolve(failed(error))
                    if not taken:  # it failed before taking anything: it would fail again at once
                        queue.fail_all(failed(error))
        finally:
            if waiting:
                queue.waiting -= 1
            queue.senders -= 1

    def _share(self, queue: _AudienceQueue, *, filling: bool = False) -> int:
        """How many queued upserts this sender takes: what is queued, spread over the connections not sending yet
        (this one included), at most `batch_max`. Mailchimp allows ten connections; a backlog goes out as ten
        medium batches side by side rather than one big batch after another, so every allowed connection works and
        no member waits behind a batch it could have had a connection of its own for. `filling` (what queued while
        requests were out): at least `fill`, so a trickle goes out in requests of that size, not of a few each."""
        sending = queue.senders - queue.waiting  # this sender included: it holds a slot now
        free = max(1, self._max_connections - sending + 1)
        spread = math.ceil(len(queue.pending) / free)
        return min(self._batch_max, max(1, spread, self._fill if filling else 1))

    @staticmethod
    async def _send_alone(session: MailchimpSession, audience: str, item: _Queued) -> None:
        email = item.body["email_address"]
        try:
            reply = await session.request("PUT", member_path(audience, email), json=item.body)
        except MailchimpError as exc:
            item.resolve(not_written(exc))
            return
        item.resolve(upserted(reply, email))

    @classmethod
    async def _send_batch(
        cls,
        session: MailchimpSession,
        audience: str,
        queue: _AudienceQueue,
        taken: list[_Queued],
        *,
        again: bool = False,
    ) -> None:
        body = batch_subscribe_body([item.body for item in taken])
        try:
            reply = await session.request("POST", f"/lists/{audience}", json=body)
        except MailchimpError as exc:
            named = invalid_items(exc.problem, len(taken)) if exc.status == 400 else {}
            if named and not again:
                # A schema-invalid item fails the whole call and is named as `members.item:N` (mailchimp-api.md
                # §10): exactly those are refused for good, with their reasons; the rest go again once, together.
                for index, reasons in named.items():
                    taken[index].resolve(refused(invalid_item_error(reasons)))
                rest = [item for index, item in enumerate(taken) if index not in named]
                if rest:
                    await cls._send_batch(session, audience, queue, rest, again=True)
            elif exc.status is not None and exc.error.permanent:
                # Refused as a whole without naming items (a key, the audience), or again after a resend: each
                # member's own PUT says what is wrong with it, exactly as it would have without batching.
                _again(queue, taken)
            else:
                for item in taken:
                    item.resolve(not_written(exc))
            return
        answers = batch_answers(reply.document)
        if answers is None:
            for item in taken:
                item.resolve(unexpected(reply))
            return
        unanswered = []
        for item in taken:
            member = answers.get(item.member_id)
            if member is None:
                unanswered.append(item)
                continue
            item.resolve(member_is(member, item.body["email_address"]))
        # A member the batch refused (or did not mention) is written again on its own with the PUT: the batch
        # reports a refusal as a bare message and code, without the HTTP status, title and field details that
        # `classify_response` needs to tell permanent from transient and to explain it; the PUT gives exactly the
        # answer the command would have had without batching. An upsert repeated is harmless.
        _again(queue, unanswered)

    async def close(self) -> None:
        for sender in list(self._senders):
            sender.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        for queue in self._queues.values():
            queue.fail_all(failed(STOPPING))
        self._queues.clear()
