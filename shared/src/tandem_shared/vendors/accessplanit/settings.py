"""How Tandem talks to accessplanit, the same for every service (ingest's poller and the writer share the budget)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class AccessplanitSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_ACCESSPLANIT_", extra="ignore", env_ignore_empty=True)

    # accessplanit allows 5,000 requests per hour per endpoint (module) and key; the margin absorbs requests made
    # outside the budget (webhook registration, an operator's script) and clock differences between the two windows.
    requests_per_window: int = 4800
    window_s: float = 3600.0
    # How long one request may wait for a budget slot before the work is handed back to be retried later; far
    # below the poll interval and Kafka's max.poll.interval.ms.
    budget_max_wait_s: float = 5.0
    # When a 429 carries no Retry-After, everybody sharing the key holds off this long.
    rate_limited_pause_s: float = 30.0
    http_timeout_s: float = 15.0
