"""Product rules for an instance configuration, and the adapter that reads both vendors' schemas live.

`validate_instance(config, live)` is pure: every rule runs, every problem is reported at once (all-or-nothing: an
operator applies a configuration only when it has no errors), and each problem names the field and the fix.
Warnings do not block. `read_live_schemas(config)` reads what the rules need from Mailchimp and accessplanit;
a side that cannot be reached is reported as a warning and its checks are skipped.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

import httpx

from tandem_shared.contracts import Direction, FieldMapping, Flow, InstanceConfig, Transform
from tandem_shared.contracts.instances import ACCESSPLANIT_EMAIL, CUSTOM_FIELD_PREFIX, MAILCHIMP_EMAIL
from tandem_shared.secrets import SecretUnavailable, resolve_secret

Severity = Literal["error", "warning"]

# The seed's minimum mappings per flow (the address is always the identity, so it is implied Mailchimp → accessplanit).
MINIMUM_MAPPINGS: dict[Flow, tuple[str, ...]] = {
    Flow.ACCESSPLANIT_TO_MAILCHIMP: ("FNAME", "LNAME", "EMAIL"),
    Flow.MAILCHIMP_TO_ACCESSPLANIT: ("FNAME", "LNAME"),
}
SUGGESTED_ACCESSPLANIT_FIELD = {"FNAME": "Forenames", "LNAME": "Surname", "EMAIL": "Email"}
ACCESSPLANIT_DATE_OF_BIRTH = ("DateOfBirth", "DOB")
MAILCHIMP_TEXT_MAX_BYTES = 255


@dataclass(frozen=True)
class Problem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class ValidationReport:
    errors: list[Problem]
    warnings: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.errors


# -- what the live schemas say -------------------------------------------------------------------------------


class Kind(StrEnum):
    """What a field holds, in terms both vendors' types map onto."""

    TEXT = "text"
    PHONE = "phone"
    NUMBER = "number"
    DATE = "date"
    BIRTHDAY = "birthday"
    ADDRESS = "address"
    CHOICE = "choice"
    BOOL = "bool"
    OTHER = "other"


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
ACCESSPLANIT_KINDS = {
    "string": Kind.TEXT,
    "guid": Kind.TEXT,
    "int": Kind.NUMBER,
    "bool": Kind.BOOL,
    "date": Kind.DATE,
}
ACCESSPLANIT_CUSTOM_KINDS = {
    "Text": Kind.TEXT,
    "Date": Kind.DATE,
    "Number": Kind.NUMBER,
    "Boolean": Kind.BOOL,
    "List": Kind.CHOICE,
}
# The User fields every tenant has (accessplanit API reference), for checks without a live schema.
ACCESSPLANIT_DEFAULT_KINDS = {
    "Forenames": Kind.TEXT,
    "Surname": Kind.TEXT,
    "Email": Kind.TEXT,
    "DateOfBirth": Kind.DATE,
    "DOB": Kind.DATE,
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


@dataclass(frozen=True)
class AccessplanitFieldInfo:
    name: str  # as the mappings name it: "Forenames" or "custom:Mailchimp Birthday"
    kind: Kind
    max_length: int | None = None
    writable: bool | None = None  # None: the schema does not say
    mandatory: bool = False
    options: tuple[str, ...] | None = None

    @property
    def custom(self) -> bool:
        return self.name.startswith(CUSTOM_FIELD_PREFIX)


@dataclass(frozen=True)
class AccessplanitSchema:
    fields: Mapping[str, AccessplanitFieldInfo]
    # The default account when it exists (id → name), and a few others to name in a message when it does not.
    accounts: Mapping[str, str]
    default_account_found: bool | None = None


@dataclass(frozen=True)
class LiveSchemas:
    mailchimp: MailchimpSchema | None = None
    accessplanit: AccessplanitSchema | None = None
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


# -- the rules -----------------------------------------------------------------------------------------------


class _Collector:
    def __init__(self) -> None:
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []

    def error(self, where: str, message: str) -> None:
        self.errors.append(Problem(where, message))

    def warning(self, where: str, message: str) -> None:
        self.warnings.append(Problem(where, message))


def _flows(config: InstanceConfig, mapping: FieldMapping) -> list[Flow]:
    """The flows a mapping actually syncs: its own direction within the instance's."""
    return [f for f in Flow if mapping.allows(f) and config.direction.allows(f)]


def _where(index: int, side: str | None = None) -> str:
    return f"mappings[{index}]" + (f".{side}" if side else "")


def _close(name: str, options: Iterable[str]) -> str:
    options = list(options)
    near = difflib.get_close_matches(name, options, n=3, cutoff=0.6)
    if near:
        return "did you mean " + " or ".join(f"'{n}'" for n in near) + "?"
    shown = ", ".join(options[:15]) + (", …" if len(options) > 15 else "")
    return f"available: {shown}"


def _minimum_mappings(config: InstanceConfig, out: _Collector) -> None:
    for flow in config.direction.flows:
        tags = {m.mailchimp for m in config.mappings if m.allows(flow)}
        required = MINIMUM_MAPPINGS[flow]
        missing = [t for t in required if t not in tags]
        if missing:
            examples = ", ".join(
                f"{{mailchimp: {t}, accessplanit: {SUGGESTED_ACCESSPLANIT_FIELD[t]}}}" for t in missing
            )
            out.error(
                "mappings",
                f"{flow.label} needs {' and '.join(missing)} mapped (the minimum is {', '.join(required)}); "
                f"add {examples}",
            )


def _identity(config: InstanceConfig, out: _Collector) -> None:
    for i, m in enumerate(config.mappings):
        if m.mailchimp == MAILCHIMP_EMAIL and m.accessplanit != ACCESSPLANIT_EMAIL:
            out.error(
                _where(i, "accessplanit"),
                f"EMAIL is the contact's identity and maps to accessplanit Email only, not '{m.accessplanit}'; "
                "set accessplanit: Email",
            )
        elif m.accessplanit == ACCESSPLANIT_EMAIL and m.mailchimp != MAILCHIMP_EMAIL:
            out.error(
                _where(i, "mailchimp"),
                f"accessplanit Email is the user's identity and maps to Mailchimp EMAIL only, not '{m.mailchimp}'; "
                "set mailchimp: EMAIL",
            )
        elif m.is_identity and m.transform is not None:
            out.error(_where(i, "transform"), "the email address is never transformed; remove the transform")


def _names(config: InstanceConfig, out: _Collector) -> None:
    for i, m in enumerate(config.mappings):
        if m.accessplanit.startswith("CustomFields/"):
            name = m.accessplanit.split("/", 1)[1]
            out.error(_where(i, "accessplanit"), f"write custom fields as 'custom:{name}'")
        elif m.custom_field == "":
            out.error(_where(i, "accessplanit"), "'custom:' needs the custom field's name, e.g. 'custom:Region'")


def _directions(config: InstanceConfig, out: _Collector) -> None:
    for i, m in enumerate(config.mappings):
        if not _flows(config, m):
            out.warning(
                _where(i, "direction"),
                f"{m.label()} is never synced: it is {m.direction.value} but the instance syncs "
                f"{config.direction.value}; remove it or change its direction",
            )


def _duplicates(config: InstanceConfig, out: _Collector) -> None:
    for flow in Flow:
        writers: dict[str, int] = {}
        for i, m in enumerate(config.mappings):
            if flow not in _flows(config, m):
                continue
            target = m.mailchimp if flow.target.value == "mailchimp" else m.accessplanit
            side = "mailchimp" if flow.target.value == "mailchimp" else "accessplanit"
            if target in writers:
                out.error(
                    _where(i, side),
                    f"{flow.target.label} {target} is already written by mappings[{writers[target]}] "
                    f"({flow.label}); keep one of them or give them different directions",
                )
            else:
                writers[target] = i


def _connections(config: InstanceConfig, out: _Collector) -> None:
    receives = config.direction.allows(Flow.MAILCHIMP_TO_ACCESSPLANIT)
    if receives and not config.accessplanit.default_account_id:
        out.error(
            "accessplanit.default_account_id",
            "users created from Mailchimp need an account: set it to the id of your 'Guest Account' "
            "(or whichever account new Mailchimp contacts should join)",
        )
    if receives and not config.accessplanit.integration_user_id:
        out.warning(
            "accessplanit.integration_user_id",
            "not set: Tandem recognises its own writes to accessplanit by their values only; set it to the id of "
            "the platform user that owns the API key",
        )
    for where, url in (
        ("accessplanit.base_url", config.accessplanit.base_url),
        ("mailchimp.api_base_url", config.mailchimp.api_base_url),
    ):
        if url is not None and not url.lower().startswith(("http://", "https://")):
            out.error(where, f"'{url}' is not an http(s) URL")


def _mailchimp_kind(tag: str, live: MailchimpSchema | None) -> tuple[Kind | None, MergeFieldInfo | None]:
    if live is not None:
        info = live.merge_fields.get(tag)
        return (info.kind, info) if info else (None, None)
    return MAILCHIMP_DEFAULT_KINDS.get(tag), None


def _accessplanit_kind(name: str, live: AccessplanitSchema | None) -> tuple[Kind | None, AccessplanitFieldInfo | None]:
    if live is not None:
        info = live.fields.get(name)
        return (info.kind, info) if info else (None, None)
    return ACCESSPLANIT_DEFAULT_KINDS.get(name), None


def _birthday_rule(config: InstanceConfig, live: LiveSchemas, out: _Collector) -> None:
    for i, m in enumerate(config.mappings):
        mc_kind, _ = _mailchimp_kind(m.mailchimp, live.mailchimp)
        ap_kind, _ = _accessplanit_kind(m.accessplanit, live.accessplanit)
        is_birthday = m.mailchimp == "BIRTHDAY" or mc_kind is Kind.BIRTHDAY
        is_date = m.accessplanit in ACCESSPLANIT_DATE_OF_BIRTH or ap_kind is Kind.DATE
        if is_birthday and is_date and Flow.MAILCHIMP_TO_ACCESSPLANIT in _flows(config, m):
            out.error(
                _where(i),
                f"Mailchimp {m.mailchimp} holds a birthday as MM/DD (no year), so it cannot fill accessplanit "
                f"{m.accessplanit} (DD/MM/YYYY). Map it to a text custom field instead (create a Text custom field "
                "in accessplanit, e.g. 'Mailchimp Birthday', and set accessplanit: 'custom:Mailchimp Birthday'), "
                "as accessplanit's integration guide advises; or set direction: accessplanit_to_mailchimp with "
                "transform: birthday to send the date of birth one way only",
            )


def _address_rule(config: InstanceConfig, out: _Collector) -> None:
    for i, m in enumerate(config.mappings):
        if m.transform is Transform.ADDRESS and Flow.ACCESSPLANIT_TO_MAILCHIMP in _flows(config, m):
            out.error(
                _where(i, "direction"),
                "transform address turns Mailchimp's address into one line of text and cannot split it back; "
                "set direction: mailchimp_to_accessplanit",
            )


def _live_mailchimp(config: InstanceConfig, schema: MailchimpSchema, out: _Collector) -> None:
    tags = list(schema.merge_fields)
    for i, m in enumerate(config.mappings):
        if m.mailchimp != MAILCHIMP_EMAIL and m.mailchimp not in schema.merge_fields:
            out.error(
                _where(i, "mailchimp"),
                f"merge tag '{m.mailchimp}' does not exist in audience '{schema.audience_name}' "
                f"({schema.audience_id}); {_close(m.mailchimp, tags)} — fix the tag or create the field in "
                "Mailchimp (Audience → Settings → Audience fields and merge tags)",
            )
    if config.direction.allows(Flow.ACCESSPLANIT_TO_MAILCHIMP):
        written = {m.mailchimp for m in config.mappings_for(Flow.ACCESSPLANIT_TO_MAILCHIMP)}
        for tag, info in schema.merge_fields.items():
            if info.required and tag not in written:
                out.error(
                    "mappings",
                    f"Mailchimp requires {tag} ({info.name}) in audience '{schema.audience_name}', so contacts "
                    f"Tandem creates without it are refused; map it from accessplanit or make it optional in "
                    "Mailchimp",
                )


def _live_accessplanit(config: InstanceConfig, schema: AccessplanitSchema, out: _Collector) -> None:
    names = list(schema.fields)
    for i, m in enumerate(config.mappings):
        info = schema.fields.get(m.accessplanit)
        if info is None:
            if not m.accessplanit.startswith("CustomFields/") and m.custom_field != "":
                what = "custom field" if m.custom_field is not None else "User field"
                out.error(
                    _where(i, "accessplanit"),
                    f"accessplanit has no {what} '{m.custom_field or m.accessplanit}'; {_close(m.accessplanit, names)}",
                )
            continue
        if Flow.MAILCHIMP_TO_ACCESSPLANIT in _flows(config, m) and info.writable is False:
            if info.custom:
                fix = (
                    "custom fields are read-only for this API key (accessplanit's API keeps them read-only "
                    "unless enabled): ask accessplanit support to make them writable for the key, or set "
                    "direction: accessplanit_to_mailchimp"
                )
            else:
                fix = "choose a writable field, or set direction: accessplanit_to_mailchimp"
            out.error(_where(i, "accessplanit"), f"'{m.accessplanit}' cannot be written through the API; {fix}")
    account = config.accessplanit.default_account_id
    if account and schema.default_account_found is False:
        known = ", ".join(f"{k} ({v})" for k, v in list(schema.accounts.items())[:10]) or "none readable"
        out.error(
            "accessplanit.default_account_id",
            f"account '{account}' does not exist in accessplanit; accounts: {known}",
        )
    if config.direction.allows(Flow.MAILCHIMP_TO_ACCESSPLANIT):
        written = {m.accessplanit for m in config.mappings_for(Flow.MAILCHIMP_TO_ACCESSPLANIT)}
        for name, info in schema.fields.items():
            if info.custom and info.mandatory and name not in written:
                out.error(
                    "mappings",
                    f"accessplanit requires custom field '{name[len(CUSTOM_FIELD_PREFIX) :]}' on every user, so "
                    f"users created from Mailchimp are refused without it; map a Mailchimp field to '{name}'",
                )


@dataclass(frozen=True)
class _Side:
    system: str  # "Mailchimp" | "accessplanit"
    name: str
    kind: Kind
    max_length: int | None
    choices: tuple[str, ...] | None


def _fixed_length(kind: Kind, transform: Transform | None) -> int | None:
    if kind is Kind.BIRTHDAY or transform is Transform.BIRTHDAY:
        return 5
    if kind is Kind.DATE:
        return 10
    return None


def _pair(flow: Flow, transform: Transform | None, src: _Side, dst: _Side) -> list[tuple[Severity, str]]:
    """Can values of `src` be written to `dst` (with this transform)?"""
    s, d = src.kind, dst.kind
    text_like = (Kind.TEXT, Kind.PHONE, Kind.CHOICE)
    found: list[tuple[Severity, str]] = []

    def error(message: str) -> None:
        found.append(("error", message))

    if Kind.OTHER in (s, d):
        error(f"{src.system} {src.name} or {dst.system} {dst.name} is not a field Tandem can sync")
        return found
    if transform is None:
        if s is Kind.ADDRESS:
            error(f"{src.name} is an address: add transform: address (to one line of text in accessplanit)")
        elif d is Kind.ADDRESS:
            error(f"{dst.name} needs an address in parts; sync it Mailchimp → accessplanit with transform: address")
        elif d is Kind.BIRTHDAY:
            error(f"{dst.name} takes MM/DD: add transform: birthday")
        elif s is Kind.DATE and d is Kind.DATE:
            error("accessplanit dates are DD/MM/YYYY, Mailchimp's YYYY-MM-DD: add transform: date")
        elif d is Kind.DATE:
            error(f"{dst.name} is a date: map a date to it (with transform: date)")
        elif d is Kind.NUMBER and s in (*text_like, Kind.BIRTHDAY, Kind.BOOL):
            error(
                f"a text field cannot feed a number: {src.system} {src.name} is text, {dst.system} {dst.name} is "
                "a number; map a number field to it or choose a text field"
            )
        elif d is Kind.NUMBER and flow is Flow.MAILCHIMP_TO_ACCESSPLANIT:
            error("Mailchimp sends numbers as text: add transform: number")
        elif d is Kind.BOOL and s is not Kind.BOOL:
            error(f"{dst.system} {dst.name} is true/false; only a true/false field can feed it")
    elif transform is Transform.DATE:
        if s not in (Kind.DATE, Kind.TEXT) or d not in (Kind.DATE, Kind.TEXT) or Kind.DATE not in (s, d):
            error("transform date needs a date on one side and a date or text field on the other")
    elif transform is Transform.BIRTHDAY:
        mc, ap = (dst, src) if flow is Flow.ACCESSPLANIT_TO_MAILCHIMP else (src, dst)
        ap_ok = ap.kind is Kind.TEXT or (ap.kind is Kind.DATE and flow is Flow.ACCESSPLANIT_TO_MAILCHIMP)
        if mc.kind not in (Kind.BIRTHDAY, Kind.TEXT) or not ap_ok:
            error("transform birthday maps a Mailchimp birthday (MM/DD) to an accessplanit text field holding MM/DD")
    elif transform is Transform.PHONE:
        if s not in (*text_like, Kind.NUMBER) or d not in text_like:
            error("transform phone maps phone numbers between text (or phone) fields")
    elif transform is Transform.ADDRESS:
        if s is not Kind.ADDRESS or d is not Kind.TEXT:
            error("transform address maps Mailchimp's ADDRESS to an accessplanit text field")
    elif transform is Transform.NUMBER and (s is not Kind.NUMBER or d not in (Kind.NUMBER, Kind.TEXT)):
        if d is Kind.NUMBER:
            error(
                f"a text field cannot feed a number: {src.system} {src.name} is text, {dst.system} {dst.name} is "
                "a number; map a number field to it or choose a text field"
            )
        else:
            error("transform number maps number fields")
    if found:
        return found

    if d is Kind.CHOICE and dst.choices is not None:
        extra = [c for c in (src.choices or ()) if c not in dst.choices]
        if src.choices is None:
            found.append(("warning", f"values must be one of {', '.join(dst.choices)}; others are refused"))
        elif extra:
            found.append(("warning", f"{', '.join(extra)} are not choices of {dst.name}; such values are refused"))

    limit = dst.max_length
    if limit is not None and d in (*text_like, Kind.NUMBER):
        fixed = _fixed_length(s, transform)
        if fixed is not None and fixed > limit:
            error(f"values are {fixed} characters long but {dst.system} {dst.name} allows {limit}; make it longer")
        elif fixed is None and src.max_length is not None and src.max_length > limit and s is not Kind.NUMBER:
            if dst.system == "Mailchimp":
                found.append(("warning", f"values longer than {limit} bytes are cut by Mailchimp"))
            else:
                found.append(
                    ("warning", f"values longer than {limit} characters are refused by accessplanit ({dst.name})")
                )
    return found


def _live_pairs(config: InstanceConfig, live: LiveSchemas, out: _Collector) -> None:
    for i, m in enumerate(config.mappings):
        if m.is_identity:
            continue
        mc_kind, mc_info = _mailchimp_kind(m.mailchimp, live.mailchimp)
        ap_kind, ap_info = _accessplanit_kind(m.accessplanit, live.accessplanit)
        if mc_kind is None or ap_kind is None:
            continue
        mc_max = MAILCHIMP_TEXT_MAX_BYTES if mc_kind in (Kind.TEXT, Kind.PHONE) else None
        mc = _Side("Mailchimp", m.mailchimp, mc_kind, mc_max, mc_info.choices if mc_info else None)
        ap = _Side(
            "accessplanit",
            m.accessplanit,
            ap_kind,
            ap_info.max_length if ap_info else None,
            ap_info.options if ap_info else None,
        )
        flows = _flows(config, m)
        birthday_into_date = (m.mailchimp == "BIRTHDAY" or mc_kind is Kind.BIRTHDAY) and ap_kind is Kind.DATE
        if birthday_into_date and Flow.MAILCHIMP_TO_ACCESSPLANIT in flows:
            continue  # the Birthday rule reports it, with the seed's advice and the one-way alternative
        for flow in flows:
            src, dst = (ap, mc) if flow is Flow.ACCESSPLANIT_TO_MAILCHIMP else (mc, ap)
            for severity, message in _pair(flow, m.transform, src, dst):
                text = f"{src.name} → {dst.name} ({flow.label}): {message}"
                (out.error if severity == "error" else out.warning)(_where(i), text)


def validate_instance(config: InstanceConfig, live: LiveSchemas | None = None) -> ValidationReport:
    """Every rule at once; `live` adds the checks that need the vendors' schemas."""
    live = live or LiveSchemas()
    out = _Collector()
    _minimum_mappings(config, out)
    _identity(config, out)
    _names(config, out)
    _directions(config, out)
    _duplicates(config, out)
    _connections(config, out)
    _birthday_rule(config, live, out)
    _address_rule(config, out)
    if live.mailchimp is not None:
        _live_mailchimp(config, live.mailchimp, out)
    if live.accessplanit is not None:
        _live_accessplanit(config, live.accessplanit, out)
    _live_pairs(config, live, out)
    return ValidationReport(
        errors=[*live.errors, *_dedupe(out.errors)], warnings=[*live.warnings, *_dedupe(out.warnings)]
    )


def _dedupe(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


# -- reading the schemas live --------------------------------------------------------------------------------


class _Unreachable(Exception):
    pass


async def _get(client: httpx.AsyncClient, url: str, **kwargs: Any) -> httpx.Response:
    try:
        return await client.get(url, **kwargs)
    except httpx.HTTPError as exc:
        raise _Unreachable(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from exc


async def _read_mailchimp(
    config: InstanceConfig, client: httpx.AsyncClient
) -> tuple[MailchimpSchema | None, list[Problem], list[Problem]]:
    try:
        key = resolve_secret(config.mailchimp.api_key)
    except SecretUnavailable as exc:
        return None, [], [Problem("mailchimp.api_key", f"{exc}; the Mailchimp checks were skipped")]
    base = config.mailchimp.api_root(key)
    auth = httpx.BasicAuth("tandem", key)
    audience = config.mailchimp.audience_id
    try:
        response = await _get(client, f"{base}/lists/{audience}", auth=auth)
        if response.status_code == 401:
            return (
                None,
                [
                    Problem(
                        "mailchimp.api_key",
                        "Mailchimp refused the key (401 API Key Invalid): check the key and its data-centre suffix",
                    )
                ],
                [],
            )
        if response.status_code == 404:
            lists = await _get(client, f"{base}/lists", auth=auth, params={"count": 100})
            found = lists.json().get("lists", []) if lists.is_success else []
            names = ", ".join(f"{a.get('id')} ({a.get('name')})" for a in found) or "none"
            return (
                None,
                [
                    Problem(
                        "mailchimp.audience_id",
                        f"audience '{audience}' was not found with this API key; the key's audiences: {names}",
                    )
                ],
                [],
            )
        if not response.is_success:
            raise _Unreachable(f"HTTP {response.status_code}")
        name = str(response.json().get("name") or audience)
        fields_response = await _get(client, f"{base}/lists/{audience}/merge-fields", auth=auth, params={"count": 1000})
        if not fields_response.is_success:
            raise _Unreachable(f"HTTP {fields_response.status_code} reading merge fields")
        merge_fields = {
            str(f["tag"]).upper(): MergeFieldInfo(
                tag=str(f["tag"]).upper(),
                name=str(f.get("name") or f["tag"]),
                type=str(f.get("type") or "text"),
                required=bool(f.get("required")),
                options=f.get("options") or {},
            )
            for f in fields_response.json().get("merge_fields", [])
        }
    except _Unreachable as exc:
        return None, [], [Problem("mailchimp", f"Mailchimp could not be read ({exc}); its checks were skipped")]
    return MailchimpSchema(audience, name, merge_fields), [], []


def _accessplanit_field(entry: Mapping[str, Any]) -> AccessplanitFieldInfo:
    raw_name = str(entry.get("Name"))
    custom = bool(entry.get("CustomField")) or raw_name.startswith("CustomFields/")
    name = f"{CUSTOM_FIELD_PREFIX}{raw_name.split('/', 1)[-1]}" if custom else raw_name
    options = entry.get("Options")
    kind = ACCESSPLANIT_KINDS.get(str(entry.get("Type")), Kind.OTHER)
    if kind is Kind.TEXT and options:
        kind = Kind.CHOICE
    writable = entry.get("Writable")
    return AccessplanitFieldInfo(
        name=name,
        kind=kind,
        max_length=entry.get("MaxLength"),
        writable=None if writable is None else bool(writable),
        mandatory=bool(entry.get("Mandatory")),
        options=tuple(str(o) for o in options) if options else None,
    )


def _custom_metadata(entry: Mapping[str, Any], known: AccessplanitFieldInfo | None) -> AccessplanitFieldInfo:
    options = entry.get("Options")
    return AccessplanitFieldInfo(
        name=f"{CUSTOM_FIELD_PREFIX}{entry.get('Name')}",
        kind=ACCESSPLANIT_CUSTOM_KINDS.get(str(entry.get("Type")), Kind.OTHER),
        max_length=entry.get("MaxLength"),
        writable=known.writable if known else None,
        mandatory=bool(entry.get("Mandatory")),
        options=tuple(str(o) for o in options) if options else None,
    )


async def _read_accessplanit(
    config: InstanceConfig, client: httpx.AsyncClient
) -> tuple[AccessplanitSchema | None, list[Problem], list[Problem]]:
    try:
        key = resolve_secret(config.accessplanit.api_key)
    except SecretUnavailable as exc:
        return None, [], [Problem("accessplanit.api_key", f"{exc}; the accessplanit checks were skipped")]
    base = config.accessplanit.base_url.rstrip("/")
    headers = {"Authorization": f"Bearer {key}"}
    try:
        module = await _get(client, f"{base}/apihelp/v2/modules/User", headers=headers)
        if module.status_code == 401:
            return (
                None,
                [
                    Problem(
                        "accessplanit.api_key",
                        "accessplanit refused the key (401): check the key and "
                        "that it belongs to the tenant at accessplanit.base_url",
                    )
                ],
                [],
            )
        if not module.is_success:
            raise _Unreachable(f"HTTP {module.status_code} reading the User module")
        fields = {f.name: f for f in (_accessplanit_field(e) for e in module.json().get("Fields", []))}
        metadata = await _get(client, f"{base}/api/v2/CustomFieldMetadata", headers=headers, params={"$top": "1000"})
        if metadata.is_success:
            for entry in metadata.json().get("results", []):
                if str(entry.get("Module", "User")).lower() == "user":
                    info = _custom_metadata(entry, fields.get(f"{CUSTOM_FIELD_PREFIX}{entry.get('Name')}"))
                    fields[info.name] = info
        accounts: dict[str, str] = {}
        found: bool | None = None
        account = config.accessplanit.default_account_id
        if account:
            response = await _get(
                client,
                f"{base}/api/v2/Company",
                headers=headers,
                params={"$filter": f"ID eq '{account}'", "$select": "ID,Name"},
            )
            if not response.is_success:
                raise _Unreachable(f"HTTP {response.status_code} reading accounts")
            matches = response.json().get("results", [])
            found = bool(matches)
            if not found:
                some = await _get(
                    client, f"{base}/api/v2/Company", headers=headers, params={"$select": "ID,Name", "$top": "10"}
                )
                matches = some.json().get("results", []) if some.is_success else []
            accounts = {str(c.get("ID")): str(c.get("Name")) for c in matches}
    except _Unreachable as exc:
        return None, [], [Problem("accessplanit", f"accessplanit could not be read ({exc}); its checks were skipped")]
    return AccessplanitSchema(fields, accounts, found), [], []


async def read_live_schemas(
    config: InstanceConfig, *, timeout_s: float = 10.0, client: httpx.AsyncClient | None = None
) -> LiveSchemas:
    """Both vendors' schemas as the instance's keys see them; what cannot be read is a warning, not an error."""
    own = client is None
    client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=5.0))
    try:
        mailchimp, mc_errors, mc_warnings = await _read_mailchimp(config, client)
        accessplanit, ap_errors, ap_warnings = await _read_accessplanit(config, client)
    finally:
        if own:
            await client.aclose()
    return LiveSchemas(mailchimp, accessplanit, [*mc_errors, *ap_errors], [*mc_warnings, *ap_warnings])


def direction_summary(direction: Direction) -> str:
    return " and ".join(f.label for f in direction.flows)
