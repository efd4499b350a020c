"""What every target (Mailchimp, accessplanit) offers the writer."""

from __future__ import annotations

from typing import Protocol

from tandem_shared.contracts import InstanceConfig, SyncCommand, System
from tandem_writer.domain.outcome import WriteOutcome


class Target(Protocol):
    """One vendor API, written to by the delivery layer (`tandem_writer.delivery`).

    The contract between the two:

    - `write` makes one attempt and reports it as a `WriteOutcome`; it does not retry by itself beyond a short
      in-request back-off, and it raises only for bugs (treated as a transient failure). `error.permanent` decides:
      permanent errors go to the dead-letter topic at once, transient ones are retried on the retry tiers.
    - The delivery layer calls `write` only while it holds the command's claim and the contact's lock in Redis, so
      for one contact of one instance there is never more than one write in flight, across all writer processes.
    - A command may be written more than once: a writer can die after the vendor applied the write and before the
      write was recorded as applied. Its claim then expires (`TANDEM_WRITER_INFLIGHT_TTL_S`) and the command is
      attempted again. `write` must make that repeat harmless: an upsert keyed by the contact (Mailchimp's PUT by
      subscriber hash), or a look-up before any create (an accessplanit user by email) so a user created by the
      attempt that died is found and updated, never created twice.
    - Commands for one contact may arrive out of order (a retry after a newer change); the delivery layer drops a
      command older than the newest one applied to the contact before `write` is called.
    """

    system: System

    async def write(self, command: SyncCommand, instance: InstanceConfig) -> WriteOutcome: ...

    async def close(self) -> None: ...
