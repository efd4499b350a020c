from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import infra

RUN_HOME = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    # The suite's instances call the simulators on loopback and keep their secret files in temporary directories:
    # both are refused without these development settings (tandem_shared.vendor_urls, tandem_shared.secrets).
    os.environ.setdefault("TANDEM_DEVELOPMENT_VENDOR_HOSTS", "127.0.0.1,localhost,mailchimp.test,accessplanit.test")
    os.environ.setdefault("TANDEM_SECRETS_DIRS", tempfile.gettempdir())
    # Before any broker or Redis is started: nothing the suite leaves behind is seen by `make run`.
    config.stash[RUN_HOME] = infra.use_test_state()


@pytest.fixture(scope="session")
def run_home(pytestconfig: pytest.Config) -> Path:
    """The TANDEM_HOME `make run` uses (the suite itself runs in another one)."""
    return pytestconfig.stash[RUN_HOME]


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The real Apache Kafka broker, started once per test session (or the one KAFKA_BOOTSTRAP_SERVERS names)."""
    with infra.kafka() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with infra.redis() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL database, started once per test session (or the one TANDEM_TEST_POSTGRES_URL names)."""
    with infra.postgres() as url:
        yield url
