"""Enumerations and small value objects shared by every contract."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, field_validator

from tandem_shared.contact_hash import contact_hash


class System(StrEnum):
    ACCESSPLANIT = "accessplanit"
    MAILCHIMP = "mailchimp"

    @property
    def label(self) -> str:
        return "accessplanit" if self is System.ACCESSPLANIT else "Mailchimp"

    @property
    def other(self) -> System:
        return System.MAILCHIMP if self is System.ACCESSPLANIT else System.ACCESSPLANIT


class Flow(StrEnum):
    ACCESSPLANIT_TO_MAILCHIMP = "accessplanit_to_mailchimp"
    MAILCHIMP_TO_ACCESSPLANIT = "mailchimp_to_accessplanit"

    @classmethod
    def from_source(cls, source: System) -> Flow:
        return cls.ACCESSPLANIT_TO_MAILCHIMP if source is System.ACCESSPLANIT else cls.MAILCHIMP_TO_ACCESSPLANIT

    @property
    def source(self) -> System:
        return System.ACCESSPLANIT if self is Flow.ACCESSPLANIT_TO_MAILCHIMP else System.MAILCHIMP

    @property
    def target(self) -> System:
        return self.source.other

    @property
    def label(self) -> str:
        return f"{self.source.label} → {self.target.label}"


class Trigger(StrEnum):
    WEBHOOK = "webhook"
    POLL = "poll"
    BACKFILL = "backfill"
    REPLAY = "replay"
    # A difference a reconciliation run found between the two sides, published so the pipeline repairs it.
    RECONCILE = "reconcile"


class Contract(BaseModel):
    """Base for everything on the wire: unknown fields are kept out, values are validated on both ends."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def normalize_email(email: str | None) -> str | None:
    if email is None:
        return None
    email = email.strip()
    return email or None


def email_key(email: str) -> str:
    return email.strip().lower()


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: MD5 of the lower-cased address."""
    return hashlib.md5(email_key(email).encode("utf-8")).hexdigest()


class ContactIdentity(Contract):
    """Who a change or command is about, in the terms of both systems."""

    accessplanit_user_id: str | None = None
    email: str | None = None
    old_email: str | None = None
    mailchimp_member_id: str | None = None

    @field_validator("email", "old_email")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        return normalize_email(value)

    @property
    def contact_key(self) -> str:
        """Stable per-contact ordering key.

        accessplanit changes are keyed by user id, so an email change stays in order with the updates around it;
        Mailchimp changes are keyed by the address they were about before any change, as its keyed hash
        (`tandem_shared.contact_hash`): the key lands in Kafka record keys and Redis key names.
        """
        if self.accessplanit_user_id:
            return f"ap:{self.accessplanit_user_id}"
        address = self.old_email or self.email
        if address:
            return f"mc:{contact_hash(address)}"
        return "unknown"


def utcnow() -> datetime:
    return datetime.now(UTC)
