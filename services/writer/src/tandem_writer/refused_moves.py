"""Records where each side holds a contact whose email change Mailchimp refused (`domain.refused_moves`).

`RefusedMoves` stands in front of a target: every outcome passes through unchanged except a refused email change,
whose addresses it records in the sync state (one transaction), and whose fields it writes to the member at the old
address, before reporting the refusal with both addresses. The outcome stays a permanent failure (no retry:
Mailchimp would refuse again), visible as such in the trace.
"""

from __future__ import annotations

from tandem_shared.contracts import InstanceConfig, SyncCommand, System
from tandem_shared.redis.state import StateStore
from tandem_writer.domain.outcome import WriteOutcome
from tandem_writer.domain.refused_moves import kept_member_write, refused_move, with_fields
from tandem_writer.targets.base import Target


class RefusedMoves:
    def __init__(self, inner: Target, state: StateStore | None) -> None:
        self.system = inner.system
        self._inner = inner
        self._state = state

    async def write(self, command: SyncCommand, instance: InstanceConfig) -> WriteOutcome:
        outcome = await self._inner.write(command, instance)
        refused = refused_move(command, outcome.error)
        if refused is None or self._state is None:
            return outcome
        transaction = self._state.transaction()
        # At the address each side does not hold the contact at, where it is instead.
        transaction.hold_at(instance.id, System.MAILCHIMP, refused.accessplanit_email, refused.mailchimp_email)
        transaction.hold_at(instance.id, System.ACCESSPLANIT, refused.mailchimp_email, refused.accessplanit_email)
        await transaction.execute()
        summary = refused.summary
        kept = kept_member_write(command, refused)
        if kept is not None:
            written = await self._inner.write(kept, instance)
            if written.ok and written.wrote:
                await self._state.record_written(written.written or kept)
            summary = with_fields(refused, kept, written.ok, written.summary)
        # The dead-letter trace shows the error's message: it carries the whole account.
        error = outcome.error.model_copy(update={"message": summary}) if outcome.error else None
        return WriteOutcome(False, summary, outcome.response, error, outcome.written, outcome.wrote)

    async def close(self) -> None:
        await self._inner.close()
