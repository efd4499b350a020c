"""The devstack's one-shot sub-commands used by docker compose."""

from __future__ import annotations

import pytest

from tandem_devstack.__main__ import main
from tandem_devstack.demo import Endpoints


def test_demo_without_the_demo_urls_names_the_missing_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("TANDEM_DEMO_ACCESSPLANIT_URL", "TANDEM_DEMO_MAILCHIMP_URL", "TANDEM_DEMO_INGEST_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["demo"]) == 2
    assert "TANDEM_DEMO_ACCESSPLANIT_URL" in capsys.readouterr().err


def test_endpoints_come_from_the_variables_the_services_read() -> None:
    endpoints = Endpoints.from_env(
        {
            "TANDEM_DEMO_ACCESSPLANIT_URL": "http://accessplanit-sim:8102/",
            "TANDEM_DEMO_MAILCHIMP_URL": "http://mailchimp-sim:8101/3.0",
            "TANDEM_DEMO_INGEST_URL": "http://ingest:8000",
        }
    )
    assert endpoints == Endpoints("http://accessplanit-sim:8102", "http://mailchimp-sim:8101/3.0", "http://ingest:8000")
