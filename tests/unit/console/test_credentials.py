"""Accounts, tokens and session cookies, pure: hashes, roles, signatures, expiry and CSRF tokens."""

from __future__ import annotations

import pytest

from tandem_console.credentials import (
    Accounts,
    LoginThrottle,
    Principal,
    Role,
    Session,
    SessionCodec,
    hash_password,
    hash_token,
    new_token,
    verify_password,
)

NOW = 1_800_000_000.0


def test_a_password_hash_verifies_its_password_only_and_is_salted() -> None:
    hashed = hash_password("correct horse")
    assert hashed.startswith("scrypt$16384$8$1$") and "correct horse" not in hashed
    assert verify_password("correct horse", hashed)
    assert not verify_password("correct horsE", hashed)
    assert hash_password("correct horse") != hashed
    assert not verify_password("x", "scrypt$garbage")
    assert not verify_password("x", "md5$whatever$1$1$a$b")


def test_accounts_log_in_by_name_and_password_and_tokens_by_their_hash() -> None:
    token = new_token()
    accounts = Accounts.parse(
        {
            "users": [{"name": "ada", "role": "operator", "password_hash": hash_password("pw")}],
            "tokens": [{"name": "grafana", "role": "viewer", "token_hash": hash_token(token)}],
        }
    )
    assert accounts.login("ada", "pw") == Principal("ada", Role.OPERATOR, "password")
    assert accounts.login("ada", "nope") is None
    assert accounts.login("bob", "pw") is None
    assert accounts.bearer(token) == Principal("grafana", Role.VIEWER, "token")
    assert accounts.bearer(token + "x") is None
    assert token not in repr(accounts)


@pytest.mark.parametrize(
    "document",
    [
        {"users": [{"name": "ada", "role": "operator", "password_hash": "plain-text"}]},
        {"users": [{"name": "ada", "role": "admin", "password_hash": hash_password("pw")}]},
        {"tokens": [{"name": "t", "role": "viewer", "token_hash": "tdm_the-token-itself"}]},
    ],
)
def test_an_accounts_file_with_a_clear_text_secret_or_an_unknown_role_is_refused(document: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Accounts.parse(document)


def test_roles_are_ordered() -> None:
    assert Role.METRICS < Role.VIEWER < Role.OPERATOR


def test_a_session_cookie_round_trips_and_a_tampered_or_expired_one_is_nothing() -> None:
    codec = SessionCodec(b"secret")
    session = Session.anonymous(NOW, 60).logged_in(Principal("ada", Role.VIEWER, "password"), NOW, 60)
    cookie = codec.encode(session)
    assert codec.decode(cookie, NOW) == session
    _, signature = cookie.split(".")
    promoted = (
        SessionCodec(b"secret")
        .encode(Session(session.sid, session.expires, "ada", Role.OPERATOR, "password"))
        .split(".")[0]
    )
    assert codec.decode(f"{promoted}.{signature}", NOW) is None
    assert SessionCodec(b"other secret").decode(cookie, NOW) is None
    assert codec.decode(cookie, NOW + 61) is None
    assert codec.decode("not a cookie", NOW) is None


def test_a_csrf_token_belongs_to_one_session() -> None:
    codec = SessionCodec(b"secret")
    one, other = Session.anonymous(NOW, 60), Session.anonymous(NOW, 60)
    assert codec.csrf_ok(one, codec.csrf_token(one))
    assert not codec.csrf_ok(other, codec.csrf_token(one))
    assert not codec.csrf_ok(one, None) and not codec.csrf_ok(one, "")


def test_logging_in_starts_a_new_session_id() -> None:
    anonymous = Session.anonymous(NOW, 60)
    assert anonymous.logged_in(Principal("ada", Role.VIEWER, "password"), NOW, 60).sid != anonymous.sid


def test_the_throttle_shuts_one_names_logins_after_five_wrong_passwords_for_the_window() -> None:
    throttle = LoginThrottle(limit=5, window_s=900)
    for i in range(4):
        throttle.failed("ada", NOW + i)
    assert throttle.wait_s("ada", NOW + 4) == 0
    throttle.failed("ada", NOW + 4)
    assert throttle.wait_s("ada", NOW + 5) == pytest.approx(895)
    assert throttle.wait_s("bob", NOW + 5) == 0
    assert throttle.wait_s("ada", NOW + 900) == 0  # the oldest failure left the window
    throttle.succeeded("ada")
    assert throttle.wait_s("ada", NOW + 5) == 0


def test_the_throttle_forgets_the_oldest_names_beyond_its_bound() -> None:
    throttle = LoginThrottle(limit=1, window_s=900, max_names=3)
    for name in ("a", "b", "c", "d"):
        throttle.failed(name, NOW)
    assert throttle.wait_s("a", NOW) == 0
    assert all(throttle.wait_s(name, NOW) > 0 for name in ("b", "c", "d"))
