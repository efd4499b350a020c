from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from tandem_shared.settings import CommonSettings


class WriterSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_WRITER_", extra="ignore", env_ignore_empty=True)

    group_id: str = "tandem-writer"
    http_timeout_s: float = 30.0

    # Mailchimp allows 10 simultaneous connections per account; every writer replica shares these through Redis.
    mailchimp_max_connections: int = 10
    # A slot's lease in Redis, renewed while its request runs: a crashed replica's slots return after this long.
    mailchimp_lease_s: float = 15.0
    # How long a write waits for a free slot before it is given back as a transient failure (retried later).
    mailchimp_slot_wait_s: float = 60.0
    # Mailchimp may keep working on a request we timed out on for up to 120 s; its slot stays taken that long.
    mailchimp_timed_out_slot_hold_s: float = 120.0
