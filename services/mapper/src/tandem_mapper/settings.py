from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from tandem_shared.settings import CommonSettings


class MapperSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_MAPPER_", extra="ignore", env_ignore_empty=True)

    group_id: str = "tandem-mapper"
    # Consumers in this process, each with its own partitions of tandem.changes (in order within a partition):
    # one waiting on Kafka or Redis no longer holds up the others. More than the partitions would sit idle.
    workers: int = 6
    # How often each replica looks for held changes no one is releasing (after a restart or a replica's death).
    held_sweep_s: float = 5.0
    # How long what Tandem knows about a contact is kept after its last change.
    state_ttl_days: int = 180
