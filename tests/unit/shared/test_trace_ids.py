"""`new_id` keeps the format of `uuid.uuid4().hex`: 32 hex digits of a version-4, RFC 4122 UUID."""

from __future__ import annotations

import uuid

from tandem_shared.tracing import new_id


def test_ids_are_random_version_4_uuids_in_hex() -> None:
    ids = [new_id() for _ in range(2000)]
    parsed = [uuid.UUID(hex=i) for i in ids]
    assert all(len(i) == 32 and i == i.lower() for i in ids)
    assert {(p.version, p.variant) for p in parsed} == {(4, uuid.RFC_4122)}
    assert [p.hex for p in parsed] == ids
    assert len(set(ids)) == len(ids)
    # Every bit outside the version and variant fields varies.
    varying = 0
    for p in parsed:
        varying |= p.int ^ parsed[0].int
    assert varying == ((1 << 128) - 1) & ~(0xF << 76) & ~(0x3 << 62)
