"""Infrastructure steps of a delivery (Redis, Kafka) repeated until they succeed: they never decide an outcome.

Repeating helps only when the failure is the infrastructure's. A step that fails on the record's own data (a
value out of range, a type it cannot hold: `DATA_ERRORS`) fails the same way on every repetition, and repeating
it would hold up the partition behind that record for good; with `poison_on=DATA_ERRORS` such a failure raises
`PoisonRecord` at once, for the caller to dead-letter the record with its reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tandem_shared.concurrency import Backoff
from tandem_shared.logging import get_logger

log = get_logger("tandem.writer.delivery")

T = TypeVar("T")

# Raised by the data, not by a connection: redis-py, aiokafka and httpx report their failures as their own classes
# (RedisError, KafkaError, TimeoutError, OSError), none of which is one of these.
DATA_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError, ArithmeticError)


class PoisonRecord(Exception):
    """A step failed on the record's own data: no repetition can succeed."""

    def __init__(self, step: str, cause: Exception) -> None:
        super().__init__(f"{step} failed on this record's data: {type(cause).__name__}: {cause}")
        self.step = step


async def durably(
    what: str,
    action: Callable[[], Awaitable[T]],
    backoff_s: tuple[float, float],
    *,
    poison_on: tuple[type[Exception], ...] = (),
) -> T:
    """Repeat `action` until it succeeds; only cancellation (shutdown, rebalance) or a `poison_on` error stops it."""
    backoff = Backoff(*backoff_s, jitter=False)
    while True:
        try:
            return await action()
        except asyncio.CancelledError:
            raise
        except poison_on as exc:
            raise PoisonRecord(what, exc) from exc
        except Exception as exc:
            log.warning("delivery step failed; retrying", step=what, error=str(exc) or type(exc).__name__)
            await asyncio.sleep(backoff.next_delay())
