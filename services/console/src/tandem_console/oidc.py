"""OpenID Connect login: the organisation's identity provider decides who gets in, and with which role.

Authorization-code flow with PKCE (S256) through Authlib's OAuth 2 client; the ID token checked with joserfc against
the provider's JWKS (signature, issuer, audience, expiry, nonce). Keys are fetched from the discovery document's
`jwks_uri` and fetched again when a token's signature does not verify with them (the provider rotated its keys).
The ID token comes from the token endpoint, never from the browser, so nobody else can make the console fetch keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from tandem_console.credentials import Principal, Role
from tandem_console.settings import ConsoleSettings

SIGNING_ALGORITHMS = ["RS256", "ES256", "PS256", "EdDSA"]


class OidcError(Exception):
    """The provider's answer cannot be trusted or gives no role: the login is refused with this reason."""


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str | None
    display_name: str
    scopes: str
    name_claim: str
    groups_claim: str
    operator_groups: frozenset[str]
    viewer_groups: frozenset[str]

    @classmethod
    def of(cls, settings: ConsoleSettings) -> OidcConfig | None:
        if not settings.oidc_issuer or not settings.oidc_client_id:
            return None

        def groups(text: str) -> frozenset[str]:
            return frozenset(g.strip() for g in text.split(",") if g.strip())

        secret = settings.oidc_client_secret
        return cls(
            issuer=settings.oidc_issuer.rstrip("/"),
            client_id=settings.oidc_client_id,
            client_secret=secret.get_secret_value() if secret else None,
            display_name=settings.oidc_display_name,
            scopes=settings.oidc_scopes,
            name_claim=settings.oidc_name_claim,
            groups_claim=settings.oidc_groups_claim,
            operator_groups=groups(settings.oidc_operator_groups),
            viewer_groups=groups(settings.oidc_viewer_groups),
        )

    def role_of(self, claims: Mapping[str, Any]) -> Role | None:
        found = claims.get(self.groups_claim) or []
        member_of = {found} if isinstance(found, str) else {str(g) for g in found}
        if member_of & self.operator_groups:
            return Role.OPERATOR
        if member_of & self.viewer_groups:
            return Role.VIEWER
        return None


class OidcLogin:
    def __init__(self, config: OidcConfig) -> None:
        self.config = config
        self._http = httpx.AsyncClient(timeout=10.0)
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None

    @property
    def display_name(self) -> str:
        return self.config.display_name

    async def close(self) -> None:
        await self._http.aclose()

    def _client(self, redirect_uri: str) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.config.client_id,
            client_secret=self.config.client_secret,
            scope=self.config.scopes,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic" if self.config.client_secret else "none",
            timeout=10.0,
        )

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            answer = await self._http.get(f"{self.config.issuer}/.well-known/openid-configuration")
            answer.raise_for_status()
            metadata: dict[str, Any] = answer.json()
            # The discovery document must be the issuer's own (OpenID Connect Discovery 1.0, section 4.3).
            if str(metadata.get("issuer", "")).rstrip("/") != self.config.issuer:
                raise OidcError("the provider's discovery document names another issuer")
            self._metadata = metadata
        return self._metadata

    async def _key_set(self, *, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            answer = await self._http.get((await self.metadata())["jwks_uri"])
            answer.raise_for_status()
            self._keys = KeySet.import_key_set(answer.json())
        return self._keys

    async def start(self, redirect_uri: str) -> tuple[str, dict[str, str]]:
        """The provider's authorization URL, and what the callback must find again (kept in the session)."""
        metadata = await self.metadata()
        verifier, nonce = generate_token(48), generate_token(24)
        async with self._client(redirect_uri) as client:
            url, state = client.create_authorization_url(
                metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce
            )
        return url, {"state": state, "nonce": nonce, "verifier": verifier, "redirect_uri": redirect_uri}

    async def finish(self, pending: Mapping[str, str], *, code: str, state: str) -> Principal:
        if not pending or state != pending.get("state"):
            raise OidcError("the login's state does not match: start again")
        metadata = await self.metadata()
        async with self._client(pending["redirect_uri"]) as client:
            try:
                token = await client.fetch_token(
                    metadata["token_endpoint"], code=code, code_verifier=pending["verifier"]
                )
            except Exception as exc:  # the provider refused the code (reused, expired, wrong verifier)
                raise OidcError(f"the provider refused the authorization code: {exc}") from exc
        id_token = token.get("id_token")
        if not id_token:
            raise OidcError("the provider sent no ID token")
        claims = await self._verified_claims(str(id_token), nonce=pending["nonce"])
        role = self.config.role_of(claims)
        name = str(claims.get(self.config.name_claim) or claims["sub"])
        if role is None:
            raise OidcError(f"{name} is in no group given a role on this console")
        return Principal(name, role, "oidc")

    async def _verified_claims(self, id_token: str, *, nonce: str) -> dict[str, Any]:
        try:
            decoded = jwt.decode(id_token, await self._key_set(), algorithms=SIGNING_ALGORITHMS)
        except (JoseError, ValueError):
            # Perhaps signed with a key published since we fetched the set: fetch it again, once.
            try:
                decoded = jwt.decode(id_token, await self._key_set(refresh=True), algorithms=SIGNING_ALGORITHMS)
            except (JoseError, ValueError) as exc:
                raise OidcError(f"the ID token's signature does not verify: {exc}") from exc
        registry = jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": self.config.issuer},
            aud={"essential": True, "value": self.config.client_id},
            sub={"essential": True},
            exp={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(decoded.claims)
        except JoseError as exc:
            raise OidcError(f"the ID token is not for this login: {exc}") from exc
        return dict(decoded.claims)
