from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from tandem_shared.settings import CommonSettings


class MapperSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_MAPPER_", extra="ignore", env_ignore_empty=True)

    group_id: str = "tandem-mapper"
    # Changes are taken from tandem.changes in batches of up to this many, and decided with a few round trips to
    # Redis and Kafka per batch rather than several per change.
    batch_max_records: int = 500
    # How long a poll waits for the first record; a batch is whatever has arrived by then, never waited to fill.
    batch_timeout_ms: int = 100
    # After a batch failed (Redis or Kafka unreachable), the pause before it is decided again.
    failure_pause_s: float = 1.0
    # How often each replica looks for held changes no one is releasing (after a restart or a replica's death).
    held_sweep_s: float = 5.0
    # How long what Tandem knows about a contact is kept after its last change.
    state_ttl_days: int = 180
