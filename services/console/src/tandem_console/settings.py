from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tandem_shared.settings import CommonSettings


class ConsoleSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_CONSOLE_", extra="ignore", env_ignore_empty=True)

    port: int = 8080
    database_url: str = Field(
        default="sqlite:///.tandem/console/console.db",
        description="sqlite:///path/to/file.db or postgresql://user@host/db (needs the 'postgres' extra).",
    )
    # Matches tandem.trace's retention: older executions could not be rebuilt from the topic anyway.
    retention_days: float = 14.0
    purge_interval_s: float = 3600.0
    batch_size: int = 500
    # Empty the store at start and read tandem.trace again from its beginning.
    rebuild_on_start: bool = False
    page_size: int = 50
    # Most executions one "replay these" may republish; a larger set must be narrowed by its filters first.
    replay_limit: int = 500
    publish_timeout_s: float = 10.0
    # Step output fields shown masked in the console (any depth, case-insensitive), e.g. ["DOB", "PHONE"] as JSON.
    # Display only: the trace keeps what the minimisation rule keeps (docs/security.md).
    masked_fields: list[str] = Field(default_factory=list)

    @property
    def masked(self) -> frozenset[str]:
        return frozenset(name.strip().lower() for name in self.masked_fields if name.strip())
