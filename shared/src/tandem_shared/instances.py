"""Where services look up instance configurations: the `tandem.instances` topic in production
(`instance_store.TopicInstanceRegistry`), a fixed list in tests that run a handler without a broker.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable
from typing import Protocol

from tandem_shared.contracts import (
    AccessplanitConnection,
    Direction,
    FieldMapping,
    InstanceConfig,
    MailchimpConnection,
)

DEMO_INSTANCE_ID = "demo"

# `listener(old, new)` after each change; new is None when the instance was deleted.
Listener = Callable[[InstanceConfig | None, InstanceConfig | None], Awaitable[None] | None]


class InstanceRegistry(Protocol):
    def get(self, instance_id: str) -> InstanceConfig | None: ...

    def all(self) -> list[InstanceConfig]: ...

    def on_change(self, listener: Listener) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class StaticInstanceRegistry:
    def __init__(self, instances: list[InstanceConfig]) -> None:
        self._by_id = {i.id: i for i in instances}
        self._listeners: list[Listener] = []

    def get(self, instance_id: str) -> InstanceConfig | None:
        return self._by_id.get(instance_id)

    def all(self) -> list[InstanceConfig]:
        return list(self._by_id.values())

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def put(self, instance: InstanceConfig) -> None:
        """Replace an instance's configuration, as a publish to the topic would."""
        old = self._by_id.get(instance.id)
        self._by_id[instance.id] = instance
        for listener in self._listeners:
            result = listener(old, instance)
            if inspect.isawaitable(result):
                await result

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def demo_instance() -> InstanceConfig:
    """The instance `make run` registers: both simulators on their default loopback ports, the seed's field set."""
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
            webhook_secret="env:TANDEM_DEMO_ACCESSPLANIT_WEBHOOK_SECRET",
        ),
        mappings=[
            FieldMapping(mailchimp="FNAME", accessplanit="Forenames"),
            FieldMapping(mailchimp="LNAME", accessplanit="Surname"),
            FieldMapping(mailchimp="EMAIL", accessplanit="Email"),
        ],
    )
