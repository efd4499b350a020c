"""The console's use cases, shared by the JSON API and the web pages."""

from __future__ import annotations

import asyncio
from datetime import datetime

from tandem_console.actions import ActionError, InstanceActions, Replayer
from tandem_console.domain import chronological, has_source_step
from tandem_console.filters import ExecutionFilter
from tandem_console.models import (
    ExecutionDetail,
    ExecutionOut,
    ExecutionPage,
    InstanceSummary,
    LogOut,
    PauseOut,
    ReplayOut,
    ReplaySetOut,
    ReplaySkipped,
    StepOut,
    Timeline,
    TimelineEntry,
)
from tandem_console.settings import ConsoleSettings
from tandem_console.store import Cursor, TraceStore
from tandem_shared.contracts import InstanceConfig
from tandem_shared.instances import InstanceRegistry
from tandem_shared.logging import get_logger

log = get_logger("tandem.console")

TIMELINE_LIMIT = 200


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


class Console:
    def __init__(
        self,
        settings: ConsoleSettings,
        store: TraceStore,
        registry: InstanceRegistry,
        instance_actions: InstanceActions,
        replayer: Replayer,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self._instance_actions = instance_actions
        self._replayer = replayer

    async def executions(self, where: ExecutionFilter, *, limit: int, before: str | None = None) -> ExecutionPage:
        try:
            cursor = Cursor.decode(before) if before else None
        except ValueError as exc:
            raise ActionError(422, str(exc)) from exc
        page = await asyncio.to_thread(self.store.list_executions, where, limit=limit, before=cursor)
        return ExecutionPage(items=[ExecutionOut.of(e) for e in page.items], next_cursor=page.next_cursor)

    async def detail(self, execution_id: str, *, errors_only: bool = False) -> ExecutionDetail:
        summary = await asyncio.to_thread(self.store.execution, execution_id)
        if summary is None:
            raise ActionError(404, f"no execution {execution_id!r}")
        records = chronological((await asyncio.to_thread(self.store.records, [execution_id])).get(execution_id, []))
        derived = await asyncio.to_thread(self.store.derived_from, execution_id)
        logs = [
            LogOut(at=line.at, level=line.level, stage=r.stage, attempt=r.attempt, message=line.message)
            for r in records
            for line in r.logs
            if not errors_only or line.level == "error"
        ]
        return ExecutionDetail(
            execution=ExecutionOut.of(summary),
            steps=[StepOut.of(r, errors_only=errors_only, masked=self.settings.masked) for r in records],
            logs=sorted(logs, key=lambda line: line.at),
            errors_only=errors_only,
            retries_and_replays=[ExecutionOut.of(e) for e in derived],
            replayable=has_source_step(records),
        )

    async def timeline(
        self, *, email: str | None, accessplanit_user_id: str | None, instance: str | None = None
    ) -> Timeline:
        if not email and not accessplanit_user_id:
            raise ActionError(422, "give an email address or an accessplanit user id")
        where = ExecutionFilter(email=email, accessplanit_user_id=accessplanit_user_id, instance=instance)
        page = await asyncio.to_thread(self.store.list_executions, where, limit=TIMELINE_LIMIT)
        records = await asyncio.to_thread(self.store.records, [e.execution_id for e in page.items])
        return Timeline(
            email=email,
            accessplanit_user_id=accessplanit_user_id,
            entries=[
                TimelineEntry(
                    execution=ExecutionOut.of(e),
                    steps=[
                        StepOut.of(r, masked=self.settings.masked)
                        for r in chronological(records.get(e.execution_id, []))
                    ],
                )
                for e in page.items
            ],
        )

    async def _summary(self, config: InstanceConfig) -> InstanceSummary:
        counts = await asyncio.to_thread(self.store.status_counts, config.id)
        last_run = await asyncio.to_thread(self.store.last_run, config.id)
        return InstanceSummary.of(config, last_run, counts)

    async def _deleted_summary(self, instance_id: str, deleted_at: datetime) -> InstanceSummary:
        counts = await asyncio.to_thread(self.store.status_counts, instance_id)
        last_run = await asyncio.to_thread(self.store.last_run, instance_id)
        return InstanceSummary.deleted(instance_id, deleted_at, last_run, counts)

    async def instance_deleted(self, instance_id: str, deleted_at: datetime) -> None:
        """The registry saw a tombstone: stored for good (compaction removes the tombstone from the topic)."""
        try:
            await asyncio.to_thread(self.store.record_deletion, instance_id, deleted_at)
        except Exception as exc:  # the registry must go on; the page falls back on the registry's own memory
            log.error("instance deletion not stored", instance_id=instance_id, error=str(exc))

    async def _deletions(self) -> dict[str, datetime]:
        """Instances deleted and not re-created since."""
        stored = await asyncio.to_thread(self.store.deletions)
        return {i: at for i, at in stored.items() if self.registry.get(i) is None}

    async def deleted_at(self, instance_id: str) -> datetime | None:
        if self.registry.get(instance_id) is not None:
            return None
        return (await self._deletions()).get(instance_id) or self.registry.deleted_at(instance_id)

    async def _refuse_if_deleted(self, instance_id: str, refused: str) -> None:
        deleted_at = await self.deleted_at(instance_id)
        if deleted_at is not None:
            raise ActionError(409, f"instance {instance_id!r} was deleted at {_when(deleted_at)}: {refused}")

    async def instances(self) -> list[InstanceSummary]:
        live = [await self._summary(c) for c in self.registry.all()]
        deleted = [await self._deleted_summary(i, at) for i, at in (await self._deletions()).items()]
        return sorted([*live, *deleted], key=lambda i: i.id)

    async def instance(self, instance_id: str) -> InstanceSummary:
        config = self.registry.get(instance_id)
        if config is not None:
            return await self._summary(config)
        deleted_at = await self.deleted_at(instance_id)
        if deleted_at is None:
            raise ActionError(404, f"no instance {instance_id!r}")
        return await self._deleted_summary(instance_id, deleted_at)

    async def set_paused(self, instance_id: str, paused: bool, *, discard_held: bool = False) -> PauseOut:
        verb = "paused" if paused else "resumed"
        await self._refuse_if_deleted(instance_id, f"a deleted instance cannot be {verb}")
        result = await self._instance_actions.set_paused(instance_id, paused, discard_held=discard_held)
        return PauseOut(changed=result.changed, instance=await self._summary(result.instance))

    async def replay(self, execution_id: str) -> ReplayOut:
        summary = await asyncio.to_thread(self.store.execution, execution_id)
        if summary is not None:
            await self._refuse_if_deleted(summary.instance_id, "its executions are kept but not replayed")
        try:
            replayed = await asyncio.wait_for(
                self._replayer.replay(execution_id), timeout=self.settings.publish_timeout_s
            )
        except ActionError:
            raise
        except Exception as exc:  # Kafka did not take the event (or could not be read): nothing was replayed
            raise ActionError(503, f"the replay could not be published: {exc}") from exc
        return ReplayOut(**replayed.__dict__)

    async def replay_set(self, where: ExecutionFilter) -> ReplaySetOut:
        limit = self.settings.replay_limit
        page = await asyncio.to_thread(self.store.list_executions, where, limit=limit)
        if page.next_cursor is not None:
            raise ActionError(409, f"more than {limit} executions match; narrow the filters and replay again")
        replayed: list[ReplayOut] = []
        skipped: list[ReplaySkipped] = []
        # Oldest first, so each contact's changes are replayed in the order they happened.
        for execution in sorted(page.items, key=lambda e: (e.started_at, e.execution_id)):
            try:
                replayed.append(await self.replay(execution.execution_id))
            except ActionError as exc:
                if exc.status == 503:
                    raise ActionError(
                        503, f"{exc.message}; {len(replayed)} of {len(page.items)} were replayed before it"
                    ) from exc
                skipped.append(ReplaySkipped(execution_id=execution.execution_id, reason=exc.message))
        return ReplaySetOut(matched=len(page.items), replayed=replayed, skipped=skipped)
