"""accessplanit's DOB is a non-nullable date-time: 0001-01-01 (or 9999-12-31) may simply mean "none". A mapped date
outside any contact's range counts as empty; it never gets the record refused or sent as a date."""

from __future__ import annotations

import pytest

from tandem_mapper.domain.transforms import convert
from tandem_shared.contracts import Flow, Transform

TO_MC = Flow.ACCESSPLANIT_TO_MAILCHIMP
TO_AP = Flow.MAILCHIMP_TO_ACCESSPLANIT
PLACEHOLDERS = ["0001-01-01T00:00:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "1899-12-31"]


@pytest.mark.parametrize("value", PLACEHOLDERS)
def test_an_out_of_range_date_counts_as_empty(value: str) -> None:
    assert convert(Transform.DATE, value, TO_MC) == ""
    assert convert(Transform.BIRTHDAY, value, TO_MC) == ""


def test_an_out_of_range_date_from_mailchimp_clears_the_accessplanit_field() -> None:
    assert convert(Transform.DATE, "0001-01-01", TO_AP) is None


def test_dates_in_range_still_convert() -> None:
    assert convert(Transform.DATE, "1990-03-28T00:00:00", TO_MC) == "1990-03-28"
    assert convert(Transform.BIRTHDAY, "1990-03-28T00:00:00", TO_MC) == "03/28"
    assert convert(Transform.DATE, "1900-01-01", TO_AP) == "1900-01-01T00:00:00"
