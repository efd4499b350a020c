"""The mapper applies each erasure request once, to the instances it names, and acknowledges it without the address."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import ConsumerRecord

from fakes.producer import InMemoryProducer
from tandem_mapper.erasure import ErasureApplier
from tandem_shared.contracts import Stage, TraceStatus
from tandem_shared.contracts.envelopes import erasure_envelope
from tandem_shared.contracts.topics import ERASURE
from tandem_shared.erasure import erasure_request
from tandem_shared.instances import StaticInstanceRegistry, demo_instance
from tandem_shared.kafka import KafkaConnection
from tandem_shared.redis.erasure import Erased


class FakeEraser:
    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str]] = []
        self.offsets: dict[int, int] = {}

    async def erase(self, instance_ids: Iterable[str], email: str) -> Erased:
        self.calls.append((list(instance_ids), email))
        return Erased(state_keys=2, writer_keys=1)

    async def positions(self) -> dict[int, int]:
        return dict(self.offsets)

    async def applied(self, partition: int, next_offset: int) -> None:
        self.offsets[partition] = next_offset


def record(value: bytes | None, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(ERASURE, 0, offset, 0, 0, b"k", value, None, 0, 0, [])


async def test_requests_are_applied_acknowledged_and_remembered() -> None:
    producer, eraser = InMemoryProducer(), FakeEraser()
    others = demo_instance().model_copy(update={"id": "other"})
    applier = ErasureApplier(
        KafkaConnection("127.0.0.1:1", "test"), producer, StaticInstanceRegistry([demo_instance(), others]), eraser
    )
    everywhere = erasure_request("Ada@Example.com")
    one = erasure_request("bob@example.com", instance_id="other")

    await applier.apply(
        [
            record(erasure_envelope(everywhere).value, 0),
            record(b"{not json", 1),
            record(erasure_envelope(one).value, 2),
        ]
    )

    assert eraser.calls == [(["demo", "other"], "Ada@Example.com"), (["other"], "bob@example.com")]
    assert eraser.offsets == {0: 3}  # the unreadable request is skipped, not retried for ever
    acks = producer.traces
    assert [(a.stage, a.status, a.execution_id) for a in acks] == [
        (Stage.ERASURE, TraceStatus.SUCCEEDED, everywhere.request_id),
        (Stage.ERASURE, TraceStatus.SUCCEEDED, one.request_id),
    ]
    assert [a.instance_id for a in acks] == ["*", "other"]
    assert all("@example.com" not in a.model_dump_json().lower() for a in acks)
    assert acks[0].summary.startswith("Contact erased by the mapper (every instance): 2 sync state key(s)")
