"""The tests' way to Kafka: the connection the kit's clients are built from."""

from __future__ import annotations

from tandem_shared.kafka import KafkaConnection


def connect(bootstrap: str) -> KafkaConnection:
    return KafkaConnection(bootstrap, "tandem-test")
