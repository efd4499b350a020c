"""Redis reached the way production reaches it: `rediss://` verified against a CA, as an ACL user whose password
is a secret reference (the devstack's TANDEM_REDIS_AUTH=tls-acl), through tandem_shared.redis.client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.exceptions

from tandem_devstack import infra
from tandem_devstack.processes import free_port
from tandem_shared.redis.client import RedisAccess, connect_sync, connect_url

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[infra.Service]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TANDEM_HOME", str(tmp_path_factory.mktemp("redis-tls-acl")))
        patch.delenv("REDIS_URL", raising=False)
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
