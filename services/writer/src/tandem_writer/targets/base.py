"""What every target (Mailchimp, accessplanit) offers the writer."""

from __future__ import annotations

from typing import Protocol

from tandem_shared.contracts import InstanceConfig, SyncCommand, System
from tandem_writer.outcome import WriteOutcome


class Target(Protocol):
    system: System

    async def write(self, command: SyncCommand, instance: InstanceConfig) -> WriteOutcome: ...

    async def close(self) -> None: ...
