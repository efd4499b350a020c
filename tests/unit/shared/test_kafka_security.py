"""The options every Kafka client is built with, from the KAFKA_* settings (no broker: the built kwargs)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from tandem_devstack import certs
from tandem_shared.kafka import KafkaConnection
from tandem_shared.kafka.security import KafkaSecurity, KafkaSecurityError
from tandem_shared.settings import CommonSettings

KAFKA_ENV = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SSL_CA_FILE",
    "KAFKA_SSL_CERT_FILE",
    "KAFKA_SSL_KEY_FILE",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KAFKA_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[certs.Issued, certs.Issued]:
    directory = tmp_path_factory.mktemp("pki")
    ca = certs.make_ca(directory)
    return ca, certs.issue(ca, directory, "tandem-mapper")


def connection(monkeypatch: pytest.MonkeyPatch, **env: str) -> KafkaConnection:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return KafkaConnection.from_settings(CommonSettings(), "tandem-mapper")


def test_plaintext_by_default_adds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    kafka = connection(monkeypatch, KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    assert kafka._client(None) == {"bootstrap_servers": "127.0.0.1:1", "client_id": "tandem-mapper"}
    assert kafka.security.faststream() is None


def test_mtls_with_the_strimzi_files(monkeypatch: pytest.MonkeyPatch, pki: tuple[certs.Issued, certs.Issued]) -> None:
    ca, user = pki
    kafka = connection(
        monkeypatch,
        KAFKA_SECURITY_PROTOCOL="SSL",
        KAFKA_SSL_CA_FILE=str(ca.cert),
        KAFKA_SSL_CERT_FILE=str(user.cert),
        KAFKA_SSL_KEY_FILE=str(user.key),
    )
    options = kafka._client(None)
    assert options["security_protocol"] == "SSL"
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "tandem-devstack-ca"),),)]
    assert not any(k.startswith("sasl") for k in options)
    security = kafka.security.faststream()
    assert type(security) is BaseSecurity and security.use_ssl


@pytest.mark.parametrize(
    ("mechanism", "kind"), [("SCRAM-SHA-512", SASLScram512), ("scram-sha-256", SASLScram256), ("PLAIN", SASLPlaintext)]
)
def test_sasl_ssl_reads_the_password_from_a_file(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    pki: tuple[certs.Issued, certs.Issued],
    mechanism: str,
    kind: type,
) -> None:
    (tmp_path / "password").write_text("s3cret\n")
    kafka = connection(
        monkeypatch,
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SSL_CA_FILE=str(pki[0].cert),
        KAFKA_SASL_MECHANISM=mechanism,
        KAFKA_SASL_USERNAME="tandem-mapper",
        KAFKA_SASL_PASSWORD=f"file:{tmp_path / 'password'}",
    )
    options = kafka._client(None)
    assert {k: v for k, v in options.items() if k != "ssl_context"} == {
        "bootstrap_servers": "127.0.0.1:9092",
        "client_id": "tandem-mapper",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": mechanism.upper(),
        "sasl_plain_username": "tandem-mapper",
        "sasl_plain_password": "s3cret",
    }
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    security = kafka.security.faststream()
    assert type(security) is kind and security.use_ssl
    assert (security.username, security.password) == ("tandem-mapper", "s3cret")  # type: ignore[attr-defined]


def test_sasl_plaintext_takes_credentials_from_env_references(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KAFKA_PASSWORD", "pw")
    kafka = connection(
        monkeypatch,
        KAFKA_SECURITY_PROTOCOL="sasl_plaintext",
        KAFKA_SASL_USERNAME="tandem-writer",
        KAFKA_SASL_PASSWORD="env:MY_KAFKA_PASSWORD",
    )
    options = kafka._client(None)
    assert options["security_protocol"] == "SASL_PLAINTEXT" and "ssl_context" not in options
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("tandem-writer", "pw")
    security = kafka.security.faststream()
    assert type(security) is SASLScram512 and not security.use_ssl


def test_tools_take_the_environments_security_at_their_own_address(
    monkeypatch: pytest.MonkeyPatch, pki: tuple[certs.Issued, certs.Issued]
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("KAFKA_SSL_CA_FILE", str(pki[0].cert))
    kafka = KafkaConnection.from_env("tandem-cli", "127.0.0.1:2")
    assert (kafka.bootstrap_servers, kafka.client_id, kafka.security.protocol) == ("127.0.0.1:2", "tandem-cli", "SSL")
    assert kafka.broker()._connection_kwargs["security_protocol"] == "SSL"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL 'TLS' is not one of"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI"},
            "KAFKA_SASL_MECHANISM 'GSSAPI' is not one of",
        ),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERT_FILE": "/x.crt"}, "go together"),
    ],
)
def test_settings_that_cannot_work_are_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    with pytest.raises(KafkaSecurityError, match=message):
        connection(monkeypatch, **env)


def test_missing_files_and_secrets_are_named_without_their_values(tmp_path: Path) -> None:
    with pytest.raises(KafkaSecurityError, match="KAFKA_SSL_CA_FILE .*/nope.crt does not exist"):
        KafkaSecurity("SSL", ca_file=str(tmp_path / "nope.crt")).client_kwargs()
    with pytest.raises(KafkaSecurityError, match="KAFKA_SASL_PASSWORD: secret file .* cannot be read"):
        KafkaSecurity("SASL_PLAINTEXT", sasl_username="u", sasl_password=f"file:{tmp_path / 'pw'}").client_kwargs()
    with pytest.raises(KafkaSecurityError, match="KAFKA_SASL_USERNAME is required"):
        KafkaSecurity("SASL_PLAINTEXT", sasl_password="pw").client_kwargs()


def test_a_certificate_that_is_not_the_keys_is_refused(tmp_path: Path, pki: tuple[certs.Issued, certs.Issued]) -> None:
    ca, user = pki
    other = certs.issue(ca, tmp_path, "tandem-writer")
    with pytest.raises(KafkaSecurityError, match="are not a certificate and its key"):
        KafkaSecurity("SSL", ca_file=str(ca.cert), cert_file=str(user.cert), key_file=str(other.key)).ssl_context()


def test_the_password_is_not_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "hunter2")
    assert "hunter2" not in repr(CommonSettings())
