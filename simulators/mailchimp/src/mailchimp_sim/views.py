"""JSON renderings of the simulator's objects, shaped like Mailchimp's responses."""

import zlib
from collections.abc import Sequence
from typing import Any

from mailchimp_sim.domain import Member, MergeField
from mailchimp_sim.store import AudienceRow, Webhook


def member_json(member: Member, definitions: Sequence[MergeField]) -> dict[str, Any]:
    # Mailchimp returns every merge field of the audience, unset ones as "".
    merges = {d.tag: member.merge_fields.get(d.tag, "") for d in definitions}
    full_name = " ".join(str(merges.get(t, "")) for t in ("FNAME", "LNAME") if merges.get(t)).strip()
    return {
        "id": member.id,
        "email_address": member.email_address,
        "unique_email_id": member.unique_email_id,
        "contact_id": member.contact_id,
        "full_name": full_name,
        "web_id": member.web_id,
        "email_type": member.email_type,
        "status": "archived" if member.archived else member.status,
        "unsubscribe_reason": member.unsubscribe_reason,
        "consents_to_one_to_one_messaging": True,
        "merge_fields": merges,
        "interests": dict(member.interests),
        "stats": {"avg_open_rate": 0, "avg_click_rate": 0},
        "ip_signup": member.ip_signup,
        "timestamp_signup": member.timestamp_signup,
        "ip_opt": member.ip_opt,
        "timestamp_opt": member.timestamp_opt,
        "member_rating": 2,
        "last_changed": member.last_changed.isoformat(),
        "language": member.language,
        "vip": member.vip,
        "email_client": "",
        "location": {"latitude": 0, "longitude": 0, "gmtoff": 0, "dstoff": 0, "country_code": "", "timezone": ""},
        "source": member.source,
        "tags_count": len(member.tags),
        "tags": [{"id": zlib.crc32(t.encode()) % 1_000_000, "name": t} for t in member.tags],
        "list_id": member.list_id,
        "_links": [],
    }


def audience_json(audience: AudienceRow, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "id": audience.id,
        "web_id": audience.web_id,
        "name": audience.name,
        "permission_reminder": "You are receiving this email because you opted in via our website.",
        "use_archive_bar": True,
        "notify_on_subscribe": "",
        "notify_on_unsubscribe": "",
        "date_created": audience.date_created,
        "list_rating": 0,
        "email_type_option": False,
        "marketing_permissions": False,
        "visibility": "prv",
        "double_optin": audience.double_optin,
        "has_welcome": False,
        "stats": {
            "member_count": counts.get("subscribed", 0),
            "unsubscribe_count": counts.get("unsubscribed", 0),
            "cleaned_count": counts.get("cleaned", 0),
            "member_count_since_send": 0,
            "unsubscribe_count_since_send": 0,
            "cleaned_count_since_send": 0,
        },
        "_links": [],
    }


def merge_field_json(list_id: str, field: MergeField) -> dict[str, Any]:
    return {
        "merge_id": field.merge_id,
        "tag": field.tag,
        "name": field.name,
        "type": field.type,
        "required": field.required,
        "default_value": field.default_value,
        "public": field.public,
        "display_order": field.display_order,
        "options": dict(field.options),
        "help_text": field.help_text,
        "list_id": list_id,
        "_links": [],
    }


def webhook_json(hook: Webhook, *, with_secret: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": hook.id,
        "url": hook.url,
        "events": hook.events,
        "sources": hook.sources,
        "list_id": hook.list_id,
        "signing_enabled": hook.signing_enabled,
        "_links": [],
    }
    if with_secret and hook.signing_enabled:
        body["signing_secret"] = hook.signing_secret
    return body


def _paths(spec: str | None) -> list[list[str]]:
    return [p.strip().split(".") for p in (spec or "").split(",") if p.strip()]


def _select(value: Any, paths: list[list[str]]) -> Any:
    if any(not p for p in paths):
        return value
    if isinstance(value, list):
        return [_select(v, paths) for v in value]
    if not isinstance(value, dict):
        return value
    selected = {}
    for key, item in value.items():
        sub = [p[1:] for p in paths if p[0] == key]
        if sub:
            selected[key] = _select(item, sub)
    return selected


def _drop(value: Any, paths: list[list[str]]) -> Any:
    if isinstance(value, list):
        return [_drop(v, paths) for v in value]
    if not isinstance(value, dict):
        return value
    kept = {}
    for key, item in value.items():
        sub = [p[1:] for p in paths if p[0] == key]
        if any(not s for s in sub):
            continue
        kept[key] = _drop(item, sub) if sub else item
    return kept


def project(doc: dict[str, Any], fields: str | None, exclude_fields: str | None) -> dict[str, Any]:
    """Mailchimp's ``fields`` / ``exclude_fields`` query parameters (comma-separated dot paths)."""
    if fields:
        doc = _select(doc, _paths(fields))
    if exclude_fields:
        doc = _drop(doc, _paths(exclude_fields))
    return doc
