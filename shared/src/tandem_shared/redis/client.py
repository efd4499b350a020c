"""The one place a Redis connection is made: each service opens one client (one pool) in its composition and
hands it to every store it builds. TLS (`rediss://`) and ACL users belong here.

Replies are decoded to `str` (`decode_responses`): every key and value Tandem stores is text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import hiredis
import redis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import DataError

from tandem_shared.secrets import resolve_secret
from tandem_shared.settings import CommonSettings


@dataclass(frozen=True)
class RedisAccess:
    """How Tandem authenticates to Redis and verifies it, beyond the URL: an ACL user whose password is a secret
    reference (resolved when a client is made, never kept in settings), and the CA for `rediss://`."""

    username: str | None = None
    password_ref: str | None = None
    ca_file: str | None = None

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> RedisAccess:
        return cls(settings.redis_username, settings.redis_password, settings.redis_ssl_ca_file)

    @classmethod
    def from_env(cls) -> RedisAccess:
        """REDIS_USERNAME, REDIS_PASSWORD, REDIS_SSL_CA_FILE, for clients made from a URL alone (CLI, stores)."""
        return cls.from_settings(CommonSettings())

    def client_kwargs(self, url: str) -> dict[str, Any]:
        """Keyword arguments for redis-py's from_url; the URL's own user and password, if any, take precedence."""
        if self.password_ref is not None and not self.password_ref.startswith(("file:", "env:")):
            # A bare value would be the password itself, in plain configuration: refuse rather than use it.
            raise ValueError("REDIS_PASSWORD must be a secret reference (file:/path or env:NAME), not the password")
        kwargs: dict[str, Any] = {}
        if self.username:
            kwargs["username"] = self.username
        if self.password_ref:
            kwargs["password"] = resolve_secret(self.password_ref)
        # rediss:// verifies the server's certificate and host name (redis-py's defaults); only the CA is ours.
        if urlsplit(url).scheme == "rediss" and self.ca_file:
            kwargs["ssl_ca_certs"] = self.ca_file
        return kwargs


# Under a backlog a writer has hundreds of commands in hand: past this many connections a call waits for a free
# one (up to `_POOL_WAIT_S`) instead of failing, as the default pool of 100 would.
DEFAULT_MAX_CONNECTIONS = 64
_POOL_WAIT_S = 20.0
_SOCKET_TIMEOUT_S = 5.0


def connect(settings: CommonSettings, *, max_connections: int = DEFAULT_MAX_CONNECTIONS) -> Redis:
    return connect_url(settings.redis_url, max_connections=max_connections, access=RedisAccess.from_settings(settings))


def connect_url(
    url: str,
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    timeout_s: float = _SOCKET_TIMEOUT_S,
    access: RedisAccess | None = None,
) -> Redis:
    """access: the ACL user and CA; by default from the environment (REDIS_USERNAME, REDIS_PASSWORD, …)."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=_POOL_WAIT_S,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        **(access or RedisAccess.from_env()).client_kwargs(url),
    )
    pool.connection_class = _packing_in_c(pool.connection_class)
    # The client owns the pool it is given here: closing the client closes the pool.
    return Redis.from_pool(pool)


_PACKING_IN_C: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def _packing_in_c(base: type[AbstractConnection]) -> type[AbstractConnection]:
    """`base` (plain, TLS or Unix socket, as the URL chose) packing commands with hiredis, as redis-py's blocking
    client does but its asyncio one does not: the same bytes on the wire, without the Python loop over every
    argument that was a large share of a service's CPU per Redis command."""
    if base in _PACKING_IN_C:
        return _PACKING_IN_C[base]

    class HiredisPacking(base):  # type: ignore[valid-type,misc]
        def pack_command(self, *args: Any) -> list[bytes]:
            # As redis-py: a command name given with its subcommand ("CONFIG GET") is sent as two arguments.
            if isinstance(args[0], str):
                args = (*args[0].encode().split(), *args[1:])
            elif b" " in args[0]:
                args = (*args[0].split(), *args[1:])
            try:
                return [hiredis.pack_command(args)]
            except TypeError as exc:
                raise DataError(str(exc)) from exc

    HiredisPacking.__name__ = HiredisPacking.__qualname__ = f"HiredisPacking{base.__name__}"
    _PACKING_IN_C[base] = HiredisPacking
    return HiredisPacking


def connect_sync(url: str, *, timeout_s: float = 2.0, access: RedisAccess | None = None) -> redis.Redis:
    """A blocking client for short command-line look-ups."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        **(access or RedisAccess.from_env()).client_kwargs(url),
    )


def text(value: bytes | str) -> str:
    """A reply as text, from a client that decodes replies or one that does not."""
    return value.decode("utf-8") if isinstance(value, bytes) else value
