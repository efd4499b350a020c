"""Who may use the console: logins and tokens, roles, CSRF, the Host allow-list, browser protections and the audit
log (the console in-process, SQLite, the registry in memory, no broker)."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from support.console_access import OPERATOR, PASSWORDS, TOKENS, VIEWER, bearer, write_accounts
from tandem_console.access import COOKIE, SAFE_METHODS
from tandem_console.app import create_app
from tandem_console.settings import ConsoleSettings
from tandem_shared.contracts import AuditRecord, Stage, TraceRecord
from tandem_shared.instances import StaticInstanceRegistry, demo_instance

BASE = "http://console.test"


@dataclass
class Console:
    app: FastAPI
    client: httpx.AsyncClient
    registry: StaticInstanceRegistry
    # What the console published on tandem.trace (its audit records).
    traced: list[TraceRecord]


def build(tmp_path: Path, client: tuple[str, int] = ("127.0.0.1", 50000), **overrides: object) -> Console:
    settings = ConsoleSettings(
        kafka_bootstrap_servers="127.0.0.1:9",
        database_url=f"sqlite:///{tmp_path / 'console.db'}",
        log_json=False,
        accounts_file=write_accounts(tmp_path),
        allowed_hosts="console.test,localhost",
        **overrides,  # type: ignore[arg-type]
    )
    registry = StaticInstanceRegistry([demo_instance()])
    app = create_app(settings, registry)
    # No lifespan in-process (it would connect to Kafka): the store is created here, as the lifespan would, and a new
    # instance configuration goes to the in-memory registry instead of tandem.instances.
    app.state.console.store.create()
    app.state.access.audit.create()
    app.state.console._instance_actions._put = registry.put
    traced: list[TraceRecord] = []

    async def publish(record: TraceRecord) -> None:
        traced.append(record)

    app.state.access.publish = publish
    transport = httpx.ASGITransport(app=app, client=client)
    return Console(app, httpx.AsyncClient(transport=transport, base_url=BASE), registry, traced)


async def actions(console: Console, headers: dict[str, str]) -> list[dict[str, Any]]:
    """The audit log's operator actions (its logins and logouts left out), newest first."""
    entries = (await console.client.get("/api/audit", headers=headers)).json()
    return [e for e in entries if e["action"] not in ("log_in", "log_out")]


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    built = build(tmp_path)
    async with built.client:
        yield built


def cookie_of(response: httpx.Response) -> str:
    """The session cookie, by hand: it is Secure, and httpx's jar keeps Secure cookies off plain http."""
    (header,) = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{COOKIE}=")]
    return header.split(";")[0].split("=", 1)[1]


def logged_in(console: Console, answer: httpx.Response) -> bool:
    """Whether the answer's cookie (if it sets one) is a session with someone logged in."""
    if COOKIE not in "".join(answer.headers.get_list("set-cookie")):
        return False
    session = console.app.state.access.codec.decode(cookie_of(answer), time.time())
    return session is not None and session.principal is not None


def csrf_in(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)


@dataclass
class Browser:
    """A logged-in browser session: its cookie, and the CSRF token its pages carry."""

    cookie: str
    csrf: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Cookie": f"{COOKIE}={self.cookie}", "Origin": BASE}


async def log_in(client: httpx.AsyncClient, name: str, password: str) -> Browser:
    form = await client.get("/login")
    cookie = cookie_of(form)
    answer = await client.post(
        "/login",
        data={"name": name, "password": password, "csrf_token": csrf_in(form.text), "next": "/instances/demo"},
        headers={"Cookie": f"{COOKIE}={cookie}", "Origin": BASE},
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/instances/demo"
    session = cookie_of(answer)
    assert session != cookie, "a login starts a new session"
    page = await client.get("/instances/demo", headers={"Cookie": f"{COOKIE}={session}"})
    assert page.status_code == 200
    return Browser(session, csrf_in(page.text))


async def test_without_a_login_pages_send_to_the_login_and_the_api_answers_401(console: Console) -> None:
    page = await console.client.get("/executions?status=failed")
    assert page.status_code == 303
    assert parse_qs(urlsplit(page.headers["location"]).query) == {"next": ["/executions?status=failed"]}
    api = await console.client.get("/api/executions")
    assert (api.status_code, api.headers["www-authenticate"]) == (401, "Bearer")
    assert (await console.client.post("/api/instances/demo/pause")).status_code == 401
    assert (await console.client.get("/metrics")).status_code == 401
    assert (
        await console.client.get("/api/instances", headers={"Authorization": "Bearer tdm_wrong"})
    ).status_code == 401
    assert (await console.client.get("/health/live")).status_code == 200


async def test_a_wrong_password_or_name_is_refused_alike(console: Console) -> None:
    form = await console.client.get("/login")
    headers = {"Cookie": f"{COOKIE}={cookie_of(form)}", "Origin": BASE}
    for name, password in ((OPERATOR, "wrong"), ("nobody", PASSWORDS[OPERATOR])):
        answer = await console.client.post(
            "/login", data={"name": name, "password": password, "csrf_token": csrf_in(form.text)}, headers=headers
        )
        assert answer.status_code == 401
        assert "wrong name or password" in answer.text
        assert not logged_in(console, answer)


async def test_the_session_cookie_is_secure_httponly_and_samesite(console: Console) -> None:
    form = await console.client.get("/login")
    answer = await console.client.post(
        "/login",
        data={"name": VIEWER, "password": PASSWORDS[VIEWER], "csrf_token": csrf_in(form.text)},
        headers={"Cookie": f"{COOKIE}={cookie_of(form)}"},
    )
    (header,) = [h for h in answer.headers.get_list("set-cookie") if h.startswith(f"{COOKIE}=")]
    attributes = {a.strip().split("=")[0].lower() for a in header.split(";")[1:]}
    assert {"httponly", "secure", "samesite", "path"} <= attributes
    assert "samesite=lax" in header.lower()


async def test_a_login_without_the_login_pages_csrf_token_is_refused(console: Console) -> None:
    """Login CSRF: a foreign page must not log the browser in under someone else's account."""
    answer = await console.client.post("/login", data={"name": OPERATOR, "password": PASSWORDS[OPERATOR]})
    assert answer.status_code == 403
    assert not logged_in(console, answer)


async def test_a_viewer_reads_everything_and_is_refused_operator_actions(console: Console) -> None:
    viewer = await log_in(console.client, VIEWER, PASSWORDS[VIEWER])
    for path in ("/executions", "/instances", "/contacts", "/audit", "/api/instances", "/api/executions"):
        assert (await console.client.get(path, headers=viewer.headers)).status_code == 200, path
    refused = await console.client.post(
        "/instances/demo/pause", data={"csrf_token": viewer.csrf}, headers=viewer.headers
    )
    assert refused.status_code == 403
    assert "needs the operator role" in refused.text
    assert console.registry.get("demo").paused is False  # type: ignore[union-attr]
    api = await console.client.post(
        "/api/instances/demo/pause", headers={**viewer.headers, "X-CSRF-Token": viewer.csrf}
    )
    assert api.status_code == 403


async def test_an_operator_pauses_with_the_pages_csrf_token_and_the_audit_log_says_so(console: Console) -> None:
    operator = await log_in(console.client, OPERATOR, PASSWORDS[OPERATOR])
    done = await console.client.post(
        "/instances/demo/pause", data={"csrf_token": operator.csrf}, headers=operator.headers
    )
    assert (done.status_code, done.headers["location"]) == (303, "/instances/demo")
    assert console.registry.get("demo").paused is True  # type: ignore[union-attr]
    resumed = await console.client.post(
        "/api/instances/demo/resume", headers={**operator.headers, "X-CSRF-Token": operator.csrf}
    )
    assert resumed.status_code == 200

    entries = await actions(console, operator.headers)
    assert [(e["who"], e["via"], e["action"], e["target"], e["outcome"]) for e in entries] == [
        (OPERATOR, "password", "resume_instance", "/api/instances/demo/resume", 200),
        (OPERATOR, "password", "pause", "/instances/demo/pause", 303),
    ]
    page = (await console.client.get("/audit", headers=operator.headers)).text
    assert "/instances/demo/pause" in page and OPERATOR in page


async def test_a_state_change_without_the_csrf_token_or_from_another_origin_is_refused(console: Console) -> None:
    operator = await log_in(console.client, OPERATOR, PASSWORDS[OPERATOR])
    cookie = {"Cookie": f"{COOKIE}={operator.cookie}"}
    cases = [
        ({}, cookie),  # a plain cross-site form: the cookie rides along, the token cannot
        ({"csrf_token": "forged"}, cookie),
        ({"csrf_token": operator.csrf}, {**cookie, "Origin": "https://evil.example"}),
        ({"csrf_token": operator.csrf}, {**cookie, "Origin": "null"}),
    ]
    for data, headers in cases:
        answer = await console.client.post("/instances/demo/pause", data=data, headers=headers)
        assert answer.status_code == 403, (data, headers)
    assert console.registry.get("demo").paused is False  # type: ignore[union-attr]
    refused = await actions(console, operator.headers)
    assert [e["outcome"] for e in refused] == [403] * len(cases)


def api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    """Every route, those of included routers too (FastAPI keeps an included router whole, as `original_router`)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from api_routes(included.routes)


async def test_every_state_changing_route_needs_the_csrf_token(console: Console) -> None:
    """Any route added later that changes state (a POST, PUT, PATCH or DELETE) is covered, or this fails."""
    operator = await log_in(console.client, OPERATOR, PASSWORDS[OPERATOR])
    unsafe = [
        (method, route.path) for route in api_routes(console.app.routes) for method in route.methods - SAFE_METHODS
    ]
    assert ("POST", "/instances/{instance_id}/pause") in unsafe
    for method, path in unsafe:
        url = re.sub(r"\{[^}]+\}", "demo", path)
        answer = await console.client.request(method, url, headers={"Cookie": f"{COOKIE}={operator.cookie}"})
        assert answer.status_code == 403, f"{method} {path} answered {answer.status_code} without a CSRF token"


async def test_tokens_carry_their_role_and_need_no_csrf(console: Console) -> None:
    assert (await console.client.get("/api/instances", headers=bearer("viewer"))).status_code == 200
    assert (await console.client.post("/api/instances/demo/pause", headers=bearer("viewer"))).status_code == 403
    assert (await console.client.get("/metrics", headers=bearer("metrics"))).status_code == 200
    assert (await console.client.get("/api/instances", headers=bearer("metrics"))).status_code == 403
    paused = await console.client.post("/api/instances/demo/pause", headers=bearer("operator"))
    assert paused.status_code == 200
    assert "set-cookie" not in paused.headers
    (entry, *_) = (await console.client.get("/api/audit", headers=bearer("viewer"))).json()
    assert (entry["who"], entry["via"], entry["action"]) == ("operator-token", "token", "pause_instance")
    assert TOKENS["operator"] not in str(entry)


async def test_a_forged_host_is_refused_and_probes_are_not(console: Console) -> None:
    evil = {"Host": "rebound.evil.example", **bearer("operator")}
    assert (await console.client.get("/api/instances", headers=evil)).status_code == 400
    assert (await console.client.post("/api/instances/demo/pause", headers=evil)).status_code == 400
    assert console.registry.get("demo").paused is False  # type: ignore[union-attr]
    assert (
        await console.client.get("/api/instances", headers={"Host": "localhost:8080", **bearer("viewer")})
    ).status_code == 200
    assert (await console.client.get("/health/live", headers={"Host": "10.1.2.3:8080"})).status_code == 200


async def test_pages_forbid_framing_scripts_and_foreign_form_targets(console: Console) -> None:
    for answer in (
        await console.client.get("/login"),
        await console.client.get("/instances", headers=bearer("viewer")),
    ):
        assert answer.headers["x-frame-options"] == "DENY"
        csp = answer.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp and "form-action 'self'" in csp
        assert "script-src" not in csp  # no script allowed at all: default-src 'none' covers it
        assert answer.headers["referrer-policy"] == "same-origin"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-store"
        assert "<script" not in answer.text and "onsubmit" not in answer.text


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example"])
async def test_the_login_redirects_only_within_the_console(console: Console, target: str) -> None:
    form = await console.client.get("/login")
    answer = await console.client.post(
        "/login",
        data={"name": VIEWER, "password": PASSWORDS[VIEWER], "csrf_token": csrf_in(form.text), "next": target},
        headers={"Cookie": f"{COOKIE}={cookie_of(form)}"},
    )
    assert (answer.status_code, answer.headers["location"]) == (303, "/")


async def test_with_the_login_turned_off_loopback_callers_are_operators_and_others_refused(tmp_path: Path) -> None:
    local = build(tmp_path / "local", login_disabled=True)
    async with local.client:
        page = await local.client.get("/instances/demo")
        assert page.status_code == 200
        headers = {"Cookie": f"{COOKIE}={cookie_of(page)}", "Origin": BASE}
        # Still no cross-site form: the CSRF token is required all the same.
        assert (await local.client.post("/instances/demo/pause", headers=headers)).status_code == 403
        done = await local.client.post(
            "/instances/demo/pause", data={"csrf_token": csrf_in(page.text)}, headers=headers
        )
        assert done.status_code == 303
    remote = build(tmp_path / "remote", client=("10.0.0.7", 50000), login_disabled=True)
    async with remote.client:
        assert (await remote.client.get("/api/instances")).status_code == 403


async def test_after_five_wrong_passwords_even_the_right_one_waits(console: Console) -> None:
    form = await console.client.get("/login")
    headers = {"Cookie": f"{COOKIE}={cookie_of(form)}"}

    async def attempt(password: str) -> httpx.Response:
        data = {"name": OPERATOR, "password": password, "csrf_token": csrf_in(form.text)}
        return await console.client.post("/login", data=data, headers=headers)

    assert [(await attempt(f"guess-{i}")).status_code for i in range(5)] == [401] * 5
    shut = await attempt(PASSWORDS[OPERATOR])
    assert shut.status_code == 429
    assert "too many wrong passwords" in shut.text
    assert not logged_in(console, shut)
    assert (await console.client.get("/api/instances", headers=bearer("operator"))).status_code == 200


async def test_the_audit_log_keeps_no_email_address_from_a_replay_filter(console: Console) -> None:
    answer = await console.client.post(
        "/api/replay", params={"instance": "demo", "email": "ada@example.com"}, headers=bearer("operator")
    )
    assert answer.status_code == 202
    (entry, *_) = (await console.client.get("/api/audit", headers=bearer("viewer"))).json()
    assert entry["action"] == "replay_filtered"
    assert "ada@example.com" not in entry["target"] and "instance=demo" in entry["target"]


async def test_every_audit_entry_is_published_on_the_trace_logins_and_logouts_too(console: Console) -> None:
    refused = await console.client.get("/login")
    await console.client.post(
        "/login",
        data={"name": OPERATOR, "password": "wrong", "csrf_token": csrf_in(refused.text)},
        headers={"Cookie": f"{COOKIE}={cookie_of(refused)}", "Origin": BASE},
    )
    operator = await log_in(console.client, OPERATOR, PASSWORDS[OPERATOR])
    await console.client.post("/api/instances/demo/pause", headers=bearer("operator"))
    out = await console.client.post("/logout", data={"csrf_token": operator.csrf}, headers=operator.headers)
    assert out.status_code == 303

    audits = [AuditRecord.from_data_out(r.output.data_out) for r in console.traced]
    assert [r.stage for r in console.traced] == [Stage.AUDIT] * 4
    assert [(a.who, a.via, a.action, a.outcome) for a in audits if a] == [
        ("(not named)", "password", "log_in", 401),  # the name typed is not kept: people type passwords into it
        (OPERATOR, "password", "log_in", 303),
        ("operator-token", "token", "pause_instance", 200),
        (OPERATOR, "password", "log_out", 303),
    ]
    assert console.traced[2].instance_id == "demo"
    assert [r.execution_id for r in console.traced] == [a.audit_id for a in audits if a]
    stored = (await console.client.get("/api/audit", headers=bearer("viewer"))).json()
    assert [e["audit_id"] for e in stored] == [a.audit_id for a in reversed(audits) if a]
    assert all("wrong" not in r.model_dump_json() for r in console.traced)


async def test_a_logged_out_session_cookie_is_worth_nothing_afterwards(console: Console) -> None:
    operator = await log_in(console.client, OPERATOR, PASSWORDS[OPERATOR])
    other = await log_in(console.client, OPERATOR, PASSWORDS[OPERATOR])
    stolen = {"Cookie": f"{COOKIE}={operator.cookie}", "Origin": BASE}
    assert (await console.client.get("/api/instances", headers=stolen)).status_code == 200

    out = await console.client.post("/logout", data={"csrf_token": operator.csrf}, headers=operator.headers)
    assert (out.status_code, out.headers["location"]) == (303, "/login")

    assert (await console.client.get("/api/instances", headers=stolen)).status_code == 401
    page = await console.client.get("/instances/demo", headers=stolen)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    pause = await console.client.post("/instances/demo/pause", data={"csrf_token": operator.csrf}, headers=stolen)
    assert pause.status_code == 401
    assert console.registry.get("demo").paused is False  # type: ignore[union-attr]
    # Only that session: the same account's other session goes on.
    assert (await console.client.get("/api/instances", headers=other.headers)).status_code == 200
