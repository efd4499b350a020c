"""A service Kafka does not accept (yet) stays up and says why, instead of exiting into a crash loop.

`KafkaGate` wraps a service's ASGI app as uvicorn serves it. At startup it asks the broker whether it accepts the
service's credentials (`KafkaConnection.refusal`: TLS handshake, SASL login, a first request). Accepted: the app is
built and started there and then, exactly as without the gate (a failure after that still fails the startup).
Refused or unreachable: the process serves anyway — `/health/live` 200, `/metrics` 200 (the process's counters, so
Prometheus sees a service that is not ready; a service whose `/metrics` needs a login keeps it closed), `/health/ready`
and every other path 503 with the reason (which setting, which principal; never a secret) — logs the reason once per
retry period, and asks again each period. Credentials are read again on each attempt (a rotated secret file, a renewed
certificate), so once the broker accepts them the app is built and started and the service becomes ready without a
restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

from tandem_shared.kafka.connection import KafkaConnection
from tandem_shared.logging import configure_logging, get_logger
from tandem_shared.metrics import MetricsEndpoint
from tandem_shared.settings import CommonSettings

log = get_logger("tandem.kafka.gate")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

RETRY_S = 15.0  # the default of TANDEM_KAFKA_RETRY_S (CommonSettings.kafka_retry_s)
LIVE = "/health/live"
METRICS = "/metrics"

Settings = TypeVar("Settings", bound=CommonSettings)
App = TypeVar("App", bound=ASGIApp)


def service_app(
    service: str,
    settings: Settings | None,
    process_settings: Callable[[], Settings],
    client_id: str,
    build: Callable[[Settings], App],
    *,
    open_metrics: bool = True,
) -> App | KafkaGate:
    """A service's `create_app`: its logging configured, and the app `build` makes from the settings.

    Called without settings, as uvicorn's factory (the process itself), the settings are `process_settings()` (the
    environment) and the app waits behind a `KafkaGate` until Kafka accepts the service's credentials (not ready,
    saying why, meanwhile: `gated_process`, where `open_metrics` is explained); tests pass settings and get the app."""
    if settings is None:
        loaded = process_settings()
        return gated_process(service, loaded, client_id, lambda: build(loaded), open_metrics=open_metrics)
    configure_logging(service, settings.log_level, settings.log_json)
    return build(settings)


def gated_process(
    service: str,
    settings: CommonSettings,
    client_id: str,
    build: Callable[[], ASGIApp],
    *,
    open_metrics: bool = True,
) -> KafkaGate:
    """What uvicorn's factory serves for a service process: its logging configured from `settings`, and the app
    `build` makes behind a `KafkaGate` on the service's own Kafka connection (its credentials and client id).

    `open_metrics`: the service serves `/metrics` to anyone (ingest, mapper, writer, reconciler), so the gate serves
    it while waiting too; False where the app alone decides who may read it (the console's token)."""
    configure_logging(service, settings.log_level, settings.log_json)
    return KafkaGate(
        KafkaConnection.from_settings(settings, client_id),
        build,
        retry_s=settings.kafka_retry_s,
        metrics=MetricsEndpoint() if open_metrics else None,
    )


class KafkaGate:
    def __init__(
        self,
        connection: KafkaConnection,
        build: Callable[[], ASGIApp],
        *,
        retry_s: float = RETRY_S,
        metrics: ASGIApp | None = None,
    ) -> None:
        """`build` makes the service's app (its bootstrap included): called once Kafka accepts the connection.
        `metrics` answers `/metrics` until then (None: 503 like every other path)."""
        self._connection = connection
        self._build = build
        self._retry_s = retry_s
        self._metrics = metrics
        self._app: ASGIApp | None = None
        self._lifespan: _Lifespan | None = None
        self._reason = "connecting to Kafka"
        self._waiting: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._serve_lifespan(scope, receive, send)
        elif self._app is not None:
            await self._app(scope, receive, send)
        elif scope["type"] == "http" and self._metrics is not None and scope.get("path") == METRICS:
            await self._metrics(scope, receive, send)
        elif scope["type"] == "http":
            await self._answer_waiting(scope, send)

    async def _serve_lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope.get("state")
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._startup(state)
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _startup(self, state: MutableMapping[str, Any] | None) -> None:
        reason = await self._connection.refusal()
        if reason is None:
            await self._open(state)
            return
        self._refused(reason)
        self._waiting = asyncio.create_task(self._wait(state), name="kafka-gate")

    async def _wait(self, state: MutableMapping[str, Any] | None) -> None:
        while True:
            await asyncio.sleep(self._retry_s)
            reason = await self._connection.refusal()
            if reason is None:
                break
            self._refused(reason)
        log.info("kafka accepts this service now; starting", service=self._connection.service)
        try:
            await self._open(state)
        except Exception as exc:
            # Kafka accepts the credentials; whatever failed now (a refused topic, Redis) is not for this gate to wait
            # on. Stopping the process as a failed startup would, for the orchestrator to restart it.
            log.error("start failed; stopping", service=self._connection.service, error=f"{type(exc).__name__}: {exc}")
            os.kill(os.getpid(), signal.SIGTERM)

    def _refused(self, reason: str) -> None:
        self._reason = reason
        log.error(
            "kafka does not accept this service; not ready, trying again",
            service=self._connection.service,
            reason=reason,
            retry_in_s=self._retry_s,
        )

    async def _open(self, state: MutableMapping[str, Any] | None) -> None:
        app = self._build()
        lifespan = _Lifespan(app, state)
        await lifespan.startup()
        self._lifespan, self._app = lifespan, app

    async def _shutdown(self) -> None:
        if self._waiting is not None:
            self._waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._waiting
        if self._lifespan is not None:
            await self._lifespan.shutdown()

    async def _answer_waiting(self, scope: Scope, send: Send) -> None:
        live = scope.get("path") == LIVE
        body = (f"waiting for Kafka: {self._reason}" if live else f"not ready: {self._reason}").encode()
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
        if not live:
            headers.append((b"retry-after", str(max(1, math.ceil(self._retry_s))).encode()))
        await send({"type": "http.response.start", "status": 200 if live else 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _Lifespan:
    """Drives an ASGI app's lifespan protocol (startup, later shutdown) as a server would."""

    def __init__(self, app: ASGIApp, state: MutableMapping[str, Any] | None) -> None:
        self._app = app
        self._scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        if state is not None:
            self._scope["state"] = state
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lifespan")
        await self._inbox.put({"type": "lifespan.startup"})
        reply = await self._reply()
        if reply["type"] != "lifespan.startup.complete":
            with contextlib.suppress(Exception):  # the app re-raises what it reported: the reply says it already
                await self._task
            raise RuntimeError(reply.get("message") or "the app's startup failed")

    async def _run(self) -> None:
        await self._app(self._scope, self._inbox.get, self._outbox.put)

    async def shutdown(self) -> None:
        await self._inbox.put({"type": "lifespan.shutdown"})
        reply = await self._reply()
        if reply["type"] != "lifespan.shutdown.complete":
            log.error("shutdown failed", error=reply.get("message"))

    async def _reply(self) -> Message:
        if self._task is None:
            raise RuntimeError("the app's lifespan was not started")
        answer = asyncio.ensure_future(self._outbox.get())
        await asyncio.wait({answer, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if answer.done():
            return answer.result()
        answer.cancel()
        self._task.result()  # the app's lifespan raised: that is the failure
        raise RuntimeError("the app's lifespan ended without answering")
