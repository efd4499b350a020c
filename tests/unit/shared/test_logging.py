"""Every line a service prints is one rendered record: stdlib loggers (uvicorn, FastStream, aiokafka, httpx) too."""

from __future__ import annotations

import copy
import json
import logging
import logging.config
from collections.abc import Iterator

import httpx
import pytest
import structlog
from uvicorn.config import LOGGING_CONFIG

from tandem_shared.logging import configure_logging

MAILCHIMP_KEY = "0123456789abcdef0123456789abcdef-us7"


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: every logger it touches is put back afterwards."""
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access", "faststream", "httpx", "httpcore", "aiokafka"]
    saved = {
        n: (list(logging.getLogger(n).handlers), logging.getLogger(n).level, logging.getLogger(n).propagate)
        for n in names
    }
    config = structlog.get_config()
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
    structlog.configure(**config)


def lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    captured = capsys.readouterr()
    assert captured.err == "", captured.err
    return captured.out.splitlines()


def test_a_stdlib_line_is_one_json_object_with_its_secret_masked(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("ingest")
    logging.getLogger("aiokafka").warning("retrying with key %s and Bearer abc.def-ghi", MAILCHIMP_KEY)
    [line] = lines(capsys)
    record = json.loads(line)
    assert record["event"] == "retrying with key *** and Bearer ***"
    assert (record["level"], record["logger"], record["service"]) == ("warning", "aiokafka", "ingest")
    assert MAILCHIMP_KEY not in line and "abc.def" not in line


def test_a_stdlib_exception_stays_on_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("writer")
    try:
        raise RuntimeError(f"refused {MAILCHIMP_KEY}")
    except RuntimeError:
        logging.getLogger("faststream").exception("handler failed")
    [line] = lines(capsys)
    record = json.loads(line)
    assert record["event"] == "handler failed"
    assert "RuntimeError: refused ***" in record["exception"]
    assert MAILCHIMP_KEY not in line


def test_uvicorns_and_faststreams_own_handlers_give_way(capsys: pytest.CaptureFixture[str]) -> None:
    # What the `uvicorn` command does before it calls the app factory, and FastStream does when imported.
    logging.config.dictConfig(copy.deepcopy(LOGGING_CONFIG))
    logging.getLogger("faststream").addHandler(logging.StreamHandler())
    configure_logging("mapper")
    logging.getLogger("uvicorn.error").info("Started server process [1]")
    logging.getLogger("uvicorn.access").info("GET /health/live 200")
    logging.getLogger("faststream").info("subscriber started")
    records = [json.loads(line) for line in lines(capsys)]
    assert [(r["logger"], r["event"]) for r in records] == [
        ("uvicorn.error", "Started server process [1]"),
        ("uvicorn.access", "GET /health/live 200"),
        ("faststream", "subscriber started"),
    ]


def test_structlog_and_stdlib_lines_share_one_console_rendering(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("console", json=False)
    structlog.get_logger("tandem.console").info("purged", api_key="s3cret")
    logging.getLogger("aiokafka").info("joined group with token=%s", "Bearer s3cret")
    out = lines(capsys)
    assert len(out) == 2
    assert all("purged" in line or "joined group" in line for line in out)
    assert "s3cret" not in "\n".join(out)
    with pytest.raises(json.JSONDecodeError):
        json.loads(out[1])


def test_httpx_request_lines_are_not_logged_at_info(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("writer", level="DEBUG")
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    with httpx.Client(transport=transport) as client:
        client.get("https://us1.api.mailchimp.com/3.0/lists/a1/members?email=ada@example.com")
    logging.getLogger("httpx").warning("httpx warnings still show")
    out = lines(capsys)
    assert [json.loads(line)["event"] for line in out] == ["httpx warnings still show"]
    assert "ada@example.com" not in "\n".join(out)
