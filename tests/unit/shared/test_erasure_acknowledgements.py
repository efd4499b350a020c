"""Each service acknowledges an erasure request with an `ErasureAcknowledgement` in a trace record: the request id,
the service, what it removed in counts, the contact's keyed hash, never the address; several replicas of a service
count as one."""

from __future__ import annotations

from tandem_shared.contact_hash import contact_hash
from tandem_shared.contracts import ErasureAcknowledgement, Stage
from tandem_shared.contracts.erasure import by_service
from tandem_shared.erasure import acknowledgement, erasure_request


def test_an_acknowledgement_names_the_contact_by_its_keyed_hash_only() -> None:
    request = erasure_request("Ada@Example.com", instance_id="demo", requested_by="cli:ada")

    record = acknowledgement(request, "writer", {"writer marker(s)": 3}, kept="nothing")

    ack = ErasureAcknowledgement.from_data_out(record.output.data_out)
    assert ack is not None
    assert (ack.request_id, ack.service, ack.instance_id) == (request.request_id, "writer", "demo")
    assert ack.contact == contact_hash("ada@example.com")
    assert ack.removed == {"writer marker(s)": 3}
    assert (record.stage, record.execution_id) == (Stage.ERASURE, request.request_id)
    assert record.summary == "Contact erased by the writer (demo): 3 writer marker(s)"
    assert "example.com" not in record.model_dump_json().lower()


def test_a_trace_record_of_another_kind_carries_no_acknowledgement() -> None:
    assert ErasureAcknowledgement.from_data_out({"fields": {"EMAIL": "a@example.com"}}) is None
    assert ErasureAcknowledgement.from_data_out(None) is None


def test_several_replicas_of_a_service_count_once_with_what_they_removed_added_up() -> None:
    request = erasure_request("ada@example.com")
    acks = [
        ErasureAcknowledgement.from_data_out(acknowledgement(request, service, removed).output.data_out)
        for service, removed in [
            ("writer", {"writer marker(s)": 2}),
            ("mapper", {"sync state key(s)": 1}),
            ("writer", {}),  # a second replica: the first had removed them all
            ("writer", {"writer marker(s)": 1, "claim(s)": 1}),  # a third, racing the first
        ]
    ]

    merged = by_service(a for a in acks if a is not None)

    assert sorted(merged) == ["mapper", "writer"]
    assert merged["writer"].removed == {"writer marker(s)": 3, "claim(s)": 1}
    assert merged["writer"].acknowledged_at == min(a.acknowledged_at for a in acks if a and a.service == "writer")
    assert merged["mapper"].removed == {"sync state key(s)": 1}
