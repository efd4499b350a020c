"""What of a contact's record Tandem keeps in its trace: the identity and the fields an instance maps, nothing else.

A vendor record carries much more than a sync needs (date of birth, phones, addresses, opt-in IP addresses, every
custom field). The trace, the console's store and `tandem.trace` keep only what the instance maps; everything else
is counted, never stored: `{"_not_mapped": "4 fields not mapped"}` stands in for it. Pure: values in, values out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tandem_shared.contracts import ChangeEvent, InstanceConfig, System
from tandem_shared.contracts.instances import CUSTOM_FIELD_PREFIX

NOT_MAPPED = "_not_mapped"

# What says who a record is about; kept whatever the instance maps.
IDENTITY_FIELDS: dict[System, frozenset[str]] = {
    # A Mailchimp webhook's member id and addresses (`upemail` carries both addresses), and its audience.
    System.MAILCHIMP: frozenset({"id", "new_id", "email", "old_email", "new_email", "list_id"}),
    System.ACCESSPLANIT: frozenset({"ID", "Email"}),
}
# What a vendor's answer to a write says about the member or user written, besides the fields written.
RESPONSE_IDENTITY_FIELDS = frozenset({"id", "ID", "email_address", "Email", "status"})
ACCESSPLANIT_CUSTOM_FIELDS = "CustomFields"


def mapped_names(instance: InstanceConfig, system: System) -> frozenset[str]:
    """The field names of `system` the instance maps (either direction); custom fields keep their prefix."""
    return frozenset(m.mailchimp if system is System.MAILCHIMP else m.accessplanit for m in instance.mappings)


def not_mapped_note(count: int) -> dict[str, str]:
    if not count:
        return {}
    return {NOT_MAPPED: f"{count} field{'s' if count != 1 else ''} not mapped"}


def minimise_fields(fields: Mapping[str, Any], system: System, instance: InstanceConfig | None) -> dict[str, Any]:
    """The identity and the mapped fields of a record as `system` sent it; with no instance, the identity only."""
    names = mapped_names(instance, system) if instance is not None else frozenset()
    identity = IDENTITY_FIELDS[system]
    kept: dict[str, Any] = {}
    dropped = 0
    for name, value in fields.items():
        if system is System.ACCESSPLANIT and name == ACCESSPLANIT_CUSTOM_FIELDS and isinstance(value, Mapping):
            custom = {k: v for k, v in value.items() if f"{CUSTOM_FIELD_PREFIX}{k}" in names}
            dropped += len(value) - len(custom)
            if custom:
                kept[name] = custom
        elif name in identity or name in names:
            kept[name] = value
        else:
            dropped += 1
    return {**kept, **not_mapped_note(dropped)}


def minimise_event(event: ChangeEvent, instance: InstanceConfig | None) -> dict[str, Any]:
    """The change event as JSON with its fields minimised."""
    out = event.model_dump(mode="json")
    out["fields"] = minimise_fields(event.fields, event.source, instance)
    return out


def minimise_response(response: Mapping[str, Any] | None, written: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A vendor's answer to a write, cut to the identity and the fields that were written (`written`, the command's
    payload): the rest of the member or user it returns is not Tandem's to keep."""
    if response is None:
        return None
    kept, dropped = _within(response, written or {})
    return {**kept, **not_mapped_note(dropped)}


def _within(value: Mapping[str, Any], shape: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    kept: dict[str, Any] = {}
    dropped = 0
    for name, item in value.items():
        if name in RESPONSE_IDENTITY_FIELDS:
            kept[name] = item
        elif name in shape:
            template = shape[name]
            if isinstance(item, Mapping) and isinstance(template, Mapping):
                inner, inner_dropped = _within(item, template)
                dropped += inner_dropped
                if inner:
                    kept[name] = inner
            else:
                kept[name] = item
        else:
            dropped += 1
    return kept, dropped


MASK = "••••"


def mask(value: Any, names: frozenset[str]) -> Any:
    """`value` for display with the fields named in `names` (any depth, case-insensitive) shown as `MASK`.

    Display only: what is stored was decided by the minimisation above."""
    if not names:
        return value
    if isinstance(value, Mapping):
        return {k: MASK if str(k).lower() in names else mask(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(item, names) for item in value]
    return value
