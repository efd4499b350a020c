"""ErasureRequest: `tandem contacts forget` (or the console's operator action) asks every service to remove one
contact from its own stores. Each service in `ERASURE_SERVICES` applies it and acknowledges it with an
`ErasureAcknowledgement`, carried on `tandem.trace` (topics.TRACE) as the `data_out` of a record of stage `erasure`
whose execution id is the request id: the console and dashboards see it like any step, and `tandem contacts forget
--wait` waits for one from each service. An acknowledgement names the contact by its keyed hash, never the address."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import Field, ValidationError

from tandem_shared.contact_hash import contact_hash
from tandem_shared.contracts.common import Contract, email_key


class ErasureRequest(Contract):
    request_id: str = Field(description="Names the request in the acknowledgements (trace records) of each service.")
    email: str = Field(min_length=3, description="The address to forget (compared lower-cased and trimmed).")
    instance_id: str | None = Field(default=None, description="Only this instance's stores; None: every instance.")
    requested_at: datetime
    requested_by: str = Field(default="operator", description="Who asked: the CLI user or the console operator.")

    @property
    def address(self) -> str:
        return email_key(self.email)

    @property
    def contact(self) -> str:
        """The keyed hash that stands for the address in key names (and in this request's Kafka key)."""
        return contact_hash(self.email)

    @property
    def scope(self) -> str:
        return self.instance_id or "every instance"


# Every service that holds a contact's data, each of which acknowledges every request.
ERASURE_SERVICES = ("ingest", "mapper", "writer", "console")


class ErasureAcknowledgement(Contract):
    request_id: str
    service: str = Field(description="One of ERASURE_SERVICES.")
    contact: str = Field(description="The contact's keyed hash (`tandem_shared.contact_hash`), never the address.")
    instance_id: str | None = Field(default=None, description="As in the request: None for every instance.")
    removed: dict[str, int] = Field(default_factory=dict, description="What the service removed, in counts.")
    kept: str = Field(default="", description="What the service keeps by design, and why (no personal data).")
    acknowledged_at: datetime

    @classmethod
    def from_data_out(cls, data_out: dict[str, Any] | None) -> ErasureAcknowledgement | None:
        """The acknowledgement a trace record of stage `erasure` carries; None if it carries none."""
        try:
            return cls.model_validate(data_out or {})
        except ValidationError:
            return None


def by_service(acknowledgements: Iterable[ErasureAcknowledgement]) -> dict[str, ErasureAcknowledgement]:
    """One request's acknowledgements, one per service however many times it acknowledged: each replica of a service
    acknowledges every request (and a restart may acknowledge one again). What they removed is added up — the
    replicas share their stores, so each item was removed by one of them and counted there — and the service
    acknowledged when the first of them did."""
    merged: dict[str, ErasureAcknowledgement] = {}
    for ack in acknowledgements:
        seen = merged.get(ack.service)
        if seen is None:
            merged[ack.service] = ack
            continue
        removed = dict(seen.removed)
        for what, count in ack.removed.items():
            removed[what] = removed.get(what, 0) + count
        first = min(seen.acknowledged_at, ack.acknowledged_at)
        merged[ack.service] = seen.model_copy(update={"removed": removed, "acknowledged_at": first})
    return merged
