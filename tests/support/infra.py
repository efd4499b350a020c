"""Real Kafka and Redis for the integration suite.

Order of preference: KAFKA_BOOTSTRAP_SERVERS / REDIS_URL when set; otherwise the devstack (Kafka jars from Maven
Central, Debian's redis-server) on loopback; testcontainers only when asked for (TANDEM_TEST_CONTAINERS=1) on a
machine with a Docker engine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from tandem_devstack import infra


@contextmanager
def kafka() -> Iterator[str]:
    if os.environ.get("TANDEM_TEST_CONTAINERS") == "1" and not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as container:
            bootstrap = container.get_bootstrap_server()
            os.environ["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
            infra.ensure_kafka()  # creates the topics explicitly
            yield bootstrap
        return
    service = infra.ensure_kafka()
    try:
        yield service.address
    finally:
        if os.environ.get("TANDEM_KEEP_STACK") != "1":
            service.stop()


@contextmanager
def redis() -> Iterator[str]:
    if os.environ.get("TANDEM_TEST_CONTAINERS") == "1" and not os.environ.get("REDIS_URL"):
        from testcontainers.redis import RedisContainer

        with RedisContainer() as container:
            yield f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(6379)}/0"
        return
    service = infra.ensure_redis()
    try:
        yield service.address
    finally:
        if os.environ.get("TANDEM_KEEP_STACK") != "1":
            service.stop()
