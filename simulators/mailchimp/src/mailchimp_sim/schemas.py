"""Request bodies. Parsed by hand (not FastAPI body params) so failures come back in Mailchimp's error shape."""

import json
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from mailchimp_sim.domain import Status
from mailchimp_sim.errors import INVALID_RESOURCE_DETAIL, ApiError, FieldError


class _Body(BaseModel):
    # Mailchimp ignores fields it does not know; so do we.
    model_config = ConfigDict(extra="ignore")


class MemberWrite(_Body):
    email_address: str | None = None
    status: Status | None = None
    status_if_new: Status | None = None
    email_type: Literal["html", "text"] | None = None
    merge_fields: dict[str, Any] | None = None
    interests: dict[str, bool] | None = None
    language: str | None = None
    vip: bool | None = None
    ip_signup: str | None = None
    timestamp_signup: str | None = None
    ip_opt: str | None = None
    timestamp_opt: str | None = None
    tags: list[str] | None = None


class BatchSubscribe(_Body):
    members: list[Any]
    update_existing: bool = False


class AudienceCreate(_Body):
    """`POST /lists`: the fields the Marketing API's spec marks required. `contact`, `campaign_defaults` and the rest
    are accepted and not kept (the simulator sends no campaigns)."""

    name: str
    contact: dict[str, Any]
    permission_reminder: str
    campaign_defaults: dict[str, Any]
    email_type_option: bool
    double_optin: bool = False


class AudienceUpdate(_Body):
    name: str | None = None
    double_optin: bool | None = None


class TagChange(_Body):
    name: str
    status: Literal["active", "inactive"]


class TagsUpdate(_Body):
    tags: list[TagChange]


class WebhookEvents(_Body):
    subscribe: bool = False
    unsubscribe: bool = False
    profile: bool = False
    cleaned: bool = False
    upemail: bool = False
    campaign: bool = False


class WebhookSources(_Body):
    user: bool = False
    admin: bool = False
    api: bool = False


ALL_EVENTS = WebhookEvents(subscribe=True, unsubscribe=True, profile=True, cleaned=True, upemail=True, campaign=True)
ALL_SOURCES = WebhookSources(user=True, admin=True, api=True)


class WebhookCreate(_Body):
    url: str
    events: WebhookEvents | None = None
    sources: WebhookSources | None = None
    # Simulator extension: opt one webhook out of signing (real pre-signing webhooks behave like this).
    signing_enabled: bool | None = None


class WebhookUpdate(_Body):
    url: str | None = None
    events: WebhookEvents | None = None
    sources: WebhookSources | None = None


def field_errors(error: ValidationError) -> list[FieldError]:
    return [FieldError(".".join(str(p) for p in e["loc"]) or "body", e["msg"]) for e in error.errors()]


Model = TypeVar("Model", bound=BaseModel)


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise ApiError(400, "JSON Parse Exception", "We encountered an unspecified JSON parsing error.") from None


def _batch_message(error: Any) -> str:
    if error["type"] in ("literal_error", "enum"):
        expected = error.get("ctx", {}).get("expected", "")
        return f"Data presented is not one of the accepted values: {expected}."
    return f"Schema describes {error['type'].split('_')[0]}, {type(error['input']).__name__} found instead."


def parse_batch_members(members: list[Any]) -> list[MemberWrite]:
    """Every item of a batch subscribe, or one 400 for the whole call naming each schema-invalid item as
    ``members.item:N.<field>`` (brandonseydel/MailChimp.Net #567, rudderlabs #1223: a bad status or a wrong type fails
    the whole call; only per-member problems come back inside the 200)."""
    parsed: list[MemberWrite] = []
    errors: list[FieldError] = []
    for index, raw in enumerate(members):
        try:
            parsed.append(MemberWrite.model_validate(raw))
        except ValidationError as error:
            for e in error.errors():
                path = ".".join(str(p) for p in e["loc"])
                errors.append(FieldError(f"members.item:{index}" + (f".{path}" if path else ""), _batch_message(e)))
    if errors:
        raise ApiError(400, "Invalid Resource", INVALID_RESOURCE_DETAIL, errors)
    return parsed


def parse(model: type[Model], data: Any) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ApiError(400, "Invalid Resource", INVALID_RESOURCE_DETAIL, field_errors(error)) from None
