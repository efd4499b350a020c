"""The JSON API under /api: executions, their detail, contact timelines, instances, pause/resume, replay and
forgetting a contact."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from tandem_console.access import OPERATOR, operator_action
from tandem_console.actions import ActionError
from tandem_console.credentials import Principal
from tandem_console.erasure import ErasureRequests
from tandem_console.filters import ExecutionFilter
from tandem_console.models import (
    ConsumerStatus,
    ExecutionDetail,
    ExecutionPage,
    ForgetIn,
    ForgetOut,
    InstanceSummary,
    PauseOut,
    ReplayOut,
    ReplaySetOut,
    Timeline,
)
from tandem_console.service import Console
from tandem_shared.contracts.topics import TRACE

router = APIRouter(prefix="/api", tags=["console"])


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


@router.get("/executions", response_model=ExecutionPage)
async def list_executions(
    request: Request,
    where: Annotated[ExecutionFilter, Query()],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> ExecutionPage:
    return await console_of(request).executions(where, limit=limit, before=before)


@router.get("/executions/{execution_id}", response_model=ExecutionDetail)
async def execution_detail(
    request: Request, execution_id: str, errors_only: Annotated[bool, Query()] = False
) -> ExecutionDetail:
    return await console_of(request).detail(execution_id, errors_only=errors_only)


@router.post("/executions/{execution_id}/replay", response_model=ReplayOut, status_code=202, dependencies=[OPERATOR])
async def replay_execution(request: Request, execution_id: str) -> ReplayOut:
    return await console_of(request).replay(execution_id)


@router.post("/replay", response_model=ReplaySetOut, status_code=202, dependencies=[OPERATOR])
async def replay_filtered(request: Request, where: Annotated[ExecutionFilter, Query()]) -> ReplaySetOut:
    """Replays every execution the filters match (oldest first), up to the configured limit."""
    return await console_of(request).replay_set(where)


@router.get("/contacts/timeline", response_model=Timeline)
async def contact_timeline(
    request: Request, email: str | None = None, accessplanit_user_id: str | None = None, instance: str | None = None
) -> Timeline:
    """One contact's executions, newest first, with their steps (by email address or accessplanit user id)."""
    return await console_of(request).timeline(email=email, accessplanit_user_id=accessplanit_user_id, instance=instance)


@router.get("/instances", response_model=list[InstanceSummary])
async def list_instances(request: Request) -> list[InstanceSummary]:
    return await console_of(request).instances()


@router.get("/instances/{instance_id}", response_model=InstanceSummary)
async def instance_summary(request: Request, instance_id: str) -> InstanceSummary:
    return await console_of(request).instance(instance_id)


@router.post("/instances/{instance_id}/pause", response_model=PauseOut, dependencies=[OPERATOR])
async def pause_instance(request: Request, instance_id: str) -> PauseOut:
    return await console_of(request).set_paused(instance_id, True)


@router.post("/instances/{instance_id}/resume", response_model=PauseOut, dependencies=[OPERATOR])
async def resume_instance(
    request: Request,
    instance_id: str,
    discard_buffered: Annotated[
        bool, Query(description="drop the changes held while paused instead of releasing them")
    ] = False,
) -> PauseOut:
    return await console_of(request).set_paused(instance_id, False, discard_held=discard_buffered)


@router.post("/contacts/forget", response_model=ForgetOut, status_code=202)
async def forget_contact(
    request: Request, body: ForgetIn, who: Annotated[Principal, Depends(operator_action)]
) -> ForgetOut:
    """Publishes an erasure request (as `tandem contacts forget` does); every service, this console included,
    removes the contact from its stores and acknowledges in the trace under the request id."""
    requests: ErasureRequests = request.app.state.erasure_requests
    try:
        published = await requests.request(body.email, body.instance_id, requested_by=f"console:{who.name}")
    except Exception as exc:  # not on Kafka: nothing was asked; the operator may try again
        raise ActionError(503, f"the erasure request could not be published: {exc or type(exc).__name__}") from exc
    return ForgetOut(request_id=published.request_id, scope=published.scope)


@router.get("/status", response_model=ConsumerStatus)
async def consumer_status(request: Request) -> ConsumerStatus:
    return ConsumerStatus(topic=TRACE, lag=request.app.state.consumer.lag)
