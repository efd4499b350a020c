"""Helpers for the accessplanit simulator component tests: a threaded server, a webhook receiver, polling."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import uvicorn

from accessplanit_sim.app import create_app
from accessplanit_sim.settings import SimSettings

INTEGRATION_KEY = "tandem-demo-integration-key"
ADMIN_KEY = "tandem-demo-admin-key"
WAIT_SECONDS = 15.0


def wait_for(check: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
    """Poll until `check()` returns something truthy; the bound only stops a broken test from hanging."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"gave up waiting for {what}")


class SimServer:
    """uvicorn serving `create_app(settings)` in a background thread on a free loopback port (bound to 0)."""

    def __init__(self, settings: SimSettings) -> None:
        self.settings = settings
        self.base_url = ""
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=0, log_level="warning", timeout_graceful_shutdown=2
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> SimServer:
        self._thread.start()
        wait_for(lambda: self._server.started, "the simulator to start")
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join()


def sim_settings(data_dir: Path) -> SimSettings:
    return SimSettings(data_dir=data_dir, webhook_retry_delays=[0.05, 0.1, 0.2])


def new_user(**overrides: Any) -> dict[str, Any]:
    return {"Forenames": "Ada", "Surname": "Lovelace", "Email": "ada@example.com", "MainCompanyID": "2", **overrides}


@dataclass
class Delivery:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every request; answers the first `fail_first` with 500, the rest with 200.

    While `hold` is set to an unset Event, each request waits for it before answering.
    """

    url: str
    deliveries: queue.Queue[Delivery] = field(default_factory=queue.Queue)
    fail_first: int = 0
    seen: int = 0
    hold: threading.Event | None = None

    def next(self) -> Delivery:
        try:
            return self.deliveries.get(timeout=WAIT_SECONDS)
        except queue.Empty:
            raise AssertionError("no webhook delivery arrived") from None


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                state.seen += 1
                failing = state.seen <= state.fail_first
            state.deliveries.put(Delivery(self.command, self.path, dict(self.headers), body))
            if state.hold is not None:
                state.hold.wait(WAIT_SECONDS)
            self.send_response(500 if failing else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_PUT = do_PATCH = do_DELETE = _record

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hooks/accessplanit?tenant=demo")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        if state.hold is not None:
            state.hold.set()
        server.shutdown()
        server.server_close()
