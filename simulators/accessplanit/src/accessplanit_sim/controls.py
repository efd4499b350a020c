"""Simulator-only runtime state: injected latency and faults, the webhook kill switch, rate limiting and stats.

None of this exists on a real tenant; it lets tests reproduce outages deterministically (counts, not probabilities).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .settings import DeleteMode, RateLimitScope, SimSettings, WebhookPayloadMode


class Fault(BaseModel):
    """One injected fault. Matches API requests (never /_sim) by optional method and path prefix."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["status", "timeout"] = "status"
    status: int = Field(default=503, ge=400, le=599)
    count: int | None = Field(default=None, ge=1, description="Requests to affect; None = until cleared.")
    method: str | None = None
    path_prefix: str | None = Field(default=None, description="Case-insensitive, e.g. /api/v2/User")
    retry_after: int = Field(
        default=1, ge=0, description="A 429's Retry-After seconds (sent as a real 429 sends it, when that header is on)"
    )

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_prefix is None or path.lower().startswith(self.path_prefix.lower())


class ControlsUpdate(BaseModel):
    """Body of `POST /_sim/controls`: only the fields sent are changed; a misspelt name is a 400, not a no-op."""

    model_config = ConfigDict(extra="forbid")

    webhooks_failing: bool | None = None
    latency_ms: int | None = Field(default=None, ge=0)
    faults: list[Fault] | None = None
    rate_limit_per_window: int | None = Field(default=None, ge=1)
    rate_limit_window_seconds: float | None = Field(default=None, gt=0)
    webhook_retry_delays: list[float] | None = None
    hang_seconds: float | None = Field(default=None, gt=0)
    custom_fields_writable: bool | None = None
    upsert_enabled: bool | None = None
    delete_mode: DeleteMode | None = None
    webhook_payload_mode: WebhookPayloadMode | None = None
    webhook_update_method: Literal["PUT", "PATCH"] | None = None
    webhook_signing_enabled: bool | None = None
    rate_limit_scope: RateLimitScope | None = None


class Controls:
    def __init__(self, settings: SimSettings) -> None:
        self._settings = settings
        self.release = asyncio.Event()
        self.reset()

    def reset(self) -> None:
        settings = self._settings
        self.webhooks_failing = False
        self.latency_ms = 0
        self.faults: list[Fault] = []
        self.rate_limit_per_window = settings.rate_limit_per_window
        self.rate_limit_window_seconds = settings.rate_limit_window_seconds
        self.webhook_retry_delays = list(settings.webhook_retry_delays)
        self.hang_seconds = settings.hang_seconds
        self.custom_fields_writable = settings.custom_fields_writable
        self.upsert_enabled = settings.upsert_enabled
        self.delete_mode: DeleteMode = settings.delete_mode
        self.webhook_payload_mode: WebhookPayloadMode = settings.webhook_payload_mode
        self.webhook_update_method: Literal["PUT", "PATCH"] = settings.webhook_update_method
        self.webhook_signing_enabled = settings.webhook_signing_enabled
        self.rate_limit_scope: RateLimitScope = settings.rate_limit_scope
        self.rate_limiter = RateLimiter()
        self.stats: Counter[tuple[str, str, int]] = Counter()
        self.release_hung_requests()

    def apply(self, update: ControlsUpdate) -> None:
        for name, value in update.model_dump(exclude_unset=True).items():
            if value is None:
                continue
            if name == "faults":
                self.faults = [Fault.model_validate(f) for f in value]
                self.release_hung_requests()
            else:
                setattr(self, name, value)

    def release_hung_requests(self) -> None:
        # Wake every request held by a timeout fault, then re-arm for the next ones.
        self.release.set()
        self.release = asyncio.Event()

    def take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path):
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count == 0:
                        self.faults.remove(fault)
                return fault
        return None

    def snapshot(self) -> dict[str, object]:
        return {
            "webhooks_failing": self.webhooks_failing,
            "latency_ms": self.latency_ms,
            "faults": [f.model_dump() for f in self.faults],
            "rate_limit_per_window": self.rate_limit_per_window,
            "rate_limit_window_seconds": self.rate_limit_window_seconds,
            "webhook_retry_delays": self.webhook_retry_delays,
            "hang_seconds": self.hang_seconds,
            "custom_fields_writable": self.custom_fields_writable,
            "upsert_enabled": self.upsert_enabled,
            "delete_mode": self.delete_mode,
            "webhook_payload_mode": self.webhook_payload_mode,
            "webhook_update_method": self.webhook_update_method,
            "webhook_signing_enabled": self.webhook_signing_enabled,
            "rate_limit_scope": self.rate_limit_scope,
        }


class RateLimiter:
    """Sliding window per (who, module): at most `limit` requests in any `window` seconds. `who` is the tenant or one
    credential (the `rate_limit_scope` switch)."""

    def __init__(self) -> None:
        self._hits: dict[tuple[str, str], deque[float]] = {}

    def check(self, credential: str, module: str, limit: int, window: float) -> float | None:
        """Record a request; return None when allowed, else the seconds until one more would be allowed."""
        now = time.monotonic()
        hits = self._hits.setdefault((credential, module), deque())
        while hits and hits[0] <= now - window:
            hits.popleft()
        if len(hits) >= limit:
            return hits[len(hits) - limit] + window - now
        hits.append(now)
        return None
