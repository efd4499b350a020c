"""Infrastructure steps of a delivery (Redis, Kafka) repeated until they succeed: they never decide an outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tandem_shared.concurrency import Backoff
from tandem_shared.logging import get_logger

log = get_logger("tandem.writer.delivery")

T = TypeVar("T")


async def durably(what: str, action: Callable[[], Awaitable[T]], backoff_s: tuple[float, float]) -> T:
    """Repeat `action` until it succeeds; only cancellation (shutdown, rebalance) stops it."""
    backoff = Backoff(*backoff_s, jitter=False)
    while True:
        try:
            return await action()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("delivery step failed; retrying", step=what, error=str(exc) or type(exc).__name__)
            await asyncio.sleep(backoff.next_delay())
