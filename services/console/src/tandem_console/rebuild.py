"""Rebuilding the store from `tandem.trace`, the source of truth: empty it, then read the topic from the start."""

from __future__ import annotations

import asyncio

from tandem_console.bootstrap import kafka_connection, trace_consumer
from tandem_console.settings import ConsoleSettings
from tandem_console.store import TraceStore


async def rebuild(settings: ConsoleSettings) -> int:
    """Returns the number of trace records stored; the console picks up from there when it starts."""
    store = TraceStore(settings.database_url)
    try:
        await asyncio.to_thread(store.create)
        await asyncio.to_thread(store.reset)
        consumer = trace_consumer(settings, kafka_connection(settings), store)
        await consumer.start()
        try:
            return await consumer.catch_up()
        finally:
            await consumer.stop()
    finally:
        store.close()
