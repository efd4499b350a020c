"""How a Tandem client proves itself to Kafka: TLS (server verification, optionally a client certificate, i.e. mTLS)
and SASL (SCRAM or PLAIN). Built from `KAFKA_SECURITY_PROTOCOL` and friends by `KafkaConnection`, and nowhere else.

In Kubernetes the files are the Strimzi secrets each workload mounts (`k8s/base/settings.env`): the cluster CA at
/var/run/secrets/kafka/ca/ca.crt, the KafkaUser's certificate and key at /var/run/secrets/kafka/user/user.{crt,key}.
SASL credentials are a literal value or a secret reference (`file:/path`, `env:NAME`), resolved when the client is
built, so a rotated password file is read by the next connection.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from tandem_shared.secrets import SecretUnavailable, resolve_secret

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = {"SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256, "PLAIN": SASLPlaintext}


class KafkaSecurityError(ValueError):
    """The Kafka security settings cannot work as given; the message names the setting (never a secret's value)."""


def _credential(setting: str, value: str | None) -> str:
    """A literal, or the value behind a `file:` / `env:` reference."""
    if not value:
        raise KafkaSecurityError(f"{setting} is required for SASL")
    if value.startswith(("file:", "env:")):
        try:
            return resolve_secret(value)
        except SecretUnavailable as exc:
            raise KafkaSecurityError(f"{setting}: {exc}") from exc
    return value


def _readable(setting: str, path: str) -> str:
    if not Path(path).is_file():
        raise KafkaSecurityError(f"{setting} {path} does not exist or is not a file")
    return path


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    ca_file: str | None = None  # None: the system's trust store
    cert_file: str | None = None  # with key_file: a client certificate (mTLS)
    key_file: str | None = None
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str | None = None  # literal or secret reference
    sasl_password: str | None = None  # literal or secret reference

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise KafkaSecurityError(f"KAFKA_SECURITY_PROTOCOL {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if self.sasl and self.sasl_mechanism not in SASL_MECHANISMS:
            raise KafkaSecurityError(
                f"KAFKA_SASL_MECHANISM {self.sasl_mechanism!r} is not one of {', '.join(SASL_MECHANISMS)}"
            )
        if (self.cert_file is None) != (self.key_file is None):
            raise KafkaSecurityError("KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE go together (a client certificate)")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    def ssl_context(self) -> ssl.SSLContext | None:
        """Verifies the broker's certificate and host name; presents the client certificate when one is set."""
        if not self.tls:
            return None
        cafile = _readable("KAFKA_SSL_CA_FILE", self.ca_file) if self.ca_file else None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
        if self.cert_file and self.key_file:
            try:
                context.load_cert_chain(
                    _readable("KAFKA_SSL_CERT_FILE", self.cert_file), _readable("KAFKA_SSL_KEY_FILE", self.key_file)
                )
            except ssl.SSLError as exc:
                raise KafkaSecurityError(
                    f"KAFKA_SSL_CERT_FILE {self.cert_file} and KAFKA_SSL_KEY_FILE {self.key_file} "
                    f"are not a certificate and its key ({exc.reason or exc})"
                ) from exc
        return context

    def client_kwargs(self) -> dict[str, Any]:
        """What aiokafka's producer, consumer and admin client take (their names: security_protocol, ssl_context,
        sasl_*). Empty for PLAINTEXT, so a plain client is built exactly as before."""
        if self.protocol == "PLAINTEXT":
            return {}
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            options["ssl_context"] = self.ssl_context()
        if self.sasl:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = _credential("KAFKA_SASL_USERNAME", self.sasl_username)
            options["sasl_plain_password"] = _credential("KAFKA_SASL_PASSWORD", self.sasl_password)
        return options

    def faststream(self) -> BaseSecurity | None:
        """The same, as FastStream's broker takes it (it turns it back into the aiokafka options above)."""
        if self.protocol == "PLAINTEXT":
            return None
        context = self.ssl_context()
        if not self.sasl:
            return BaseSecurity(ssl_context=context)
        return SASL_MECHANISMS[self.sasl_mechanism](
            _credential("KAFKA_SASL_USERNAME", self.sasl_username),
            _credential("KAFKA_SASL_PASSWORD", self.sasl_password),
            ssl_context=context,
            use_ssl=self.tls,
        )
