"""The secured broker's settings and the settings each process gets to connect as its own Kafka user."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tandem_devstack import kafka_auth

LISTENERS = kafka_auth.Listeners(plain=19092, controller=19093, ssl=19094, sasl_ssl=19095)


def test_each_mode_points_a_process_at_its_listener_as_its_user(tmp_path: Path) -> None:
    creds = kafka_auth.Credentials(tmp_path)
    assert creds.client_env("tandem-writer", "mtls", LISTENERS) == {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19094",
        "KAFKA_SECURITY_PROTOCOL": "SSL",
        "KAFKA_SSL_CA_FILE": str(tmp_path / "ca" / "ca.crt"),
        "KAFKA_SSL_CERT_FILE": str(tmp_path / "users" / "tandem-writer.crt"),
        "KAFKA_SSL_KEY_FILE": str(tmp_path / "users" / "tandem-writer.key"),
    }
    scram = creds.client_env("tandem-writer", "scram", LISTENERS)
    assert scram["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:19095"
    assert (scram["KAFKA_SECURITY_PROTOCOL"], scram["KAFKA_SASL_USERNAME"]) == ("SASL_SSL", "tandem-writer")
    # A reference to the password file, never the password itself, goes into the environment.
    assert scram["KAFKA_SASL_PASSWORD"] == f"file:{tmp_path / 'scram' / 'tandem-writer.password'}"
    # ... readable only because its directory joins the secrets directories the process already has.
    with_dirs = creds.client_env("tandem-writer", "scram", LISTENERS, {"TANDEM_SECRETS_DIRS": "/run/secrets"})
    assert with_dirs["TANDEM_SECRETS_DIRS"] == f"{tmp_path / 'scram'}{os.pathsep}/run/secrets"
    with pytest.raises(ValueError, match="TANDEM_KAFKA_AUTH='kerberos'"):
        creds.client_env("tandem-writer", "kerberos", LISTENERS)


def test_the_plain_listener_stays_open_to_everything_and_the_others_are_authorized(tmp_path: Path) -> None:
    creds = kafka_auth.Credentials(tmp_path)
    creds.directory.mkdir(exist_ok=True)
    creds.keystore_password.write_text("pw")
    props = dict(line.split("=", 1) for line in kafka_auth.server_properties(LISTENERS, creds))
    assert props["listeners"] == (
        "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093,SSL://127.0.0.1:19094,SASL_SSL://127.0.0.1:19095"
    )
    assert props["super.users"] == "User:ANONYMOUS"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["listener.name.ssl.ssl.client.auth"] == "required"


def test_strimzi_patterns_become_kafka_acls_pattern_types() -> None:
    users = {"u": [kafka_auth.Acl("u", "topic", "tandem.", "prefix", ("Read", "Describe"))]}
    [command] = kafka_auth.acl_commands(users, "127.0.0.1:1")
    assert command[command.index("--resource-pattern-type") + 1] == "PREFIXED"
    assert kafka_auth.granted([command]) == {
        ("u", "topic", "tandem.", "prefix", "READ"),
        ("u", "topic", "tandem.", "prefix", "DESCRIBE"),
    }
