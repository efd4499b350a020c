"""InstanceConfig: one customer's sync — which audience, which direction, which fields, paused or not.

Secrets are never stored here, only references to them (`env:NAME` or `file:/path`), resolved where they are used.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from tandem_shared.contracts.common import Contract, Flow


def _check_secret_ref(value: str) -> str:
    scheme, _, rest = value.partition(":")
    if scheme not in ("env", "file") or not rest:
        raise ValueError(
            "a secret must be a reference, 'env:VARIABLE' or 'file:/path/to/secret', never the secret itself"
        )
    return value


SecretRef = Annotated[str, AfterValidator(_check_secret_ref)]


class Direction(StrEnum):
    ACCESSPLANIT_TO_MAILCHIMP = "accessplanit_to_mailchimp"
    MAILCHIMP_TO_ACCESSPLANIT = "mailchimp_to_accessplanit"
    BOTH = "both"

    def allows(self, flow: Flow) -> bool:
        return self is Direction.BOTH or self.value == flow.value


class EmailChangePolicy(StrEnum):
    # Tandem's default: the contact keeps its identity and only its address changes.
    CHANGE_EMAIL = "change_email"
    # The seed product's behaviour: a changed address becomes a new contact on the other side.
    NEW_CONTACT = "new_contact"


class FieldMapping(Contract):
    mailchimp: str = Field(description="Mailchimp merge tag (FNAME, LNAME, PHONE, …) or EMAIL for the address.")
    accessplanit: str = Field(
        description="accessplanit User field (Forenames, Surname, Email, …) or 'custom:<Custom Field Name>'."
    )
    direction: Direction = Direction.BOTH
    transform: str | None = Field(default=None, description="Named transform applied on the way (see the mapper).")


class MailchimpConnection(Contract):
    api_key: SecretRef
    audience_id: str
    # Real Mailchimp: https://<dc>.api.mailchimp.com/3.0 with dc from the key; set this for the simulator.
    api_base_url: str | None = None
    status_if_new: Literal["subscribed", "pending"] = "subscribed"
    # The path secret in the webhook URL Mailchimp calls (/webhooks/mailchimp/{instance}/{secret}).
    webhook_secret: SecretRef | None = None
    # Mailchimp's per-webhook signing secret, shown once when the webhook is created (`tandem webhooks register`).
    # Set → every delivery's X-Mailchimp-Signature is verified; unset → only the path secret protects the URL.
    webhook_signing_secret: SecretRef | None = None

    def api_root(self, api_key: str) -> str:
        """The API root: the configured one (simulator), else the data centre named by the key's suffix."""
        if self.api_base_url:
            return self.api_base_url.rstrip("/")
        dc = api_key.rsplit("-", 1)[-1]
        return f"https://{dc}.api.mailchimp.com/3.0"


class AccessplanitConnection(Contract):
    base_url: str = Field(description="Tenant URL up to and excluding /api/v2.")
    api_key: SecretRef
    default_account_id: str | None = Field(
        default=None, description="Account (Company) that users created from Mailchimp join."
    )
    integration_user_id: str | None = Field(
        default=None, description="Platform user owning the API key; its writes are Tandem's own (echoes)."
    )
    webhook_secret: SecretRef | None = None


class InstanceConfig(Contract):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    name: str
    version: int = 1
    direction: Direction
    mailchimp: MailchimpConnection
    accessplanit: AccessplanitConnection
    mappings: list[FieldMapping]
    email_change_policy: EmailChangePolicy = EmailChangePolicy.CHANGE_EMAIL
    paused: bool = False
    discard_held_on_resume: bool = Field(
        default=False,
        description="Written with paused=false: true drops the changes held while paused instead of releasing them.",
    )

    def mappings_for(self, flow: Flow) -> list[FieldMapping]:
        return [m for m in self.mappings if m.direction.allows(flow)]
