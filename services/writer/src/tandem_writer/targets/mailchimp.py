"""Mailchimp target: member upserts and email changes through the vendor client (`tandem_shared.vendors.mailchimp`).

The client holds one of the account's connection slots (shared by all writer replicas through Redis) for every
request, so Tandem never opens more than Mailchimp's 10 simultaneous connections per account. Plain upserts go
through the group-commit scheduler (`mailchimp_batching`); email changes and bodies the batch endpoint does not
take keep their own request.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from tandem_shared.concurrency import RedisConcurrencyLimiter
from tandem_shared.contracts import ErrorInfo, InstanceConfig, Operation, SyncCommand, System, email_key
from tandem_shared.vendors.mailchimp.bodies import BATCH_MAX_MEMBERS, patch_body, upsert_body
from tandem_shared.vendors.mailchimp.classify import is_email_change_refusal
from tandem_shared.vendors.mailchimp.client import MailchimpClient, MailchimpClients, MailchimpError, member_path
from tandem_shared.vendors.priority import Priority
from tandem_writer.domain.outcome import WriteOutcome
from tandem_writer.settings import WriterSettings
from tandem_writer.targets.mailchimp_batching import UpsertBatcher
from tandem_writer.targets.mailchimp_outcomes import (
    confirmed,
    email_change_refused,
    member,
    not_written,
    refused,
    unexpected,
    upserted,
)


def mailchimp_clients(settings: WriterSettings, redis: Redis) -> MailchimpClients:
    """The account clients behind the connection limiter in Redis: every process that holds them (writer replicas,
    the reconciler) shares each account's 10 connections."""
    limiter = RedisConcurrencyLimiter(
        redis,
        limit=settings.mailchimp_max_connections,
        lease_s=settings.mailchimp_lease_s,
        max_wait_s=settings.mailchimp_slot_wait_s,
    )
    return MailchimpClients(
        limiter=limiter,
        timeout_s=settings.http_timeout_s,
        max_connections=settings.mailchimp_max_connections,
        server_timeout_s=settings.mailchimp_timed_out_slot_hold_s,
        slot_wait_s=settings.mailchimp_slot_wait_s,
    )


class MailchimpTarget:
    system = System.MAILCHIMP

    def __init__(self, clients: MailchimpClients, *, batch_max: int = 1) -> None:
        if not 1 <= batch_max <= BATCH_MAX_MEMBERS:
            raise ValueError(f"batch_max must be between 1 and {BATCH_MAX_MEMBERS}")
        self._clients = clients
        self._batcher = UpsertBatcher(max_connections=clients.max_connections, batch_max=batch_max)

    @property
    def clients(self) -> MailchimpClients:
        """The account clients, shared with the authoritative reads (`tandem_writer.source_check`)."""
        return self._clients

    @classmethod
    def from_settings(cls, settings: WriterSettings, redis: Redis) -> MailchimpTarget:
        """On the writer's Redis client (the connection limiter), which the writer closes itself."""
        return cls(mailchimp_clients(settings, redis), batch_max=settings.mailchimp_batch_max)

    async def write(self, command: SyncCommand, instance: InstanceConfig) -> WriteOutcome:
        body = upsert_body(command.payload, instance.mailchimp.status_if_new)
        if isinstance(body, ErrorInfo):
            return WriteOutcome(False, f"Not sent to Mailchimp: {body.message}", error=body)
        try:
            client = self._clients.for_instance(instance)
        except MailchimpError as exc:
            return WriteOutcome(False, f"Not sent to Mailchimp: {exc.error.message}", error=exc.error)
        audience = instance.mailchimp.audience_id
        old_email = command.identity.old_email
        if (
            command.operation is Operation.CHANGE_EMAIL
            and old_email
            and email_key(old_email) != email_key(body["email_address"])
        ):
            return await self._change_email(client, audience, old_email, body, known_at_old=command.known_at_old)
        return await self._batcher.upsert(client, audience, body, alone=command.operation is not Operation.UPSERT)

    async def _change_email(
        self, client: MailchimpClient, audience: str, old_email: str, body: dict[str, Any], *, known_at_old: bool
    ) -> WriteOutcome:
        """PATCH the old member onto the new address. Mailchimp refuses that for a member who is not subscribed;
        Tandem then stops there: creating a member at the new address would subscribe a contact who opted out
        (unsubscribed, cleaned, archived) or has not confirmed yet (pending). See docs/instances.md."""
        new_email = body["email_address"]
        try:
            reply = await client.request(
                "PATCH", member_path(audience, old_email), json=patch_body(body), priority=Priority.LIVE
            )
        except MailchimpError as exc:
            if exc.status == 404:
                return await self._old_member_gone(client, audience, old_email, body, known_at_old=known_at_old)
            if exc.status == 400 and is_email_change_refusal(exc.problem):
                return refused(email_change_refused(old_email, new_email, exc.error.message))
            return not_written(exc)
        moved = member(reply)
        if moved is None:
            return unexpected(reply)
        return confirmed(moved, f"Mailchimp member {old_email} is now {moved.get('email_address', new_email)}")

    async def _old_member_gone(
        self, client: MailchimpClient, audience: str, old_email: str, body: dict[str, Any], *, known_at_old: bool
    ) -> WriteOutcome:
        """The PATCH found no member to move. The old address is read to tell why: a member who is there but not
        subscribed (archived, where a PATCH may answer 404) is never re-created at the new address; a member truly
        absent (never synced, or a retry after the move already happened) leaves the new address to be upserted,
        which with `status_if_new` never changes the status of a member already at that address. A member Tandem
        knew at the old address and absent from both was moved (or removed) in Mailchimp meanwhile: creating one
        at the new address would leave two (docs/convergence.md, "Moves")."""
        new_email = body["email_address"]
        try:
            found = await _member_at(client, audience, old_email)
            gone = found is None and known_at_old and await _member_at(client, audience, new_email) is None
        except MailchimpError as exc:
            return not_written(exc)
        if found is not None:
            status = str(found.get("status", "unknown"))
            if status != "subscribed":
                reason = f"the member at {old_email} is {status}"
                return refused(email_change_refused(old_email, new_email, reason))
            # Subscribed after all: the PATCH raced with a change in Mailchimp. Worth one more try later.
            error = ErrorInfo(
                error_class="EmailChangeRaced",
                message=f"{old_email} was not found to move but is subscribed in Mailchimp; trying again",
                permanent=False,
            )
            return WriteOutcome(False, f"Mailchimp write unconfirmed: {error.message}", error=error)
        if gone:
            return WriteOutcome(
                True,
                f"Not written to Mailchimp: no member at {old_email}, where Tandem had it, nor at {new_email}: "
                "Mailchimp moved or removed the member while this change was on its way; Mailchimp's own change "
                "decides",
                wrote=False,
            )
        return await self._upsert(client, audience, body, note=f"{old_email} is not in the audience; ")

    async def _upsert(self, client: MailchimpClient, audience: str, body: dict[str, Any], note: str) -> WriteOutcome:
        email = body["email_address"]
        try:
            reply = await client.request("PUT", member_path(audience, email), json=body, priority=Priority.LIVE)
        except MailchimpError as exc:
            return not_written(exc)
        return upserted(reply, email, note)

    async def close(self) -> None:
        await self._batcher.close()
        await self._clients.close()


async def _member_at(client: MailchimpClient, audience: str, email: str) -> dict[str, Any] | None:
    """The member at `email`; None when Mailchimp answers 404 (other refusals are raised)."""
    try:
        return member(await client.request("GET", member_path(audience, email), priority=Priority.LIVE))
    except MailchimpError as exc:
        if exc.status != 404:
            raise
        return None
