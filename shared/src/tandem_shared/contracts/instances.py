"""InstanceConfig: one customer's sync — which audience, which direction, which fields, paused or not.

Secrets are never stored here, only references to them (`env:NAME` or `file:/path`), resolved where they are used.
The structural rules live in this model (types, names, secret references); the product rules (the seed's minimum
mappings, the Birthday rule, type compatibility with the live schemas) live in `tandem_shared.instance_validation`,
so a service reading the topic never refuses a configuration an operator already applied.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

from tandem_shared.contracts.common import Contract, Flow


def _check_secret_ref(value: str) -> str:
    scheme, _, rest = value.partition(":")
    if scheme not in ("env", "file") or not rest:
        raise ValueError(
            "a secret must be a reference, 'env:VARIABLE' or 'file:/path/to/secret', never the secret itself"
        )
    return value


SecretRef = Annotated[
    str,
    AfterValidator(_check_secret_ref),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^(env|file):.+",
            "description": "A reference to a secret: 'env:VARIABLE' or 'file:/path/to/secret' (a mounted "
            "Kubernetes Secret). Never the secret itself.",
        }
    ),
]

CUSTOM_FIELD_PREFIX = "custom:"
MAILCHIMP_EMAIL = "EMAIL"
ACCESSPLANIT_EMAIL = "Email"


class Direction(StrEnum):
    ACCESSPLANIT_TO_MAILCHIMP = "accessplanit_to_mailchimp"
    MAILCHIMP_TO_ACCESSPLANIT = "mailchimp_to_accessplanit"
    BOTH = "both"

    def allows(self, flow: Flow) -> bool:
        return self is Direction.BOTH or self.value == flow.value

    @property
    def flows(self) -> tuple[Flow, ...]:
        return tuple(f for f in Flow if self.allows(f))


class EmailChangePolicy(StrEnum):
    # Tandem's default: the contact keeps its identity and only its address changes.
    CHANGE_EMAIL = "change_email"
    # The seed product's behaviour: a changed address becomes a new contact on the other side.
    NEW_CONTACT = "new_contact"


class Transform(StrEnum):
    """How a value is converted on its way between the two systems (no transform: text, trimmed)."""

    # accessplanit dates (ISO 8601 date-times, e.g. DOB 1990-03-28T00:00:00) ⇄ Mailchimp date fields (YYYY-MM-DD).
    DATE = "date"
    # Mailchimp BIRTHDAY (MM/DD) ⇄ an accessplanit text custom field holding MM/DD; from DOB one way only.
    BIRTHDAY = "birthday"
    # Phone numbers kept as text, trimmed (never parsed as numbers, so a leading 0 or + survives).
    PHONE = "phone"
    # Mailchimp ADDRESS (an object) → one line of text in accessplanit; Mailchimp → accessplanit only.
    ADDRESS = "address"
    # Numbers: Mailchimp sends them as text in webhooks; accessplanit number fields need a number.
    NUMBER = "number"


def _upper_tag(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


def _stripped(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


class FieldMapping(Contract):
    mailchimp: Annotated[str, BeforeValidator(_upper_tag)] = Field(
        pattern=r"^[A-Z][A-Z0-9_]{0,9}$",
        description="Mailchimp merge tag (FNAME, LNAME, PHONE, BIRTHDAY, COMPANY, …) or EMAIL for the address.",
    )
    accessplanit: Annotated[str, BeforeValidator(_stripped)] = Field(
        min_length=1,
        description="accessplanit User field (Forenames, Surname, Email, Phone, Mobile, DOB, …) or "
        "'custom:<Custom Field Name>' for a User custom field.",
    )
    direction: Direction = Field(
        default=Direction.BOTH, description="Which way this field syncs; within the instance's own direction."
    )
    transform: Transform | None = Field(default=None, description="How the value is converted on the way.")

    @property
    def custom_field(self) -> str | None:
        """The custom field's name when this maps to an accessplanit custom field."""
        if self.accessplanit.startswith(CUSTOM_FIELD_PREFIX):
            return self.accessplanit[len(CUSTOM_FIELD_PREFIX) :].strip()
        return None

    @property
    def is_identity(self) -> bool:
        return self.mailchimp == MAILCHIMP_EMAIL or self.accessplanit == ACCESSPLANIT_EMAIL

    def allows(self, flow: Flow) -> bool:
        return self.direction.allows(flow)

    def label(self) -> str:
        return f"{self.mailchimp} ⇄ {self.accessplanit}"


class MailchimpConnection(Contract):
    api_key: SecretRef
    audience_id: str = Field(min_length=1, description="The audience (list) id contacts sync with.")
    # Real Mailchimp: https://<dc>.api.mailchimp.com/3.0 with dc from the key; set this for the simulator.
    api_base_url: str | None = Field(default=None, description="Only for a simulator or a proxy.")
    status_if_new: Literal["subscribed", "pending"] = Field(
        default="subscribed",
        description="Status of contacts Tandem creates: 'pending' makes Mailchimp send a confirmation email.",
    )
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
    base_url: str = Field(min_length=1, description="Tenant URL up to and excluding /api/v2.")
    api_key: SecretRef
    default_account_id: str | None = Field(
        default=None, description="Account (Company) that users created from Mailchimp join, e.g. 'Guest Account'."
    )
    integration_user_id: str | None = Field(
        default=None, description="Platform user owning the API key; its writes are Tandem's own (echoes)."
    )
    webhook_secret: SecretRef | None = None
    # The path secret in the webhook URL accessplanit calls (/webhooks/accessplanit/{instance}/{secret}), as for
    # Mailchimp: a delivery without it is refused before the user is read back with the instance's key.
    webhook_path_secret: SecretRef | None = None


class ReconcileSchedule(Contract):
    """An instance's scheduled runs (`reconcile: {every: 24h, repair: false}` in its configuration)."""

    every: str = Field(pattern=r"^[1-9][0-9]*[mhd]$", description="Interval: minutes, hours or days, e.g. 24h.")
    repair: bool = False

    @property
    def every_s(self) -> float:
        unit = {"m": 60, "h": 3600, "d": 86400}[self.every[-1]]
        return int(self.every[:-1]) * unit


class InstanceConfig(Contract):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="Stable id: lower case, digits, hyphens.")
    name: str = Field(min_length=1)
    version: int = Field(default=1, ge=1, description="Set by `tandem instances apply`: previous + 1.")
    direction: Direction
    mailchimp: MailchimpConnection
    accessplanit: AccessplanitConnection
    mappings: list[FieldMapping]
    email_change_policy: EmailChangePolicy = EmailChangePolicy.CHANGE_EMAIL
    paused: bool = Field(default=False, description="A paused instance writes nothing; its changes are held.")
    discard_held_on_resume: bool = Field(
        default=False,
        description="Written with paused=false (`tandem instances resume --discard-buffered`, the console's enable): "
        "true drops the changes held while paused, each traced as discarded, instead of releasing them in order.",
    )
    reconcile: ReconcileSchedule | None = Field(
        default=None, description="Scheduled reconciliation runs; none when absent (runs on demand only)."
    )

    def mappings_for(self, flow: Flow) -> list[FieldMapping]:
        if not self.direction.allows(flow):
            return []
        return [m for m in self.mappings if m.direction.allows(flow)]


SCHEMA_ID = "https://tandem.invalid/schemas/instance.schema.json"


def instance_json_schema() -> dict[str, object]:
    """The JSON Schema of instance configuration files (docs/instance.schema.json is generated from it)."""
    schema = InstanceConfig.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Tandem instance configuration",
        "description": "One customer's sync between an accessplanit tenant and a Mailchimp audience. Check a file "
        "with `tandem instances validate -f FILE`; publish it with `tandem instances apply -f FILE`.",
        **{k: v for k, v in schema.items() if k != "title"},
    }
