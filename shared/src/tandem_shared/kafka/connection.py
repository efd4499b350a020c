"""KafkaConnection: where and how Tandem reaches Kafka. Every producer, consumer, admin client and FastStream broker
in the repository is built here, so connection settings (TLS and SASL next) are added in one place."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from faststream.kafka import KafkaBroker

from tandem_shared.settings import CommonSettings


@dataclass(frozen=True)
class KafkaConnection:
    bootstrap_servers: str
    client_id: str = "tandem"

    @classmethod
    def from_settings(cls, settings: CommonSettings, client_id: str = "tandem") -> KafkaConnection:
        return cls(settings.kafka_bootstrap_servers, client_id)

    def _client(self, client_id: str | None) -> dict[str, Any]:
        """What every client takes to connect."""
        return {"bootstrap_servers": self.bootstrap_servers, "client_id": client_id or self.client_id}

    def producer(self, client_id: str | None = None, **overrides: Any) -> AIOKafkaProducer:
        """Acknowledged once every in-sync replica has the record (acks=all), without duplicates (idempotent).

        It lingers a few milliseconds so that the records of concurrent changes (and their trace records) share a
        produce request: per-record requests were a large part of the broker's CPU under load.
        """
        options: dict[str, Any] = {"acks": "all", "enable_idempotence": True, "linger_ms": 5, **overrides}
        return AIOKafkaProducer(**self._client(client_id), **options)

    def consumer(self, *topics: str, client_id: str | None = None, **kwargs: Any) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(*topics, **self._client(client_id), **kwargs)

    def admin(self, client_id: str | None = None) -> AIOKafkaAdminClient:
        return AIOKafkaAdminClient(**self._client(client_id))

    def broker(self, client_id: str | None = None, **kwargs: Any) -> KafkaBroker:
        """A FastStream broker (subscribers, AsyncAPI, health); Tandem's own records go through `KafkaProducer`."""
        client = self._client(client_id)
        return KafkaBroker(
            client["bootstrap_servers"],
            client_id=client["client_id"],
            acks="all",
            enable_idempotence=True,
            logger=logging.getLogger(f"tandem.{client['client_id']}.kafka"),
            **kwargs,
        )
