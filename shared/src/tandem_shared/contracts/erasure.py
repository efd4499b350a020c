"""ErasureRequest: `tandem contacts forget` (or the console's operator action) asks every service to remove one
contact from its own stores. Each service applies it and acknowledges with a trace record that names the request,
never the address."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

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
