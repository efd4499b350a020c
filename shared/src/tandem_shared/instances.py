"""Where services look up instance configurations: the `tandem.instances` topic in production
(`instance_store.TopicInstanceRegistry`), a fixed list in tests that run a handler without a broker.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

from tandem_shared.contracts import (
    AccessplanitConnection,
    Direction,
    FieldMapping,
    InstanceConfig,
    MailchimpConnection,
    Transform,
    utcnow,
)

DEMO_INSTANCE_ID = "demo"

# `listener(old, new)` after each change; new is None when the instance was deleted.
Listener = Callable[[InstanceConfig | None, InstanceConfig | None], Awaitable[None] | None]
# `listener(instance_id, deleted_at)` after each deletion, also of an instance this process never saw configured.
DeleteListener = Callable[[str, datetime], Awaitable[None] | None]


class InstanceRegistry(Protocol):
    def get(self, instance_id: str) -> InstanceConfig | None: ...

    def all(self) -> list[InstanceConfig]: ...

    def on_change(self, listener: Listener) -> None: ...

    def on_delete(self, listener: DeleteListener) -> None: ...

    def deleted_at(self, instance_id: str) -> datetime | None:
        """When the instance was deleted (`tandem instances delete`), as long as it stays deleted; None for an
        instance that exists or was never seen deleted by this process."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def missing_instance(registry: InstanceRegistry, instance_id: str) -> str:
    """Why a record of an instance the registry does not have is not processed (a trace summary)."""
    if registry.deleted_at(instance_id) is not None:
        return f"Dropped: instance {instance_id} was deleted"
    return f"Unknown instance {instance_id}"


class StaticInstanceRegistry:
    def __init__(self, instances: list[InstanceConfig]) -> None:
        self._by_id = {i.id: i for i in instances}
        self._deleted: dict[str, datetime] = {}
        self._listeners: list[Listener] = []
        self._delete_listeners: list[DeleteListener] = []

    def get(self, instance_id: str) -> InstanceConfig | None:
        return self._by_id.get(instance_id)

    def all(self) -> list[InstanceConfig]:
        return list(self._by_id.values())

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def on_delete(self, listener: DeleteListener) -> None:
        self._delete_listeners.append(listener)

    def deleted_at(self, instance_id: str) -> datetime | None:
        return self._deleted.get(instance_id)

    async def put(self, instance: InstanceConfig) -> None:
        """Replace an instance's configuration, as a publish to the topic would."""
        old = self._by_id.get(instance.id)
        self._by_id[instance.id] = instance
        self._deleted.pop(instance.id, None)
        await self._notify(old, instance)

    async def delete(self, instance_id: str, *, at: datetime | None = None) -> None:
        """Remove an instance, as a tombstone on the topic would."""
        old = self._by_id.pop(instance_id, None)
        deleted_at = self._deleted[instance_id] = at or utcnow()
        await self._notify(old, None)
        for listener in self._delete_listeners:
            await settled(listener(instance_id, deleted_at))

    async def _notify(self, old: InstanceConfig | None, new: InstanceConfig | None) -> None:
        for listener in self._listeners:
            await settled(listener(old, new))

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


async def settled(result: Awaitable[None] | None) -> None:
    """A listener's result, awaited when the listener is a coroutine function."""
    if inspect.isawaitable(result):
        await result


def demo_instance(*, signed_accessplanit_webhooks: bool = False) -> InstanceConfig:
    """The instance `make run` registers: both simulators on their default loopback ports, the seed's field set.

    accessplanit documents no webhook signing, so by default deliveries are unsigned, come to a URL with the
    instance's path secret (/webhooks/accessplanit/demo/<secret>) and ingest reads each user back with the instance's
    key. `signed_accessplanit_webhooks` is for a load generator that signs its own deliveries (the simulator's opt-in
    signing assumption) to /webhooks/accessplanit/demo."""
    ap_secret = "env:TANDEM_DEMO_ACCESSPLANIT_WEBHOOK_SECRET" if signed_accessplanit_webhooks else None
    ap_path_secret = None if signed_accessplanit_webhooks else "env:TANDEM_DEMO_ACCESSPLANIT_WEBHOOK_PATH_SECRET"
    return InstanceConfig(
        id=DEMO_INSTANCE_ID,
        name="Demo: accessplanit simulator ⇄ Mailchimp simulator",
        direction=Direction.BOTH,
        mailchimp=MailchimpConnection(
            api_key="env:TANDEM_DEMO_MAILCHIMP_API_KEY",
            audience_id="a1b2c3d4e5",
            api_base_url=os.environ.get("TANDEM_DEMO_MAILCHIMP_URL", "http://127.0.0.1:8101/3.0"),
            webhook_secret="env:TANDEM_DEMO_MAILCHIMP_WEBHOOK_SECRET",
        ),
        accessplanit=AccessplanitConnection(
            base_url=os.environ.get("TANDEM_DEMO_ACCESSPLANIT_URL", "http://127.0.0.1:8102"),
            api_key="env:TANDEM_DEMO_ACCESSPLANIT_API_KEY",
            default_account_id="1",
            integration_user_id="900001",
            webhook_secret=ap_secret,
            webhook_path_secret=ap_path_secret,
        ),
        mappings=[
            FieldMapping(mailchimp="FNAME", accessplanit="Forenames"),
            FieldMapping(mailchimp="LNAME", accessplanit="Surname"),
            FieldMapping(mailchimp="EMAIL", accessplanit="Email"),
            FieldMapping(mailchimp="PHONE", accessplanit="Phone", transform=Transform.PHONE),
        ],
    )
