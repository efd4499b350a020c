"""uvicorn's HTTP protocol with an absolute deadline for reading each request, headers and body together.

uvicorn times out idle keep-alive connections, but not a request being sent: a client that sends its headers or
body one byte a second holds a connection (and, with many, the service) for as long as it likes. Every service
runs uvicorn with `--http tandem_shared.http_server:DeadlineProtocol`: from a connection's opening, or a request's
first byte, the whole request must have arrived within `TANDEM_HTTP_REQUEST_DEADLINE_S` (default 10 s; vendors
send a webhook in well under a second); otherwise the client gets 408 when nothing has been answered yet, and the
connection is closed. How many connections a service takes at once is bounded by uvicorn's `--limit-concurrency`
(beyond it, 503) and the listen backlog.
"""

from __future__ import annotations

import asyncio
import os

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

DEADLINE_ENV = "TANDEM_HTTP_REQUEST_DEADLINE_S"
DEFAULT_DEADLINE_S = 10.0

_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
    b"content-length: 37\r\n\r\nthe request did not arrive in time.\r\n"
)


def request_deadline_s() -> float:
    raw = os.environ.get(DEADLINE_ENV)
    return float(raw) if raw else DEFAULT_DEADLINE_S


class DeadlineProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, object],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._deadline_s = request_deadline_s()
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never completes a request is closed as well

    def data_received(self, data: bytes) -> None:
        if self._deadline is None:
            self._arm()
        super().data_received(data)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self._deadline_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(_TIMEOUT)
        if cycle is not None and not cycle.response_complete:
            # The application may still be waiting for the body: it sees the client gone, and what it sends now
            # is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()
