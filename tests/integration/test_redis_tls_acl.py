"""Redis reached the way production reaches it: `rediss://` verified against a CA, as an ACL user whose password
is a secret reference (the devstack's TANDEM_REDIS_AUTH=tls-acl), through tandem_shared.redis.client."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis.exceptions

from tandem_devstack import infra
from tandem_devstack.processes import free_port
from tandem_devstack.stack import Ports, stack_env
from tandem_shared.redis.client import RedisAccess, connect_sync, connect_url
from tandem_shared.secrets import SECRETS_DIRS_ENV

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("redis-tls-acl")


@pytest.fixture(scope="module")
def secured(home: Path) -> Iterator[infra.Service]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TANDEM_HOME", str(home))
        patch.delenv("REDIS_URL", raising=False)
        patch.setenv(SECRETS_DIRS_ENV, os.environ.get(SECRETS_DIRS_ENV, ""))  # ensure_redis adds to it
        service = infra.ensure_redis(port=free_port(), auth="tls-acl")
    try:
        yield service
    finally:
        service.stop()


def access_of(service: infra.Service, **changes: str) -> RedisAccess:
    env = {**service.env, **changes}
    return RedisAccess(env["REDIS_USERNAME"], env["REDIS_PASSWORD"], env["REDIS_SSL_CA_FILE"])


async def test_the_acl_user_reads_and_writes_over_tls(secured: infra.Service) -> None:
    assert secured.address.startswith("rediss://")
    assert secured.env["REDIS_PASSWORD"].startswith("file:")  # a reference; the password is in no setting
    client = connect_url(secured.address, access=access_of(secured))
    try:
        await client.set("test:tls-acl", "yes")
        assert await client.get("test:tls-acl") == "yes"
        assert await client.acl_whoami() == infra.REDIS_USER
    finally:
        await client.aclose()


def test_a_wrong_password_is_refused_and_not_echoed(secured: infra.Service, tmp_path: Path) -> None:
    wrong = tmp_path / "password"
    wrong.write_text("not-the-password")
    with (
        pytest.raises(redis.exceptions.AuthenticationError) as refused,
        connect_sync(secured.address, access=access_of(secured, REDIS_PASSWORD=f"file:{wrong}")) as client,
    ):
        client.ping()
    assert "not-the-password" not in str(refused.value)


def test_the_default_user_is_off(secured: infra.Service) -> None:
    no_user = RedisAccess(ca_file=secured.env["REDIS_SSL_CA_FILE"])
    with pytest.raises(redis.exceptions.AuthenticationError), connect_sync(secured.address, access=no_user) as client:
        client.ping()


def test_a_server_whose_certificate_is_not_trusted_is_refused(secured: infra.Service) -> None:
    # No CA file: the system's trust store, which does not know the devstack's throwaway CA.
    untrusted = RedisAccess(secured.env["REDIS_USERNAME"], secured.env["REDIS_PASSWORD"])
    with pytest.raises(redis.exceptions.ConnectionError, match="certificate verify failed"):
        with connect_sync(secured.address, access=untrusted) as client:
            client.ping()


def test_plain_redis_is_not_served_on_the_tls_port(secured: infra.Service) -> None:
    plain = secured.address.replace("rediss://", "redis://")
    with pytest.raises(redis.exceptions.ConnectionError), connect_sync(plain, access=access_of(secured)) as client:
        client.ping()


def test_the_services_a_stack_starts_may_read_the_password(
    secured: infra.Service, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make run` with TANDEM_REDIS_AUTH=tls-acl, from a shell that allows no secrets directory of its own."""
    monkeypatch.setenv("TANDEM_HOME", str(home))
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv(SECRETS_DIRS_ENV, str(tmp_path / "elsewhere"))
    joined = infra.ensure_redis(port=urlsplit(secured.address).port, auth="tls-acl")
    env = stack_env(kafka="127.0.0.1:9", redis=joined.address, ports=Ports(), data_dir=tmp_path, extra=joined.env)
    ping = (
        "from tandem_shared.redis.client import RedisAccess, connect_sync\n"
        "import os\n"
        "with connect_sync(os.environ['REDIS_URL'], access=RedisAccess.from_env()) as client:\n"
        "    print(client.acl_whoami())\n"
    )
    started = subprocess.run([sys.executable, "-c", ping], env=env, capture_output=True, text=True, timeout=30)
    assert started.returncode == 0, started.stderr[-2000:]
    assert started.stdout.strip() == infra.REDIS_USER
