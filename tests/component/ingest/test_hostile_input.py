"""The hostile-input suite: every public route of ingest, in-process, against what the security probe sent.

For each route, bounded hypothesis runs of hostile input (absurd signature headers, extreme dates, lone
surrogates, deep nesting, huge numbers, arbitrary bytes and methods) and the probe's own cases. The rules: no 5xx
except the deliberate 503 of `/health/ready` (Kafka and Redis are unreachable here); nothing published for a
refused delivery; whatever was published can be read downstream (the mapper parses `tandem.changes` records with
`ChangeEvent.model_validate_json`, and skips what it cannot read).

Kafka is the in-memory producer behind the real `ChangePublisher` (so a record that cannot be encoded fails as it
would against a broker), Redis claims are in memory, the accessplanit API is a fake reader.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakes.ingest import InMemoryClaims
from fakes.producer import InMemoryProducer
from tandem_ingest.bootstrap import bootstrap
from tandem_ingest.domain.signatures import sign
from tandem_ingest.entrypoint import serve
from tandem_ingest.settings import IngestSettings
from tandem_shared.contracts import (
    AccessplanitConnection,
    ChangeEvent,
    Direction,
    FieldMapping,
    InstanceConfig,
    MailchimpConnection,
)
from tandem_shared.contracts.topics import CHANGES
from tandem_shared.instances import StaticInstanceRegistry

AP_SECRET_ENV = "TANDEM_TEST_HOSTILE_AP_SECRET"
AP_PATH_ENV = "TANDEM_TEST_HOSTILE_AP_PATH"
AP_PATH = "hostile-ap-path-secret"
MC_PATH_ENV = "TANDEM_TEST_HOSTILE_MC_PATH"
MC_SIGNING_ENV = "TANDEM_TEST_HOSTILE_MC_SIGNING"
AP_SECRET, MC_PATH, MC_SIGNING = "hostile-ap-secret", "hostile-mc-path-secret", "cd" * 32
AUDIENCE = "a6b5da1054"
SIGNED, UNSIGNED, GUARDED = "hostile-signed", "hostile-unsigned", "hostile-guarded"
EXAMPLES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# The only 5xx a route may answer on purpose here.
DELIBERATE_503 = {"/health/ready"}


def instance(instance_id: str, *, signed: bool, path_secret: bool = False) -> InstanceConfig:
    return InstanceConfig(
        id=instance_id,
        name="hostile-input suite",
        direction=Direction.BOTH,
        mailchimp=MailchimpConnection(
            api_key="env:UNUSED_MAILCHIMP_KEY",
            audience_id=AUDIENCE,
            webhook_secret=f"env:{MC_PATH_ENV}",
            webhook_signing_secret=f"env:{MC_SIGNING_ENV}" if signed else None,
        ),
        accessplanit=AccessplanitConnection(
            base_url="http://127.0.0.1:9",
            api_key="env:UNUSED_ACCESSPLANIT_KEY",
            default_account_id="1",
            webhook_secret=f"env:{AP_SECRET_ENV}" if signed else None,
            webhook_path_secret=f"env:{AP_PATH_ENV}" if path_secret else None,
        ),
        mappings=[FieldMapping(mailchimp="FNAME", accessplanit="Forenames")],
    )


class Producer(InMemoryProducer):
    async def ping(self, timeout: float) -> bool:
        return False  # no broker here: readiness answers its deliberate 503


class FakeReader:
    """The API's view of a user: a plain record, as an unsigned delivery reads it back."""

    async def get_user(self, instance: InstanceConfig, user_id: str) -> dict[str, Any] | None:
        return {"ID": user_id, "Email": "reader@example.com", "DateUpdated": "2026-11-26T07:00:00.000Z"}


@dataclass
class Ingest:
    client: httpx.AsyncClient
    producer: Producer

    def changes(self) -> list[bytes]:
        return [s.value or b"" for s in self.producer.sent if s.topic == CHANGES]


@pytest.fixture
async def ingest(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Ingest]:
    monkeypatch.setenv(AP_SECRET_ENV, AP_SECRET)
    monkeypatch.setenv(AP_PATH_ENV, AP_PATH)
    monkeypatch.setenv(MC_PATH_ENV, MC_PATH)
    monkeypatch.setenv(MC_SIGNING_ENV, MC_SIGNING)
    producer = Producer()
    built = bootstrap(
        IngestSettings(
            kafka_bootstrap_servers="127.0.0.1:9",  # never connected: no lifespan runs in-process
            redis_url="redis://127.0.0.1:9/0",
            poller_enabled=False,
            log_json=False,
            log_level="CRITICAL",
            max_body_bytes=4096,
        ),
        registry=StaticInstanceRegistry(
            [
                instance(SIGNED, signed=True),
                instance(UNSIGNED, signed=False),
                instance(GUARDED, signed=False, path_secret=True),
            ]
        ),
        producer=producer,
        claims=InMemoryClaims(),
        reader=FakeReader(),
    )
    app = serve(built)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as client:
        yield Ingest(client, producer)


async def check(ingest: Ingest, method: str, path: str, **request: Any) -> httpx.Response:
    before = len(ingest.changes())
    response = await ingest.client.request(method, path, **request)
    route = path.split("?")[0]
    if route in DELIBERATE_503:
        assert response.status_code < 500 or response.status_code == 503, (path, response.status_code)
    else:
        assert response.status_code < 500, (path, response.status_code, response.text)
    published = ingest.changes()[before:]
    if not 200 <= response.status_code < 300:
        assert published == [], (path, response.status_code, "a refused delivery was published")
    for value in published:
        # What the mapper does with every record of tandem.changes: this must not fail.
        ChangeEvent.model_validate_json(value)
    return response


# --- hostile ingredients -----------------------------------------------------------------------------------------

EXTREME_DATES = [
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01 00:00:00",
    "9999-12-31 23:59:59",
    "2026-11-26T07:00:00.000Z",
]
LONE_SURROGATES = ["\ud800", "a\udfffb", "\udbff\ud800"]


def nested(depth: int, leaf: Any = "x") -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"n": value}
    return value


absurd_timestamps = st.sampled_from(
    ["1" + "0" * 5000, "1" + "0" * 400, "²", "-1", "", "99999999999999999999", "1e10", " 1"]
) | st.integers(-(10**30), 10**30).map(str)
signature_headers = st.one_of(
    st.none(),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
    st.builds(lambda t, v: f"t={t},v1={v}", absurd_timestamps, st.text(alphabet="0123456789abcdef", max_size=70)),
)
hostile_text = st.one_of(
    st.sampled_from(LONE_SURROGATES + EXTREME_DATES + ["", "\x00", "<script>alert(1)</script>", "' OR 1=1 --"]),
    st.text(max_size=20),
)
hostile_scalars = st.one_of(
    hostile_text,
    st.integers(-(10**40), 10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
hostile_values = st.one_of(hostile_scalars, st.integers(0, 300).map(nested), st.lists(hostile_scalars, max_size=3))
user_records = st.fixed_dictionaries(
    {
        "ID": st.one_of(st.integers(1000, 1010).map(str), hostile_scalars),
        "DateUpdated": st.one_of(st.sampled_from(EXTREME_DATES), hostile_scalars),
    },
    optional={"Email": hostile_scalars, "Forenames": hostile_values, "DOB": st.sampled_from(EXTREME_DATES)},
)
accessplanit_bodies = st.fixed_dictionaries(
    {"Data": st.one_of(user_records, hostile_values)},
    optional={"Module": st.sampled_from(["User", "Course"]), "Timestamp": st.sampled_from(EXTREME_DATES)},
)


def json_bytes(body: Any) -> bytes:
    # ensure_ascii keeps lone surrogates as \\u escapes, as a hostile sender would write them.
    return json.dumps(body, ensure_ascii=True).encode()


# --- accessplanit webhook ------------------------------------------------------------------------------------------


@EXAMPLES
@given(
    body=st.one_of(accessplanit_bodies.map(json_bytes), st.binary(max_size=512)),
    method=st.sampled_from(["POST", "PUT", "PATCH", "DELETE", "GET"]),
    instance_id=st.sampled_from([SIGNED, UNSIGNED, GUARDED, "no-such-instance"]),
    path_secret=st.sampled_from([None, AP_PATH, "wrong", "x" * 300]),
    signature=st.one_of(st.just("valid"), signature_headers),
)
async def test_the_accessplanit_webhook_refuses_hostile_input_cleanly(
    ingest: Ingest, body: bytes, method: str, instance_id: str, path_secret: str | None, signature: str | None
) -> None:
    headers = {"Content-Type": "application/json"}
    if signature == "valid":
        headers["X-Accessplanit-Signature"] = sign(AP_SECRET, body, int(time.time()))
    elif signature is not None:
        headers["X-Accessplanit-Signature"] = signature.encode()  # type: ignore[assignment] (bytes: any octets)
    path = f"/webhooks/accessplanit/{instance_id}" + (f"/{path_secret}" if path_secret else "")
    response = await check(ingest, method, path, content=body, headers=headers)
    # Without its own path secret, or with one it does not have: no such webhook (405 for GET, not a webhook method).
    if (instance_id == GUARDED) != (path_secret == AP_PATH) or (instance_id != GUARDED and path_secret is not None):
        assert response.status_code in (404, 405), (path, response.status_code)


@pytest.mark.parametrize("zeros", [400, 4000, 5000])
async def test_an_absurd_signature_timestamp_is_refused_not_500(ingest: Ingest, zeros: int) -> None:
    body = json_bytes({"Module": "User", "Data": {"ID": "1001", "DateUpdated": EXTREME_DATES[-1]}})
    header = f"t=1{'0' * zeros},v1={'0' * 64}"
    response = await check(
        ingest, "PUT", f"/webhooks/accessplanit/{SIGNED}", content=body, headers={"X-Accessplanit-Signature": header}
    )
    assert response.status_code == 404  # refused as an unknown instance is, at the URL without a path secret


def signed_ap(body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Accessplanit-Signature": sign(AP_SECRET, body, int(time.time()))}


@pytest.mark.parametrize("date", EXTREME_DATES[:2])
async def test_a_signed_change_at_the_edge_of_the_calendar_is_400(ingest: Ingest, date: str) -> None:
    body = json_bytes({"Module": "User", "Data": {"ID": "1001", "DateUpdated": date}})
    response = await check(ingest, "PUT", f"/webhooks/accessplanit/{SIGNED}", content=body, headers=signed_ap(body))
    assert response.status_code == 400 and "DateUpdated" in response.json()["detail"]


async def test_a_placeholder_date_of_birth_does_not_get_the_record_refused(ingest: Ingest) -> None:
    data = {"ID": "1001", "DateUpdated": EXTREME_DATES[-1], "DOB": "0001-01-01T00:00:00"}
    body = json_bytes({"Module": "User", "Data": data})
    response = await check(ingest, "PUT", f"/webhooks/accessplanit/{SIGNED}", content=body, headers=signed_ap(body))
    assert response.status_code == 202


@pytest.mark.parametrize("text", LONE_SURROGATES)
async def test_a_lone_surrogate_is_400_not_503(ingest: Ingest, text: str) -> None:
    for data in ({"ID": "1001", "DateUpdated": EXTREME_DATES[-1], "Forenames": text}, {"ID": "1001", text: "x"}):
        body = json_bytes({"Module": "User", "Data": {**data, "DateUpdated": EXTREME_DATES[-1]}})
        response = await check(ingest, "PUT", f"/webhooks/accessplanit/{SIGNED}", content=body, headers=signed_ap(body))
        assert response.status_code == 400, response.text


@pytest.mark.parametrize("depth", [30, 34, 100, 200, 254, 256, 1000, 5000])
async def test_nesting_is_either_refused_or_carried_and_readable(ingest: Ingest, depth: int) -> None:
    """200-254 levels were accepted (202) and then skipped by the mapper as unreadable; 255 and more got a 503."""
    deep = '{"n":[' * (depth // 2) + "1" + "]}" * (depth // 2)  # built as text: json.dumps would recurse too
    data = f'{{"ID": "1001", "DateUpdated": "{EXTREME_DATES[-1]}", "F": {deep}}}'
    body = f'{{"Module": "User", "Data": {data}}}'.encode()
    response = await check(ingest, "PUT", f"/webhooks/accessplanit/{SIGNED}", content=body, headers=signed_ap(body))
    # Over the body limit at the URL without a path secret: answered as an unknown instance (404, not 413).
    assert response.status_code in (202, 400, 404)
    assert (response.status_code == 202) == (depth <= 30), response.text


async def test_what_ingest_accepts_reaches_the_mapper_whole(ingest: Ingest) -> None:
    """Guards the suite against only exercising refusals, and proves the round trip on an accepted record."""
    data = {"ID": "1002", "DateUpdated": EXTREME_DATES[-1], "Forenames": "Zoë 😀", "Custom": nested(20), "N": 10**30}
    body = json_bytes({"Module": "User", "Data": data})
    response = await check(ingest, "PUT", f"/webhooks/accessplanit/{SIGNED}", content=body, headers=signed_ap(body))
    assert response.status_code == 202
    [value] = ingest.changes()
    assert ChangeEvent.model_validate_json(value).fields == data


# --- Mailchimp webhook ---------------------------------------------------------------------------------------------

mailchimp_forms = st.lists(
    st.tuples(
        st.sampled_from(["type", "fired_at", "data[email]", "data[list_id]", "data[id]", "data[merges][FNAME]"])
        | st.builds(lambda depth: "data" + "[x]" * depth, st.integers(0, 300))
        | hostile_text,
        st.sampled_from(["subscribe", "profile", AUDIENCE, "a@example.com"]) | hostile_text,
    ),
    max_size=8,
).map(
    lambda pairs: urlencode(
        [(k.encode("utf-8", "surrogatepass"), v.encode("utf-8", "surrogatepass")) for k, v in pairs]
    ).encode()
)


@EXAMPLES
@given(
    body=st.one_of(mailchimp_forms, st.binary(max_size=512)),
    method=st.sampled_from(["GET", "POST", "PUT"]),
    instance_id=st.sampled_from([SIGNED, UNSIGNED, "no-such-instance"]),
    secret=st.sampled_from([MC_PATH, "wrong", "%00", "x" * 300]),
    signature=st.one_of(st.just("valid"), signature_headers),
    content_type=st.sampled_from(["application/x-www-form-urlencoded", "application/json", "", "x" * 200]),
)
async def test_the_mailchimp_webhook_refuses_hostile_input_cleanly(
    ingest: Ingest, body: bytes, method: str, instance_id: str, secret: str, signature: str | None, content_type: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    if signature == "valid":
        headers["X-Mailchimp-Signature"] = sign(MC_SIGNING, body, int(time.time()))
    elif signature is not None:
        headers["X-Mailchimp-Signature"] = signature.encode()  # type: ignore[assignment] (bytes: any octets)
    await check(ingest, method, f"/webhooks/mailchimp/{instance_id}/{secret}", content=body, headers=headers)


@pytest.mark.parametrize("fired_at", EXTREME_DATES[:4])
async def test_a_mailchimp_change_at_the_edge_of_the_calendar_is_400(ingest: Ingest, fired_at: str) -> None:
    body = urlencode(
        {"type": "profile", "fired_at": fired_at, "data[email]": "a@example.com", "data[list_id]": AUDIENCE}
    ).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    response = await check(ingest, "POST", f"/webhooks/mailchimp/{UNSIGNED}/{MC_PATH}", content=body, headers=headers)
    assert response.status_code == 400 and "fired_at" in response.json()["detail"]


# --- everything else ingest serves -------------------------------------------------------------------------------


@EXAMPLES
@given(
    path=st.sampled_from(["/health/live", "/health/ready", "/metrics", "/docs", "/openapi.json", "/nowhere"])
    | st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="#?"), max_size=40).map(
        lambda p: "/" + p
    ),
    method=st.sampled_from(["GET", "POST", "HEAD", "OPTIONS", "DELETE"]),
    body=st.binary(max_size=128),
    query=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="#"), max_size=40),
)
async def test_every_other_route_answers_below_500(
    ingest: Ingest, path: str, method: str, body: bytes, query: str
) -> None:
    await check(ingest, method, f"{path}?{query}" if query else path, content=body)
