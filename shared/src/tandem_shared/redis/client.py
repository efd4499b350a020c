"""The one place a Redis connection is made: each service opens one client (one pool) in its composition and
hands it to every store it builds. TLS (`rediss://`) and ACL users belong here.

Replies are decoded to `str` (`decode_responses`): every key and value Tandem stores is text.
"""

from __future__ import annotations

import redis
from redis.asyncio import BlockingConnectionPool, Redis

from tandem_shared.settings import CommonSettings

# Under a backlog a writer has hundreds of commands in hand: past this many connections a call waits for a free
# one (up to `_POOL_WAIT_S`) instead of failing, as the default pool of 100 would.
DEFAULT_MAX_CONNECTIONS = 64
_POOL_WAIT_S = 20.0
_SOCKET_TIMEOUT_S = 5.0


def connect(settings: CommonSettings, *, max_connections: int = DEFAULT_MAX_CONNECTIONS) -> Redis:
    return connect_url(settings.redis_url, max_connections=max_connections)


def connect_url(
    url: str, *, max_connections: int = DEFAULT_MAX_CONNECTIONS, timeout_s: float = _SOCKET_TIMEOUT_S
) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=_POOL_WAIT_S,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )
    # The client owns the pool it is given here: closing the client closes the pool.
    return Redis.from_pool(pool)


def connect_sync(url: str, *, timeout_s: float = 2.0) -> redis.Redis:
    """A blocking client for short command-line look-ups."""
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


def text(value: bytes | str) -> str:
    """A reply as text, from a client that decodes replies or one that does not."""
    return value.decode("utf-8") if isinstance(value, bytes) else value
