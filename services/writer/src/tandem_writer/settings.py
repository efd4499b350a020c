from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from tandem_shared.settings import CommonSettings


class WriterSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_WRITER_", extra="ignore", env_ignore_empty=True)

    group_id: str = "tandem-writer"
    http_timeout_s: float = 30.0
