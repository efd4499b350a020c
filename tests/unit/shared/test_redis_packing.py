"""Commands packed by hiredis (`connect_url`'s connections) are byte for byte what redis-py's own packing sends."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import Connection, SSLConnection
from redis.exceptions import DataError

from tandem_shared.redis.client import connect_url

COMMANDS: list[tuple[Any, ...]] = [
    ("EVALSHA", "0123abcd", 1, "t:i:state:mailchimp:ab12", 1764140400000, "seen", 0, "LNAME", "Lovelacé"),
    ("HSET", "k", "f", ""),
    ("CONFIG GET", "maxmemory"),
    (b"SCRIPT LOAD", "return 1"),
    ("SET", "k", 2.5, "EX", 30),
    ("SET", b"k", b"\x00\xff"),
]


@pytest.mark.parametrize("url", ["redis://127.0.0.1:9/0", "rediss://127.0.0.1:9/0"])
def test_commands_are_packed_as_redis_py_packs_them(url: str) -> None:
    client = connect_url(url, access=None)
    base = SSLConnection if url.startswith("rediss") else Connection
    ours, theirs = client.connection_pool.connection_class(), base()
    assert isinstance(ours, base)
    for command in COMMANDS:
        assert b"".join(ours.pack_command(*command)) == b"".join(theirs.pack_command(*command))


def test_an_argument_redis_cannot_take_is_refused_as_redis_py_refuses_it() -> None:
    connection = connect_url("redis://127.0.0.1:9/0").connection_pool.connection_class()
    with pytest.raises(DataError):
        connection.pack_command("SET", "k", {"not": "a value"})
