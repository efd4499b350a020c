"""accessplanit specifics shared by the webhook route and the poller: reading users, marking Tandem's own writes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from tandem_ingest.domain.cursor import NEWEST_FIRST, ORDER, Position, page_filter, record_position
from tandem_ingest.domain.normalize.accessplanit import WebhookDelivery, removed_user_event, webhook_event
from tandem_shared.contracts import ChangeEvent, Headers, InstanceConfig, Trigger
from tandem_shared.vendors.accessplanit.client import AccessplanitClients
from tandem_shared.vendors.priority import Priority

# The poll carries changes to Mailchimp as the webhooks do (the ones they missed): the live path.
POLL_PRIORITY = Priority.LIVE


class UserReader(Protocol):
    async def get_user(self, instance: InstanceConfig, user_id: str) -> dict[str, Any] | None:
        """The user's current record, None once accessplanit no longer has it; raises AccessplanitError."""
        ...


class ApiUserReader:
    def __init__(self, clients: AccessplanitClients) -> None:
        self._clients = clients

    async def get_user(self, instance: InstanceConfig, user_id: str) -> dict[str, Any] | None:
        # The record a webhook announced, read to publish the change: part of the live path.
        return await self._clients.for_instance(instance).get_user(user_id, priority=Priority.LIVE)


def own_write_marks(event: ChangeEvent, instance: InstanceConfig) -> tuple[list[str], dict[str, str]]:
    """Trace notes and Kafka headers for a change made by the integration's own API user (an echo candidate)."""
    own = instance.accessplanit.integration_user_id
    if own is None or event.updated_by_id != own:
        return [], {}
    note = f"Changed by accessplanit user {own}, the integration's own API user: this is Tandem's own write"
    return [note], {Headers.ORIGIN: "tandem"}


async def delivery_event(
    delivery: WebhookDelivery,
    instance: InstanceConfig,
    reader: UserReader,
    *,
    trusted: bool,
    execution_id: str,
    received_at: datetime,
) -> ChangeEvent:
    """The delivery's change. The record is read from the API when the delivery only names the user (IDs-only
    payloads) or when it is not signed: then only the API, with the instance's own key, is believed."""
    record = delivery.record if trusted else None
    if record is None:
        record = await reader.get_user(instance, delivery.user_id)
        if record is None:
            return removed_user_event(
                instance_id=instance.id,
                user_id=delivery.user_id,
                occurred_at=delivery.timestamp or received_at,
                trigger=Trigger.WEBHOOK,
                execution_id=execution_id,
                received_at=received_at,
                source_action=f"{delivery.action} (the user no longer exists)",
            )
    return webhook_event(delivery, record, instance_id=instance.id, execution_id=execution_id, received_at=received_at)


class ApiChangedUsers:
    """The catch-up poller's reads: pages of users in (DateUpdated, ID) order, with the instance's own key."""

    def __init__(self, clients: AccessplanitClients) -> None:
        self._clients = clients

    async def newest(self, instance: InstanceConfig) -> Position:
        """Where the newest change is now (the start of a first poll); Position(None) when there is no user."""
        newest = await self._clients.for_instance(instance).list_users(
            filter="",
            orderby=NEWEST_FIRST,
            top=1,
            select="ID,DateUpdated",
            action="find the newest change",
            priority=POLL_PRIORITY,
        )
        position = record_position(newest[0]) if newest else None
        return position or Position(None)

    async def page(self, instance: InstanceConfig, after: Position, size: int) -> list[dict[str, Any]]:
        return await self._clients.for_instance(instance).list_users(
            filter=page_filter(after),
            orderby=ORDER,
            top=size,
            action="read users changed since the last poll",
            priority=POLL_PRIORITY,
        )
