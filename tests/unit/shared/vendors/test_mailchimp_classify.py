"""Every kind of Mailchimp answer is classified: transient ones are retried, permanent ones need a person."""

from __future__ import annotations

import json

import httpx
import pytest

from tandem_shared.vendors.mailchimp.classify import (
    classify_response,
    classify_transport,
    error_class,
    holds_server_slot,
    is_email_change_refusal,
    problem_document,
)

PROBLEM = "application/problem+json; charset=utf-8"


def body(title: str, detail: str = "", status: int = 400, **extra: object) -> bytes:
    document = {"type": "x", "title": title, "status": status, "detail": detail, "instance": "", **extra}
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("status", "raw", "content_type"),
    [
        (429, body("TooManyRequests", status=429), PROBLEM),
        (429, b"", ""),
        (500, body("InternalServerError", status=500), PROBLEM),
        (502, b"<html><body>502 Bad Gateway</body></html>", "text/html"),
        (503, b"", ""),
        (504, b"upstream timed out", "text/plain"),
        (403, b"", ""),
        (403, b"<html>Forbidden</html>", "text/html"),
        (408, b"", ""),
    ],
)
def test_transient_responses_are_retried(status: int, raw: bytes, content_type: str) -> None:
    assert not classify_response(status, raw, content_type).permanent


@pytest.mark.parametrize(
    ("status", "raw", "title"),
    [
        (400, body("Member In Compliance State", "x is in a compliance state"), "MemberInComplianceState"),
        (400, body("Forgotten Email Not Subscribed", "x was permanently deleted"), "ForgottenEmailNotSubscribed"),
        (400, body("Member Exists", "x is already a list member"), "MemberExists"),
        (400, body("JSON Parse Exception", "We encountered an unspecified JSON parsing error."), "JSONParseException"),
        (401, body("API Key Invalid", "Your API key may be invalid", status=401), "APIKeyInvalid"),
        (403, body("Forbidden", "no access", status=403), "Forbidden"),
        (404, body("Resource Not Found", "gone", status=404), "ResourceNotFound"),
        (405, body("Method Not Allowed", "This list member cannot be removed.", status=405), "MethodNotAllowed"),
    ],
)
def test_permanent_responses_keep_their_title_and_detail(status: int, raw: bytes, title: str) -> None:
    error = classify_response(status, raw, PROBLEM)
    assert error.permanent
    assert error.error_class == title
    assert json.loads(raw)["detail"] in error.message


def test_compliance_refusals_explain_that_a_sync_never_resubscribes() -> None:
    error = classify_response(400, body("Member In Compliance State", "x is in a compliance state"), PROBLEM)
    assert "never re-subscribes" in error.message


def test_validation_errors_keep_every_field_and_message() -> None:
    raw = body(
        "Invalid Resource",
        "Your merge fields were invalid.",
        errors=[
            {"field": "RADIO", "message": "Please enter a value"},
            {"field": "BIRTHDAY", "message": "Please enter a month (01-12) and a day (01-31)"},
        ],
    )
    error = classify_response(400, raw, PROBLEM)
    assert error.permanent
    assert error.field == "RADIO"
    assert "RADIO: Please enter a value" in error.message
    assert "BIRTHDAY: Please enter a month" in error.message
    assert error.message.startswith("Invalid Resource: Your merge fields were invalid.")


def test_a_json_body_counts_even_when_the_content_type_is_missing() -> None:
    error = classify_response(403, body("User Disabled", "This account has been disabled.", status=403), "")
    assert error.permanent
    assert error.error_class == "UserDisabled"


def test_bodyless_answers_say_what_came_back() -> None:
    html = classify_response(502, b"<html>Bad Gateway</html>", "text/html")
    assert html.error_class == "HTTP502"
    assert "HTML" in html.message
    bare = classify_response(403, b"", "")
    assert "without a body" in bare.message


def test_a_huge_detail_is_clipped() -> None:
    error = classify_response(400, body("Invalid Resource", "x" * 5000), PROBLEM)
    assert len(error.message) <= 500


@pytest.mark.parametrize(
    ("raw", "content_type", "expected"),
    [
        (b"", PROBLEM, None),
        (b"[1, 2]", "application/json", None),
        (b"{not json", "application/json", None),
        (b"<html></html>", "text/html", None),
        (b'{"title": "x"}', "application/json", {"title": "x"}),
    ],
)
def test_problem_document(raw: bytes, content_type: str, expected: object) -> None:
    assert problem_document(raw, content_type) == expected


def test_error_class_is_a_stable_identifier() -> None:
    assert error_class("Invalid Resource") == "InvalidResource"
    assert error_class("") == "MailchimpError"


def test_timeouts_and_network_errors_are_transient() -> None:
    request = httpx.Request("PUT", "http://127.0.0.1/3.0/lists/x/members/y")
    assert not classify_transport(httpx.ReadTimeout("timed out", request=request)).permanent
    assert classify_transport(httpx.ReadTimeout("timed out", request=request)).error_class == "Timeout"
    assert not classify_transport(httpx.ConnectError("refused", request=request)).permanent
    assert classify_transport(httpx.UnsupportedProtocol("ftp", request=request)).permanent


def test_only_requests_that_reached_mailchimp_keep_their_slot_after_a_timeout() -> None:
    request = httpx.Request("PUT", "http://127.0.0.1/3.0/")
    assert holds_server_slot(httpx.ReadTimeout("t", request=request))
    assert not holds_server_slot(httpx.ConnectTimeout("t", request=request))
    assert not holds_server_slot(httpx.ConnectError("t", request=request))


@pytest.mark.parametrize(
    ("detail", "hint"),
    [
        ("Please provide a valid email address.", "not a valid email address; correct it in the source record"),
        (
            "ann@mailinator.com looks fake or invalid, please enter a real email address.",
            "refuses addresses at disposable or test domains; enter the contact's real address in the source record",
        ),
    ],
    ids=["malformed", "fake-domain"],
)
def test_a_refused_address_is_permanent_and_says_what_to_do(detail: str, hint: str) -> None:
    # The two recorded texts (mailchimp-api.md §10): either way the address itself has to change.
    error = classify_response(400, body("Invalid Resource", detail), PROBLEM)
    assert error.permanent
    assert (error.error_class, error.field) == ("InvalidResource", "email_address")
    assert error.message.endswith(hint)
    assert detail in error.message


def test_the_email_change_refusal_is_recognised_by_its_recorded_text() -> None:
    refusal = {
        "title": "Invalid Resource",
        "detail": 'This member\'s status is "cleaned." You can only update email addresses for members with a '
        'status of "subscribed."',
    }
    assert is_email_change_refusal(refusal)
    assert not is_email_change_refusal({"title": "Invalid Resource", "detail": "Your merge fields were invalid."})
    assert not is_email_change_refusal(None)
