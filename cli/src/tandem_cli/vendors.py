"""The vendor clients the CLI's commands use, paid from the services' shared request budget when it can be reached.

The budget lives in Tandem's Redis (`REDIS_URL`). An operator's shell may not reach it (a laptop, a CI job); the
commands then still work, their requests counted in this process only, and a note says so.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tandem_shared.concurrency import ConcurrencyLimiter, LocalConcurrencyLimiter, RedisConcurrencyLimiter
from tandem_shared.redis.client import connect_url
from tandem_shared.settings import CommonSettings
from tandem_shared.vendors.accessplanit.client import AccessplanitClients
from tandem_shared.vendors.accessplanit.settings import AccessplanitSettings
from tandem_shared.vendors.mailchimp.client import MailchimpClients

# As the writer's defaults (TANDEM_WRITER_MAILCHIMP_*): Mailchimp's connections per account, a slot's lease, the wait.
MAILCHIMP_CONNECTIONS = 10
MAILCHIMP_LEASE_S = 15.0
MAILCHIMP_SLOT_WAIT_S = 60.0


@dataclass(frozen=True)
class VendorClients:
    mailchimp: MailchimpClients
    accessplanit: AccessplanitClients


async def _shared_redis(url: str) -> Redis | None:
    redis = connect_url(url, max_connections=16, timeout_s=2.0)
    try:
        await redis.ping()
    except (RedisError, OSError):
        await redis.aclose()
        print(
            "  note     Tandem's Redis did not answer (REDIS_URL): vendor requests are counted in this process only, "
            "not in the services' shared budget",
            file=sys.stderr,
        )
        return None
    return redis


@asynccontextmanager
async def vendor_clients(*, timeout_s: float) -> AsyncIterator[VendorClients]:
    redis = await _shared_redis(CommonSettings().redis_url)
    limiter: ConcurrencyLimiter = (
        RedisConcurrencyLimiter(
            redis, limit=MAILCHIMP_CONNECTIONS, lease_s=MAILCHIMP_LEASE_S, max_wait_s=MAILCHIMP_SLOT_WAIT_S
        )
        if redis is not None
        else LocalConcurrencyLimiter(limit=MAILCHIMP_CONNECTIONS, max_wait_s=MAILCHIMP_SLOT_WAIT_S)
    )
    mailchimp = MailchimpClients(limiter=limiter, timeout_s=timeout_s, slot_wait_s=MAILCHIMP_SLOT_WAIT_S)
    accessplanit = AccessplanitClients(redis, AccessplanitSettings())
    try:
        yield VendorClients(mailchimp, accessplanit)
    finally:
        await accessplanit.close()
        await mailchimp.close()  # closes the limiter, and with it the Redis connection
