"""AuditRecord: one operator action (who, what, when, how it ended), published on `tandem.trace` (topics.TRACE) as
the `data_out` of a record of stage `audit` whose execution id is the audit id, so dashboards see operator actions
beside the steps they caused and the console keeps its audit log from the trace like the rest of its store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field, ValidationError

from tandem_shared.contracts.common import Contract


class AuditRecord(Contract):
    audit_id: str = Field(description="Unique: a record read twice (a redelivery, a rebuild) is kept once.")
    at: datetime
    who: str = Field(description="The account, token name or OIDC subject; '(not named)' for a refused login.")
    via: str = Field(description="How they got in: password, token, oidc, no-login.")
    action: str = Field(description="The action: the console route's name (pause_instance, replay_one, log_in, …).")
    target: str = Field(description="The path and query acted on; personal data (an email filter) left out.")
    outcome: int = Field(description="The HTTP status answered: 2xx/3xx done, 4xx refused, 5xx failed.")
    source: str = Field(default="console", description="The process that recorded it.")

    @classmethod
    def from_data_out(cls, data_out: dict[str, Any] | None) -> AuditRecord | None:
        """The audit record a trace record of stage `audit` carries; None if it carries none."""
        try:
            return cls.model_validate(data_out or {})
        except ValidationError:
            return None
