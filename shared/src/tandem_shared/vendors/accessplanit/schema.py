"""accessplanit's User fields and accounts as the instance's key sees them, read through the client.

`read_schema` raises `KeyRefused` (401) or `SchemaUnreadable`; the mapping of entries to `AccessplanitFieldInfo`
is pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tandem_shared.contracts.instances import CUSTOM_FIELD_PREFIX
from tandem_shared.vendors.accessplanit.client import AccessplanitClient, AccessplanitError
from tandem_shared.vendors.priority import Priority
from tandem_shared.vendors.schema import KeyRefused, Kind, SchemaUnreadable

ACCESSPLANIT_KINDS = {
    "string": Kind.TEXT,
    "guid": Kind.TEXT,
    "int": Kind.NUMBER,
    "bool": Kind.BOOL,
    "date": Kind.DATE,
    # DOB and Date custom fields are date-times in JSON (ISO 8601); Tandem syncs their date part.
    "datetime": Kind.DATE,
}
ACCESSPLANIT_CUSTOM_KINDS = {
    "Text": Kind.TEXT,
    "Date": Kind.DATE,
    "Number": Kind.NUMBER,
    "Boolean": Kind.BOOL,
    "List": Kind.CHOICE,
}
# The User fields every tenant has (accessplanit's demo client, Models/User.cs), for checks without a live schema.
ACCESSPLANIT_DEFAULT_KINDS = {
    "Forenames": Kind.TEXT,
    "MiddleNames": Kind.TEXT,
    "Surname": Kind.TEXT,
    "Email": Kind.TEXT,
    "Phone": Kind.TEXT,
    "Mobile": Kind.TEXT,
    "JobTitle": Kind.TEXT,
    "DOB": Kind.DATE,
}
# Names an earlier specification used that no accessplanit source has, with the real name (reference §6).
ACCESSPLANIT_RENAMED_FIELDS = {"Telephone": "Phone", "DateOfBirth": "DOB"}


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


def user_field(entry: Mapping[str, Any]) -> AccessplanitFieldInfo:
    """One entry of the User module's `Fields` (API help)."""
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


def custom_field(entry: Mapping[str, Any], known: AccessplanitFieldInfo | None) -> AccessplanitFieldInfo:
    """One entry of CustomFieldMetadata; whether it is writable comes from the User module (`known`)."""
    options = entry.get("Options")
    return AccessplanitFieldInfo(
        name=f"{CUSTOM_FIELD_PREFIX}{entry.get('Name')}",
        kind=ACCESSPLANIT_CUSTOM_KINDS.get(str(entry.get("Type")), Kind.OTHER),
        max_length=entry.get("MaxLength"),
        writable=known.writable if known else None,
        mandatory=bool(entry.get("Mandatory")),
        options=tuple(str(o) for o in options) if options else None,
    )


def _results(document: Any) -> list[dict[str, Any]]:
    found = document.get("results", []) if isinstance(document, dict) else []
    return [r for r in found if isinstance(r, dict)]


async def _get(
    client: AccessplanitClient, path: str, *, params: dict[str, str] | None, priority: Priority, reading: str
) -> Any:
    """The answer's JSON; a refusal other than 401 is None when `reading` is empty, else unreadable."""
    try:
        return await client.request_json(
            "GET", path, action=f"read {reading or path}", priority=priority, params=params
        )
    except AccessplanitError as exc:
        if exc.status is None:
            raise SchemaUnreadable(exc.detail) from exc
        if exc.status == 401 and reading == "the User module":
            raise KeyRefused() from exc
        if reading:
            raise SchemaUnreadable(f"HTTP {exc.status} reading {reading}") from exc
        return None


async def read_schema(
    client: AccessplanitClient, *, default_account_id: str | None, priority: Priority
) -> AccessplanitSchema:
    module = await _get(client, "/apihelp/v2/modules/User", params=None, priority=priority, reading="the User module")
    entries = module.get("Fields", []) if isinstance(module, dict) else []
    fields = {f.name: f for f in (user_field(e) for e in entries)}
    metadata = await _get(client, "/api/v2/CustomFieldMetadata", params={"$top": "1000"}, priority=priority, reading="")
    for entry in _results(metadata):
        if str(entry.get("Module", "User")).lower() == "user":
            info = custom_field(entry, fields.get(f"{CUSTOM_FIELD_PREFIX}{entry.get('Name')}"))
            fields[info.name] = info
    accounts: dict[str, str] = {}
    found: bool | None = None
    if default_account_id:
        params = {"$filter": f"ID eq '{default_account_id}'", "$select": "ID,Name"}
        matches = _results(await _get(client, "/api/v2/Company", params=params, priority=priority, reading="accounts"))
        found = bool(matches)
        if not found:
            some = {"$select": "ID,Name", "$top": "10"}
            matches = _results(await _get(client, "/api/v2/Company", params=some, priority=priority, reading=""))
        accounts = {str(c.get("ID")): str(c.get("Name")) for c in matches}
    return AccessplanitSchema(fields, accounts, found)
