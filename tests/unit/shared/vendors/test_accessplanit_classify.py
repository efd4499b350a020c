from __future__ import annotations

import orjson
import pytest

from tandem_shared.vendors.accessplanit.classify import budget_exhausted, classify_response, transport_failure


def errors(*items: tuple[str | None, str]) -> bytes:
    return orjson.dumps({"errors": [{"field": f, "message": m} for f, m in items]})


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 408])
def test_rate_limits_server_errors_and_timeouts_are_transient(status: int) -> None:
    assert classify_response(status, b"").permanent is False


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_client_errors_are_permanent(status: int) -> None:
    assert classify_response(status, b"").permanent is True


def test_a_validation_error_keeps_the_field_and_every_message_for_the_execution_log() -> None:
    body = errors(
        ("Surname", "'Surname' must be at most 40 characters (got 45)."),
        ("Email", "'ada@' is not a valid email address."),
    )
    error = classify_response(400, body, action="create a user")
    assert error.permanent
    assert error.error_class == "ValidationError"
    assert error.field == "Surname"
    assert error.message == (
        "accessplanit answered 400 to create a user: Surname: 'Surname' must be at most 40 characters (got 45).; "
        "Email: 'ada@' is not a valid email address."
    )


def test_a_whole_body_error_has_no_field() -> None:
    error = classify_response(400, errors((None, "The request body must be a JSON object.")))
    assert error.field is None
    assert error.message.endswith(": The request body must be a JSON object.")


def test_401_explains_what_to_check() -> None:
    error = classify_response(401, b'{"Message":"Authorization has been denied for this request."}')
    assert error.error_class == "Unauthorized"
    assert "Authorization has been denied" in error.message
    assert classify_response(401, b"").message.endswith("check the instance's accessplanit API key")


def test_429_with_an_empty_body_says_when_to_retry() -> None:
    error = classify_response(429, b"", retry_after="17")
    assert error.error_class == "RateLimited"
    assert not error.permanent
    assert "rate limit" in error.message and "retry after 17s" in error.message


@pytest.mark.parametrize("body", [b"<html>Bad gateway</html>", b"[1,2]", b'{"errors": "nope"}', b"\xff\xfe"])
def test_bodies_that_are_not_accessplanit_errors_still_classify(body: bytes) -> None:
    error = classify_response(502, body)
    assert error.error_class == "ServerError"
    assert not error.permanent
    assert error.field is None


def test_no_answer_and_an_exhausted_budget_are_transient() -> None:
    assert transport_failure("Timeout", "ReadTimeout", action="update user 7").permanent is False
    exhausted = budget_exhausted(42.4, action="update user 7")
    assert exhausted.permanent is False
    assert exhausted.error_class == "RateBudgetExhausted"
    assert "42s" in exhausted.message
