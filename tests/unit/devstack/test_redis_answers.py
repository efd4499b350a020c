"""Redis counts as up only once it answers PING with PONG, not while it answers LOADING (replaying its AOF)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tandem_devstack.infra import HOST, redis_answers


@pytest.fixture
def fake_redis() -> Iterator[tuple[int, list[bytes]]]:
    """A loopback server that answers each connection's first command with the next reply queued."""
    replies: list[bytes] = []
    server = socket.create_server((HOST, 0))
    port = server.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(64)
                conn.sendall(replies.pop(0) if replies else b"")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port, replies
    server.close()
    thread.join(timeout=5)


def test_loading_is_not_up_pong_is(fake_redis: tuple[int, list[bytes]]) -> None:
    port, replies = fake_redis
    replies += [b"-LOADING Redis is loading the dataset in memory\r\n", b"+PONG\r\n"]
    assert not redis_answers(port)
    assert redis_answers(port)


def test_nothing_listening_is_not_up() -> None:
    with socket.create_server((HOST, 0)) as probe:
        port = probe.getsockname()[1]
    assert not redis_answers(port)
