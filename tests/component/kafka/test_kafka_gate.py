"""KafkaGate: a service whose Kafka credentials are refused stays up, not ready with the reason (its /metrics still
served), logs it once per retry period and starts its app once they are accepted; accepted at once, the app starts as
without the gate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from support.waiting import eventually
from tandem_console.app import create_app as console_app
from tandem_shared.kafka import KafkaConnection
from tandem_shared.kafka.gate import KafkaGate, gated_process, service_app
from tandem_shared.metrics import EVENTS_IN, MetricsEndpoint
from tandem_shared.settings import CommonSettings

REFUSED = (
    "Kafka at 127.0.0.1:9093 refused the SASL SCRAM-SHA-512 login of user 'tandem-mapper' (authentication refused)"
)


@dataclass(frozen=True)
class ScriptedConnection(KafkaConnection):
    """`refusal` answers the broker's verdicts as the test gives them, one per question (waiting for the next)."""

    verdicts: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)

    @classmethod
    def answering(cls, *verdicts: str | None) -> ScriptedConnection:
        connection = cls("127.0.0.1:9093", "tandem-mapper")
        for verdict in verdicts:
            connection.verdicts.put_nowait(verdict)
        return connection

    async def refusal(self) -> str | None:
        return await self.verdicts.get()


class ServiceApp:
    """A service's app: its lifespan starts and stops it; it answers every path itself."""

    def __init__(self, fail_start: bool = False) -> None:
        self.events: list[str] = []
        self.fail_start = fail_start

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    if self.fail_start:
                        await send({"type": "lifespan.startup.failed", "message": "topic refused"})
                        return
                    self.events.append("started")
                    await send({"type": "lifespan.startup.complete"})
                else:
                    self.events.append("stopped")
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@asynccontextmanager
async def serving(gate: KafkaGate) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """The gate's lifespan as uvicorn drives it, and a client; yields the startup's answer."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
    task = asyncio.create_task(gate({"type": "lifespan", "state": {}}, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    started = (await outbox.get())["type"]
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gate), base_url="http://gate") as client:
            yield client, started
    finally:
        if started == "lifespan.startup.complete":
            await inbox.put({"type": "lifespan.shutdown"})
            assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
        await task


async def test_accepted_at_once_the_app_starts_within_the_servers_startup() -> None:
    app = ServiceApp()
    gate = KafkaGate(ScriptedConnection.answering(None), lambda: app)
    async with serving(gate) as (client, started):
        assert started == "lifespan.startup.complete"
        assert app.events == ["started"]
        assert (await client.get("/health/ready")).status_code == 204  # the app's own answer
    assert app.events == ["started", "stopped"]


async def test_a_start_that_fails_after_kafka_accepted_fails_the_servers_startup() -> None:
    gate = KafkaGate(ScriptedConnection.answering(None), lambda: ServiceApp(True))
    async with serving(gate) as (_, started):
        assert started == "lifespan.startup.failed"


async def test_refused_credentials_keep_it_up_and_not_ready_saying_why_until_they_are_accepted() -> None:
    app = ServiceApp()
    built: list[ServiceApp] = []

    def build() -> ServiceApp:
        built.append(app)
        return app

    connection = ScriptedConnection.answering(REFUSED)
    gate = KafkaGate(connection, build, retry_s=0.01)
    with capture_logs() as logs:
        async with serving(gate) as (client, started):
            assert started == "lifespan.startup.complete"  # the server serves: no exit, no crash loop
            for _ in range(2):  # refused at start, then again at a retry
                live, ready = await client.get("/health/live"), await client.get("/health/ready")
                assert (live.status_code, ready.status_code) == (200, 503)
                assert REFUSED in live.text
                assert ready.text == f"not ready: {REFUSED}"
                assert ready.headers["retry-after"] == "1"
                assert (await client.get("/webhooks/accessplanit/demo")).status_code == 503
                assert built == []
                await connection.verdicts.put(REFUSED)
            await connection.verdicts.put(None)  # the credentials work now

            async def ready_now() -> bool | None:
                return (await client.get("/health/ready")).status_code == 204 or None

            await eventually(ready_now, timeout=5)
            assert built == [app]
            assert app.events == ["started"]
    assert app.events == ["started", "stopped"]
    refusals = [entry for entry in logs if entry.get("reason") == REFUSED]
    assert len(refusals) == 3  # once per attempt that was refused: the first and two retries
    assert all(entry["log_level"] == "error" and entry["service"] == "mapper" for entry in refusals)


async def test_a_gate_still_waiting_stops_cleanly() -> None:
    connection = ScriptedConnection.answering(REFUSED)
    gate = KafkaGate(connection, ServiceApp, retry_s=0.01)
    async with serving(gate) as (client, _):
        assert (await client.get("/anything")).status_code == 503


async def test_metrics_are_served_while_not_ready_and_by_the_app_once_it_started() -> None:
    """Prometheus sees the counters of a service Kafka refuses (readiness alone says it is not ready)."""
    EVENTS_IN.labels(service="gate-test", topic="tandem.changes").inc()
    app = ServiceApp()
    connection = ScriptedConnection.answering(REFUSED)
    gate = KafkaGate(connection, lambda: app, retry_s=0.01, metrics=MetricsEndpoint())
    async with serving(gate) as (client, _):
        ready, metrics = await client.get("/health/ready"), await client.get("/metrics")
        assert (ready.status_code, ready.text) == (503, f"not ready: {REFUSED}")
        assert metrics.status_code == 200
        assert 'tandem_events_in_total{service="gate-test",topic="tandem.changes"} 1.0' in metrics.text
        assert (await client.get("/metrics/other")).status_code == 503  # that path only
        await connection.verdicts.put(None)

        async def ready_now() -> bool | None:
            return (await client.get("/health/ready")).status_code == 204 or None

        await eventually(ready_now, timeout=5)
        assert (await client.get("/metrics")).status_code == 204  # the app's own /metrics from now on


async def test_service_processes_open_their_metrics_while_waiting_but_the_console_keeps_its_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The console's /metrics answers only a token of the `metrics` role, which its app checks: not before it runs."""

    async def refused(_: KafkaConnection) -> str:
        return REFUSED

    monkeypatch.setattr(KafkaConnection, "refusal", refused)
    writer = gated_process("writer", CommonSettings(), "tandem-writer", ServiceApp)
    async with serving(writer) as (client, _):
        assert [(await client.get(path)).status_code for path in ("/health/ready", "/metrics")] == [503, 200]
    async with serving(console_app()) as (client, _):
        assert [(await client.get(path)).status_code for path in ("/health/ready", "/metrics")] == [503, 503]


def test_a_service_app_is_built_at_once_from_given_settings_and_behind_the_gate_as_a_process() -> None:
    built: list[CommonSettings] = []

    def build(settings: CommonSettings) -> ServiceApp:
        built.append(settings)
        return ServiceApp()

    given = CommonSettings()
    assert isinstance(service_app("writer", given, CommonSettings, "tandem-writer", build), ServiceApp)
    assert built == [given]
    assert isinstance(service_app("writer", None, CommonSettings, "tandem-writer", build), KafkaGate)
    assert built == [given], "a process's app is built only once Kafka accepts the service"
