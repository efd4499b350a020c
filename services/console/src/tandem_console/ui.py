"""The web pages: server-rendered over the same use cases as the JSON API, no front-end build step.

Actions are plain HTML forms that POST and redirect (303) back to a page, so every state is a URL.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from tandem_console.access import OPERATOR, access_of
from tandem_console.actions import ActionError
from tandem_console.domain import ExecutionStatus
from tandem_console.filters import ExecutionFilter
from tandem_console.service import Console
from tandem_shared.contracts import Flow, TraceStatus

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

_STEP_DOT = {
    TraceStatus.SUCCEEDED: "green",
    TraceStatus.SKIPPED: "green",
    TraceStatus.FAILED: "red",
    TraceStatus.DEAD_LETTERED: "red",
    TraceStatus.HELD: "amber",
    TraceStatus.RETRY_PENDING: "amber",
}


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


TEMPLATES.env.filters["when"] = _when
TEMPLATES.env.filters["pretty"] = _pretty
TEMPLATES.env.filters["status_dot"] = lambda status: _STEP_DOT.get(status, "amber")
TEMPLATES.env.globals["csrf_token"] = lambda request: access_of(request).csrf_token(request)

router = APIRouter(include_in_schema=False)


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def render(request: Request, template: str, section: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, template, {"section": section, **context}, status_code=status_code)


def error_page(request: Request, error: ActionError) -> HTMLResponse:
    title = {
        401: "Log in first",
        403: "Not allowed",
        404: "Not found",
        409: "Not possible",
        422: "Check the input",
        503: "Try again",
    }.get(error.status, "Error")
    return render(request, "error.html", "", status_code=error.status, title=title, message=error.message)


@router.get("/")
async def home() -> Response:
    return RedirectResponse("/executions", status_code=303)


@router.get("/executions")
async def executions_page(
    request: Request,
    where: Annotated[ExecutionFilter, Query()],
    before: str | None = None,
    replayed: int | None = None,
    skipped: int | None = None,
) -> Response:
    console = console_of(request)
    error = None
    try:
        page = await console.executions(where, limit=console.settings.page_size, before=before)
    except ActionError as exc:
        error, page = exc.message, await console.executions(where, limit=console.settings.page_size)
    instance = console.registry.get(where.instance) if where.instance else None
    return render(
        request,
        "executions.html",
        "executions",
        where=where,
        page=page,
        before=before,
        params=where.query_params(),
        statuses=list(ExecutionStatus),
        flows=list(Flow),
        instances=sorted(console.registry.all(), key=lambda c: c.id),
        instance_name=instance.name if instance else None,
        replayed=replayed,
        skipped=skipped,
        error=error,
        replay_limit=console.settings.replay_limit,
    )


@router.post("/executions/replay", dependencies=[OPERATOR])
async def replay_filtered(request: Request, where: Annotated[ExecutionFilter, Query()]) -> Response:
    try:
        result = await console_of(request).replay_set(where)
    except ActionError as exc:
        return error_page(request, exc)
    params = {**where.query_params(), "replayed": str(len(result.replayed)), "skipped": str(len(result.skipped))}
    return RedirectResponse(f"/executions?{urlencode(params)}", status_code=303)


@router.get("/executions/{execution_id}")
async def execution_page(
    request: Request, execution_id: str, tab: str = "outputs", errors: bool = False, replayed: str | None = None
) -> Response:
    try:
        detail = await console_of(request).detail(execution_id, errors_only=errors)
    except ActionError as exc:
        return error_page(request, exc)
    return render(
        request,
        "execution.html",
        "executions",
        d=detail,
        tab="logs" if tab == "logs" else "outputs",
        replayed=replayed,
    )


@router.post("/executions/{execution_id}/replay", dependencies=[OPERATOR])
async def replay_one(request: Request, execution_id: str) -> Response:
    try:
        result = await console_of(request).replay(execution_id)
    except ActionError as exc:
        return error_page(request, exc)
    return RedirectResponse(f"/executions/{execution_id}?{urlencode({'replayed': result.execution_id})}", 303)


@router.get("/instances")
async def instances_page(request: Request) -> Response:
    return render(request, "instances.html", "instances", instances=await console_of(request).instances())


@router.get("/instances/{instance_id}")
async def instance_page(request: Request, instance_id: str, error: str | None = None) -> Response:
    try:
        summary = await console_of(request).instance(instance_id)
    except ActionError as exc:
        return error_page(request, exc)
    run = request.app.state.reconcile.latest(instance_id)
    return render(request, "instance.html", "instances", i=summary, error=error, run=run)


@router.post("/instances/{instance_id}/pause", dependencies=[OPERATOR])
async def pause(request: Request, instance_id: str) -> Response:
    return await _set_paused(request, instance_id, paused=True)


@router.post("/instances/{instance_id}/resume", dependencies=[OPERATOR])
async def resume(request: Request, instance_id: str) -> Response:
    form = await request.form()
    return await _set_paused(request, instance_id, paused=False, discard=form.get("discard_buffered") == "1")


async def _set_paused(request: Request, instance_id: str, *, paused: bool, discard: bool = False) -> Response:
    try:
        await console_of(request).set_paused(instance_id, paused, discard_held=discard)
    except ActionError as exc:
        return error_page(request, exc)
    return RedirectResponse(f"/instances/{instance_id}", status_code=303)


@router.get("/contacts")
async def contact_page(request: Request, email: str | None = None, accessplanit_user_id: str | None = None) -> Response:
    email = (email or "").strip() or None
    user_id = (accessplanit_user_id or "").strip() or None
    timeline, error = None, None
    if email or user_id:
        try:
            timeline = await console_of(request).timeline(email=email, accessplanit_user_id=user_id)
        except ActionError as exc:
            error = exc.message
    return render(request, "contact.html", "contacts", timeline=timeline, email=email, user_id=user_id, error=error)
