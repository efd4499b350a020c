"""The mapper service: ChangeEvents → SyncCommands and trace records, on ports only (producer, state, registry).

The rules are in `domain`; this module reads the state they need, publishes what they decide and writes the state
they leave, in as few round trips as a batch allows. `entrypoint` feeds it batches from `tandem.changes`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

from tandem_mapper.domain import knowledge
from tandem_mapper.domain.batching import rounds
from tandem_mapper.domain.decision import decide
from tandem_mapper.domain.model import HoldAt, Knowledge, MergeSeen, MoveState, RememberUserEmail, StateUpdate
from tandem_mapper.domain.release_check import with_release_check
from tandem_mapper.held import HeldChange, HeldChanges
from tandem_mapper.release import HeldRelease
from tandem_mapper.settings import MapperSettings
from tandem_mapper.trace import MapperStep
from tandem_shared.contracts import ChangeEvent, InstanceConfig, SyncCommand, TraceRecord, utcnow
from tandem_shared.contracts.envelopes import command_envelope, trace_envelope
from tandem_shared.ids import new_id
from tandem_shared.instances import InstanceRegistry, missing_instance
from tandem_shared.kafka import Producer, send_envelope
from tandem_shared.metrics import MAPPER_DECISIONS
from tandem_shared.redis.state import StateStore, StateTransaction
from tandem_shared.sync.rules import StateSnapshot
from tandem_shared.tracing import publish_trace

Work = list[tuple[ChangeEvent, InstanceConfig]]


class Mapper:
    def __init__(
        self,
        producer: Producer,
        settings: MapperSettings,
        registry: InstanceRegistry,
        state: StateStore,
        *,
        deletions: Callable[[Sequence[ChangeEvent]], Awaitable[None]] | None = None,
    ) -> None:
        """`deletions` sees every batch first: reconciliation's tombstones of the contacts deleted on a side."""
        self._producer = producer
        self._deletions = deletions
        self._registry = registry
        self._state = state
        self._release = HeldRelease(HeldChanges(state.held), registry, self._release_one, sweep_s=settings.held_sweep_s)
        registry.on_change(self._release.instance_changed)
        registry.on_delete(self._release.instance_deleted)

    async def start(self) -> None:
        """After the broker is connected: release what was held for resumed instances, and keep looking."""
        await self._release.start()

    async def stop(self) -> None:
        await self._release.stop()

    def kick(self, instance_id: str) -> None:
        """Release the instance's held changes in the background (no-op when already under way here)."""
        self._release.kick(instance_id)

    # -- consuming -------------------------------------------------------------------------------------------

    async def on_change(self, event: ChangeEvent) -> None:
        await self.on_changes([event])

    async def on_changes(self, events: Sequence[ChangeEvent]) -> None:
        """Decide a batch of changes; returns once everything it led to is durable (the offsets may be committed).

        Round trips per batch, not per change: per round (see `batching`) one Redis read, the notes of the writes
        about to be sent, one wait for Kafka's acknowledgement of the round's commands and trace records, then the
        round's state in one transaction. The state is written only once the commands it reflects are
        acknowledged: a batch that fails is decided again, and a change whose state was not written yet is decided
        the same way again (its command's idempotency key depends on its content only, so the writer applies it
        once); a change of an earlier round whose state was written finds nothing new and sends nothing twice.
        """
        if self._deletions is not None:
            await self._deletions(events)
        batch = _Batch(self._state.transaction())
        instances: dict[str, InstanceConfig | None] = {}
        candidates: Work = []
        for event in events:
            if event.instance_id not in instances:
                instances[event.instance_id] = self._registry.get(event.instance_id)
            instance = instances[event.instance_id]
            if instance is None:
                batch.deliveries.append(
                    await self._send_trace(
                        MapperStep(event, None).unknown_instance(missing_instance(self._registry, event.instance_id))
                    )
                )
            elif instance.paused:
                summary = "Held: the instance is paused; processed in order on resume"
                await self._hold(batch, event, instance, summary)
            else:
                candidates.append((event, instance))

        plan = [[candidates[i] for i in positions] for positions in rounds([e for e, _ in candidates])]
        backlogs = list(dict.fromkeys(instance.id for _, instance in candidates))
        snapshot: StateSnapshot | None = await self._load(plan[0] if plan else [], backlogs=backlogs)
        waiting = {i: n for i in backlogs if snapshot is not None and (n := snapshot.backlog(i))}
        behind = set(waiting)
        if behind:
            for event, instance in candidates:
                if instance.id in behind:
                    summary = f"Held behind {waiting[instance.id]} earlier change(s) being released in order"
                    await self._hold(batch, event, instance, summary)
                    waiting[instance.id] += 1
            plan = [kept for work in plan if (kept := [(e, i) for e, i in work if i.id not in behind])]
            snapshot = None  # loaded for a first round that is not the first any more

        for index, work in enumerate(plan):
            known = snapshot if index == 0 and snapshot is not None else await self._load(work)
            await self._decide_round(batch, work, known, last=index == len(plan) - 1)
        if not plan:
            await _wait(batch.deliveries)
            await batch.final_writes.execute()
        for instance_id in behind:
            self.kick(instance_id)

    async def _hold(self, batch: _Batch, event: ChangeEvent, instance: InstanceConfig, summary: str) -> None:
        HeldChanges.park_with(batch.final_writes, event, while_paused=instance.paused, version=instance.version)
        batch.deliveries.append(await self._send_trace(MapperStep(event, instance).held(summary)))

    async def process(self, event: ChangeEvent, instance: InstanceConfig) -> None:
        """Decide one change of an instance that is known to take it now (a held change being released)."""
        batch = _Batch(self._state.transaction())
        work = [(event, instance)]
        await self._decide_round(batch, work, await self._load(work), last=True, released=True)

    async def _decide_round(
        self, batch: _Batch, work: Work, loaded: StateSnapshot, *, last: bool, released: bool = False
    ) -> None:
        """Decide changes that share no state; the batch's held changes are parked with its last round's state.
        A held change being `released` has its command checked on the target first (`domain.release_check`)."""
        known = await self._complete(work, loaded)
        expected = self._state.transaction()
        updates = batch.final_writes if last else self._state.transaction()
        commands: list[SyncCommand] = []
        records: list[TraceRecord] = []
        for event, instance in work:
            step = MapperStep(event, instance)
            decision = decide(event, instance, known[event.event_id], command_id=new_id(), now=utcnow())
            if released and decision.command is not None:
                decision = replace(decision, command=with_release_check(decision.command, known[event.event_id]))
            MAPPER_DECISIONS.labels(flow=event.flow.value, status=decision.status.value).inc()
            for command in (decision.command, decision.repair):
                if command is not None:
                    expected.expect_write(command)
                    commands.append(command)
            _apply(updates, instance.id, decision.updates)
            records.append(step.decided(decision))
        # The note of what Tandem is about to write precedes the command: its echo may come back at once.
        await expected.execute()
        for command in commands:
            batch.deliveries.append(await self._send_command(command))
        for record in records:
            batch.deliveries.append(await self._send_trace(record))
        await _wait(batch.deliveries)
        await updates.execute()

    async def _send_command(self, command: SyncCommand) -> asyncio.Future[object]:
        return await send_envelope(self._producer, command_envelope(command))

    async def _send_trace(self, record: TraceRecord) -> asyncio.Future[object]:
        # Waited for with the batch's commands (unlike `publish_trace`): the offsets follow the trace.
        return await send_envelope(self._producer, trace_envelope(record))

    async def _load(self, work: Work, *, backlogs: Sequence[str] = ()) -> StateSnapshot:
        reads = knowledge.reads(work)
        return await self._state.load_many(reads.sides, user_ids=reads.user_ids, backlogs=backlogs)

    async def _complete(self, work: Work, loaded: StateSnapshot) -> dict[str, Knowledge]:
        """What `decide` needs for each change: further reads for the old addresses of email changes and for where
        a target holds a contact it refused to move, if any (an old address's state may name where, hence two)."""
        for _ in range(2):
            missing = knowledge.missing(work, loaded)
            if not missing:
                break
            loaded = loaded.extend(await self._state.load_many(missing))
        return knowledge.knowledge(work, loaded)

    # -- releasing held changes ------------------------------------------------------------------------------

    async def _release_one(self, held: HeldChange, instance: InstanceConfig) -> None:
        if held.discarded_by(instance):
            await publish_trace(self._producer, MapperStep(held.event, instance).discarded())
            return
        await self.process(held.event, instance)


@dataclass
class _Batch:
    """What a batch leaves for its end: the writes that go with its last round's state (its held changes, parked
    only when everything else of the batch is durable, so a batch decided again never parks one twice) and the
    publishes to wait for before the offsets are committed."""

    final_writes: StateTransaction
    deliveries: list[asyncio.Future[object]] = field(default_factory=list)


async def _wait(deliveries: list[asyncio.Future[object]]) -> None:
    """Wait for Kafka's acknowledgement of every publish handed to the producer; raise the first refusal."""
    pending = list(deliveries)
    deliveries.clear()
    results = await asyncio.gather(*pending, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _apply(writes: StateTransaction, instance_id: str, updates: list[StateUpdate]) -> None:
    """A decision's state updates, queued on the transaction that applies them."""
    for update in updates:
        if isinstance(update, MoveState):
            writes.move(instance_id, update.system, update.old_email, update.new_email, update.moved_ms)
        elif isinstance(update, MergeSeen):
            writes.merge(
                instance_id,
                update.system,
                update.email,
                update.digests,
                source_ts_ms=update.source_ts_ms,
                origin="seen",
            )
        elif isinstance(update, RememberUserEmail):
            writes.set_user_email(instance_id, update.user_id, update.email)
        elif isinstance(update, HoldAt):
            writes.hold_at(instance_id, update.system, update.email, update.held_at)
