"""Ingest holds nothing named by a contact: it acknowledges every erasure request, saying what it keeps."""

from __future__ import annotations

from aiokafka import ConsumerRecord

from fakes.producer import InMemoryProducer
from tandem_ingest.erasure import KEPT, IngestEraser
from tandem_shared.contracts import ErasureAcknowledgement, ErasureRequest
from tandem_shared.contracts.envelopes import erasure_envelope
from tandem_shared.contracts.topics import ERASURE
from tandem_shared.erasure import ErasureApplier, erasure_request
from tandem_shared.kafka import KafkaConnection


class Offsets(IngestEraser):
    """Ingest's eraser with its offsets in memory instead of Redis."""

    def __init__(self) -> None:
        self.offsets: dict[int, int] = {}

    async def positions(self) -> dict[int, int]:
        return dict(self.offsets)

    async def applied(self, partition: int, next_offset: int) -> None:
        self.offsets[partition] = next_offset


def record(request: ErasureRequest | None, offset: int) -> ConsumerRecord[bytes, bytes]:
    value = erasure_envelope(request).value if request else b"{not json"
    return ConsumerRecord(ERASURE, 0, offset, 0, 0, b"k", value, None, 0, 0, [])


async def test_ingest_acknowledges_every_request_saying_what_it_keeps() -> None:
    producer, eraser = InMemoryProducer(), Offsets()
    applier = ErasureApplier(KafkaConnection("127.0.0.1:1", "test"), producer, "ingest", eraser, kept=KEPT)
    first, second = erasure_request("ada@example.com"), erasure_request("bob@example.com", instance_id="demo")

    await applier.apply([record(first, 0), record(None, 1), record(second, 2)])

    acks = [ErasureAcknowledgement.from_data_out(t.output.data_out) for t in producer.traces]
    assert [(a.request_id, a.service, a.removed, a.kept) for a in acks if a] == [
        (first.request_id, "ingest", {}, KEPT),
        (second.request_id, "ingest", {}, KEPT),
    ]
    assert eraser.offsets == {0: 3}  # the unreadable request is skipped, not retried for ever
