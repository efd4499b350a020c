"""Webhook deliveries as the vendors send them: accessplanit User JSON and Mailchimp form bodies, signed."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import orjson

AUDIENCE_ID = "a1b2c3d4e5"
# A person editing in accessplanit (the seed's demo admin), never Tandem's own integration user: changes made by
# the integration user are echoes and would rightly be skipped.
EDITOR_ID = "900002"
FIRST_USER_ID = 500_000


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """`t=<unix seconds>,v1=<HMAC-SHA256(secret, "<t>." + body)>`, the scheme both vendors' webhooks use."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def iso_ms(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Delivery:
    method: str
    path: str
    body: bytes
    headers: dict[str, str]
    contact: str
    label: str


def email_of(user_id: int) -> str:
    return f"bench.{user_id}@example.com"


def accessplanit_user(user_id: int, version: int, updated: datetime) -> dict[str, object]:
    """A full User record as the simulator's webhooks carry it (every field present, like the real payload)."""
    return {
        "ID": str(user_id),
        "UniqueID": f"00000000-0000-4000-8000-{user_id:012d}",
        "Forenames": f"Forename{version}",
        "Surname": f"Surname{user_id}",
        "Email": email_of(user_id),
        "Phone": "01632 960000",
        "Mobile": "07700 900000",
        "JobTitle": "Training Coordinator",
        "MainCompanyID": "2",
        "MainCompanyName": "Acme Training Ltd",
        "DOB": "1990-02-01T00:00:00",
        "MarketingOptIn": True,
        "ExternalID": None,
        "Status": "Active",
        "DateCreated": "2026-01-01T00:00:00.000Z",
        "DateUpdated": iso_ms(updated),
        "CreatedByID": EDITOR_ID,
        "UpdatedByID": EDITOR_ID,
        "UpdatedByName": "Demo Admin",
        "CustomFields": {
            "Mailchimp Company": "Acme",
            "Mailchimp Birthday": "02/01",
            "Newsletter Since": None,
            "Courses Attended": 3,
            "VIP": False,
            "Region": "North",
        },
    }


def accessplanit_update(
    *, instance_id: str, secret: str, user_id: int, version: int, updated: datetime, now: int, sequence: int
) -> Delivery:
    body = orjson.dumps(
        {
            "Module": "User",
            "Event": "updated",
            "WebhookID": "1",
            "WebhookInstanceID": str(sequence),
            "Timestamp": iso_ms(updated),
            "Data": accessplanit_user(user_id, version, updated),
        }
    )
    return Delivery(
        method="PUT",
        path=f"/webhooks/accessplanit/{instance_id}",
        body=body,
        headers={"Content-Type": "application/json", "X-Accessplanit-Signature": sign(secret, body, now)},
        contact=f"ap:{user_id}",
        label="accessplanit",
    )


def mailchimp_profile(
    *,
    instance_id: str,
    path_secret: str,
    signing_secret: str | None,
    user_id: int,
    version: int,
    fired: datetime,
    now: int,
) -> Delivery:
    """A `profile` webhook in the field order of Mailchimp's own samples (shared/fixtures/mailchimp-webhooks)."""
    email = email_of(user_id)
    body = urlencode(
        [
            ("type", "profile"),
            ("fired_at", fired.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")),
            ("data[id]", hashlib.md5(email.encode()).hexdigest()[:10]),
            ("data[list_id]", AUDIENCE_ID),
            ("data[email]", email),
            ("data[email_type]", "html"),
            ("data[merges][EMAIL]", email),
            ("data[merges][FNAME]", f"Forename{version}"),
            ("data[merges][LNAME]", f"Surname{user_id}"),
            ("data[merges][INTERESTS]", ""),
            ("data[ip_opt]", "127.0.0.1"),
        ]
    ).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signing_secret:
        headers["X-Mailchimp-Signature"] = sign(signing_secret, body, now)
    return Delivery(
        method="POST",
        path=f"/webhooks/mailchimp/{instance_id}/{path_secret}",
        body=body,
        headers=headers,
        contact=f"mc:{email}",
        label="mailchimp",
    )


def mailchimp_member_put(*, api_key: str, user_id: int, version: int) -> Delivery:
    """The write Tandem's writer makes, sent straight to the simulator: how fast the simulator itself can go."""
    email = email_of(user_id)
    body = orjson.dumps(
        {
            "email_address": email,
            "status_if_new": "subscribed",
            "merge_fields": {"FNAME": f"Forename{version}", "LNAME": f"Surname{user_id}"},
        }
    )
    token = base64.b64encode(f"bench:{api_key}".encode()).decode()
    return Delivery(
        method="PUT",
        path=f"/3.0/lists/{AUDIENCE_ID}/members/{hashlib.md5(email.encode()).hexdigest()}",
        body=body,
        headers={"Content-Type": "application/json", "Authorization": f"Basic {token}"},
        contact=email,
        label="mailchimp-direct",
    )


class Clock:
    """Strictly increasing change times, so every delivery is a distinct change (distinct deterministic event id)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._last = start or datetime.now(UTC)

    def next(self) -> datetime:
        now = datetime.now(UTC)
        self._last = max(now, self._last + timedelta(milliseconds=1))
        return self._last
