"""Marketing API v3 routes under ``/3.0``. Route names ("PUT member", …) are what the controls and stats use."""

import asyncio
import secrets
from dataclasses import replace
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request, Response

from mailchimp_sim import domain
from mailchimp_sim.context import Sim, sim_and_account
from mailchimp_sim.errors import ApiError, FieldError, invalid_resource, not_found
from mailchimp_sim.schemas import (
    ALL_EVENTS,
    ALL_SOURCES,
    AudienceCreate,
    AudienceUpdate,
    BatchSubscribe,
    MemberWrite,
    TagsUpdate,
    WebhookCreate,
    WebhookUpdate,
    parse,
    parse_json,
)
from mailchimp_sim.seed import create_audience
from mailchimp_sim.store import SORT_FIELDS, Webhook
from mailchimp_sim.views import audience_json, member_json, merge_field_json, project, webhook_json

router = APIRouter(prefix="/3.0")
Fields = Annotated[str | None, Query()]
SkipMerge = Annotated[bool, Query()]


def _page(sim: Sim, count: int, offset: int) -> tuple[int, int]:
    # Mailchimp caps `count` at 1000; the simulator clamps rather than rejecting (see README).
    return max(0, min(count, sim.settings.max_page_count)), max(0, offset)


async def _body(request: Request) -> Any:
    return parse_json(await request.body())


def _member_doc(sim: Sim, member: domain.Member) -> dict[str, Any]:
    return member_json(member, sim.store.merge_fields(member.list_id))


# --- account ---


@router.get("/", name="GET root")
async def root(request: Request) -> dict[str, Any]:
    sim, account = sim_and_account(request)
    return {
        "account_id": account,
        "login_id": account,
        "account_name": account,
        "email": f"{account}@example.com",
        "total_subscribers": sum(
            sim.store.status_counts(a.id).get("subscribed", 0) for a in sim.store.audiences(account)
        ),
        "_links": [],
    }


@router.get("/ping", name="GET ping")
async def ping() -> dict[str, str]:
    return {"health_status": "Everything's Chimpy!"}


# --- audiences ---


@router.get("/lists", name="GET lists")
async def get_lists(
    request: Request,
    count: int = 10,
    offset: int = 0,
    fields: Fields = None,
    exclude_fields: Fields = None,
) -> dict[str, Any]:
    sim, account = sim_and_account(request)
    count, offset = _page(sim, count, offset)
    audiences = sim.store.audiences(account)
    doc = {
        "lists": [audience_json(a, sim.store.status_counts(a.id)) for a in audiences[offset : offset + count]],
        "total_items": len(audiences),
        "constraints": {"may_create": True, "max_instances": 100, "current_total_instances": len(audiences)},
        "_links": [],
    }
    return project(doc, fields, exclude_fields)


@router.post("/lists", name="POST list")
async def create_list(request: Request) -> dict[str, Any]:
    """A new audience with the merge fields a new real one has: FNAME, LNAME, ADDRESS, PHONE, BIRTHDAY (reference
    §10, which supersedes §3)."""
    sim, account = sim_and_account(request)
    body = parse(AudienceCreate, await _body(request))
    if not body.name.strip():
        raise invalid_resource(errors=[FieldError("name", "This value should not be blank.")])
    audience = create_audience(sim.store, account, body.name, body.double_optin)
    return audience_json(audience, {})


@router.patch("/lists/{list_id}", name="PATCH list")
async def update_list(list_id: str, request: Request) -> dict[str, Any]:
    sim, account = sim_and_account(request)
    audience = sim.service.audience(account, list_id)
    body = parse(AudienceUpdate, await _body(request))
    name = audience.name if body.name is None else body.name
    if not name.strip():
        raise invalid_resource(errors=[FieldError("name", "This value should not be blank.")])
    double_optin = audience.double_optin if body.double_optin is None else body.double_optin
    sim.store.update_audience(list_id, name, double_optin)
    return audience_json(sim.service.audience(account, list_id), sim.store.status_counts(list_id))


@router.delete("/lists/{list_id}", name="DELETE list", status_code=204)
async def delete_list(list_id: str, request: Request) -> Response:
    sim, account = sim_and_account(request)
    sim.service.audience(account, list_id)
    sim.store.delete_audience(list_id)
    return Response(status_code=204)


@router.get("/lists/{list_id}", name="GET list")
async def get_list(
    list_id: str,
    request: Request,
    fields: Fields = None,
    exclude_fields: Fields = None,
) -> dict[str, Any]:
    sim, account = sim_and_account(request)
    audience = sim.service.audience(account, list_id)
    return project(audience_json(audience, sim.store.status_counts(list_id)), fields, exclude_fields)


@router.post("/lists/{list_id}", name="POST batch subscribe")
async def batch_subscribe(
    list_id: str,
    request: Request,
    skip_merge_validation: SkipMerge = False,
    skip_duplicate_check: bool = False,
) -> dict[str, Any]:
    sim, account = sim_and_account(request)
    sim.service.audience(account, list_id)
    batch = parse(BatchSubscribe, await _body(request))
    per_member_ms = sim.controls.member_latency_ms(sim.settings.batch_latency_per_member_ms)
    if per_member_ms and batch.members:
        # Holds the request's in-flight slot like Mailchimp's own work on the members would.
        await asyncio.sleep(len(batch.members) * per_member_ms / 1000)
    result = sim.service.batch(
        list_id,
        batch,
        skip_merge_validation=skip_merge_validation,
        skip_duplicate_check=skip_duplicate_check,
        source="api",
    )
    sim.stats.members_written("POST batch subscribe", len(result["new_members"]) + len(result["updated_members"]))
    definitions = sim.store.merge_fields(list_id)
    return {
        **result,
        "new_members": [member_json(m, definitions) for m in result["new_members"]],
        "updated_members": [member_json(m, definitions) for m in result["updated_members"]],
        "_links": [],
    }


# --- merge fields ---


@router.get("/lists/{list_id}/merge-fields", name="GET merge fields")
async def get_merge_fields(
    list_id: str,
    request: Request,
    count: int = 10,
    offset: int = 0,
    type: str | None = None,
    required: bool | None = None,
    fields: Fields = None,
    exclude_fields: Fields = None,
) -> dict[str, Any]:
    sim, account = sim_and_account(request)
    sim.service.audience(account, list_id)
    count, offset = _page(sim, count, offset)
    matching = [
        f
        for f in sim.store.merge_fields(list_id)
        if (type is None or f.type == type) and (required is None or f.required == required)
    ]
    doc = {
        "merge_fields": [merge_field_json(list_id, f) for f in matching[offset : offset + count]],
        "list_id": list_id,
        "total_items": len(matching),
        "_links": [],
    }
    return project(doc, fields, exclude_fields)


@router.post("/lists/{list_id}/merge-fields", name="POST merge field")
async def add_merge_field(list_id: str, request: Request) -> dict[str, Any]:
    sim, account = sim_and_account(request)
    sim.service.audience(account, list_id)
    body = await _body(request)
    if not isinstance(body, dict):
        raise invalid_resource(errors=[FieldError("body", "Schema describes object")])
    existing = sim.store.merge_fields(list_id)
    field = domain.validate_new_merge_field(
        body, existing, sim.store.next_merge_id(list_id), sim.settings.max_merge_fields
    )
    sim.store.put_merge_field(list_id, field)
    return merge_field_json(list_id, field)


def _merge_field(sim: Sim, list_id: str, merge_id: int) -> domain.MergeField:
    for field in sim.store.merge_fields(list_id):
        if field.merge_id == merge_id:
            return field
    raise not_found()


@router.get("/lists/{list_id}/merge-fields/{merge_id}", name="GET merge field")
async def get_merge_field(list_id: str, merge_id: int, request: Request) -> dict[str, Any]:
    sim, account = sim_and_account(request)
    sim.service.audience(account, list_id)
    return merge_field_json(list_id, _merge_field(sim, list_id, merge_id))


@router.patch("/lists/{list_id}/merge-fields/{merge_id}", name="PATCH merge field")
async def update_merge_field(list_id: str, merge_id: int, request: Request) -> dict[str, Any]:
    sim, account = sim_and_account(request)
    sim.service.audience(account, list_id)
    field = _merge_field(sim, list_id, merge_id)
    body = await _body(request)
    if not isinstance(body, dict):
        raise invalid_resource(errors=[FieldError("body", "Schema describes object")])
    updated = replace(
        field,
        name=str(body.get("name", field.name)),
        required=bool(body.get("required", field.required)),
        default_value=str(body.get("default_value", field.default_value)),
        public=bool(body.get("public", field.public)),
        display_order=int(body.get("display_order", field.display_order)),
        options={**field.options, **dict(body.get("options") or {})},
        help_text=str(body.get("help_text", field.help_text)),
    )
    sim.store.put_merge_field(list_id, updated)
    return merge_field_json(list_id, updated)


@router.delete("/lists/{list_id}/merge-fields/{merge_id}", name="DELETE merge field", status_code=204)
async def delete_merge_field(list_id: str, merge_id: int, request: Request) -> Response:
    sim, account = sim_and_account(request)
    sim.service.audience(account, list_id)
    _merge_field(sim, list_id, merge_id)
    sim.store.delete_merge_field(list_id, merge_id)
    return Response(status_code=204)


# --- members ---


@router.get("/lists/{list_id}/members", name="GET members")
async def get_members(
    list_id: str,
    request: Request,
    count: int = 10,
    offset: int = 0,
    status: str | None = None,
    since_last_changed: str | None = None,
    before_last_changed: str | None = None,
    unique_email_id: str | None = None,
    vip_only: bool = False,
    unsubscribed_since: str | None = None,
    sort_field: str | None = None,
    sort_dir: str = "ASC",
    fields: Fields = None,
    exclude_fields: Fields = None,
) -> dict[str, Any]:
    sim, account = sim_and_account(request)
    sim.service.audience(account, list_id)
    count, offset = _page(sim, count, offset)
    if status is not None and status not in (*domain.STATUSES, "archived"):
        raise invalid_resource(errors=[FieldError("status", f"Invalid status {status!r}.")])
    if sort_field is not None and sort_field not in SORT_FIELDS:
        raise invalid_resource(errors=[FieldError("sort_field", f"Invalid sort_field {sort_field!r}.")])
    if sort_dir.upper() not in ("ASC", "DESC"):
        raise invalid_resource(errors=[FieldError("sort_dir", f"Invalid sort_dir {sort_dir!r}.")])
    bounds = {}
    for name, raw in (
        ("since_last_changed", since_last_changed),
        ("before_last_changed", before_last_changed),
        ("unsubscribed_since", unsubscribed_since),
    ):
        if raw:
            parsed = domain.parse_timestamp(raw)
            if parsed is None:
                raise invalid_resource(errors=[FieldError(name, "This value is not a valid ISO 8601 datetime.")])
            bounds[name] = parsed
    members, total = sim.store.query_members(
        list_id,
        status=status,
        since=bounds.get("since_last_changed"),
        before=bounds.get("before_last_changed"),
        unique_email_id=unique_email_id,
        vip_only=vip_only,
        offset=offset,
        count=count,
        unsubscribed_since=bounds.get("unsubscribed_since"),
        sort_field=sort_field,
        sort_dir=sort_dir,
    )
    definitions = sim.store.merge_fields(list_id)
    doc = {
        "members": [member_json(m, definitions) for m in members],
        "list_id": list_id,
        "total_items": total,
        "_links": [],
    }
    return project(doc, fields, exclude_fields)


@router.post("/lists/{list_id}/members", name="POST member")
async def add_member(list_id: str, request: Request, skip_merge_validation: SkipMerge = False) -> dict[str, Any]:
    sim, account = sim_and_account(request)
    sim.service.audience(account, list_id)
    body = parse(MemberWrite, await _body(request))
    member = sim.service.create(list_id, body, skip_merge_validation=skip_merge_validation, source="api")
    return _member_doc(sim, member)


@router.get("/lists/{list_id}/members/{key}", name="GET member")
async def get_member(
    list_id: str,
    key: str,
    request: Request,
    fields: Fields = None,
    exclude_fields: Fields = None,
) -> dict[str, Any]:
    sim, account = sim_and_account(request)
    sim.service.audience(account, list_id)
    return project(_member_doc(sim, sim.service.member(list_id, key)), fields, exclude_fields)


@router.put("/lists/{list_id}/members/{key}", name="PUT member")
async def set_member(
    list_id: str,
    key: str,
    request: Request,
    skip_merge_validation: SkipMerge = False,
) -> dict[str, Any]:
    sim, account = sim_and_account(request)
    sim.service.audience(account, list_id)
    body = parse(MemberWrite, await _body(request))
    member = sim.service.upsert(list_id, key, body, skip_merge_validation=skip_merge_validation, source="api")
    sim.stats.members_written("PUT member", 1)
    return _member_doc(sim, member)


@router.patch("/lists/{list_id}/members/{key}", name="PATCH member")
async def update_member(
    list_id: str,
    key: str,
    request: Request,
    skip_merge_validation: SkipMerge = False,
) -> dict[str, Any]:
    sim, account = sim_and_account(request)
    sim.service.audience(account, list_id)
    body = parse(MemberWrite, await _body(request))
    member = sim.service.update(list_id, key, body, skip_merge_validation=skip_merge_validation, source="api")
    return _member_doc(sim, member)


@router.delete("/lists/{list_id}/members/{key}", name="DELETE member", status_code=204)
async def archive_member(list_id: str, key: str, request: Request) -> Response:
    sim, account = sim_and_account(request)
    sim.service.audience(account, list_id)
    sim.service.archive(list_id, key, source="api")
    return Response(status_code=204)


@router.post("/lists/{list_id}/members/{key}/actions/delete-permanent", name="POST delete permanent", status_code=204)
async def delete_member_permanent(list_id: str, key: str, request: Request) -> Response:
    sim, account = sim_and_account(request)
    sim.service.audience(account, list_id)
    sim.service.delete_permanent(list_id, key, source="api")
    return Response(status_code=204)


@router.post("/lists/{list_id}/members/{key}/tags", name="POST member tags", status_code=204)
async def update_member_tags(list_id: str, key: str, request: Request) -> Response:
    sim, account = sim_and_account(request)
    sim.service.audience(account, list_id)
    sim.service.update_tags(list_id, key, parse(TagsUpdate, await _body(request)))
    return Response(status_code=204)


@router.get("/lists/{list_id}/members/{key}/tags", name="GET member tags")
async def get_member_tags(list_id: str, key: str, request: Request) -> dict[str, Any]:
    sim, account = sim_and_account(request)
    sim.service.audience(account, list_id)
    tags = member_json(sim.service.member(list_id, key), [])["tags"]
    return {"tags": tags, "total_items": len(tags), "_links": []}


# --- batch operations: not simulated ---


@router.api_route("/batches", methods=["GET", "POST"], name="batches")
@router.api_route("/batches/{batch_id}", methods=["GET", "DELETE"], name="batch")
async def batches() -> None:
    # Asynchronous batch operations (reference §7.2) are not simulated: an explicit answer, never a bare 404.
    raise ApiError(
        501,
        "Not Simulated",
        "Batch operations (/3.0/batches) are not simulated; use batch subscribe (POST /lists/{list_id}) or one "
        "request per operation.",
    )


# --- webhooks ---


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid_resource(errors=[FieldError("url", "This value should be a valid url.")])


def _webhook(sim: Sim, list_id: str, webhook_id: str) -> Webhook:
    hook = sim.store.webhook(webhook_id)
    if hook is None or hook.list_id != list_id:
        raise not_found()
    return hook


@router.get("/lists/{list_id}/webhooks", name="GET webhooks")
async def get_webhooks(list_id: str, request: Request) -> dict[str, Any]:
    sim, account = sim_and_account(request)
    sim.service.audience(account, list_id)
    hooks = sim.store.webhooks(list_id)
    return {
        "webhooks": [webhook_json(h) for h in hooks],
        "list_id": list_id,
        "total_items": len(hooks),
        "_links": [],
    }


@router.post("/lists/{list_id}/webhooks", name="POST webhook")
async def create_webhook(list_id: str, request: Request) -> dict[str, Any]:
    sim, account = sim_and_account(request)
    sim.service.audience(account, list_id)
    body = parse(WebhookCreate, await _body(request))
    _check_url(body.url)
    if any(h.url == body.url for h in sim.store.webhooks(list_id)):
        raise invalid_resource(f"A webhook for {body.url} already exists on this list.")
    await sim.dispatcher.verify(body.url)
    signing = sim.settings.webhook_signing if body.signing_enabled is None else body.signing_enabled
    hook = Webhook(
        id=secrets.token_hex(5),
        list_id=list_id,
        url=body.url,
        events=(body.events or ALL_EVENTS).model_dump(),
        sources=(body.sources or ALL_SOURCES).model_dump(),
        signing_enabled=signing,
        signing_secret=secrets.token_hex(32) if signing else "",
    )
    sim.store.save_webhook(hook)
    return webhook_json(hook, with_secret=True)


@router.get("/lists/{list_id}/webhooks/{webhook_id}", name="GET webhook")
async def get_webhook(list_id: str, webhook_id: str, request: Request) -> dict[str, Any]:
    sim, account = sim_and_account(request)
    sim.service.audience(account, list_id)
    return webhook_json(_webhook(sim, list_id, webhook_id))


@router.patch("/lists/{list_id}/webhooks/{webhook_id}", name="PATCH webhook")
async def update_webhook(list_id: str, webhook_id: str, request: Request) -> dict[str, Any]:
    sim, account = sim_and_account(request)
    sim.service.audience(account, list_id)
    hook = _webhook(sim, list_id, webhook_id)
    body = parse(WebhookUpdate, await _body(request))
    if body.url is not None and body.url != hook.url:
        _check_url(body.url)
        await sim.dispatcher.verify(body.url)
    # Editing a webhook re-enables one that a 410 switched off.
    updated = replace(
        hook,
        url=body.url or hook.url,
        events={**hook.events, **body.events.model_dump(exclude_unset=True)} if body.events else hook.events,
        sources={**hook.sources, **body.sources.model_dump(exclude_unset=True)} if body.sources else hook.sources,
        disabled=False,
    )
    sim.store.save_webhook(updated)
    return webhook_json(updated)


@router.delete("/lists/{list_id}/webhooks/{webhook_id}", name="DELETE webhook", status_code=204)
async def delete_webhook(list_id: str, webhook_id: str, request: Request) -> Response:
    sim, account = sim_and_account(request)
    sim.service.audience(account, list_id)
    _webhook(sim, list_id, webhook_id)
    sim.store.delete_webhook(webhook_id)
    return Response(status_code=204)
