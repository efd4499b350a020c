"""How Redis credentials and the CA reach redis-py: the password from a secret reference, TLS only for rediss://."""

from __future__ import annotations

from pathlib import Path

import pytest

from tandem_shared.redis.client import RedisAccess
from tandem_shared.secrets import SecretUnavailable
from tandem_shared.settings import CommonSettings


def test_the_password_is_read_from_its_reference_when_a_client_is_made(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    access = RedisAccess("tandem", f"file:{secret}", "/ca.crt")
    assert access.client_kwargs("rediss://redis:6380/0") == {
        "username": "tandem",
        "password": "s3cret",
        "ssl_ca_certs": "/ca.crt",
    }
    # A plain URL takes no TLS arguments (redis-py's plain connection refuses them).
    assert access.client_kwargs("redis://redis:6379/0") == {"username": "tandem", "password": "s3cret"}


def test_without_settings_nothing_is_added() -> None:
    assert RedisAccess().client_kwargs("redis://127.0.0.1:6379/0") == {}


def test_a_password_given_as_a_value_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError, match="secret reference") as refused:
        RedisAccess("tandem", "hunter2").client_kwargs("redis://redis:6379/0")
    assert "hunter2" not in str(refused.value)


def test_a_missing_secret_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TANDEM_TEST_REDIS_PASSWORD", raising=False)
    with pytest.raises(SecretUnavailable, match="TANDEM_TEST_REDIS_PASSWORD"):
        RedisAccess("tandem", "env:TANDEM_TEST_REDIS_PASSWORD").client_kwargs("redis://redis:6379/0")


def test_settings_come_from_the_shared_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_USERNAME", "tandem")
    monkeypatch.setenv("REDIS_PASSWORD", "file:/var/run/secrets/redis/password")
    monkeypatch.setenv("REDIS_SSL_CA_FILE", "/var/run/secrets/redis/ca.crt")
    assert RedisAccess.from_settings(CommonSettings()) == RedisAccess(
        "tandem", "file:/var/run/secrets/redis/password", "/var/run/secrets/redis/ca.crt"
    )
