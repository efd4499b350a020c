"""Helpers for the Mailchimp simulator component tests: a threaded server, an SDK client, a webhook receiver."""

from __future__ import annotations

import hashlib
import hmac
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import mailchimp_marketing
import uvicorn

from mailchimp_sim.app import create_app
from mailchimp_sim.settings import SimSettings

DEMO_KEY = "tandemdemo0000000000000000000000-us1"
DEMO_LIST = "a1b2c3d4e5"
SECOND_ACCOUNT = "second"
SECOND_KEY = "secondaccount0000000000000000000-us2"
DOI_LIST = "d0uble0pt1"
WAIT_SECONDS = 15.0
FIXTURES = Path(__file__).parents[3] / "unit" / "simulators" / "mailchimp" / "fixtures" / "mailchimp-webhooks"


def wait_for(check: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
    """Poll until `check()` returns something truthy; the bound only stops a broken test from hanging."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"gave up waiting for {what}")


def md5(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


def sim_settings(data_dir: Path) -> SimSettings:
    return SimSettings(data_dir=data_dir, webhook_retry_delays_s=[0.05, 0.1, 0.2], webhook_timeout_s=5)


class SimServer:
    """uvicorn serving `create_app(settings)` in a background thread on a socket bound to port 0."""

    def __init__(self, settings: SimSettings) -> None:
        self.settings = settings
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(settings), log_level="warning", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    def __enter__(self) -> SimServer:
        self._thread.start()
        wait_for(lambda: self._server.started, "the simulator to start")
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join()
        self._socket.close()


def sdk_client(base_url: str, api_key: str = DEMO_KEY, timeout: float = 10) -> Any:
    """The official SDK, configured as for real Mailchimp, then pointed at the simulator.

    The SDK builds URLs from `api_client.host` (its `Configuration` object is never consulted).
    """
    client = mailchimp_marketing.Client()
    client.set_config({"api_key": api_key, "server": api_key.rpartition("-")[2], "timeout": timeout})
    client.api_client.host = f"{base_url}/3.0"
    return client


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def form(self) -> list[tuple[str, str]]:
        return parse_qsl(self.body.decode(), keep_blank_values=True, strict_parsing=True)

    def keys(self) -> list[str]:
        return [k for k, _ in self.form()]

    def fields(self) -> dict[str, str]:
        return dict(self.form())


@dataclass
class Receiver:
    """Records every request and answers GETs with 200 and POSTs with the scripted statuses, then 200.

    While `hold` is set to an unset Event, each POST waits for it before answering (`arrived` counts them).
    """

    url: str
    posts: queue.Queue[Request] = field(default_factory=queue.Queue)
    gets: list[Request] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    get_status: int = 200
    post_count: int = 0
    arrived: threading.Event = field(default_factory=threading.Event)
    hold: threading.Event | None = None

    def next(self) -> Request:
        try:
            return self.posts.get(timeout=WAIT_SECONDS)
        except queue.Empty:
            raise AssertionError("no webhook delivery arrived") from None


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.gets.append(Request("GET", self.path, dict(self.headers), b""))
            self._answer(state.get_status)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                state.post_count += 1
                status = state.script.pop(0) if state.script else 200
            state.arrived.set()
            if state.hold is not None:
                state.hold.wait(WAIT_SECONDS)
            self._answer(status)
            state.posts.put(Request("POST", self.path, dict(self.headers), body))

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def fixture_keys(event_type: str) -> list[str]:
    body = (FIXTURES / f"{event_type}.form").read_text().strip()
    return [k for k, _ in parse_qsl(body, keep_blank_values=True, strict_parsing=True)]


def verify_signature(secret: str, header: str, body: bytes) -> bool:
    """What a receiver does: recompute HMAC-SHA256 over "<t>.<raw body>" and compare in constant time."""
    parts = dict(p.split("=", 1) for p in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return abs(time.time() - int(parts["t"])) < 300 and hmac.compare_digest(expected, parts["v1"])
