"""Ingest's receipt trace keeps the identity and the mapped fields of what the vendor sent, not the whole record."""

from __future__ import annotations

from datetime import UTC, datetime

from support.mapper import accessplanit_change
from tandem_ingest.trace import ReceiptStep
from tandem_shared.contracts import Stage
from tandem_shared.instances import demo_instance
from tandem_shared.privacy import NOT_MAPPED

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def test_unmapped_vendor_fields_are_counted_not_traced() -> None:
    event = accessplanit_change("demo", "7", at=T0, DOB="1815-12-10T00:00:00", CustomFields={"Diet": "none"})

    record = ReceiptStep(event, Stage.INGEST, demo_instance()).stored()

    assert record.output.data_in == {
        "ID": "7",
        "Forenames": "Ada",
        "Surname": "Lovelace",
        "Email": "user7@example.com",
        NOT_MAPPED: "4 fields not mapped",  # UpdatedByID, DateUpdated, DOB and the custom field
    }
    assert record.output.data_out is not None
    assert record.output.data_out["fields"] == record.output.data_in
    assert "1815" not in record.model_dump_json()


def test_an_unknown_instance_leaves_the_identity_only() -> None:
    event = accessplanit_change("gone", "7", at=T0)

    record = ReceiptStep(event, Stage.INGEST, None).stored()

    assert record.output.data_in == {"ID": "7", "Email": "user7@example.com", NOT_MAPPED: "4 fields not mapped"}
