from __future__ import annotations

import json

import pytest

from tandem_writer.targets.mailchimp import base_url, classify

PROBLEM = "application/problem+json; charset=utf-8"


def body(title: str, detail: str = "", **extra: object) -> bytes:
    return json.dumps({"type": "x", "title": title, "status": 400, "detail": detail, "instance": "", **extra}).encode()


@pytest.mark.parametrize(
    ("status", "raw", "content_type"),
    [
        (429, body("TooManyRequests"), PROBLEM),
        (429, b"", ""),
        (500, body("InternalServerError"), PROBLEM),
        (502, b"<html><body>502 Bad Gateway</body></html>", "text/html"),
        (503, b"", ""),
        (403, b"", ""),
    ],
)
def test_transient_responses_are_retried(status: int, raw: bytes, content_type: str) -> None:
    assert not classify(status, raw, content_type).permanent


@pytest.mark.parametrize(
    ("status", "raw", "title"),
    [
        (400, body("Member In Compliance State", "x is in a compliance state"), "MemberInComplianceState"),
        (400, body("Forgotten Email Not Subscribed", "x was permanently deleted"), "ForgottenEmailNotSubscribed"),
        (401, body("API Key Invalid", "Your API key may be invalid"), "APIKeyInvalid"),
        (403, body("Forbidden", "no access"), "Forbidden"),
        (404, body("Resource Not Found", "gone"), "ResourceNotFound"),
    ],
)
def test_permanent_responses_keep_their_title_and_detail(status: int, raw: bytes, title: str) -> None:
    error = classify(status, raw, PROBLEM)
    assert error.permanent
    assert error.error_class == title


def test_validation_errors_keep_the_field_and_message() -> None:
    raw = body(
        "Invalid Resource",
        "Your merge fields were invalid.",
        errors=[{"field": "RADIO", "message": "Please enter a value"}],
    )
    error = classify(400, raw, PROBLEM)
    assert error.permanent
    assert error.field == "RADIO"
    assert "Please enter a value" in error.message


def test_base_url_comes_from_the_key_data_centre_unless_configured() -> None:
    assert base_url("abc-us6", None) == "https://us6.api.mailchimp.com/3.0"
    assert base_url("abc-us6", "http://127.0.0.1:8101/3.0/") == "http://127.0.0.1:8101/3.0"
