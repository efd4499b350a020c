"""Product rules for an instance configuration (pure: no I/O).

`validate_instance(config, live)` runs every rule, reports every problem at once (all-or-nothing: an operator
applies a configuration only when it has no errors), and each problem names the field and the fix. Warnings do not
block. `live` holds both vendors' schemas as `tandem_shared.instance_validation.live` read them; without them the
rules that need them use each vendor's defaults or are skipped.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from tandem_shared.contracts import Direction, FieldMapping, Flow, InstanceConfig, Transform
from tandem_shared.contracts.instances import ACCESSPLANIT_EMAIL, CUSTOM_FIELD_PREFIX, MAILCHIMP_EMAIL
from tandem_shared.instance_validation.compatibility import Side, pair_problems
from tandem_shared.instance_validation.problems import LiveSchemas, Problem, ValidationReport
from tandem_shared.vendor_urls import VendorUrlRefused, check_vendor_url
from tandem_shared.vendors.accessplanit.schema import (
    ACCESSPLANIT_DEFAULT_KINDS,
    ACCESSPLANIT_RENAMED_FIELDS,
    AccessplanitFieldInfo,
    AccessplanitSchema,
)
from tandem_shared.vendors.mailchimp.schema import MAILCHIMP_DEFAULT_KINDS, MailchimpSchema, MergeFieldInfo
from tandem_shared.vendors.schema import Kind

# The seed's minimum mappings per flow (the address is always the identity, so it is implied Mailchimp → accessplanit).
MINIMUM_MAPPINGS: dict[Flow, tuple[str, ...]] = {
    Flow.ACCESSPLANIT_TO_MAILCHIMP: ("FNAME", "LNAME", "EMAIL"),
    Flow.MAILCHIMP_TO_ACCESSPLANIT: ("FNAME", "LNAME"),
}
SUGGESTED_ACCESSPLANIT_FIELD = {"FNAME": "Forenames", "LNAME": "Surname", "EMAIL": "Email"}
ACCESSPLANIT_DATE_OF_BIRTH = ("DOB",)
MAILCHIMP_TEXT_MAX_BYTES = 255


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
        elif m.accessplanit in ACCESSPLANIT_RENAMED_FIELDS:
            real = ACCESSPLANIT_RENAMED_FIELDS[m.accessplanit]
            out.error(
                _where(i, "accessplanit"),
                f"accessplanit has no User field '{m.accessplanit}': the field is called '{real}' "
                f"(as accessplanit's own API client names it); set accessplanit: {real}",
            )


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
    ap = config.accessplanit
    if ap.webhook_path_secret is None and ap.webhook_secret is None:
        out.warning(
            "accessplanit.webhook_path_secret",
            "not set: accessplanit's webhooks come to a URL anyone can call, and each call costs a read of the named "
            "user from your request budget; set it to a secret reference and register "
            "/webhooks/accessplanit/<instance>/<secret> with accessplanit",
        )
    for where, url, vendor in (
        ("accessplanit.base_url", config.accessplanit.base_url, "accessplanit"),
        ("mailchimp.api_base_url", config.mailchimp.api_base_url, "mailchimp"),
    ):
        if url is not None and not url.lower().startswith(("http://", "https://")):
            out.error(where, f"'{url}' is not an http(s) URL")
        elif url is not None:
            # The services refuse to send the instance's key anywhere else (tandem_shared.vendor_urls).
            try:
                check_vendor_url(url, vendor)
            except VendorUrlRefused as exc:
                out.error(where, str(exc))


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
                f"{m.accessplanit} (a full date with a year): Tandem would have to invent the year. Map it to a text "
                "custom field instead (create a Text custom field in accessplanit, e.g. 'Mailchimp Birthday', and "
                "set accessplanit: 'custom:Mailchimp Birthday'), as accessplanit's integration guide advises; or set "
                "direction: accessplanit_to_mailchimp with transform: birthday to send the date of birth one way "
                "only (the month and day as written)",
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
    if schema.double_optin and config.mailchimp.status_if_new == "subscribed":
        # Mailchimp's set-consent-correctly guide: on a double opt-in audience new contacts go in as `pending`.
        out.warning(
            "mailchimp.status_if_new",
            f"audience '{schema.audience_name}' ({schema.audience_id}) uses double opt-in, but new contacts would be "
            "added as subscribed without the confirmation email; set status_if_new: pending unless they have "
            "confirmed elsewhere",
        )
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


def _live_pairs(config: InstanceConfig, live: LiveSchemas, out: _Collector) -> None:
    for i, m in enumerate(config.mappings):
        if m.is_identity:
            continue
        mc_kind, mc_info = _mailchimp_kind(m.mailchimp, live.mailchimp)
        ap_kind, ap_info = _accessplanit_kind(m.accessplanit, live.accessplanit)
        if mc_kind is None or ap_kind is None:
            continue
        mc_max = MAILCHIMP_TEXT_MAX_BYTES if mc_kind in (Kind.TEXT, Kind.PHONE) else None
        mc = Side("Mailchimp", m.mailchimp, mc_kind, mc_max, mc_info.choices if mc_info else None)
        ap = Side(
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
            for severity, message in pair_problems(flow, m.transform, src, dst):
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


def direction_summary(direction: Direction) -> str:
    return " and ".join(f.label for f in direction.flows)
