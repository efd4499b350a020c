from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from tandem_shared.settings import CommonSettings


class IngestSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_INGEST_", extra="ignore", env_ignore_empty=True)

    host: str = "127.0.0.1"
    port: int = 8000
    # Vendors give up on a webhook after ~10 s; answer 503 before that so they retry rather than time out.
    publish_timeout_s: float = 8.0
    max_body_bytes: int = 256 * 1024
    # A signed delivery older (or newer) than this is refused: a captured request cannot be replayed later.
    signature_tolerance_s: int = 300
