"""The body reader every webhook route shares: its Content-Length parsing never raises on what a sender declares."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from tandem_ingest.http import read_body


def request(body: bytes, content_length: str | None) -> Request:
    headers = [] if content_length is None else [(b"content-length", content_length.encode("latin-1"))]
    sent = False

    async def receive() -> dict[str, object]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers}, receive)


def read(body: bytes, content_length: str | None, limit: int = 16) -> bytes:
    return asyncio.run(read_body(request(body, content_length), limit))


def test_a_declared_length_above_the_limit_is_refused_before_reading() -> None:
    with pytest.raises(OverflowError):
        read(b"x", "17")
    with pytest.raises(OverflowError):
        read(b"x" * 17, None)
    assert read(b"x" * 16, "16") == b"x" * 16


def test_a_length_int_cannot_read_is_ignored_and_the_body_counted() -> None:
    """ "²" passes str.isdigit() and made int() raise (a 500); thousands of digits exceed int()'s limit."""
    assert read(b"abc", "²") == b"abc"
    assert read(b"abc", "1" * 5000) == b"abc"


@settings(max_examples=100, deadline=None)
@given(declared=st.text(alphabet=st.characters(max_codepoint=255), max_size=40), body=st.binary(max_size=32))
def test_any_declared_length_is_read_or_refused_never_raised(declared: str, body: bytes) -> None:
    try:
        assert read(body, declared) == body
    except OverflowError:
        pass
