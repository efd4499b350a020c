"""The PHP-style form parser, on exactly Mailchimp's sample deliveries and on what PHP would mangle."""

from __future__ import annotations

from pathlib import Path

import pytest

from tandem_ingest.domain.errors import InvalidPayload
from tandem_ingest.domain.normalize.mailchimp import parse_form, split_key

FIXTURES = Path(__file__).parents[2] / "simulators" / "mailchimp" / "fixtures" / "mailchimp-webhooks"


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.form").read_bytes().strip()


def test_subscribe_sample() -> None:
    assert parse_form(fixture("subscribe")) == {
        "type": "subscribe",
        "fired_at": "2009-03-26 21:35:57",
        "data": {
            "id": "8a25ff1d98",
            "list_id": "a6b5da1054",
            "email": "api@mailchimp.com",
            "email_type": "html",
            "merges": {
                "EMAIL": "api@mailchimp.com",
                "FNAME": "MailChimp",
                "LNAME": "API",
                "INTERESTS": "Group1,Group2",
            },
            "ip_opt": "10.20.10.30",
            "ip_signup": "10.20.10.30",
        },
    }


def test_unsubscribe_sample() -> None:
    assert parse_form(fixture("unsubscribe")) == {
        "type": "unsubscribe",
        "fired_at": "2009-03-26 21:40:57",
        "data": {
            "action": "unsub",
            "reason": "manual",
            "id": "8a25ff1d98",
            "list_id": "a6b5da1054",
            "email": "api+unsub@mailchimp.com",
            "email_type": "html",
            "merges": {
                "EMAIL": "api+unsub@mailchimp.com",
                "FNAME": "MailChimp",
                "LNAME": "API",
                "INTERESTS": "Group1,Group2",
            },
            "ip_opt": "10.20.10.30",
            "campaign_id": "cb398d21d2",
        },
    }


def test_profile_sample() -> None:
    assert parse_form(fixture("profile")) == {
        "type": "profile",
        "fired_at": "2009-03-26 21:31:21",
        "data": {
            "id": "8a25ff1d98",
            "list_id": "a6b5da1054",
            "email": "api@mailchimp.com",
            "email_type": "html",
            "merges": {
                "EMAIL": "api@mailchimp.com",
                "FNAME": "MailChimp",
                "LNAME": "API",
                "INTERESTS": "Group1,Group2",
            },
            "ip_opt": "10.20.10.30",
        },
    }


def test_upemail_sample() -> None:
    assert parse_form(fixture("upemail")) == {
        "type": "upemail",
        "fired_at": "2009-03-26 22:15:09",
        "data": {
            "list_id": "a6b5da1054",
            "new_id": "51da8c3259",
            "new_email": "api+new@mailchimp.com",
            "old_email": "api+old@mailchimp.com",
        },
    }


def test_cleaned_sample() -> None:
    assert parse_form(fixture("cleaned")) == {
        "type": "cleaned",
        "fired_at": "2009-03-26 22:01:00",
        "data": {
            "list_id": "a6b5da1054",
            "campaign_id": "4fjk2ma9xd",
            "reason": "hard",
            "email": "api+cleaned@mailchimp.com",
        },
    }


def test_campaign_sample_keeps_empty_values() -> None:
    assert parse_form(fixture("campaign")) == {
        "type": "campaign",
        "fired_at": "2009-03-26 22:15:09",
        "data": {
            "id": "5aa2102003",
            "subject": "Test Campaign Subject",
            "status": "sent",
            "reason": "",
            "list_id": "a6b5da1054",
        },
    }


def test_address_sub_keys_become_one_nested_value() -> None:
    raw = (
        b"data%5Bmerges%5D%5BADDRESS%5D%5Baddr1%5D=1+Main+St&data%5Bmerges%5D%5BADDRESS%5D%5Bcity%5D=Leeds"
        b"&data%5Bmerges%5D%5BADDRESS%5D%5Baddr2%5D="
    )
    assert parse_form(raw) == {"data": {"merges": {"ADDRESS": {"addr1": "1 Main St", "city": "Leeds", "addr2": ""}}}}


def test_empty_brackets_append_like_php() -> None:
    assert parse_form(b"tags[]=a&tags[]=b&x[][n]=1&x[][n]=2") == {"tags": ["a", "b"], "x": [{"n": "1"}, {"n": "2"}]}


def test_later_duplicates_win_like_php() -> None:
    assert parse_form(b"type=a&type=b") == {"type": "b"}


def test_an_empty_body_is_an_empty_form() -> None:
    assert parse_form(b"") == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"data=x&data[id]=1", "both a value and a group"),
        (b"data[id]=1&data=x", "both a value and a group"),
        (b"data[id=1", "bracketed"),
        (b"data]x[=1", "bracketed"),
        (b"=1", "bracketed"),
        (b"[id]=1", "bracketed"),
        (b"tags[]=a&tags[x]=b", "mixes"),
        (b"tags[x]=a&tags[]=b", "mixes"),
        (b"tags=a&tags[]=b", "both a value and a group"),
        (b"a[b][c][d][e][f][g]=1", "deeper"),
        (b"no-equals-sign", "urlencoded"),
        (b"a=1&&b=2", "urlencoded"),
        (b"a=%ff", "UTF-8"),
        (b"\xff=1", "UTF-8"),
    ],
)
def test_malformed_bodies_are_refused_with_a_reason(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidPayload, match=message):
        parse_form(raw)


def test_field_count_is_bounded() -> None:
    with pytest.raises(InvalidPayload):
        parse_form("&".join(f"f{i}=1" for i in range(2000)).encode())


def test_split_key() -> None:
    assert split_key("data[merges][FNAME]") == ["data", "merges", "FNAME"]
    assert split_key("type") == ["type"]
    assert split_key("tags[]") == ["tags", ""]
