"""Reading a record through an instance's mappings and writing the target's payload (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tandem_mapper.domain.transforms import TransformError, convert
from tandem_shared.contracts import ErrorInfo, FieldMapping, Flow, InstanceConfig, System
from tandem_shared.contracts.instances import CUSTOM_FIELD_PREFIX

# accessplanit's documented limits (v1 Users & Accounts field matrix); a longer value is refused by the API.
ACCESSPLANIT_MAX_LENGTH = {"Forenames": 50, "Surname": 40}
ACCESSPLANIT_MANDATORY = {"Forenames": "first name", "Surname": "last name"}


def field_name(mapping: FieldMapping, system: System) -> str:
    return mapping.mailchimp if system is System.MAILCHIMP else mapping.accessplanit


def side_fields(instance: InstanceConfig, system: System) -> list[str]:
    """Every field of `system` the instance maps, in either direction; the address is the identity, not a field."""
    names: list[str] = []
    for mapping in instance.mappings:
        if mapping.is_identity:
            continue
        name = field_name(mapping, system)
        if name not in names:
            names.append(name)
    return names


def read_record(instance: InstanceConfig, system: System, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The record's values for the mapped fields it carries, by mapping name (absent fields stay absent)."""
    if system is System.MAILCHIMP:
        # Merge tags arrive upper case, next to the delivery's own lower-case data (id, list_id, email, …).
        return {name: fields[name] for name in side_fields(instance, system) if name in fields}
    custom = fields.get("CustomFields")
    custom = custom if isinstance(custom, Mapping) else {}
    record: dict[str, Any] = {}
    for name in side_fields(instance, system):
        if name.startswith(CUSTOM_FIELD_PREFIX):
            key = name[len(CUSTOM_FIELD_PREFIX) :].strip()
            if key in custom:
                record[name] = custom[key]
        elif name in fields:
            record[name] = fields[name]
    return record


@dataclass(frozen=True)
class MappedValue:
    source_field: str
    target_field: str
    value: Any


def map_record(instance: InstanceConfig, flow: Flow, record: Mapping[str, Any]) -> tuple[list[MappedValue], list[str]]:
    """The target-native values of the flow's mappings for the fields the record carries, and what was left out."""
    values: list[MappedValue] = []
    notes: list[str] = []
    for mapping in instance.mappings_for(flow):
        if mapping.is_identity:
            continue
        source = field_name(mapping, flow.source)
        target = field_name(mapping, flow.target)
        if source not in record:
            continue
        try:
            value = convert(mapping.transform, record[source], flow)
        except TransformError as exc:
            notes.append(f"{target} not sent: {source} {exc}")
            continue
        values.append(MappedValue(source, target, value))
    return values, notes


def build_payload(instance: InstanceConfig, target: System, email: str, values: Mapping[str, Any]) -> dict[str, Any]:
    if target is System.MAILCHIMP:
        return {
            "email_address": email,
            "status_if_new": instance.mailchimp.status_if_new,
            "merge_fields": dict(values),
        }
    payload: dict[str, Any] = {"Email": email}
    custom: dict[str, Any] = {}
    for name, value in values.items():
        if name.startswith(CUSTOM_FIELD_PREFIX):
            custom[name[len(CUSTOM_FIELD_PREFIX) :].strip()] = value
        else:
            payload[name] = value
    if custom:
        payload["CustomFields"] = custom
    return payload


def source_names(instance: InstanceConfig, flow: Flow) -> dict[str, str]:
    """target field → source field, for every field the flow maps."""
    return {
        field_name(m, flow.target): field_name(m, flow.source) for m in instance.mappings_for(flow) if not m.is_identity
    }


def accessplanit_problem(values: Mapping[str, Any], mapped: Mapping[str, str], *, creating: bool) -> ErrorInfo | None:
    """Why accessplanit would refuse these values (a permanent failure: retrying cannot help).

    `mapped` is target field → source field for the flow; on a create every mapped mandatory field needs a value.
    """
    for name, label in ACCESSPLANIT_MANDATORY.items():
        if name not in mapped:
            continue
        if (creating and not values.get(name)) or (name in values and not values[name]):
            return ErrorInfo(
                error_class="MissingMandatoryField",
                message=f"Contact has no {label} ({mapped[name]}); accessplanit requires {name}",
                permanent=True,
                field=name,
            )
    for name, limit in ACCESSPLANIT_MAX_LENGTH.items():
        value = values.get(name)
        if isinstance(value, str) and len(value) > limit:
            return ErrorInfo(
                error_class="ValueTooLong",
                message=f"{name} is {len(value)} characters long; accessplanit allows at most {limit}",
                permanent=True,
                field=name,
            )
    return None
