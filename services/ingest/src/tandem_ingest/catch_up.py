"""Unsigned accessplanit deliveries beyond the instance's re-read allowance: answered now, read by the catch-up poll.

An unsigned delivery costs one User read, and accessplanit allows 5,000 requests an hour per module, shared with
the writer and the poller: about 1.4 a second. An import touching thousands of users sends deliveries far faster.
Up to `accessplanit_rereads_per_minute` deliveries of an instance a minute (counted across replicas in Redis) are
read back one by one, as usual. Beyond that a delivery is *deferred*: its user and arrival time go into the
instance's deferred set, the poller is woken, and the delivery is answered 202. The catch-up poll reads changed
users a page (100) per request (`$filter=DateUpdated gt …`), so an import costs a request per page instead of one
per delivery.

Nothing is lost and nothing is read too early: a deferral is removed only by a read that started after the
delivery arrived, either the page that listed the user or, for a user no page listed (a deletion, a change that
kept DateUpdated), a read of that user alone once a complete round has passed (`poller`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from redis.exceptions import RedisError

from tandem_ingest.poller import DeferredUsers, polls
from tandem_ingest.trace import DeferralStep
from tandem_shared.contracts import InstanceConfig, TraceRecord
from tandem_shared.logging import get_logger
from tandem_shared.ratelimit import RateBudget
from tandem_shared.redis.keys import reread_window_key

log = get_logger("tandem.ingest")

TraceSink = Callable[[TraceRecord], Awaitable[None]]


class CatchUpUnavailable(Exception):
    """The deferral could not be stored: the delivery is answered 503 and accessplanit retries it."""


class RereadAllowance(Protocol):
    async def allows(self, instance_id: str) -> bool:
        """True when this delivery's user may be read now (a slot of the instance's allowance was taken)."""
        ...


class RedisRereadAllowance:
    """A sliding minute per instance, shared by every ingest replica (the same window as the vendor budgets)."""

    def __init__(self, budget: RateBudget) -> None:
        self._budget = budget

    async def allows(self, instance_id: str) -> bool:
        return await self._budget.try_take(reread_window_key(instance_id)) == 0


class CatchUp:
    def __init__(
        self,
        allowance: RereadAllowance,
        deferred: DeferredUsers,
        *,
        wake: Callable[[str], None],
        trace: TraceSink,
        enabled: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`enabled` only with the poller running in this deployment: a deferral needs a poll to answer it."""
        self._allowance = allowance
        self._deferred = deferred
        self._wake = wake
        self._trace = trace
        self._enabled = enabled
        self._clock = clock

    async def defers(self, instance: InstanceConfig, user_id: str) -> str | None:
        """The execution id of the deferral when this delivery is deferred; None when its user is read now."""
        if not self._enabled or not polls(instance):
            return None
        try:
            if await self._allowance.allows(instance.id):
                return None
            await self._deferred.defer(instance.id, user_id, int(self._clock() * 1000))
        except RedisError as exc:
            raise CatchUpUnavailable(str(exc) or type(exc).__name__) from exc
        self._wake(instance.id)
        step = DeferralStep(instance.id, user_id)
        try:
            await self._trace(
                step.deferred(
                    "More unsigned deliveries than the instance's re-read allowance: the user will be read by the "
                    "catch-up poll (a page of users per request) instead of a read of its own"
                )
            )
        except Exception as exc:  # the deferral is stored; its trace is best effort
            log.warning("deferral trace not published", instance_id=instance.id, error=str(exc))
        return step.execution_id
