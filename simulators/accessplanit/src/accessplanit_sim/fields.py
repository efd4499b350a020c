"""Field catalogue of the simulated modules: one source for validation, $filter typing and the schema endpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FieldType = Literal["string", "int", "bool", "date", "datetime", "guid", "list", "object"]
# How $filter/$orderby treat a field: IDs are strings in JSON but compare as numbers ("9" < "10").
QueryType = FieldType | Literal["id"]

# In JSON every date is ISO 8601: the demo client's model types DOB, DateCreated and DateUpdated as .NET DateTime
# (accessplanit/api-v2-demo Models/User.cs); DD/MM/YYYY is only how the platform's screens show a date.
DATE_FORMAT = "YYYY-MM-DD"
DATETIME_FORMAT = "YYYY-MM-DDTHH:MM:SS.fffZ"
# DOB and Date custom fields: a .NET DateTime without a time zone, as the platform returns it (format assumed).
LOCAL_DATETIME_FORMAT = "YYYY-MM-DDTHH:MM:SS"


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: FieldType
    max_length: int | None = None
    mandatory: bool = False
    writable: bool = False
    options: tuple[str, ...] | None = None
    numeric: bool = False  # a string of digits that sorts and compares as a number
    local_datetime: bool = False  # a date-time without a time zone (DOB), as written

    @property
    def format(self) -> str | None:
        if self.local_datetime:
            return LOCAL_DATETIME_FORMAT
        return {"date": DATE_FORMAT, "datetime": DATETIME_FORMAT}.get(self.type)


# The tenant's lookup lists for the list fields. Whether the API takes labels or lookup IDs is unconfirmed (reference
# §6); the simulator takes labels (an assumption).
TITLES = ("Mr", "Mrs", "Ms", "Miss", "Mx", "Dr", "Prof")
COUNTRIES = ("United Kingdom", "Ireland", "France", "Germany", "Spain", "United States")
CONTACT_METHODS = ("Email", "Phone", "SMS", "Post")

# The User record as accessplanit's own demo client models it (accessplanit/api-v2-demo Models/User.cs; reference
# §6): a selection of its properties, with the demo's names. Lengths come from the v1 field matrix for ID, Forenames,
# Surname and MiddleNames; every other max length is an assumption (ASSUMPTIONS.md). Title, Country and ContactMethod
# are lists of strings in the demo model; their values must already exist in the platform (v1 matrix for Title and
# Country; ContactMethod by analogy — an assumption).
USER_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("ID", "string", max_length=10, numeric=True),
    FieldSpec("UniqueID", "guid"),
    FieldSpec("ExternalID", "string", max_length=100, writable=True),
    FieldSpec("Email", "string", max_length=255, writable=True),
    FieldSpec("HasEmail", "bool"),
    FieldSpec("Title", "list", writable=True, options=TITLES),
    FieldSpec("Forenames", "string", max_length=50, mandatory=True, writable=True),
    FieldSpec("MiddleNames", "string", max_length=250, writable=True),
    FieldSpec("Surname", "string", max_length=40, mandatory=True, writable=True),
    FieldSpec("Fullname", "string"),
    FieldSpec("Phone", "string", max_length=50, writable=True),
    FieldSpec("Mobile", "string", max_length=50, writable=True),
    FieldSpec("Address", "string", max_length=500, writable=True),
    FieldSpec("Town", "string", max_length=100, writable=True),
    FieldSpec("County", "string", max_length=100, writable=True),
    FieldSpec("Postcode", "string", max_length=20, writable=True),
    FieldSpec("Country", "list", writable=True, options=COUNTRIES),
    FieldSpec("JobTitle", "string", max_length=100, writable=True),
    FieldSpec("DOB", "datetime", writable=True, local_datetime=True),
    FieldSpec("MarketingOptIn", "bool", writable=True),
    FieldSpec("SmsAuthorised", "bool", writable=True),
    FieldSpec("ContactMethod", "list", writable=True, options=CONTACT_METHODS),
    FieldSpec("MainCompanyID", "string", max_length=10, mandatory=True, writable=True, numeric=True),
    FieldSpec("MainCompanyName", "string", max_length=255),
    FieldSpec("UserCompaniesIDs", "string"),
    FieldSpec("Tags", "string", max_length=500, writable=True),
    FieldSpec("Status", "string", writable=True, options=("Active", "Deleted")),
    FieldSpec("ActiveCoursesCount", "int"),
    FieldSpec("NotesCount", "int"),
    FieldSpec("DateCreated", "datetime"),
    FieldSpec("DateUpdated", "datetime"),
    FieldSpec("CreatedByID", "string", max_length=10, numeric=True),
    FieldSpec("CreatedByName", "string", max_length=255),
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
    "Date": "datetime",  # stored and returned like DOB: YYYY-MM-DDTHH:MM:SS
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
