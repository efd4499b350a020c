"""The fixed tenant every simulator start (and `POST /_sim/reset`) returns to."""

from __future__ import annotations

from dataclasses import dataclass

from .fields import CustomFieldDef

SEED_TIMESTAMP = "2026-01-01T00:00:00.000Z"


@dataclass(frozen=True)
class PlatformUser:
    id: str
    name: str
    api_key: str
    username: str | None = None
    password: str | None = None


PLATFORM_USERS: tuple[PlatformUser, ...] = (
    PlatformUser("900001", "Tandem Integration", "tandem-demo-integration-key"),
    PlatformUser(
        "900002",
        "Demo Admin",
        "tandem-demo-admin-key",
        username="demo.admin",
        password="tandem-demo-admin-password",
    ),
)

COMPANIES: tuple[dict[str, object], ...] = (
    {"ID": "1", "Name": "Guest Account", "IsGuest": True},
    {"ID": "2", "Name": "Acme Training Ltd", "IsGuest": False},
)

CUSTOM_FIELDS: tuple[CustomFieldDef, ...] = (
    CustomFieldDef("1", "Mailchimp Company", "Text", max_length=255),
    CustomFieldDef("2", "Mailchimp Birthday", "Text", max_length=5),
    CustomFieldDef("3", "Newsletter Since", "Date"),
    CustomFieldDef("4", "Courses Attended", "Number"),
    CustomFieldDef("5", "VIP", "Boolean"),
    CustomFieldDef("6", "Region", "List", options=("North", "South", "East", "West")),
)

FIRST_USER_ID = 100001
