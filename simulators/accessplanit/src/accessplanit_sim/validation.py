"""Pure validation of User writes (v1 Users & Accounts field matrix, assumed unchanged in v2).

Returns every problem at once so a client can fix a record in one round trip.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .fields import USER_FIELD_MAP, CustomFieldDef

EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")


@dataclass(frozen=True)
class FieldError:
    field: str | None
    message: str

    def to_json(self) -> dict[str, str | None]:
        return {"field": self.field, "message": self.message}


@dataclass
class UserWrite:
    """A validated write: standard-field values and custom-field values, both already normalised."""

    fields: dict[str, Any] = field(default_factory=dict)
    custom_fields: dict[str, Any] = field(default_factory=dict)
    errors: list[FieldError] = field(default_factory=list)


@dataclass(frozen=True)
class WriteContext:
    companies: Mapping[str, str]  # company ID → name
    custom_fields: Sequence[CustomFieldDef]
    custom_fields_writable: bool
    # A write of a read-only field (Fullname, HasEmail, the counts, …): refused (the default) or ignored. What a real
    # tenant does is undocumented (ASSUMPTIONS.md).
    ignore_read_only: bool = False


CREATE_DEFAULTS: dict[str, Any] = {
    "ExternalID": None,
    "Email": None,
    "Title": [],
    "MiddleNames": None,
    "Phone": None,
    "Mobile": None,
    "Address": None,
    "Town": None,
    "County": None,
    "Postcode": None,
    "Country": [],
    "JobTitle": None,
    "DOB": None,
    "MarketingOptIn": False,
    "SmsAuthorised": False,
    "ContactMethod": [],
    "Tags": None,
    "Status": "Active",
}

ISO_HINT = "YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS"
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|[+-]\d{2}:\d{2})?")


def parse_date(value: str) -> str | None:
    """An ISO 8601 date or date-time as the platform stores it (`YYYY-MM-DDTHH:MM:SS`, the zone kept when one is
    written), or None when the text is not one. A date alone is midnight; nothing is converted between zones."""
    if _ISO_DATE.fullmatch(value):
        value = f"{value}T00:00:00"
    elif not _ISO_DATETIME.fullmatch(value):
        return None
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value


def is_email(value: str) -> bool:
    return EMAIL_PATTERN.fullmatch(value) is not None


def validate_user_write(body: object, ctx: WriteContext, *, creating: bool) -> UserWrite:
    result = UserWrite()
    if not isinstance(body, dict):
        result.errors.append(FieldError(None, "The request body must be a JSON object."))
        return result

    for name, value in body.items():
        if name == "CustomFields":
            _custom_fields(value, ctx, result)
            continue
        spec = USER_FIELD_MAP.get(name)
        if spec is None:
            result.errors.append(FieldError(name, f"'{name}' is not a field of the User module."))
        elif not spec.writable:
            if not ctx.ignore_read_only:
                result.errors.append(FieldError(name, f"'{name}' is read-only and cannot be written."))
        else:
            _standard_field(name, value, ctx, result)

    for name, spec in USER_FIELD_MAP.items():
        if creating and spec.mandatory and name not in body:
            result.errors.append(FieldError(name, f"'{name}' is mandatory."))
    if creating and not result.errors:
        result.fields = {**CREATE_DEFAULTS, **result.fields}
    return result


def _standard_field(name: str, value: object, ctx: WriteContext, result: UserWrite) -> None:
    spec = USER_FIELD_MAP[name]
    error = result.errors.append
    if spec.type == "bool":
        if not isinstance(value, bool):
            error(FieldError(name, f"'{name}' must be true or false."))
        else:
            result.fields[name] = value
        return
    if spec.type == "list":
        _list_field(name, value, spec.options or (), result)
        return
    if name == "MainCompanyID":
        company_id = _company_id(value)
        if company_id is None:
            error(FieldError(name, "'MainCompanyID' is mandatory and must be a company ID."))
        elif company_id not in ctx.companies:
            error(FieldError(name, f"Company '{company_id}' does not exist."))
        else:
            result.fields[name] = company_id
        return
    if value is None:
        if spec.mandatory:
            error(FieldError(name, f"'{name}' is mandatory."))
        elif name == "Status":
            error(FieldError(name, "'Status' must be one of: Active, Deleted."))
        else:
            result.fields[name] = None
        return
    if not isinstance(value, str):
        error(FieldError(name, f"'{name}' must be a string."))
        return
    if spec.mandatory and not value.strip():
        error(FieldError(name, f"'{name}' is mandatory."))
    elif spec.max_length is not None and len(value) > spec.max_length:
        error(FieldError(name, f"'{name}' must be at most {spec.max_length} characters (got {len(value)})."))
    elif spec.options is not None and value not in spec.options:
        error(FieldError(name, f"'{name}' must be one of: {', '.join(spec.options)}."))
    elif name == "Email" and value and not is_email(value):
        error(FieldError(name, f"'{value}' is not a valid email address."))
    elif spec.local_datetime and value:
        stored = parse_date(value)
        if stored is None:
            error(FieldError(name, f"'{name}' must be an ISO 8601 date or date-time ({ISO_HINT})."))
        else:
            result.fields[name] = stored
    else:
        result.fields[name] = value


def _list_field(name: str, value: object, options: tuple[str, ...], result: UserWrite) -> None:
    """Title, Country, ContactMethod: a list of strings, each a value that already exists in the platform."""
    if value is None:
        result.fields[name] = []
        return
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        result.errors.append(FieldError(name, f"'{name}' must be a list of strings."))
        return
    unknown = [v for v in value if v not in options]
    if unknown:
        result.errors.append(
            FieldError(
                name, f"{', '.join(repr(v) for v in unknown)} not found in {name}; values: {', '.join(options)}."
            )
        )
    else:
        result.fields[name] = list(value)


def _company_id(value: object) -> str | None:
    # Clients send either "2" or 2; IDs are strings in every response.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip().isdigit():
        return value.strip()
    return None


def _custom_fields(value: object, ctx: WriteContext, result: UserWrite) -> None:
    if not isinstance(value, dict):
        result.errors.append(FieldError("CustomFields", "'CustomFields' must be an object keyed by field name."))
        return
    defs = {d.name: d for d in ctx.custom_fields}
    for name, item in value.items():
        path = f"CustomFields/{name}"
        definition = defs.get(name)
        if definition is None:
            result.errors.append(FieldError(path, f"There is no User custom field named '{name}'."))
        elif not ctx.custom_fields_writable:
            result.errors.append(FieldError(path, "Custom fields are read-only through the API."))
        else:
            message = custom_value_error(definition, item)
            if message is None:
                dated = definition.type == "Date" and isinstance(item, str)
                result.custom_fields[name] = parse_date(item) if dated else item
            else:
                result.errors.append(FieldError(path, message))


def custom_value_error(definition: CustomFieldDef, value: object) -> str | None:
    """Why `value` does not fit the custom field's metadata, or None when it fits. None always clears a field."""
    if value is None:
        return None
    name = definition.name
    match definition.type:
        case "Text":
            if not isinstance(value, str):
                return f"'{name}' must be text."
            if definition.max_length is not None and len(value) > definition.max_length:
                return f"'{name}' must be at most {definition.max_length} characters (got {len(value)})."
        case "Date":
            if not isinstance(value, str) or parse_date(value) is None:
                return f"'{name}' must be an ISO 8601 date or date-time ({ISO_HINT})."
        case "Number":
            if isinstance(value, bool) or not isinstance(value, int):
                return f"'{name}' must be a whole number."
        case "Boolean":
            if not isinstance(value, bool):
                return f"'{name}' must be true or false."
        case "List":
            options = definition.options or ()
            if value not in options:
                return f"'{name}' must be one of: {', '.join(options)}."
    return None
