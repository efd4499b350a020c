"""Where services look up instance configurations.

For now a static registry (a JSON file, or the demo instance); the `tandem.instances` topic replaces it later
behind the same `get` / `all` interface.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

from tandem_shared.contracts import (
    AccessplanitConnection,
    Direction,
    FieldMapping,
    InstanceConfig,
    MailchimpConnection,
)

DEMO_INSTANCE_ID = "demo"


class InstanceRegistry(Protocol):
    def get(self, instance_id: str) -> InstanceConfig | None: ...

    def all(self) -> list[InstanceConfig]: ...


class StaticInstanceRegistry:
    def __init__(self, instances: list[InstanceConfig]) -> None:
        self._by_id = {i.id: i for i in instances}

    def get(self, instance_id: str) -> InstanceConfig | None:
        return self._by_id.get(instance_id)

    def all(self) -> list[InstanceConfig]:
        return list(self._by_id.values())

    @classmethod
    def from_file(cls, path: Path) -> StaticInstanceRegistry:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return cls([InstanceConfig.model_validate(item) for item in raw])


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


def load_registry(instances_file: Path | None) -> StaticInstanceRegistry:
    if instances_file is not None:
        return StaticInstanceRegistry.from_file(instances_file)
    return StaticInstanceRegistry([demo_instance()])
