"""Slow clients: a request whose headers or body trickle in is cut off at the request deadline, under uvicorn with
the protocol every service runs (`tandem_shared.http_server.DeadlineProtocol`), and every service is run with it."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
import yaml

from tandem_devstack.stack import Ports, service_specs
from tandem_shared.http_server import DEADLINE_ENV

ROOT = Path(__file__).resolve().parents[3]
PROTOCOL = "tandem_shared.http_server:DeadlineProtocol"
DEADLINE_S = 1.0


async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv(DEADLINE_ENV, str(DEADLINE_S))
        port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, http=PROTOCOL, log_level="warning", lifespan="off")
        srv = uvicorn.Server(config)
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        while not srv.started:
            time.sleep(0.01)
        yield port
        srv.should_exit = True
        thread.join(timeout=10)


def trickle(port: int, request: bytes) -> tuple[bytes, int]:
    """Sends `request` one byte a second until the server closes; what it answered and how many bytes it took."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.settimeout(1.0)
        for sent, byte in enumerate(request):
            try:
                conn.sendall(bytes([byte]))
            except OSError:  # closed by the server
                return answer, sent
            try:
                chunk = conn.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                return answer, sent + 1
            return answer + rest_of_answer(conn, chunk), sent + 1
    return answer, len(request)


def test_a_request_whose_headers_trickle_in_is_cut_off(server: int) -> None:
    request = b"POST /webhooks/x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 40 + b"\r\n\r\n"
    answer, sent = trickle(server, request)
    assert sent < len(request), "the server waited for the whole request"
    assert answer.startswith(b"HTTP/1.1 408 ")


def test_a_request_whose_body_trickles_in_is_cut_off(server: int) -> None:
    headers = b"POST /webhooks/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 40\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server), timeout=30) as conn:
        conn.sendall(headers)
        answer, sent = trickle_on(conn, b"b" * 40)
    assert sent < 40, "the server waited for the whole body"
    assert answer.startswith(b"HTTP/1.1 408 ")


def trickle_on(conn: socket.socket, body: bytes) -> tuple[bytes, int]:
    conn.settimeout(1.0)
    for sent, byte in enumerate(body):
        try:
            conn.sendall(bytes([byte]))
            chunk = conn.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            return b"", sent
        return rest_of_answer(conn, chunk), sent + 1
    return b"", len(body)


def rest_of_answer(conn: socket.socket, first: bytes) -> bytes:
    """The answer that began with `first`, read to its end. The server closes with request bytes unread, so its
    kernel resets the connection, and the reset may come before this side read all of the answer: what arrived
    is the answer."""
    answer, chunk = first, first
    while chunk:
        try:
            chunk = conn.recv(4096)
        except ConnectionResetError:
            break
        answer += chunk
    return answer


def test_a_prompt_request_and_a_kept_alive_connection_are_served(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=10) as conn:
        for _ in range(2):
            conn.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = conn.recv(4096)
            assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"ok")


def commands() -> list[list[str]]:
    found = [spec.module_args for spec in service_specs(Ports())]
    for path in [ROOT / "docker-compose.yml", *sorted((ROOT / "k8s").rglob("*.yaml"))]:
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            found += [c for c in _commands(document) if "uvicorn" in c]
    return found


def _commands(node: object) -> Iterator[list[str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "command" and isinstance(value, list) and all(isinstance(v, str) for v in value):
                yield value
            else:
                yield from _commands(value)
    elif isinstance(node, list):
        for item in node:
            yield from _commands(item)


def test_every_service_runs_with_the_deadline_and_a_connection_limit() -> None:
    found = [c for c in commands() if any(re.match(r"tandem_\w+\.", part) for part in c)]
    assert len(found) >= 12, found  # four services in devstack, docker compose and k8s
    for command in found:
        assert PROTOCOL in command and "--limit-concurrency" in command, command
