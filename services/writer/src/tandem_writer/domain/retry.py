"""Where a failed delivery goes next, and the headers it carries there (pure: no Kafka, no clock of its own)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tandem_shared.contracts import ErrorInfo, Headers
from tandem_shared.contracts.topics import COMMANDS_RETRY
from tandem_shared.redaction import redact_text

# Header values are cut so a huge vendor error body never bloats every record it travels with.
MAX_ERROR_MESSAGE = 1000

# Headers a forwarded record keeps from the one it came from (who it is for, what execution it belongs to).
PASSTHROUGH = (
    "content-type",
    Headers.INSTANCE_ID,
    Headers.EXECUTION_ID,
    Headers.ORIGINAL_EXECUTION_ID,
    Headers.EVENT_ID,
    Headers.IDEMPOTENCY_KEY,
    Headers.ORIGIN,
    Headers.REPLAYED_FROM,
)


@dataclass(frozen=True)
class Hop:
    """One forward of a command: to which topic, for which attempt, not before when."""

    topic: str
    attempt: int
    not_before: datetime


@dataclass(frozen=True)
class RetryPolicy:
    delays_s: tuple[float, ...]
    topics: tuple[str, ...] = COMMANDS_RETRY

    @classmethod
    def from_delays(cls, delays_s: Sequence[float]) -> RetryPolicy:
        return cls(tuple(float(d) for d in delays_s))

    @property
    def max_attempts(self) -> int:
        return len(self.delays_s) + 1

    def is_retry_topic(self, topic: str) -> bool:
        return topic in self.topics

    def tier_topic(self, retry_number: int) -> str:
        """Retry n (1-based) goes to tier n; retries past the last tier share it."""
        return self.topics[min(max(retry_number, 1), len(self.topics)) - 1]

    def after_failure(self, attempt: int, now: datetime) -> Hop | None:
        """The next attempt after `attempt` failed transiently, or None when it was the last one."""
        if attempt >= self.max_attempts:
            return None
        delay = self.delays_s[attempt - 1]
        return Hop(self.tier_topic(attempt), attempt + 1, now + timedelta(seconds=delay))

    def deferral(self, attempt: int, wait_s: float, now: datetime) -> Hop:
        """Try the same attempt again once another writer's claim on the contact is gone.

        The record goes to the slowest tier whose delay is not longer than the wait: the records ahead of it there
        are all due earlier, so it is never held back beyond its own due time.
        """
        retry_number = 1
        for n, delay in enumerate(self.delays_s[: len(self.topics)], start=1):
            if delay <= wait_s:
                retry_number = n
        return Hop(self.tier_topic(retry_number), attempt, now + timedelta(seconds=wait_s))


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_epoch_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def not_before(headers: Mapping[str, str]) -> datetime | None:
    raw = headers.get(Headers.NOT_BEFORE)
    if not raw:
        return None
    try:
        return from_epoch_ms(int(raw))
    except ValueError:
        return None


def header_attempt(headers: Mapping[str, str]) -> int | None:
    raw = headers.get(Headers.ATTEMPT)
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Origin:
    """Where a record sits now; a forward records the first such place as `x-original-*`."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


def forward_headers(
    source: Mapping[str, str],
    origin: Origin,
    *,
    attempt: int,
    error: ErrorInfo,
    now: datetime,
    not_before_at: datetime | None,
) -> dict[str, str]:
    headers = {name: source[name] for name in PASSTHROUGH if name in source}
    headers[Headers.ORIGINAL_TOPIC] = source.get(Headers.ORIGINAL_TOPIC, origin.topic)
    headers[Headers.ORIGINAL_PARTITION] = source.get(Headers.ORIGINAL_PARTITION, str(origin.partition))
    headers[Headers.ORIGINAL_OFFSET] = source.get(Headers.ORIGINAL_OFFSET, str(origin.offset))
    headers[Headers.ORIGINAL_TIMESTAMP] = source.get(Headers.ORIGINAL_TIMESTAMP, str(origin.timestamp_ms))
    headers[Headers.FIRST_FAILED_AT] = source.get(Headers.FIRST_FAILED_AT, now.isoformat())
    headers[Headers.LAST_FAILED_AT] = now.isoformat()
    headers[Headers.ATTEMPT] = str(attempt)
    headers[Headers.EXCEPTION_TYPE] = error.error_class
    headers[Headers.EXCEPTION_MESSAGE] = redact_text(error.message)[:MAX_ERROR_MESSAGE]
    headers[Headers.ERROR_PERMANENT] = "true" if error.permanent else "false"
    if not_before_at is not None:
        headers[Headers.NOT_BEFORE] = str(epoch_ms(not_before_at))
    return headers
