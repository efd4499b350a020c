"""One way to Kafka: the connection every client is built from, the producer port, topic followers and admin."""

from tandem_shared.kafka.admin import caught_up, ensure_topics, partitions_of
from tandem_shared.kafka.connection import KafkaConnection, KafkaUnavailable
from tandem_shared.kafka.follower import TopicFollower, read_records
from tandem_shared.kafka.producer import KafkaNotConnected, KafkaProducer, Producer, send_envelope

__all__ = [
    "KafkaConnection",
    "KafkaNotConnected",
    "KafkaProducer",
    "KafkaUnavailable",
    "Producer",
    "TopicFollower",
    "caught_up",
    "ensure_topics",
    "partitions_of",
    "read_records",
    "send_envelope",
]
