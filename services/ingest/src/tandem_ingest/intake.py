"""The one way a change enters Kafka: claimed by its event id first, so a change received twice is published once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from tandem_ingest.dedupe import Claim, ClaimsUnavailable, EventClaims
from tandem_ingest.publishing import KafkaUnavailable
from tandem_shared.contracts import ChangeEvent, Stage
from tandem_shared.logging import get_logger

log = get_logger("tandem.ingest")


class EventPublisher(Protocol):
    async def publish(
        self,
        event: ChangeEvent,
        *,
        stage: Stage = Stage.INGEST,
        notes: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None: ...


class Intake:
    def __init__(self, publisher: EventPublisher, claims: EventClaims) -> None:
        self._publisher = publisher
        self._claims = claims

    async def submit(
        self,
        event: ChangeEvent,
        *,
        stage: Stage,
        notes: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> Claim:
        """NEW once Kafka has the event; DONE/IN_FLIGHT when it was (being) published already.

        Raises KafkaUnavailable (the claim is given back) or ClaimsUnavailable (nothing was published).
        """
        state = await self._claims.claim(event.instance_id, event.event_id)
        if state is not Claim.NEW:
            return state
        try:
            await self._publisher.publish(event, stage=stage, notes=notes, headers=headers)
        except Exception:
            try:
                await self._claims.release(event.instance_id, event.event_id)
            except ClaimsUnavailable:
                log.warning("claim not released; it expires on its own", event_id=event.event_id)
            raise
        try:
            await self._claims.confirm(event.instance_id, event.event_id)
        except ClaimsUnavailable:
            # Kafka has the event: success. Only the duplicate guard is weaker until the pending claim expires.
            log.warning("published event not marked done in Redis", event_id=event.event_id)
        return Claim.NEW


class BeingStored(Exception):
    """Another delivery of the same change holds its claim and is publishing it right now."""


class DedupedSink:
    """`publish(event)` through the intake, for routes that answer 2xx once the change is stored, whether now or
    by an earlier delivery of it (a vendor's redelivery is acknowledged, not published twice)."""

    def __init__(self, intake: Intake) -> None:
        self._intake = intake

    async def publish(self, event: ChangeEvent) -> None:
        try:
            state = await self._intake.submit(event, stage=Stage.INGEST)
        except ClaimsUnavailable as exc:
            raise KafkaUnavailable(f"duplicate check unavailable: {exc}") from exc
        if state is Claim.IN_FLIGHT:
            # Another request is storing this very change; a retry will find it stored.
            raise BeingStored(event.event_id)
