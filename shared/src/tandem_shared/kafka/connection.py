"""KafkaConnection: where and how Tandem reaches Kafka. Every producer, consumer, admin client and FastStream broker
in the repository is built here, with the same address and security (TLS, SASL: `KafkaSecurity`)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed
from faststream.kafka import KafkaBroker

from tandem_shared.kafka.counting import receipt_middleware, service_of
from tandem_shared.kafka.security import KafkaSecurity, KafkaSecurityError
from tandem_shared.settings import CommonSettings

EXPLAIN_TIMEOUT_S = 15.0
PRODUCER_BATCH_BYTES = 256 * 1024


class KafkaUnavailable(KafkaConnectionError):
    """Kafka cannot be used with these settings; the message says why in terms of the settings to check. A
    KafkaConnectionError still, for every caller that handles those."""


@dataclass(frozen=True)
class KafkaConnection:
    bootstrap_servers: str
    client_id: str = "tandem"
    security: KafkaSecurity = field(default_factory=KafkaSecurity)

    @classmethod
    def from_settings(cls, settings: CommonSettings, client_id: str = "tandem") -> KafkaConnection:
        password = settings.kafka_sasl_password
        security = KafkaSecurity(
            protocol=settings.kafka_security_protocol.upper(),
            ca_file=settings.kafka_ssl_ca_file,
            cert_file=settings.kafka_ssl_cert_file,
            key_file=settings.kafka_ssl_key_file,
            sasl_mechanism=settings.kafka_sasl_mechanism.upper(),
            sasl_username=settings.kafka_sasl_username,
            sasl_password=password.get_secret_value() if password is not None else None,
        )
        return cls(settings.kafka_bootstrap_servers, client_id, security)

    @classmethod
    def from_env(cls, client_id: str, bootstrap_servers: str | None = None) -> KafkaConnection:
        """For tools (CLI, bench, devstack commands): the environment's settings, at the address given if any."""
        connection = cls.from_settings(CommonSettings(), client_id)
        if bootstrap_servers:
            return cls(bootstrap_servers, client_id, connection.security)
        return connection

    @property
    def service(self) -> str:
        """The `service` label of the metrics this connection's clients count (`tandem-mapper` → `mapper`)."""
        return service_of(self.client_id)

    def _client(self, client_id: str | None) -> dict[str, Any]:
        """What every aiokafka client takes to connect."""
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": client_id or self.client_id,
            **self.security.client_kwargs(),
        }

    def producer(self, client_id: str | None = None, **overrides: Any) -> AIOKafkaProducer:
        """Acknowledged once every in-sync replica has the record (acks=all), without duplicates (idempotent).

        It lingers a few milliseconds so that the records of concurrent changes (and their trace records) share a
        produce request: per-record requests were a large part of the broker's CPU under load. Its batches are larger
        than aiokafka's 16 KiB: a stage hands a round of up to 500 changes' records at once, and an idempotent
        producer sends one request at a time with one batch per partition, so 16 KiB split a round into a dozen
        requests and dozens of batches, each a cost to the broker (`tandem_bench.produce_cpu`: its CPU per record fell
        four to tenfold, the producer's own by a quarter). 256 KiB stays well under the broker's 1 MiB
        `max.message.bytes`.
        """
        options: dict[str, Any] = {
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": 5,
            "max_batch_size": PRODUCER_BATCH_BYTES,
            **overrides,
        }
        return AIOKafkaProducer(**self._client(client_id), **options)

    def consumer(self, *topics: str, client_id: str | None = None, **kwargs: Any) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(*topics, **self._client(client_id), **kwargs)

    def admin(self, client_id: str | None = None) -> AIOKafkaAdminClient:
        return AIOKafkaAdminClient(**self._client(client_id))

    def broker(self, client_id: str | None = None, **kwargs: Any) -> KafkaBroker:
        """A FastStream broker (subscribers, AsyncAPI, health); Tandem's own records go through `KafkaProducer`.
        Its subscribers count what they receive (`tandem_events_in_total`)."""
        client_id = client_id or self.client_id
        return KafkaBroker(
            self.bootstrap_servers,
            client_id=client_id,
            security=self.security.faststream(),
            acks="all",
            enable_idempotence=True,
            logger=logging.getLogger(f"tandem.{client_id}.kafka"),
            middlewares=[receipt_middleware(service_of(client_id)), *kwargs.pop("middlewares", ())],
            **kwargs,
        )

    async def explain(self, error: BaseException) -> KafkaUnavailable:
        """Why a client could not connect, found by one direct connection to the first bootstrap server (aiokafka's
        own "Unable to bootstrap" names no cause). Returned for the caller to raise: a service's startup fails with
        it (its log's last error), the CLI prints it."""
        reason = await self.refusal()
        if reason is None:
            reason = f"{self._where()} accepts this client ({self.security.protocol}), but: {error}"
        return KafkaUnavailable(reason)

    def _where(self) -> str:
        host, _, port = self.bootstrap_servers.split(",")[0].strip().rpartition(":")
        return f"Kafka at {host}:{port}"

    async def refusal(self) -> str | None:
        """None when the first bootstrap server accepts this client (TLS handshake, SASL login, a first request);
        else why not, naming the settings to check and the principal (the SASL user, the certificate file) — never
        a secret. A service waits on this before it starts (`tandem_shared.kafka.gate`)."""
        host, _, port = self.bootstrap_servers.split(",")[0].strip().rpartition(":")
        where, security = self._where(), self.security
        try:
            options = security.client_kwargs()
        except KafkaSecurityError as exc:
            return f"{where}: {exc}"
        try:
            async with asyncio.timeout(EXPLAIN_TIMEOUT_S):
                conn = await create_conn(host, int(port), **options)
            conn.close()
            return None
        except ssl.SSLCertVerificationError as exc:
            return (
                f"{where}: the broker's certificate is not trusted with KAFKA_SSL_CA_FILE={security.ca_file}"
                f" ({exc.verify_message})"
            )
        except SaslAuthenticationFailed as exc:
            return (
                f"{where} refused the SASL {security.sasl_mechanism} login of user"
                f" {options['sasl_plain_username']!r} (authentication refused: check KAFKA_SASL_USERNAME /"
                f" KAFKA_SASL_PASSWORD): {exc}"
            )
        except (TimeoutError, OSError) as exc:
            return f"{where} does not answer ({exc or type(exc).__name__})"
        except Exception as exc:  # the broker hung up: on a TLS listener, that is how a client certificate is refused
            if security.tls and security.cert_file:
                return (
                    f"{where} closed the TLS connection: the broker does not accept the client certificate"
                    f" KAFKA_SSL_CERT_FILE={security.cert_file} (authentication refused: not issued by a CA it"
                    f" trusts, or expired) ({exc})"
                )
            if security.tls:
                return (
                    f"{where} closed the TLS connection: the listener may require a client certificate"
                    f" (KAFKA_SSL_CERT_FILE, KAFKA_SSL_KEY_FILE) ({exc})"
                )
            return (
                f"{where} closed the connection: is KAFKA_SECURITY_PROTOCOL={security.protocol} the"
                f" listener's protocol? ({exc})"
            )
