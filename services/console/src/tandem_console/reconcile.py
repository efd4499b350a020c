"""Reconciliation in the console: the instance page's button requests a run (an operator action, like pause), and
the page shows the instance's latest run as the writer reports it on `tandem.reconcile.runs`.

The console only publishes the request; the writer executes it (it holds the vendor credentials).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ValidationError

from tandem_console.access import OPERATOR
from tandem_console.actions import ActionError
from tandem_console.ui import error_page
from tandem_shared.contracts import utcnow
from tandem_shared.contracts.envelopes import reconcile_request_envelope
from tandem_shared.contracts.reconcile import ReconcileProgress, ReconcileRequest, ReconcileUpdate, RequestedBy
from tandem_shared.contracts.topics import RECONCILE_RUNS
from tandem_shared.instances import InstanceRegistry
from tandem_shared.kafka import KafkaConnection, Producer
from tandem_shared.kafka.follower import Record, TopicFollower
from tandem_shared.kafka.producer import send_envelope
from tandem_shared.logging import get_logger

log = get_logger("tandem.console.reconcile")


class ReconcileRuns:
    """The latest run of each instance (followed from the topic), and the requests the button publishes."""

    def __init__(
        self, kafka: KafkaConnection, producer: Producer, registry: InstanceRegistry, *, publish_timeout_s: float
    ) -> None:
        self._follower = TopicFollower(kafka, RECONCILE_RUNS)
        self._producer = producer
        self._registry = registry
        self._publish_timeout_s = publish_timeout_s
        self._latest: dict[str, ReconcileProgress] = {}

    async def start(self) -> None:
        await self._follower.start()
        self._follower.follow(self._apply, name="reconcile-runs")

    async def stop(self) -> None:
        await self._follower.stop()

    async def _apply(self, records: list[Record]) -> None:
        for record in records:
            if record.value is None:
                continue
            try:
                progress = ReconcileUpdate.model_validate_json(record.value).progress
            except ValidationError:
                log.warning("reconciliation update is not valid; skipped", offset=record.offset)
                continue
            known = self._latest.get(progress.instance_id)
            if known is None or known.run_id == progress.run_id or progress.started_at >= known.started_at:
                self._latest[progress.instance_id] = progress

    def latest(self, instance_id: str) -> ReconcileProgress | None:
        return self._latest.get(instance_id)

    async def request(self, instance_id: str, *, repair: bool) -> ReconcileRequest:
        if self._registry.get(instance_id) is None:
            raise ActionError(404, f"no instance {instance_id!r}")
        request = ReconcileRequest(
            run_id=uuid.uuid4().hex[:16],
            instance_id=instance_id,
            repair=repair,
            requested_by=RequestedBy.CONSOLE,
            requested_at=utcnow(),
        )
        try:
            delivery = await send_envelope(self._producer, reconcile_request_envelope(request))
            await asyncio.wait_for(delivery, timeout=self._publish_timeout_s)
        except Exception as exc:  # Kafka did not take the request: nothing was started
            raise ActionError(503, f"the reconciliation request could not be published: {exc}") from exc
        return request


def runs_of(request: Request) -> ReconcileRuns:
    runs: ReconcileRuns = request.app.state.reconcile
    return runs


router = APIRouter()


class RunRequested(BaseModel):
    run_id: str
    instance_id: str
    repair: bool


@router.post(
    "/api/instances/{instance_id}/reconcile",
    response_model=RunRequested,
    status_code=202,
    tags=["instances"],
    dependencies=[OPERATOR],
)
async def request_run(request: Request, instance_id: str, repair: bool = False) -> RunRequested:
    """Request a reconciliation run of the instance (dry run unless `repair`); follow it with the GET."""
    requested = await runs_of(request).request(instance_id, repair=repair)
    return RunRequested(run_id=requested.run_id, instance_id=instance_id, repair=repair)


@router.get("/api/instances/{instance_id}/reconcile", response_model=ReconcileProgress | None, tags=["instances"])
async def latest_run(request: Request, instance_id: str) -> ReconcileProgress | None:
    """The instance's latest reconciliation run as the writer last reported it (null: none seen)."""
    return runs_of(request).latest(instance_id)


@router.post("/instances/{instance_id}/reconcile", include_in_schema=False, dependencies=[OPERATOR])
async def reconcile_button(
    request: Request, instance_id: str, repair: Annotated[str | None, Form()] = None
) -> Response:
    try:
        await runs_of(request).request(instance_id, repair=repair == "1")
    except ActionError as exc:
        return error_page(request, exc)
    return RedirectResponse(f"/instances/{instance_id}", status_code=303)
