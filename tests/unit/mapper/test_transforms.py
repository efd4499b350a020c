from __future__ import annotations

import pytest

from tandem_mapper.domain.transforms import TransformError, address_line, convert, truncate_utf8
from tandem_shared.contracts import Flow, Transform

TO_MC = Flow.ACCESSPLANIT_TO_MAILCHIMP
TO_AP = Flow.MAILCHIMP_TO_ACCESSPLANIT


def test_without_a_transform_names_are_trimmed_text_and_blanks_clear_accessplanit_fields() -> None:
    assert convert(None, "  Ada ", TO_MC) == "Ada"
    assert convert(None, "  Ada ", TO_AP) == "Ada"
    assert convert(None, None, TO_MC) == ""
    assert convert(None, "", TO_AP) is None
    assert convert(None, "   ", TO_AP) is None


def test_without_a_transform_numbers_and_booleans_keep_their_type_where_the_target_takes_it() -> None:
    assert convert(None, 4, TO_MC) == 4
    assert convert(None, True, TO_MC) == "true"
    assert convert(None, True, TO_AP) is True


def test_text_for_mailchimp_is_cut_to_255_bytes_as_mailchimp_would_so_the_echo_matches() -> None:
    value = "é" * 200  # 400 bytes
    converted = convert(None, value, TO_MC)
    assert len(converted.encode("utf-8")) <= 255
    assert converted == "é" * 127
    assert truncate_utf8("short") == "short"


def test_dates_go_between_accessplanit_iso_date_times_and_mailchimp_dates() -> None:
    assert convert(Transform.DATE, "1990-03-05T00:00:00", TO_MC) == "1990-03-05"
    assert convert(Transform.DATE, "05/03/1990", TO_MC) == "1990-03-05"  # the screen format, typed into a text field
    # Every date Tandem writes to accessplanit is ISO 8601 (as the platform returns DOB), never DD/MM/YYYY.
    assert convert(Transform.DATE, "1990-03-05", TO_AP) == "1990-03-05T00:00:00"
    assert convert(Transform.DATE, "1990/03/05", TO_AP) == "1990-03-05T00:00:00"


def test_an_accessplanit_date_time_keeps_its_date_as_written_whatever_its_zone() -> None:
    assert convert(Transform.DATE, "1990-03-05T23:30:00-05:00", TO_MC) == "1990-03-05"
    assert convert(Transform.DATE, "1990-03-05T00:30:00+01:00", TO_MC) == "1990-03-05"
    assert convert(Transform.DATE, "1990-03-05T00:00:00.000Z", TO_MC) == "1990-03-05"
    assert convert(Transform.DATE, "", TO_MC) == ""
    assert convert(Transform.DATE, "", TO_AP) is None


def test_a_value_that_is_not_a_date_is_refused_with_the_reason() -> None:
    with pytest.raises(TransformError, match="'31/02/1990' is not a date"):
        convert(Transform.DATE, "31/02/1990", TO_MC)
    with pytest.raises(TransformError, match="not a date"):
        convert(Transform.DATE, "March 5th", TO_AP)


def test_birthdays_are_mm_dd_both_ways_zero_padded_and_leap_days_allowed() -> None:
    assert convert(Transform.BIRTHDAY, "3/5", TO_MC) == "03/05"
    assert convert(Transform.BIRTHDAY, "03/05", TO_AP) == "03/05"
    assert convert(Transform.BIRTHDAY, "02/29", TO_MC) == "02/29"
    assert convert(Transform.BIRTHDAY, "", TO_AP) is None


def test_a_date_of_birth_becomes_a_mailchimp_birthday_one_way() -> None:
    # accessplanit DOB (an ISO 8601 date-time) → MM/DD; the year is dropped, which is why it cannot come back.
    assert convert(Transform.BIRTHDAY, "1990-03-05T00:00:00", TO_MC) == "03/05"
    assert convert(Transform.BIRTHDAY, "1990-03-05", TO_MC) == "03/05"
    # The date as written: no time-zone conversion moves the birthday to the day before or after.
    assert convert(Transform.BIRTHDAY, "1990-03-05T00:00:00+02:00", TO_MC) == "03/05"
    assert convert(Transform.BIRTHDAY, "1990-03-05T23:59:59Z", TO_MC) == "03/05"
    assert convert(Transform.BIRTHDAY, "05/03/1990", TO_MC) == "03/05"  # the screen format in a text field


def test_a_birthday_that_is_not_mm_dd_is_refused() -> None:
    with pytest.raises(TransformError, match="not a birthday in MM/DD format"):
        convert(Transform.BIRTHDAY, "13/40", TO_MC)
    with pytest.raises(TransformError, match="not a birthday"):
        convert(Transform.BIRTHDAY, "1990-03-05", TO_AP)


def test_phone_numbers_stay_text_so_a_leading_zero_or_plus_survives() -> None:
    assert convert(Transform.PHONE, " +44 0161 496 0000 ", TO_MC) == "+44 0161 496 0000"
    assert convert(Transform.PHONE, "01614960000", TO_AP) == "01614960000"
    assert convert(Transform.PHONE, 1614960000, TO_AP) == "1614960000"
    assert convert(Transform.PHONE, "", TO_AP) is None


def test_a_mailchimp_address_becomes_one_line_of_text_from_either_webhook_form() -> None:
    address = {
        "addr1": "1 High St",
        "addr2": "",
        "city": "Leeds",
        "state": "W Yorks",
        "zip": "LS1 1AA",
        "country": "GB",
    }
    assert convert(Transform.ADDRESS, address, TO_AP) == "1 High St, Leeds, W Yorks, LS1 1AA, GB"
    assert address_line("1 High St    Leeds  W Yorks  LS1 1AA  GB") == "1 High St, Leeds, W Yorks, LS1 1AA, GB"
    assert convert(Transform.ADDRESS, {}, TO_AP) is None


def test_an_address_cannot_be_split_back_for_mailchimp() -> None:
    with pytest.raises(TransformError, match="cannot be split"):
        convert(Transform.ADDRESS, "1 High St, Leeds", TO_MC)


def test_numbers_arrive_from_mailchimp_as_text_and_leave_as_numbers() -> None:
    assert convert(Transform.NUMBER, "4", TO_AP) == 4
    assert convert(Transform.NUMBER, "4.5", TO_AP) == 4.5
    assert convert(Transform.NUMBER, "", TO_AP) is None
    assert convert(Transform.NUMBER, 7, TO_MC) == 7
    with pytest.raises(TransformError, match="'four' is not a number"):
        convert(Transform.NUMBER, "four", TO_AP)
