"""Field catalogue of the simulated modules: one source for validation, $filter typing and the schema endpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FieldType = Literal["string", "int", "bool", "date", "datetime", "guid", "object"]
# How $filter/$orderby treat a field: IDs are strings in JSON but compare as numbers ("9" < "10").
QueryType = FieldType | Literal["id"]

DATE_FORMAT = "DD/MM/YYYY"  # accessplanit's Date of Birth format (integration guide); used for every date field
DATETIME_FORMAT = "YYYY-MM-DDTHH:MM:SS.fffZ"


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: FieldType
    max_length: int | None = None
    mandatory: bool = False
    writable: bool = False
    options: tuple[str, ...] | None = None
    numeric: bool = False  # a string of digits that sorts and compares as a number

    @property
    def format(self) -> str | None:
        return {"date": DATE_FORMAT, "datetime": DATETIME_FORMAT}.get(self.type)


# Max lengths other than ID/Forenames/Surname are not public; the values are assumptions (ASSUMPTIONS.md).
USER_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("ID", "string", max_length=10, numeric=True),
    FieldSpec("UniqueID", "guid"),
    FieldSpec("Forenames", "string", max_length=50, mandatory=True, writable=True),
    FieldSpec("Surname", "string", max_length=40, mandatory=True, writable=True),
    FieldSpec("Email", "string", max_length=255, writable=True),
    FieldSpec("Telephone", "string", max_length=50, writable=True),
    FieldSpec("Mobile", "string", max_length=50, writable=True),
    FieldSpec("JobTitle", "string", max_length=100, writable=True),
    FieldSpec("MainCompanyID", "string", max_length=10, mandatory=True, writable=True, numeric=True),
    FieldSpec("MainCompanyName", "string", max_length=255),
    FieldSpec("DateOfBirth", "date", writable=True),
    FieldSpec("MarketingOptIn", "bool", writable=True),
    FieldSpec("ExternalID", "string", max_length=100, writable=True),
    FieldSpec("Status", "string", writable=True, options=("Active", "Deleted")),
    FieldSpec("DateCreated", "datetime"),
    FieldSpec("DateUpdated", "datetime"),
    FieldSpec("CreatedByID", "string", max_length=10, numeric=True),
    FieldSpec("UpdatedByID", "string", max_length=10, numeric=True),
    FieldSpec("UpdatedByName", "string", max_length=255),
    FieldSpec("CustomFields", "object"),
)
USER_FIELD_MAP = {f.name: f for f in USER_FIELDS}

COMPANY_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("ID", "string", max_length=10, numeric=True),
    FieldSpec("Name", "string", max_length=255),
    FieldSpec("IsGuest", "bool"),
    FieldSpec("DateCreated", "datetime"),
    FieldSpec("DateUpdated", "datetime"),
)

CUSTOM_FIELD_METADATA_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("ID", "string", numeric=True),
    FieldSpec("Name", "string"),
    FieldSpec("Module", "string"),
    FieldSpec("Type", "string"),
    FieldSpec("MaxLength", "int"),
    FieldSpec("Mandatory", "bool"),
    FieldSpec("Options", "object"),
)

WEBHOOK_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("ID", "string", numeric=True),
    FieldSpec("Module", "string"),
    FieldSpec("Events", "object"),
    FieldSpec("TargetUrl", "string"),
    FieldSpec("HasSecret", "bool"),
    FieldSpec("DateCreated", "datetime"),
    FieldSpec("CreatedByID", "string", numeric=True),
)

WEBHOOK_INSTANCE_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("ID", "string", numeric=True),
    FieldSpec("WebhookID", "string", numeric=True),
    FieldSpec("Module", "string"),
    FieldSpec("Event", "string"),
    FieldSpec("Method", "string"),
    FieldSpec("TargetUrl", "string"),
    FieldSpec("ObjectID", "string", numeric=True),
    FieldSpec("Status", "string"),
    FieldSpec("Attempts", "int"),
    FieldSpec("LastStatusCode", "int"),
    FieldSpec("LastError", "string"),
    FieldSpec("NextAttemptAt", "datetime"),
    FieldSpec("DateCreated", "datetime"),
    FieldSpec("DateUpdated", "datetime"),
)

SYSTEM_EVENT_LOG_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("ID", "string", numeric=True),
    FieldSpec("DateCreated", "datetime"),
    FieldSpec("Module", "string"),
    FieldSpec("Action", "string"),
    FieldSpec("ObjectID", "string", numeric=True),
    FieldSpec("UserID", "string", numeric=True),
    FieldSpec("UserName", "string"),
    FieldSpec("Changes", "object"),
)

# CustomFieldMetadata.Type → the schema endpoint's type vocabulary.
CUSTOM_FIELD_TYPES: dict[str, FieldType] = {
    "Text": "string",
    "Date": "date",
    "Number": "int",
    "Boolean": "bool",
    "List": "string",
}


@dataclass(frozen=True)
class CustomFieldDef:
    id: str
    name: str
    type: str  # a CUSTOM_FIELD_TYPES key
    max_length: int | None = None
    options: tuple[str, ...] | None = None
    mandatory: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "ID": self.id,
            "Name": self.name,
            "Module": "User",
            "Type": self.type,
            "MaxLength": self.max_length,
            "Mandatory": self.mandatory,
            "Options": list(self.options) if self.options is not None else None,
        }


def field_types(specs: tuple[FieldSpec, ...]) -> dict[str, QueryType]:
    return {f.name: "id" if f.numeric else f.type for f in specs}
