from __future__ import annotations

from collections.abc import Iterator

import pytest

from support import infra


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The real Apache Kafka broker, started once per test session (or the one KAFKA_BOOTSTRAP_SERVERS names)."""
    with infra.kafka() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with infra.redis() as url:
        yield url
