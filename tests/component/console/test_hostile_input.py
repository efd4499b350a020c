"""The hostile-input suite for the console's public routes: every route that answers without a login, in-process.

Which routes those are is found by asking every route of the app without a session or token (a route that
answers anything but 401 or the way to the login page is public): a public route added later fails
`test_every_route_open_without_a_login_is_covered` until it is listed here, and so covered below. For each public
route, bounded hypothesis runs of hostile input (arbitrary form fields and bodies, query values, cookies, Origin,
Authorization and Host headers). The rule: no 5xx but the deliberate 503s (`/health/ready` without Kafka,
`/login/oidc` without a reachable identity provider), and no hostile request logs anyone in.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import BaseRoute, Route

from support.console_access import OPERATOR, write_accounts
from tandem_console.access import COOKIE
from tandem_console.app import create_app
from tandem_console.settings import ConsoleSettings
from tandem_shared.instances import StaticInstanceRegistry, demo_instance

BASE = "http://console.test"
EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# (method, path) of every route that answers without a login.
PUBLIC = {
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/login/oidc"),
    ("GET", "/login/oidc/callback"),
    ("POST", "/logout"),
    ("GET", "/api/session"),
}
# The only 5xx a route may answer on purpose here: no broker, and an identity provider nobody listens for.
DELIBERATE_503 = {"/health/ready", "/login/oidc"}


@dataclass
class Console:
    app: FastAPI
    client: httpx.AsyncClient


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    settings_ = ConsoleSettings(
        kafka_bootstrap_servers="127.0.0.1:9",
        database_url=f"sqlite:///{tmp_path / 'console.db'}",
        log_json=False,
        accounts_file=write_accounts(tmp_path),
        allowed_hosts="console.test",
        # Configured, so its routes run their checks; nothing listens there.
        oidc_issuer="http://127.0.0.1:9/realms/none",
        oidc_client_id="tandem-console",
        oidc_operator_groups="ops",
    )
    app = create_app(settings_, StaticInstanceRegistry([demo_instance()]))
    app.state.console.store.create()  # no lifespan in-process (it would connect to Kafka)
    app.state.access.audit.create()

    async def no_broker(record: object) -> None:
        raise ConnectionError("no broker in this test")

    app.state.access.publish = no_broker
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=30) as client:
        yield Console(app, client)


def every_route(routes: Sequence[BaseRoute]) -> Iterator[Route]:
    """Every route, those of included routers too (FastAPI keeps an included router whole, as `original_router`)."""
    for route in routes:
        if isinstance(route, Route):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from every_route(included.routes)


def refuses_strangers(answer: httpx.Response) -> bool:
    """The console's answers to someone not logged in (`access.install`): 401 for the API, the login page's
    address for a page, "log in first" for a form post."""
    if answer.status_code == 303:
        return answer.headers["location"].startswith("/login?")
    return answer.status_code == 401 and ("www-authenticate" in answer.headers or "log in first" in answer.text)


def assert_no_5xx(answer: httpx.Response, path: str) -> None:
    allowed = {503} if path in DELIBERATE_503 else set()
    assert answer.status_code < 500 or answer.status_code in allowed, (path, answer.status_code, answer.text[:300])
    assert not logged_in(answer), (path, "a hostile request logged someone in")


def logged_in(answer: httpx.Response) -> bool:
    return any(h.startswith(f"{COOKIE}=") and ".ey" in h for h in answer.headers.get_list("set-cookie")) and (
        answer.status_code == 303 and not answer.headers["location"].startswith("/login")
    )


async def test_every_route_open_without_a_login_is_covered(console: Console) -> None:
    """A route added without a login (or a framework page such as /docs) fails here until it is covered below."""
    open_routes = set()
    for route in every_route(console.app.routes):
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            url = re.sub(r"\{[^}]+\}", "demo", route.path)
            answer = await console.client.request(method, url)
            if not refuses_strangers(answer):
                open_routes.add((method, route.path))
    assert open_routes == PUBLIC


header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300)
form_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=400)
cookies = st.one_of(
    st.none(),
    header_text,
    st.builds(lambda a, b: f"{a}.{b}", header_text, header_text),
    st.sampled_from(["", "e30.", "eyJzaWQiOiJ4IiwiZXhwIjo5OTk5OTk5OTk5OTk5OTk5OTk5fQ.AAAA", "." * 100, "%00"]),
)
origins = st.one_of(st.none(), st.just(BASE), st.just("null"), header_text)
authorizations = st.one_of(st.none(), st.just("Bearer "), st.just("Bearer tdm_"), header_text.map("Bearer {}".format))
hosts = st.one_of(st.just("console.test"), st.just("console.test:8080"), header_text)


def headers_of(cookie: str | None, origin: str | None, authorization: str | None, host: str) -> dict[str, str]:
    headers = {"Host": host}
    if cookie is not None:
        headers["Cookie"] = f"{COOKIE}={cookie}"
    if origin is not None:
        headers["Origin"] = origin
    if authorization is not None:
        headers["Authorization"] = authorization
    return headers


@EXAMPLES
@given(
    route=st.sampled_from(sorted(path for method, path in PUBLIC if method == "GET")),
    params=st.dictionaries(st.sampled_from(["next", "code", "state", "error", "x", "next[]"]), form_text, max_size=4),
    cookie=cookies,
    origin=origins,
    authorization=authorizations,
    host=hosts,
)
async def test_public_gets_take_any_query_and_headers(
    console: Console,
    route: str,
    params: dict[str, str],
    cookie: str | None,
    origin: str | None,
    authorization: str | None,
    host: str,
) -> None:
    answer = await console.client.get(route, params=params, headers=headers_of(cookie, origin, authorization, host))
    assert_no_5xx(answer, route)


@EXAMPLES
@given(
    route=st.sampled_from(sorted(path for method, path in PUBLIC if method == "POST")),
    form=st.dictionaries(st.sampled_from(["name", "password", "next", "csrf_token", "extra"]), form_text, max_size=5),
    cookie=cookies,
    origin=origins,
    authorization=authorizations,
)
async def test_public_posts_take_any_form(
    console: Console,
    route: str,
    form: dict[str, str],
    cookie: str | None,
    origin: str | None,
    authorization: str | None,
) -> None:
    headers = headers_of(cookie, origin, authorization, "console.test")
    answer = await console.client.post(route, data=form, headers=headers)
    assert_no_5xx(answer, route)


@EXAMPLES
@given(
    route=st.sampled_from(sorted(path for method, path in PUBLIC if method == "POST")),
    body=st.binary(max_size=2000),
    content_type=st.sampled_from(
        [
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "multipart/form-data; boundary=x",
            "application/json",
            "text/plain",
            "application/x-www-form-urlencoded; charset=utf-16",
        ]
    ),
    origin=origins,
)
async def test_public_posts_take_any_bytes(
    console: Console, route: str, body: bytes, content_type: str, origin: str | None
) -> None:
    headers = headers_of(None, origin, None, "console.test") | {"Content-Type": content_type}
    answer = await console.client.post(route, content=body, headers=headers)
    assert_no_5xx(answer, route)


async def test_the_probes_cases(console: Console) -> None:
    """Hand-picked: oversized fields, a callback with no login in flight, a forged session for the operator."""
    cases = [
        ("GET", "/login", {"next": "//evil.example/" + "a" * 5000}, None),
        ("GET", "/login/oidc/callback", {"code": "x", "state": "y"}, None),
        ("GET", "/login/oidc/callback", {"error": "access_denied", "error_description": "\u202e" * 100}, None),
        ("GET", "/login/oidc", {"next": "/\\evil.example"}, None),
        ("POST", "/login", None, {"name": OPERATOR, "password": "x" * 100_000, "csrf_token": "forged"}),
        ("POST", "/login", None, {"name": "\x00" * 300, "password": "", "next": "javascript:alert(1)"}),
        ("POST", "/logout", None, {"csrf_token": "forged"}),
    ]
    for method, path, params, form in cases:
        answer = await console.client.request(method, path, params=params, data=form, headers={"Origin": BASE})
        assert_no_5xx(answer, path)
