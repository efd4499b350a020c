"""Reading both vendors' schemas through the vendor clients: what is found, and what an operator is told when a
side refuses the key, lacks the audience or cannot be read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tandem_shared.concurrency import LocalConcurrencyLimiter
from tandem_shared.contracts import InstanceConfig
from tandem_shared.instance_validation.live import read_live_schemas
from tandem_shared.instance_validation.problems import LiveSchemas
from tandem_shared.instances import demo_instance
from tandem_shared.vendors.accessplanit.client import AccessplanitClients
from tandem_shared.vendors.accessplanit.settings import AccessplanitSettings
from tandem_shared.vendors.mailchimp.client import MailchimpClients
from tandem_shared.vendors.schema import Kind

Handler = Callable[[httpx.Request], httpx.Response]

MERGE_FIELDS = [
    {"tag": "FNAME", "name": "First Name", "type": "text"},
    {"tag": "lname", "name": "Last Name", "type": "text", "required": True},
    {"tag": "REGION", "name": "Region", "type": "dropdown", "options": {"choices": ["North", "South"]}},
]
USER_FIELDS = [
    {"Name": "Forenames", "Type": "string", "MaxLength": 50, "Writable": True, "Mandatory": True},
    {"Name": "DOB", "Type": "datetime", "Writable": True, "Format": "YYYY-MM-DDTHH:MM:SS"},
    {"Name": "Title", "Type": "list", "Writable": True, "Options": ["Mr", "Dr"]},
    {"Name": "CustomFields/Region", "Type": "string", "Options": ["North", "South"]},
]


def mailchimp_api(path: str, request: httpx.Request) -> httpx.Response:
    if path.endswith("/merge-fields"):
        return httpx.Response(200, json={"merge_fields": MERGE_FIELDS})
    if path.endswith("/lists"):
        return httpx.Response(200, json={"lists": [{"id": "a1b2c3d4e5", "name": "Tandem Demo"}]})
    return httpx.Response(200, json={"id": "a1b2c3d4e5", "name": "Tandem Demo"})


def accessplanit_api(path: str, request: httpx.Request) -> httpx.Response:
    if path == "/apihelp/v2/modules/User":
        return httpx.Response(200, json={"Fields": USER_FIELDS})
    if path == "/api/v2/CustomFieldMetadata":
        return httpx.Response(200, json={"results": [{"Name": "Region", "Module": "User", "Type": "List"}]})
    if path == "/api/v2/Company":
        found = "ID eq '2'" in request.url.params.get("$filter", "ID eq '2'")
        return httpx.Response(200, json={"results": [{"ID": "2", "Name": "Guest Account"}] if found else []})
    return httpx.Response(404)


def vendors(overrides: dict[str, Handler] | None = None) -> httpx.MockTransport:
    """Both simulated APIs; `overrides` answers a path (or a host) in their place."""

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        for key, handler in (overrides or {}).items():
            if key in (path, request.url.host):
                return handler(request)
        if path.startswith("/3.0"):
            return mailchimp_api(path, request)
        return accessplanit_api(path, request)

    return httpx.MockTransport(handle)


@pytest.fixture
def instance(monkeypatch: pytest.MonkeyPatch) -> InstanceConfig:
    config = demo_instance()
    monkeypatch.setenv(config.mailchimp.api_key.removeprefix("env:"), "key0000000000000000000000000000-us1")
    monkeypatch.setenv(config.accessplanit.api_key.removeprefix("env:"), "ap-key")
    mailchimp = config.mailchimp.model_copy(update={"api_base_url": "http://mailchimp.test/3.0"})
    accessplanit = config.accessplanit.model_copy(
        update={"base_url": "http://accessplanit.test", "default_account_id": "2"}
    )
    return config.model_copy(update={"mailchimp": mailchimp, "accessplanit": accessplanit})


async def read(instance: InstanceConfig, transport: httpx.MockTransport) -> LiveSchemas:
    mailchimp = MailchimpClients(limiter=LocalConcurrencyLimiter(limit=10), transport=transport)
    accessplanit = AccessplanitClients(None, AccessplanitSettings(), transport=transport)
    try:
        return await read_live_schemas(instance, mailchimp=mailchimp, accessplanit=accessplanit)
    finally:
        await mailchimp.close()
        await accessplanit.close()


def texts(problems: list[Any]) -> list[str]:
    return [str(p) for p in problems]


async def test_both_schemas_are_read_and_mapped_onto_kinds(instance: InstanceConfig) -> None:
    live = await read(instance, vendors())
    assert (live.errors, live.warnings) == ([], [])
    assert live.mailchimp is not None and live.accessplanit is not None
    assert live.mailchimp.audience_name == "Tandem Demo"
    assert list(live.mailchimp.merge_fields) == ["FNAME", "LNAME", "REGION"]
    assert live.mailchimp.merge_fields["LNAME"].required
    assert live.mailchimp.merge_fields["REGION"].choices == ("North", "South")
    assert live.accessplanit.fields["Forenames"].max_length == 50
    assert live.accessplanit.fields["DOB"].kind is Kind.DATE  # a date-time in JSON; Tandem syncs its date
    assert live.accessplanit.fields["Title"].kind is Kind.OTHER  # a list of lookup values: not synced
    assert live.accessplanit.fields["custom:Region"].kind is Kind.CHOICE
    assert live.accessplanit.default_account_found is True
    assert dict(live.accessplanit.accounts) == {"2": "Guest Account"}


async def test_refused_keys_are_errors_naming_the_fix(instance: InstanceConfig) -> None:
    refused = {
        "mailchimp.test": lambda _: httpx.Response(401, json={"title": "API Key Invalid"}),
        "/apihelp/v2/modules/User": lambda _: httpx.Response(401, json={"Message": "denied"}),
    }
    live = await read(instance, vendors(refused))
    assert texts(live.errors) == [
        "mailchimp.api_key: Mailchimp refused the key (401 API Key Invalid): check the key and its data-centre suffix",
        "accessplanit.api_key: accessplanit refused the key (401): check the key and that it belongs to the tenant "
        "at accessplanit.base_url",
    ]
    assert live.mailchimp is None and live.accessplanit is None


async def test_a_missing_audience_names_the_audiences_the_key_sees(instance: InstanceConfig) -> None:
    missing = {"/3.0/lists/a1b2c3d4e5": lambda _: httpx.Response(404, json={"title": "Resource Not Found"})}
    live = await read(instance, vendors(missing))
    assert texts(live.errors) == [
        "mailchimp.audience_id: audience 'a1b2c3d4e5' was not found with this API key; the key's audiences: "
        "a1b2c3d4e5 (Tandem Demo)"
    ]


async def test_a_side_that_cannot_be_read_is_a_warning_and_its_checks_are_skipped(instance: InstanceConfig) -> None:
    def refused_connection(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    unreadable = {
        "/3.0/lists/a1b2c3d4e5/merge-fields": lambda _: httpx.Response(500),
        "accessplanit.test": refused_connection,
    }
    live = await read(instance, vendors(unreadable))
    assert live.errors == []
    assert texts(live.warnings) == [
        "mailchimp: Mailchimp could not be read (HTTP 500 reading merge fields); its checks were skipped",
        "accessplanit: accessplanit could not be read (ConnectError: connection refused); its checks were skipped",
    ]


async def test_an_account_that_does_not_exist_is_reported_with_others(instance: InstanceConfig) -> None:
    other = instance.accessplanit.model_copy(update={"default_account_id": "99"})
    live = await read(instance.model_copy(update={"accessplanit": other}), vendors())
    assert live.accessplanit is not None
    assert live.accessplanit.default_account_found is False
    assert dict(live.accessplanit.accounts) == {"2": "Guest Account"}


async def test_keys_that_cannot_be_resolved_skip_both_sides(instance: InstanceConfig) -> None:
    unresolved = instance.model_copy(
        update={
            "mailchimp": instance.mailchimp.model_copy(update={"api_key": "env:TANDEM_TEST_NO_SUCH_KEY"}),
            "accessplanit": instance.accessplanit.model_copy(update={"api_key": "env:TANDEM_TEST_NO_SUCH_KEY"}),
        }
    )
    live = await read(unresolved, vendors())
    assert [p.field for p in live.warnings] == ["mailchimp.api_key", "accessplanit.api_key"]
    assert live.warnings[0].message.endswith("; the Mailchimp checks were skipped")
    assert live.warnings[1].message.endswith("; the accessplanit checks were skipped")


@pytest.mark.parametrize(
    ("answer", "read_as"), [({"double_optin": True}, True), ({"double_optin": False}, False), ({}, None)]
)
async def test_the_audiences_double_opt_in_is_read(
    instance: InstanceConfig, answer: dict[str, Any], read_as: bool | None
) -> None:
    def audience(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": "a1b2c3d4e5", "name": "Tandem Demo", **answer})

    live = await read(instance, vendors({"/3.0/lists/a1b2c3d4e5": audience}))
    assert live.mailchimp is not None
    assert live.mailchimp.double_optin is read_as
