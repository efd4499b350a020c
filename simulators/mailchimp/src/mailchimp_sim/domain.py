"""Pure Mailchimp rules: hashing, merge-field validation, consent transitions, webhook events and bodies."""

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

from mailchimp_sim.errors import INVALID_RESOURCE_DETAIL, ApiError, FieldError, compliance_state

Status = Literal["subscribed", "unsubscribed", "cleaned", "pending", "transactional"]
STATUSES: tuple[Status, ...] = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
MERGE_TYPES = (
    "text",
    "number",
    "address",
    "phone",
    "date",
    "url",
    "imageurl",
    "radio",
    "dropdown",
    "birthday",
    "zip",
)
TEXT_MAX_BYTES = 255
SCHEMA_MISMATCH = "Data did not match any of the schemas described in anyOf."
MERGE_INVALID_DETAIL = "Your merge fields were invalid."

_HASH_RE = re.compile(r"^[0-9a-f]{32}$")
# Deliberately loose: Mailchimp's own check is undocumented, this only rejects what cannot be an address.
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


# --- identity -----------------------------------------------------------------------------------------------


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode("utf-8")).hexdigest()


def is_subscriber_hash(value: str) -> bool:
    return bool(_HASH_RE.match(value))


def is_plausible_email(email: str) -> bool:
    return bool(_EMAIL_RE.match(email))


_EXAMPLE_DOMAINS = ("example.com", "example.net", "example.org")


def is_fake_domain(email: str, fake_domains: Sequence[str], reject_example: bool) -> bool:
    """An address at a disposable or test domain (subdomains included), which Mailchimp refuses as fake."""
    domain_part = email.rpartition("@")[2].lower().rstrip(".")
    listed = [d.lower() for d in fake_domains]
    if reject_example:
        listed.extend(_EXAMPLE_DOMAINS)
        if domain_part == "example" or domain_part.endswith(".example"):
            return True
    return any(domain_part == d or domain_part.endswith("." + d) for d in listed)


# --- merge fields -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MergeField:
    merge_id: int
    tag: str
    name: str
    type: str
    required: bool = False
    default_value: str = ""
    public: bool = True
    display_order: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)
    help_text: str = ""


def default_merge_fields() -> list[MergeField]:
    """The fields Mailchimp puts on a new audience (BIRTHDAY included, see README)."""
    return [
        MergeField(1, "FNAME", "First Name", "text", display_order=2, options={"size": 25}),
        MergeField(2, "LNAME", "Last Name", "text", display_order=3, options={"size": 25}),
        MergeField(3, "ADDRESS", "Address", "address", display_order=4, options={"default_country": 164}),
        MergeField(4, "PHONE", "Phone Number", "phone", display_order=5, options={"phone_format": "none"}),
        MergeField(5, "BIRTHDAY", "Birthday", "birthday", display_order=6, options={"date_format": "MM/DD"}),
    ]


_DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "text": {"size": 25},
    "date": {"date_format": "MM/DD/YYYY"},
    "birthday": {"date_format": "MM/DD"},
    "phone": {"phone_format": "none"},
    "address": {"default_country": 164},
}


def default_options(field_type: str) -> dict[str, Any]:
    return dict(_DEFAULT_OPTIONS.get(field_type, {}))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _truncate_utf8(text: str, limit: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore")


def _parse_date(value: str, date_format: str) -> date | None:
    """Accepts ISO-like forms always and the field's own format; Mailchimp's full list is undocumented."""
    patterns = ["%Y-%m-%d", "%Y/%m/%d"]
    patterns.append("%d/%m/%Y" if date_format.upper().startswith("DD") else "%m/%d/%Y")
    patterns.append("%d-%m-%Y")
    for pattern in patterns:
        try:
            return datetime.strptime(value.strip(), pattern).date()
        except ValueError:
            continue
    return None


def _parse_birthday(value: str, date_format: str) -> str | None:
    match = re.fullmatch(r"(\d{1,2})/(\d{1,2})", value.strip())
    if not match:
        return None
    first, second = int(match.group(1)), int(match.group(2))
    month, day = (second, first) if date_format.upper().startswith("DD") else (first, second)
    try:
        date(2000, month, day)  # a leap year, so 02/29 is a valid birthday
    except ValueError:
        return None
    return f"{first:02d}/{second:02d}"


class _Invalid(Exception):
    def __init__(self, message: str, schema: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.schema = schema


def _normalise(defn: MergeField, value: Any) -> Any:
    """One merge value as Mailchimp stores it; raises _Invalid. ``""`` always clears a field."""
    if value is None or isinstance(value, bool | list):
        raise _Invalid(SCHEMA_MISMATCH, schema=True)
    if value == "":
        return ""
    kind = defn.type
    if kind == "address":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise _Invalid(SCHEMA_MISMATCH, schema=True)
        missing = [k for k in ("addr1", "city", "state", "zip") if not value.get(k, "").strip()]
        if missing:
            raise _Invalid(SCHEMA_MISMATCH, schema=True)
        return {
            "addr1": value["addr1"],
            "addr2": value.get("addr2", ""),
            "city": value["city"],
            "state": value["state"],
            "zip": value["zip"],
            "country": value.get("country", "US") or "US",
        }
    if isinstance(value, dict):
        raise _Invalid(SCHEMA_MISMATCH, schema=True)
    if kind == "number":
        if _is_number(value):
            return value
        try:
            number = float(str(value))
        except ValueError:
            raise _Invalid("Please enter a number") from None
        return int(number) if number.is_integer() else number
    text = str(value)
    if kind == "text":
        return _truncate_utf8(text, TEXT_MAX_BYTES)
    if kind == "date":
        fmt = str(defn.options.get("date_format", "MM/DD/YYYY"))
        parsed = _parse_date(text, fmt)
        if parsed is None:
            raise _Invalid(f"Please enter the date in the format {fmt}.")
        return parsed.isoformat()
    if kind == "birthday":
        fmt = str(defn.options.get("date_format", "MM/DD"))
        birthday = _parse_birthday(text, fmt)
        if birthday is None:
            raise _Invalid(f"Please enter a complete date ({fmt}).")
        return birthday
    if kind == "phone":
        if str(defn.options.get("phone_format", "")).upper() == "US":
            digits = re.sub(r"\D", "", text)
            if len(digits) == 11 and digits.startswith("1"):
                digits = digits[1:]
            if len(digits) != 10:
                raise _Invalid("Please enter a valid US phone number (e.g. (###) ###-####).")
        return text
    if kind in ("url", "imageurl"):
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise _Invalid("Please enter a valid URL.")
        return text
    if kind == "zip":
        if not re.fullmatch(r"\d{5}", text):
            raise _Invalid("Please enter a 5 digit zip code.")
        return text
    if kind in ("radio", "dropdown"):
        if text not in list(defn.options.get("choices", [])):
            raise _Invalid("Please choose one of the available options.")
        return text
    return text


@dataclass(frozen=True)
class MergeResult:
    values: dict[str, Any]
    errors: list[FieldError]
    schema_error: bool

    def raise_if_invalid(self) -> None:
        if self.errors:
            detail = INVALID_RESOURCE_DETAIL if self.schema_error else MERGE_INVALID_DETAIL
            raise ApiError(400, "Invalid Resource", detail, self.errors)


def validate_merge_fields(
    definitions: Sequence[MergeField],
    incoming: Mapping[str, Any],
    existing: Mapping[str, Any],
    *,
    creating: bool,
    skip_required: bool,
    reject_unknown: bool,
) -> MergeResult:
    """Merges ``incoming`` onto ``existing`` and validates the result.

    Required fields are checked on the merged result (so a field made required later blocks updates of members
    that lack it, as Mailchimp does); ``skip_merge_validation`` lifts only the required check.
    """
    by_tag = {d.tag: d for d in definitions}
    values = {tag: existing[tag] for tag in by_tag if tag in existing}
    if creating:
        for d in definitions:
            if d.default_value and d.tag not in incoming and values.get(d.tag, "") == "":
                values[d.tag] = d.default_value
    errors: list[FieldError] = []
    schema_error = False
    for raw_tag, value in incoming.items():
        tag = raw_tag.upper()
        defn = by_tag.get(tag)
        if defn is None:
            if reject_unknown:
                errors.append(FieldError(tag, "This merge field does not exist on this audience."))
            continue
        try:
            values[tag] = _normalise(defn, value)
        except _Invalid as invalid:
            schema_error = schema_error or invalid.schema
            errors.append(FieldError(f"merge_fields.{tag}" if invalid.schema else tag, invalid.message))
    if not skip_required:
        for d in definitions:
            if d.required and values.get(d.tag, "") in ("", None):
                if not any(e.field in (d.tag, f"merge_fields.{d.tag}") for e in errors):
                    errors.append(FieldError(d.tag, "Please enter a value"))
    return MergeResult(values, errors, schema_error)


def validate_new_merge_field(
    body: Mapping[str, Any], existing: Sequence[MergeField], next_id: int, max_fields: int
) -> MergeField:
    errors: list[FieldError] = []
    name = body.get("name")
    kind = body.get("type")
    if not isinstance(name, str) or not name.strip():
        errors.append(FieldError("name", "This value should not be blank."))
    if kind not in MERGE_TYPES:
        errors.append(FieldError("type", f"Schema describes enum {list(MERGE_TYPES)}, {kind!r} found instead"))
    tag = str(body.get("tag") or f"MERGE{next_id}").upper()
    if not re.fullmatch(r"[A-Z][A-Z0-9_]{0,9}", tag) or tag in ("EMAIL", "INTERESTS"):
        errors.append(FieldError("tag", "Merge tags are up to 10 letters, digits or underscores."))
    options = {**default_options(str(kind)), **dict(body.get("options") or {})}
    if kind in ("radio", "dropdown") and not options.get("choices"):
        errors.append(FieldError("options.choices", "Please provide at least one choice."))
    if errors:
        raise ApiError(400, "Invalid Resource", INVALID_RESOURCE_DETAIL, errors)
    if any(d.tag == tag for d in existing):
        raise ApiError(400, "Invalid Resource", f'A Merge Field with the tag "{tag}" already exists for this list.')
    if len(existing) >= max_fields:
        raise ApiError(400, "Invalid Resource", f"This audience already has {max_fields} merge fields.")
    return MergeField(
        merge_id=next_id,
        tag=tag,
        name=str(name),
        type=str(kind),
        required=bool(body.get("required", False)),
        default_value=str(body.get("default_value") or ""),
        public=bool(body.get("public", True)),
        display_order=int(body.get("display_order") or next_id + 1),
        options=options,
        help_text=str(body.get("help_text") or ""),
    )


# --- members and consent ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    list_id: str
    id: str
    email_address: str
    unique_email_id: str
    contact_id: str
    web_id: int
    status: Status
    merge_fields: Mapping[str, Any]
    last_changed: datetime
    source: str
    email_type: str = "html"
    interests: Mapping[str, bool] = field(default_factory=dict)
    language: str = ""
    vip: bool = False
    tags: tuple[str, ...] = ()
    ip_signup: str = ""
    timestamp_signup: str = ""
    ip_opt: str = ""
    timestamp_opt: str = ""
    archived: bool = False
    unsubscribe_reason: str = ""
    # Who moved the member to ``unsubscribed``: "user" (the contact, e.g. an unsubscribe link), "admin" (the UI) or
    # "api". Only the contact's own unsubscribe puts the address in a compliance state (mailchimp-api.md §10).
    # "" (a row stored before this was recorded) is read as the contact's own, the cautious reading.
    unsubscribed_by: str = ""
    # When the member last moved to ``unsubscribed`` (ISO 8601, UTC), for the ``unsubscribed_since`` filter.
    unsubscribed_at: str = ""

    def profile(self) -> tuple[Any, ...]:
        """What a ``profile`` webhook reports on."""
        return (dict(self.merge_fields), self.email_type, dict(self.interests), self.language)


def status_for_create(status: Status | None, status_if_new: Status | None) -> Status:
    """``status`` wins when both are sent: it is documented as overwriting unconditionally."""
    chosen = status or status_if_new
    if chosen is None:
        raise ApiError(
            400,
            "Invalid Resource",
            INVALID_RESOURCE_DETAIL,
            [FieldError("status", "Schema describes enum, NULL found instead")],
        )
    return chosen


def status_for_update(current: Status, requested: Status | None, email: str, unsubscribed_by: str = "") -> Status:
    """An explicit ``status`` on an existing member.

    Recorded real answers (mailchimp-api.md §10: grouparoo fixtures, veda-consulting/mailchimp #374): a member
    unsubscribed through the API or by an admin can be resubscribed through the API (200); one who unsubscribed
    themselves (a link), or a cleaned address, is in a compliance state (400). Unsubscribed contacts may always
    come back through ``pending`` (a confirmation email); cleaned addresses cannot be resubscribed at all.
    """
    if requested is None or requested == current:
        return current
    if current == "unsubscribed" and requested == "subscribed" and unsubscribed_by not in ("api", "admin"):
        raise compliance_state(email)
    if current == "cleaned" and requested in ("subscribed", "pending"):
        raise compliance_state(email)
    return requested


def status_for_readd(
    previous: Status, status: Status | None, status_if_new: Status | None, email: str, unsubscribed_by: str = ""
) -> Status:
    """Re-adding an archived member: a remembered unsubscribe/clean survives ``status_if_new``."""
    if status is not None:
        return status_for_update(previous, status, email, unsubscribed_by)
    if previous in ("unsubscribed", "cleaned"):
        return previous
    return status_for_create(None, status_if_new)


def validate_ip(value: str, name: str) -> FieldError | None:
    if value == "":
        return None
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return FieldError(name, "This value is not a valid IP address.")
    return None


def parse_timestamp(value: str) -> datetime | None:
    """Mailchimp accepts ``YYYY-MM-DD HH:MM:SS`` and ISO 8601; naive times are UTC."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


# --- webhook events -----------------------------------------------------------------------------------------

EventType = Literal["subscribe", "unsubscribe", "profile", "upemail", "cleaned", "campaign"]
EVENT_TYPES: tuple[EventType, ...] = ("subscribe", "unsubscribe", "profile", "upemail", "cleaned", "campaign")
WebhookSource = Literal["user", "admin", "api"]


@dataclass(frozen=True)
class MemberEvent:
    type: EventType
    member: Member
    action: str = ""
    reason: str = ""
    old_email: str = ""
    campaign_id: str = ""


def member_events(before: Member | None, after: Member | None, reason: str = "") -> list[MemberEvent]:
    """Events one write causes. ``None`` means absent from the audience (never added, archived or deleted).

    Order on one write: upemail, profile, then the status event.
    """
    if before is None and after is None:
        return []
    if after is None:
        assert before is not None
        return [MemberEvent("unsubscribe", before, action="delete", reason=reason or "manual")]
    if before is None:
        return [MemberEvent("subscribe", after)] if after.status == "subscribed" else []
    events: list[MemberEvent] = []
    if before.email_address.lower() != after.email_address.lower():
        events.append(MemberEvent("upemail", after, old_email=before.email_address))
    if before.profile() != after.profile():
        events.append(MemberEvent("profile", after))
    if before.status != after.status:
        if after.status == "subscribed":
            events.append(MemberEvent("subscribe", after))
        elif after.status == "unsubscribed":
            events.append(MemberEvent("unsubscribe", after, action="unsub", reason=reason or "manual"))
        elif after.status == "cleaned":
            events.append(MemberEvent("cleaned", after, reason=reason or "hard"))
    return events


def format_fired_at(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _merge_value(value: Any) -> str:
    if _is_number(value):
        return str(int(value)) if float(value).is_integer() else str(value)
    return "" if value is None else str(value)


def merge_pairs(
    member: Member,
    definitions: Sequence[MergeField],
    address_format: Literal["subkeys", "string"],
    interests: str = "",
) -> list[tuple[str, str]]:
    """``data[merges][…]``: EMAIL, the audience's fields in display order, then INTERESTS (comma-separated group
    names; always present, as in Mailchimp's samples, and empty while the simulator has no interest groups)."""
    pairs = [("data[merges][EMAIL]", member.email_address)]
    for d in sorted(definitions, key=lambda d: (d.display_order, d.merge_id)):
        value = member.merge_fields.get(d.tag, "")
        if isinstance(value, Mapping):
            parts = ("addr1", "addr2", "city", "state", "zip", "country")
            if address_format == "subkeys":
                pairs.extend((f"data[merges][{d.tag}][{p}]", str(value.get(p, ""))) for p in parts)
            else:
                pairs.append((f"data[merges][{d.tag}]", "  ".join(str(value.get(p, "")) for p in parts)))
        else:
            pairs.append((f"data[merges][{d.tag}]", _merge_value(value)))
    pairs.append(("data[merges][INTERESTS]", interests))
    return pairs


BodyShape = Literal["recorded", "sample"]


def _shaped(pairs: list[tuple[str, str]], shape: BodyShape) -> list[tuple[str, str]]:
    """``recorded``: captured real payloads (mailchimp-api.md §10) leave out keys that do not apply (empty values);
    ``sample``: Mailchimp's published samples (shared/fixtures/mailchimp-webhooks) send them as empty strings."""
    return pairs if shape == "sample" else [(k, v) for k, v in pairs if v != ""]


def event_pairs(
    event: MemberEvent,
    fired_at: datetime,
    definitions: Sequence[MergeField],
    address_format: Literal["subkeys", "string"] = "subkeys",
    interests: str = "",
    shape: BodyShape = "sample",
) -> list[tuple[str, str]]:
    """Form fields in the key order of Mailchimp's published samples; the ``recorded`` shape adds ``data[web_id]``
    (captured payloads carry it; its place after ``data[id]`` is an assumption) and leaves out empty values."""
    m = event.member
    head = [("type", event.type), ("fired_at", format_fired_at(fired_at))]
    if event.type == "upemail":
        return _shaped(
            [
                *head,
                ("data[list_id]", m.list_id),
                ("data[new_id]", m.unique_email_id),
                ("data[new_email]", m.email_address),
                ("data[old_email]", event.old_email),
            ],
            shape,
        )
    if event.type == "cleaned":
        return _shaped(
            [
                *head,
                ("data[list_id]", m.list_id),
                ("data[campaign_id]", event.campaign_id),
                ("data[reason]", event.reason),
                ("data[email]", m.email_address),
            ],
            shape,
        )
    web_id = [("data[web_id]", str(m.web_id))] if shape == "recorded" else []
    body = [
        ("data[id]", m.unique_email_id),
        *web_id,
        ("data[list_id]", m.list_id),
        ("data[email]", m.email_address),
        ("data[email_type]", m.email_type),
        *merge_pairs(m, definitions, address_format, interests),
        ("data[ip_opt]", m.ip_opt),
    ]
    if event.type == "subscribe":
        return _shaped([*head, *body, ("data[ip_signup]", m.ip_signup)], shape)
    if event.type == "unsubscribe":
        return _shaped(
            [
                *head,
                ("data[action]", event.action),
                ("data[reason]", event.reason),
                *body,
                ("data[campaign_id]", event.campaign_id),
            ],
            shape,
        )
    return _shaped([*head, *body], shape)


def campaign_pairs(
    campaign_id: str,
    subject: str,
    status: str,
    reason: str,
    list_id: str,
    fired_at: datetime,
    shape: BodyShape = "sample",
) -> list[tuple[str, str]]:
    return _shaped(
        [
            ("type", "campaign"),
            ("fired_at", format_fired_at(fired_at)),
            ("data[id]", campaign_id),
            ("data[subject]", subject),
            ("data[status]", status),
            ("data[reason]", reason),
            ("data[list_id]", list_id),
        ],
        shape,
    )


def encode_form(pairs: Sequence[tuple[str, str]]) -> str:
    return urlencode(list(pairs))


def sign(secret: str, timestamp: int, raw_body: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.{raw_body}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"
