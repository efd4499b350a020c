"""A Mailchimp audience and its merge fields as the instance's key sees them, read through the client.

`read_schema` raises `KeyRefused` (401), `AudienceNotFound` or `SchemaUnreadable`; the mapping of merge-field
entries to `MergeFieldInfo` is pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tandem_shared.vendors.mailchimp.client import MailchimpClient, MailchimpError, Reply
from tandem_shared.vendors.priority import Priority
from tandem_shared.vendors.schema import KeyRefused, Kind, SchemaUnreadable

MAILCHIMP_KINDS = {
    "text": Kind.TEXT,
    "number": Kind.NUMBER,
    "address": Kind.ADDRESS,
    "phone": Kind.PHONE,
    "date": Kind.DATE,
    "url": Kind.TEXT,
    "imageurl": Kind.TEXT,
    "radio": Kind.CHOICE,
    "dropdown": Kind.CHOICE,
    "birthday": Kind.BIRTHDAY,
    "zip": Kind.TEXT,
}
# Mailchimp's defaults on every new audience, for checks without a live schema.
MAILCHIMP_DEFAULT_KINDS = {
    "FNAME": Kind.TEXT,
    "LNAME": Kind.TEXT,
    "PHONE": Kind.PHONE,
    "ADDRESS": Kind.ADDRESS,
    "BIRTHDAY": Kind.BIRTHDAY,
}


@dataclass(frozen=True)
class MergeFieldInfo:
    tag: str
    name: str
    type: str
    required: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> Kind:
        return MAILCHIMP_KINDS.get(self.type, Kind.OTHER)

    @property
    def choices(self) -> tuple[str, ...] | None:
        values = self.options.get("choices")
        return tuple(str(c) for c in values) if isinstance(values, list) else None


@dataclass(frozen=True)
class MailchimpSchema:
    audience_id: str
    audience_name: str
    merge_fields: Mapping[str, MergeFieldInfo]
    # The audience's own setting (`GET /lists/{id}`); None when the answer did not say.
    double_optin: bool | None = None


class AudienceNotFound(Exception):
    """The key does not see the audience; `audiences` are the ones it sees (id, name)."""

    def __init__(self, audiences: list[tuple[str, str]]) -> None:
        super().__init__("audience not found")
        self.audiences = audiences


def merge_field(entry: Mapping[str, Any]) -> MergeFieldInfo:
    return MergeFieldInfo(
        tag=str(entry["tag"]).upper(),
        name=str(entry.get("name") or entry["tag"]),
        type=str(entry.get("type") or "text"),
        required=bool(entry.get("required")),
        options=entry.get("options") or {},
    )


def _document(reply: Reply) -> dict[str, Any]:
    return reply.document if isinstance(reply.document, dict) else {}


async def _audiences(client: MailchimpClient, priority: Priority) -> list[tuple[str, str]]:
    try:
        reply = await client.request("GET", "/lists", params={"count": 100}, priority=priority)
    except MailchimpError as exc:
        if exc.status is None:
            raise SchemaUnreadable(exc.detail) from exc
        return []
    return [(str(a.get("id")), str(a.get("name"))) for a in _document(reply).get("lists", [])]


async def read_schema(client: MailchimpClient, audience_id: str, *, priority: Priority) -> MailchimpSchema:
    try:
        audience = await client.request("GET", f"/lists/{audience_id}", priority=priority)
    except MailchimpError as exc:
        if exc.status == 401:
            raise KeyRefused() from exc
        if exc.status == 404:
            raise AudienceNotFound(await _audiences(client, priority)) from exc
        raise SchemaUnreadable(exc.detail if exc.status is None else f"HTTP {exc.status}") from exc
    name = str(_document(audience).get("name") or audience_id)
    double_optin = _document(audience).get("double_optin")
    try:
        fields = await client.request(
            "GET", f"/lists/{audience_id}/merge-fields", params={"count": 1000}, priority=priority
        )
    except MailchimpError as exc:
        detail = exc.detail if exc.status is None else f"HTTP {exc.status} reading merge fields"
        raise SchemaUnreadable(detail) from exc
    merge_fields = {f.tag: f for f in (merge_field(e) for e in _document(fields).get("merge_fields", []))}
    return MailchimpSchema(audience_id, name, merge_fields, double_optin if isinstance(double_optin, bool) else None)
