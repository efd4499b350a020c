from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from support.mapper import MapperHarness, running_mapper


@pytest.fixture
async def harness(kafka_bootstrap: str, redis_url: str) -> AsyncIterator[MapperHarness]:
    async with running_mapper(kafka_bootstrap, redis_url) as running:
        yield running
