"""A change's own time (accessplanit's DateUpdated, Mailchimp's fired_at) at the edge of the calendar is refused at
ingest with a 400 naming the field: downstream it broke the writer on every redelivery."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tandem_ingest.domain.errors import InvalidPayload
from tandem_ingest.domain.normalize import accessplanit, mailchimp

EXTREMES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "1969-12-31T23:59:59Z", "2200-01-01T00:00:00Z"]
NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize("updated", EXTREMES)
def test_an_accessplanit_change_at_the_edge_of_the_calendar_is_refused(updated: str) -> None:
    body = {"Module": "User", "Data": {"ID": "1001", "Email": "a@example.com", "DateUpdated": updated}}
    with pytest.raises(InvalidPayload, match=r"Data\.DateUpdated .* is out of range"):
        accessplanit.normalize_webhook(instance_id="demo", method="PUT", body=body, execution_id="x", received_at=NOW)


def test_an_ordinary_accessplanit_change_time_passes() -> None:
    body = {"Module": "User", "Data": {"ID": "1001", "DateUpdated": "2026-11-26T06:59:58.123+14:00"}}
    event = accessplanit.normalize_webhook(
        instance_id="demo", method="PUT", body=body, execution_id="x", received_at=NOW
    )
    assert event.occurred_at == datetime(2026, 11, 25, 16, 59, 58, 123000, tzinfo=UTC)


def test_an_out_of_range_delivery_timestamp_is_ignored_like_a_malformed_one() -> None:
    body = {"Module": "User", "Timestamp": EXTREMES[0], "Data": {"ID": "1001"}}
    assert accessplanit.parse_webhook(method="DELETE", body=body).timestamp is None


@pytest.mark.parametrize("fired_at", ["0001-01-01 00:00:00", "9999-12-31 23:59:59", *EXTREMES[:2]])
def test_a_mailchimp_fired_at_at_the_edge_of_the_calendar_is_refused(fired_at: str) -> None:
    with pytest.raises(InvalidPayload, match="fired_at"):  # out of range, or not even a UTC time
        mailchimp.parse_fired_at(fired_at)
