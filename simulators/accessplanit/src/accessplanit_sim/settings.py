"""Simulator settings. Every behaviour the public accessplanit record leaves open is a field here (see ASSUMPTIONS.md).

Environment variables use the prefix `ACCESSPLANIT_SIM_`; list values are JSON, e.g.
`ACCESSPLANIT_SIM_WEBHOOK_RETRY_DELAYS=[1,2]`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DeleteMode = Literal["soft-then-hard", "hard", "soft"]
WebhookPayloadMode = Literal["full", "ids"]
UpsertKey = Literal["ID", "Email", "ExternalID"]
RateLimitScope = Literal["tenant", "credential"]


class SimSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ACCESSPLANIT_SIM_", extra="ignore", env_ignore_empty=True)

    host: str = "127.0.0.1"
    port: int = 8102
    data_dir: Path = Path(".tandem/sim/accessplanit")

    # Reads
    top_default: int = Field(default=100, ge=0)
    top_max: int = Field(default=1000, ge=1)
    case_insensitive_fields: list[str] = Field(default_factory=lambda: ["Email"])

    # Writes
    custom_fields_writable: bool = False
    ui_user_ids: list[str] = Field(
        default_factory=lambda: ["900002"],
        description="Platform users whose API writes stand in for edits in the platform UI (custom fields writable).",
    )
    upsert_enabled: bool = False
    upsert_match_keys: list[UpsertKey] = Field(default_factory=lambda: list[UpsertKey](["ID", "Email"]))
    delete_mode: DeleteMode = "soft-then-hard"
    # A write naming a read-only or derived field (Fullname, HasEmail, counts, audit fields): 400 when true, the field
    # silently ignored when false. Undocumented either way.
    reject_read_only_writes: bool = True
    noop_updates_touch: bool = True

    # Auth
    token_ttl_seconds: int = Field(default=3600, ge=1)
    refresh_token_ttl_seconds: int = Field(default=1_209_600, ge=1)
    token_refresh_enabled: bool = False

    # Rate limit: 5,000 requests an hour per end-point (module) is documented (v1 Feeds overview, reference §8);
    # counting it for the whole tenant across keys and tokens, and the Retry-After header, are assumptions.
    rate_limit_per_window: int = Field(default=5000, ge=1)
    rate_limit_window_seconds: float = Field(default=3600.0, gt=0)
    rate_limit_scope: RateLimitScope = "tenant"
    rate_limit_retry_after_header: bool = True

    # Webhooks
    webhook_retry_delays: list[float] = Field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0, 16.0])
    webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    # Updates arrive as PUT or PATCH (v2 Webhooks page: "PUT & PATCH"); which one a tenant uses is not documented.
    webhook_update_method: Literal["PUT", "PATCH"] = "PUT"
    # Signing is not documented: deliveries are unsigned unless this is on (then a webhook registered with a Secret
    # is signed). Off, a registration carrying a Secret is refused so a receiver never waits for a signature.
    webhook_signing_enabled: bool = False
    webhook_payload_mode: WebhookPayloadMode = "full"
    webhook_ordered: bool = False

    # Injected-fault defaults
    hang_seconds: float = Field(default=30.0, gt=0)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "accessplanit.sqlite3"
