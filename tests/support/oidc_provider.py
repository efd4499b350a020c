"""A small OpenID Connect provider for tests, on a loopback port: discovery, an authorization endpoint that logs in
whoever the test names, a token endpoint that checks the client secret, the redirect URI and the PKCE verifier
(S256), and a JWKS whose signing key the test can rotate. Built on joserfc (the JOSE library Authlib uses), since
no outside provider is reachable from the test machines.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import uvicorn
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tandem_devstack.processes import free_port

CLIENT_ID, CLIENT_SECRET = "tandem-console", "console-client-secret"


def _new_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(4), "use": "sig", "alg": "RS256"})


@dataclass
class MockProvider:
    issuer: str
    # Who the next authorization logs in, and with which claims.
    user: dict[str, Any] = field(default_factory=lambda: {"sub": "u-1", "email": "ada@example.com", "groups": []})
    signing_key: RSAKey = field(default_factory=_new_key)
    published: list[RSAKey] = field(default_factory=list)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    # What the token endpoint saw, for the test to check (the PKCE verifier was sent and matched).
    token_requests: list[dict[str, str]] = field(default_factory=list)
    jwks_fetches: int = 0
    nonce_override: str | None = None

    def __post_init__(self) -> None:
        self.published = [self.signing_key]

    def rotate(self) -> None:
        """A new signing key, published in place of the old one (the old one is gone from the JWKS)."""
        self.signing_key = _new_key()
        self.published = [self.signing_key]

    def sign_with_unpublished_key(self) -> None:
        self.signing_key = _new_key()

    def metadata(self, _: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
            }
        )

    def jwks(self, _: Request) -> Response:
        self.jwks_fetches += 1
        return JSONResponse(KeySet(self.published).as_dict(private=False))

    def authorize(self, request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code":
            return JSONResponse({"error": "unauthorized_client"}, status_code=400)
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge") or not q.get("nonce"):
            return JSONResponse({"error": "invalid_request", "error_description": "PKCE S256 and a nonce"}, 400)
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "redirect_uri": q["redirect_uri"],
            "challenge": q["code_challenge"],
            "nonce": q["nonce"],
            "user": dict(self.user),
        }
        return RedirectResponse(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}", 302)

    async def token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        self.token_requests.append(form)
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = self.codes.pop(form.get("code", ""), None)  # single use
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if grant is None or grant["redirect_uri"] != form.get("redirect_uri") or grant["challenge"] != challenge:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": self.nonce_override or grant["nonce"],
            **grant["user"],
        }
        header = {"alg": "RS256", "kid": self.signing_key.kid}
        id_token = jwt.encode(header, claims, self.signing_key)
        return JSONResponse({"access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "id_token": id_token})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.metadata),
                Route("/jwks", self.jwks),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
            ]
        )


@contextmanager
def mock_provider() -> Iterator[MockProvider]:
    port = free_port()
    provider = MockProvider(issuer=f"http://127.0.0.1:{port}")
    server = uvicorn.Server(uvicorn.Config(provider.app(), host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, name="mock-oidc", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the mock OpenID provider did not start")
        time.sleep(0.02)
    try:
        yield provider
    finally:
        server.should_exit = True
        thread.join(timeout=10)
