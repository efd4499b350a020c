"""The filters of the Executions list, shared by the JSON API, the web pages and "replay this filtered set"."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from tandem_console.domain import ExecutionStatus
from tandem_shared.contracts import Flow

_FLAGS = frozenset({"original_only", "exclude_no_changes"})


class ExecutionFilter(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    status: ExecutionStatus | None = Field(default=None, description="succeeded, failed, held or pending")
    flow: Flow | None = None
    instance: str | None = Field(default=None, description="instance id")
    since: datetime | None = Field(default=None, description="executions started at or after (naive = UTC)")
    until: datetime | None = Field(default=None, description="executions started before (naive = UTC)")
    original_only: bool = Field(default=False, description="hide retries and replays")
    exclude_no_changes: bool = Field(
        default=False, description="hide executions whose trigger detected no new or changed data"
    )
    email: str | None = Field(default=None, description="contact email address, or the start of one")
    accessplanit_user_id: str | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any, info: ValidationInfo) -> Any:
        # HTML forms send every field, empty ones as "", and leave unticked checkboxes out.
        if value is None or (isinstance(value, str) and not value.strip()):
            return False if info.field_name in _FLAGS else None
        return value.strip() if isinstance(value, str) else value

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def query_params(self) -> dict[str, str]:
        """The filter as query parameters (for links that keep it, e.g. the next page)."""
        params: dict[str, str] = {}
        for name, value in self.model_dump(exclude_defaults=True).items():
            if isinstance(value, datetime):
                params[name] = value.strftime("%Y-%m-%dT%H:%M:%S")
            elif isinstance(value, bool):
                params[name] = "1"
            else:
                params[name] = str(value.value if hasattr(value, "value") else value)
        return params
