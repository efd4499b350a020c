"""Real Kafka, Redis and PostgreSQL for the suite.

Order of preference: KAFKA_BOOTSTRAP_SERVERS / REDIS_URL / TANDEM_TEST_POSTGRES_URL when set; otherwise the
devstack (Kafka jars from Maven Central, Debian's redis-server and postgresql) on loopback; testcontainers only
when asked for (TANDEM_TEST_CONTAINERS=1) on a machine with a Docker engine (Kafka and Redis).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path

from tandem_devstack import infra
from tandem_devstack.paths import kafka_libs_dir, tandem_home, test_home

# Not `make run`'s 9092/6379: a `make run` going on meanwhile is never joined, nor a test stack kept running
# (TANDEM_KEEP_STACK=1) taken for `make run`'s own.
TEST_KAFKA_PORT = 19092
TEST_REDIS_PORT = 16379
TEST_POSTGRES_PORT = 15433


TEST_CONTACT_HASH_KEY = "tandem-test-contact-hash-key"


def use_test_state(environ: MutableMapping[str, str] = os.environ) -> Path:
    """Point the devstack at the suite's own state: its own TANDEM_HOME (broker data, Redis data, pid files) and
    default ports, the broker's jars still resolved once for both. Returns the home `make run` uses."""
    run_home = tandem_home()
    environ.setdefault("TANDEM_KAFKA_LIBS", str(kafka_libs_dir()))
    environ["TANDEM_HOME"] = str(test_home())
    environ.setdefault("TANDEM_KAFKA_PORT", str(TEST_KAFKA_PORT))
    environ.setdefault("TANDEM_REDIS_PORT", str(TEST_REDIS_PORT))
    environ.setdefault("TANDEM_POSTGRES_PORT", str(TEST_POSTGRES_PORT))
    # The suite's own contact hash key, in this process and every service it starts (stack_env keeps it).
    environ["TANDEM_CONTACT_HASH_KEY_REF"] = "env:TANDEM_TEST_CONTACT_HASH_KEY"
    environ["TANDEM_TEST_CONTACT_HASH_KEY"] = TEST_CONTACT_HASH_KEY
    return run_home


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
    # TANDEM_REDIS_AUTH=tls-acl: every client the suite makes, in-process or in a started service, reads the
    # ACL user and CA from the environment (tandem_shared.redis.client.RedisAccess), and the user's password from a
    # file in the test Redis' home, whose directory `ensure_redis` adds to the secrets directories.
    service = infra.ensure_redis()
    os.environ.update(service.env)
    try:
        yield service.address
    finally:
        if os.environ.get("TANDEM_KEEP_STACK") != "1":
            service.stop()


@contextmanager
def postgres() -> Iterator[str]:
    """A database the tests may empty: TANDEM_TEST_POSTGRES_URL, else the devstack's cluster (never `make run`'s)."""
    given = os.environ.get("TANDEM_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    service = infra.ensure_postgres()
    try:
        yield service.address
    finally:
        if os.environ.get("TANDEM_KEEP_STACK") != "1":
            service.stop()
