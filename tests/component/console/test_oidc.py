"""OpenID Connect login against a provider the test starts on a loopback port (tests/support/oidc_provider.py):
authorization code with PKCE, the nonce, roles from groups, and a rotated signing key (the console in-process)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from support.oidc_provider import CLIENT_ID, CLIENT_SECRET, MockProvider, mock_provider
from tandem_console.access import COOKIE
from tandem_console.app import create_app
from tandem_console.settings import ConsoleSettings
from tandem_shared.instances import StaticInstanceRegistry, demo_instance

BASE = "http://localhost"


@pytest.fixture(scope="module")
def provider() -> Iterator[MockProvider]:
    with mock_provider() as running:
        yield running


@dataclass
class Console:
    client: httpx.AsyncClient
    provider: MockProvider


@pytest.fixture
async def console(tmp_path: Path, provider: MockProvider) -> AsyncIterator[Console]:
    provider.user = {"sub": "u-1", "email": "ada@example.com", "groups": ["sync-operators"]}
    provider.nonce_override = None
    settings = ConsoleSettings(
        kafka_bootstrap_servers="127.0.0.1:9",
        database_url=f"sqlite:///{tmp_path / 'console.db'}",
        log_json=False,
        oidc_issuer=provider.issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,  # type: ignore[arg-type]
        oidc_display_name="Example SSO",
        oidc_operator_groups="sync-operators",
        oidc_viewer_groups="sync-viewers,marketing",
    )
    registry = StaticInstanceRegistry([demo_instance()])
    app = create_app(settings, registry)
    app.state.console.store.create()
    app.state.access.audit.create()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield Console(client, provider)
    await app.state.oidc.close()


def cookie_of(response: httpx.Response) -> str | None:
    found = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{COOKIE}=")]
    return found[0].split(";")[0].split("=", 1)[1] if found else None


async def through_the_provider(console: Console, *, next_: str = "/instances") -> httpx.Response:
    """As a browser would: to the provider and back, the session cookie carried by hand (it is Secure)."""
    start = await console.client.get("/login/oidc", params={"next": next_})
    assert start.status_code == 303, start.text
    authorize = start.headers["location"]
    assert authorize.startswith(f"{console.provider.issuer}/authorize?")
    cookie = cookie_of(start)
    async with httpx.AsyncClient() as browser:
        at_provider = await browser.get(authorize)
    assert at_provider.status_code == 302, at_provider.text
    back = urlsplit(at_provider.headers["location"])
    assert back.path == "/login/oidc/callback"
    return await console.client.get(f"{back.path}?{back.query}", headers={"Cookie": f"{COOKIE}={cookie}"})


async def test_the_login_page_offers_the_identity_provider(console: Console) -> None:
    page = await console.client.get("/login")
    assert "Log in with Example SSO" in page.text


async def test_an_operator_logs_in_with_pkce_and_gets_the_operator_role(console: Console) -> None:
    done = await through_the_provider(console)
    assert (done.status_code, done.headers["location"]) == (303, "/instances")
    session = cookie_of(done)
    assert session
    who = await console.client.get("/api/session", headers={"Cookie": f"{COOKIE}={session}"})
    assert who.json()["name"] == "ada@example.com" and who.json()["role"] == "operator"

    (request,) = console.provider.token_requests[-1:]
    assert request["grant_type"] == "authorization_code" and len(request["code_verifier"]) >= 43
    authorize = console.provider.codes  # spent: the code is single use
    assert not authorize


async def test_the_authorization_request_carries_an_s256_challenge_state_and_nonce(console: Console) -> None:
    start = await console.client.get("/login/oidc")
    query = parse_qs(urlsplit(start.headers["location"]).query)
    assert query["code_challenge_method"] == ["S256"]
    assert {"code_challenge", "state", "nonce", "redirect_uri"} <= set(query)
    assert query["redirect_uri"] == [f"{BASE}/login/oidc/callback"]
    assert "openid" in query["scope"][0].split()


async def test_a_viewer_group_gives_the_viewer_role_and_no_group_no_entry(console: Console) -> None:
    console.provider.user = {"sub": "u-2", "email": "mia@example.com", "groups": ["marketing"]}
    viewer = await through_the_provider(console)
    answer = await console.client.get("/api/session", headers={"Cookie": f"{COOKIE}={cookie_of(viewer)}"})
    assert answer.json()["role"] == "viewer"

    console.provider.user = {"sub": "u-3", "email": "eve@example.com", "groups": ["finance"]}
    refused = await through_the_provider(console)
    assert refused.status_code == 403
    assert "in no group given a role" in refused.text


async def test_an_id_token_with_another_nonce_is_refused(console: Console) -> None:
    console.provider.nonce_override = "replayed-nonce"
    refused = await through_the_provider(console)
    assert refused.status_code == 403
    assert "nonce" in refused.text


async def test_a_callback_whose_state_is_not_this_browsers_is_refused(console: Console) -> None:
    start = await console.client.get("/login/oidc")
    async with httpx.AsyncClient() as browser:
        at_provider = await browser.get(start.headers["location"])
    code = parse_qs(urlsplit(at_provider.headers["location"]).query)["code"][0]
    # The victim's browser has a session of its own (or none): the attacker's code and state do not fit it.
    other = cookie_of(await console.client.get("/login"))
    refused = await console.client.get(
        "/login/oidc/callback", params={"code": code, "state": "forged"}, headers={"Cookie": f"{COOKIE}={other}"}
    )
    assert refused.status_code == 403
    assert "state does not match" in refused.text


async def test_a_rotated_signing_key_is_fetched_and_an_unpublished_one_refused(console: Console) -> None:
    assert (await through_the_provider(console)).status_code == 303
    fetched = console.provider.jwks_fetches
    console.provider.rotate()
    assert (await through_the_provider(console)).status_code == 303
    assert console.provider.jwks_fetches == fetched + 1

    console.provider.sign_with_unpublished_key()
    refused = await through_the_provider(console)
    assert refused.status_code == 403
    assert "signature" in refused.text
