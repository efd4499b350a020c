"""Who may use the console, pure: roles, operator accounts and API tokens from a file (a mounted Secret), their
hashes, and the signed session cookie with its CSRF token.

Passwords are hashed with scrypt (memory-hard, in the standard library: no native dependency to build); API tokens
are 32 random bytes, so one SHA-256 of them is enough (nothing to guess at, and a request need not pay scrypt's
cost). Every comparison is `hmac.compare_digest`.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
TOKEN_PREFIX = "tdm_"


class Role(enum.IntEnum):
    """Ordered: a role may do everything the ones below it may."""

    METRICS = 1  # /metrics only: what a Prometheus in the monitoring namespace is given
    VIEWER = 2  # executions, timelines, instances, the audit log
    OPERATOR = 3  # pause, resume, replay and every later operator action

    @classmethod
    def named(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown role {name!r}: one of {', '.join(r.name.lower() for r in cls)}") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Principal:
    """Who is asking: an account, a token's name, or the OIDC subject; `via` says how they proved it."""

    name: str
    role: Role
    via: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, hashed: str) -> bool:
    try:
        scheme, n, r, p, salt, expected = hashed.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=len(_unb64(expected))
        )
    except ValueError:
        return False
    return hmac.compare_digest(digest, _unb64(expected))


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return "sha256$" + hashlib.sha256(token.encode()).hexdigest()


# Checked when no account has the name asked for, so a wrong name costs as much as a wrong password.
_DUMMY_HASH = hash_password("no such account", salt=b"\0" * 16)


@dataclass(frozen=True)
class Accounts:
    """Operator accounts (name → role, password hash) and API tokens (hash → name, role)."""

    users: Mapping[str, tuple[Role, str]] = field(default_factory=dict)
    tokens: Mapping[str, tuple[str, Role]] = field(default_factory=dict)

    @classmethod
    def parse(cls, document: Mapping[str, Any]) -> Accounts:
        """`{"users": [{"name", "role", "password_hash"}], "tokens": [{"name", "role", "token_hash"}]}`."""
        users: dict[str, tuple[Role, str]] = {}
        for entry in document.get("users", []):
            name, hashed = str(entry["name"]), str(entry["password_hash"])
            if not hashed.startswith("scrypt$"):
                raise ValueError(f"user {name!r}: password_hash must be a scrypt hash (tandem-console hash-password)")
            users[name] = (Role.named(str(entry["role"])), hashed)
        tokens: dict[str, tuple[str, Role]] = {}
        for entry in document.get("tokens", []):
            name, hashed = str(entry["name"]), str(entry["token_hash"])
            if not hashed.startswith("sha256$"):
                raise ValueError(f"token {name!r}: token_hash must be a sha256 hash (tandem-console new-token)")
            tokens[hashed] = (name, Role.named(str(entry["role"])))
        return cls(users, tokens)

    @classmethod
    def load(cls, path: Path) -> Accounts:
        try:
            return cls.parse(json.loads(path.read_text()))
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not an accounts file ({exc})") from exc

    def login(self, name: str, password: str) -> Principal | None:
        role, hashed = self.users.get(name, (None, _DUMMY_HASH))
        ok = verify_password(password, hashed)
        return Principal(name, role, "password") if ok and role is not None else None

    def bearer(self, token: str) -> Principal | None:
        wanted = hash_token(token)
        found = None
        for hashed, (name, role) in self.tokens.items():
            if hmac.compare_digest(hashed, wanted):
                found = Principal(name, role, "token")
        return found


@dataclass(frozen=True)
class Session:
    """What the signed session cookie holds: an id (the CSRF token is derived from it), and who logged in."""

    sid: str
    expires: int
    name: str | None = None
    role: Role | None = None
    via: str | None = None
    # OIDC in flight: state, nonce and PKCE verifier between the redirect to the provider and its callback.
    pending: Mapping[str, str] | None = None

    @classmethod
    def anonymous(cls, now: float, ttl_s: float) -> Session:
        return cls(secrets.token_urlsafe(24), int(now + ttl_s))

    def logged_in(self, who: Principal, now: float, ttl_s: float) -> Session:
        # A new id on login: an id planted before it (session fixation) is worth nothing afterwards.
        return Session(secrets.token_urlsafe(24), int(now + ttl_s), who.name, who.role, who.via)

    @property
    def principal(self) -> Principal | None:
        if self.name is None or self.role is None:
            return None
        return Principal(self.name, self.role, self.via or "session")


class SessionCodec:
    """Sessions as `payload.signature` (HMAC-SHA256 with the console's session secret); CSRF tokens as an HMAC of
    the session id, so a page can prove it was rendered for this session without any server-side state."""

    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(b"tandem-console session|" + secret).digest()
        self._csrf_key = hashlib.sha256(b"tandem-console csrf|" + secret).digest()

    def encode(self, session: Session) -> str:
        body: dict[str, Any] = {"sid": session.sid, "exp": session.expires}
        if session.name is not None and session.role is not None:
            body.update(sub=session.name, role=session.role.label, via=session.via)
        if session.pending:
            body["pending"] = dict(session.pending)
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        return f"{payload}.{_b64(hmac.new(self._key, payload.encode(), 'sha256').digest())}"

    def decode(self, cookie: str | None, now: float) -> Session | None:
        if not cookie or cookie.count(".") != 1:
            return None
        payload, signature = cookie.split(".")
        expected = _b64(hmac.new(self._key, payload.encode(), "sha256").digest())
        if not hmac.compare_digest(signature.encode("utf-8", "replace"), expected.encode()):
            return None
        try:
            body = json.loads(_unb64(payload))
            session = Session(
                sid=str(body["sid"]),
                expires=int(body["exp"]),
                name=body.get("sub"),
                role=Role.named(body["role"]) if "role" in body else None,
                via=body.get("via"),
                pending=body.get("pending"),
            )
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires > now else None

    def csrf_token(self, session: Session) -> str:
        return _b64(hmac.new(self._csrf_key, session.sid.encode(), "sha256").digest())

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        # As bytes: compare_digest refuses a str with anything but ASCII in it (a hostile token: 500).
        given = str(token or "").encode("utf-8", "replace")
        return bool(given) and hmac.compare_digest(given, self.csrf_token(session).encode())


@dataclass
class LoginThrottle:
    """After `limit` wrong passwords for one name within `window_s`, logins under that name are refused unchecked
    until the oldest of them is `window_s` old: password guessing against an account slows to a crawl. (The price:
    someone who knows a name can keep that account's password login shut; OIDC and tokens are not affected.)"""

    limit: int = 5
    window_s: float = 900.0
    # Names tracked at most: a flood of made-up names forgets the oldest instead of growing without end.
    max_names: int = 10_000
    _failures: dict[str, list[float]] = field(default_factory=dict)

    def _recent(self, name: str, now: float) -> list[float]:
        recent = [t for t in self._failures.get(name, []) if now - t < self.window_s]
        if recent:
            self._failures[name] = recent
        else:
            self._failures.pop(name, None)
        return recent

    def wait_s(self, name: str, now: float) -> float:
        recent = self._recent(name, now)
        return recent[0] + self.window_s - now if len(recent) >= self.limit else 0.0

    def failed(self, name: str, now: float) -> None:
        self._failures[name] = [*self._recent(name, now), now]
        while len(self._failures) > self.max_names:
            del self._failures[next(iter(self._failures))]

    def succeeded(self, name: str) -> None:
        self._failures.pop(name, None)
