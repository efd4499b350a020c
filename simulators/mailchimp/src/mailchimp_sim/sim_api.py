"""Simulator-only routes under ``/_sim`` (no auth): seeding, reset, controls, stats, and "Mailchimp UI" actions."""

import secrets
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict

from mailchimp_sim.context import Sim, get_sim
from mailchimp_sim.controls import ControlRequest
from mailchimp_sim.errors import not_found
from mailchimp_sim.schemas import MemberWrite, parse, parse_json
from mailchimp_sim.seed import ensure_account, seed
from mailchimp_sim.settings import AccountSeed
from mailchimp_sim.views import member_json

router = APIRouter(prefix="/_sim")
SimDep = Annotated[Sim, Depends(get_sim)]


class StatusAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = None
    # Who acted, for the webhook ``sources`` filter: the marketer (admin) or the contact (user, e.g. an
    # unsubscribe link).
    source: Literal["admin", "user"] = "admin"


class CampaignEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str = "Test Campaign Subject"
    status: str = "sent"
    reason: str = ""
    campaign_id: str | None = None


@router.get("/health", name="sim health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.post("/accounts", name="sim accounts")
async def add_account(request: Request, sim: SimDep) -> dict[str, Any]:
    account = parse(AccountSeed, parse_json(await request.body()))
    ensure_account(sim.store, account)
    return {
        "account_id": account.account_id,
        "api_key_count": sim.store.api_key_count(account.account_id),
        "lists": [a.id for a in sim.store.audiences(account.account_id)],
    }


@router.post("/reset", name="sim reset")
async def reset(sim: SimDep) -> dict[str, str]:
    sim.store.wipe()
    seed(sim.store, sim.settings)
    sim.controls.clear()
    sim.stats.reset()
    sim.dispatcher.reset()
    return {"status": "reset"}


@router.get("/controls", name="sim controls")
async def get_controls(sim: SimDep) -> dict[str, Any]:
    return sim.controls.snapshot()


@router.post("/controls", name="sim add control")
async def add_control(request: Request, sim: SimDep) -> dict[str, Any]:
    sim.controls.add(parse(ControlRequest, parse_json(await request.body())))
    return sim.controls.snapshot()


@router.delete("/controls", name="sim clear controls", status_code=204)
async def clear_controls(sim: SimDep) -> Response:
    sim.controls.clear()
    return Response(status_code=204)


@router.get("/stats", name="sim stats")
async def stats(sim: SimDep) -> dict[str, Any]:
    return sim.stats.snapshot()


@router.get("/webhook-deliveries", name="sim webhook deliveries")
async def deliveries(sim: SimDep, webhook_id: str | None = None, limit: int = 100) -> dict[str, Any]:
    attempts = sim.dispatcher.log(webhook_id, max(1, min(limit, sim.settings.webhook_delivery_log_size)))
    return {"attempts": attempts, "total_items": len(attempts)}


# --- edits "in the Mailchimp UI" (webhook source admin) ---


def _admin_list(sim: Sim, list_id: str) -> None:
    if sim.store.audience(list_id) is None:
        raise not_found()


async def _admin_body(request: Request) -> MemberWrite:
    return parse(MemberWrite, parse_json(await request.body()))


@router.put("/admin/lists/{list_id}/members/{key}", name="sim admin PUT member")
async def admin_put(
    list_id: str, key: str, request: Request, sim: SimDep, skip_merge_validation: bool = False
) -> dict[str, Any]:
    _admin_list(sim, list_id)
    member = sim.service.upsert(
        list_id, key, await _admin_body(request), skip_merge_validation=skip_merge_validation, source="admin"
    )
    return member_json(member, sim.store.merge_fields(list_id))


@router.patch("/admin/lists/{list_id}/members/{key}", name="sim admin PATCH member")
async def admin_patch(
    list_id: str, key: str, request: Request, sim: SimDep, skip_merge_validation: bool = False
) -> dict[str, Any]:
    _admin_list(sim, list_id)
    member = sim.service.update(
        list_id, key, await _admin_body(request), skip_merge_validation=skip_merge_validation, source="admin"
    )
    return member_json(member, sim.store.merge_fields(list_id))


@router.delete("/admin/lists/{list_id}/members/{key}", name="sim admin archive member", status_code=204)
async def admin_archive(list_id: str, key: str, sim: SimDep) -> Response:
    _admin_list(sim, list_id)
    sim.service.archive(list_id, key, source="admin")
    return Response(status_code=204)


async def _status_action(request: Request) -> StatusAction:
    return parse(StatusAction, parse_json(await request.body()))


@router.post("/admin/lists/{list_id}/members/{key}/unsubscribe", name="sim admin unsubscribe")
async def admin_unsubscribe(list_id: str, key: str, request: Request, sim: SimDep) -> dict[str, Any]:
    _admin_list(sim, list_id)
    action = await _status_action(request)
    member = sim.service.set_status(list_id, key, "unsubscribed", action.reason or "manual", action.source)
    return member_json(member, sim.store.merge_fields(list_id))


@router.post("/admin/lists/{list_id}/members/{key}/clean", name="sim admin clean")
async def admin_clean(list_id: str, key: str, request: Request, sim: SimDep) -> dict[str, Any]:
    _admin_list(sim, list_id)
    action = await _status_action(request)
    member = sim.service.set_status(list_id, key, "cleaned", action.reason or "hard", action.source)
    return member_json(member, sim.store.merge_fields(list_id))


@router.post("/admin/lists/{list_id}/campaign-event", name="sim admin campaign event")
async def admin_campaign(list_id: str, request: Request, sim: SimDep) -> dict[str, Any]:
    _admin_list(sim, list_id)
    event = parse(CampaignEvent, parse_json(await request.body()))
    campaign_id = event.campaign_id or secrets.token_hex(5)
    queued = sim.dispatcher.fire_campaign(list_id, campaign_id, event.subject, event.status, event.reason)
    return {"campaign_id": campaign_id, "webhooks": queued}
