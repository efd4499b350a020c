"""Rebuilding the store from `tandem.trace`, the source of truth: empty it, then read the topic from the start."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from tandem_console.consumer import TraceConsumer
from tandem_console.settings import ConsoleSettings
from tandem_console.store import TraceStore
from tandem_shared.kafka import KafkaConnection


async def rebuild(settings: ConsoleSettings) -> int:
    """Returns the number of trace records stored; the console picks up from there when it starts."""
    store = TraceStore(settings.database_url)
    try:
        await asyncio.to_thread(store.create)
        await asyncio.to_thread(store.reset)
        consumer = TraceConsumer(
            KafkaConnection.from_settings(settings, "tandem-console"),
            store,
            batch_size=settings.batch_size,
            retention=timedelta(days=settings.retention_days),
        )
        await consumer.start()
        try:
            return await consumer.catch_up()
        finally:
            await consumer.stop()
    finally:
        store.close()
