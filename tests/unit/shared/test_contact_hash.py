"""The keyed hash that stands for an address in key names: stable per key, different across keys, never the MD5."""

from __future__ import annotations

import pytest

from tandem_shared import contact_hash as module
from tandem_shared.contact_hash import contact_hash
from tandem_shared.contracts import ContactIdentity, subscriber_hash
from tandem_shared.secrets import SecretUnavailable


def test_the_hash_ignores_case_and_spaces_and_depends_on_the_key() -> None:
    key = b"k" * 32
    assert contact_hash(" Ada@Example.com", key=key) == contact_hash("ada@example.com", key=key)
    assert contact_hash("ada@example.com", key=key) != contact_hash("ada@example.com", key=b"j" * 32)
    assert contact_hash("ada@example.com") != subscriber_hash("ada@example.com")
    assert len(contact_hash("ada@example.com")) == 32


def test_a_mailchimp_contact_key_carries_no_address() -> None:
    identity = ContactIdentity(email="Ada@Example.com")
    assert identity.contact_key == f"mc:{contact_hash('ada@example.com')}"
    assert "example" not in identity.contact_key
    assert ContactIdentity(accessplanit_user_id="7", email="ada@example.com").contact_key == "ap:7"


def test_a_missing_or_short_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(module.KEY_REF_ENV, "env:TANDEM_NO_SUCH_KEY")
    module.configured_key.cache_clear()
    try:
        with pytest.raises(SecretUnavailable):
            module.configured_key()
        monkeypatch.setenv("TANDEM_NO_SUCH_KEY", "short")
        module.configured_key.cache_clear()
        with pytest.raises(SecretUnavailable, match="at least 16"):
            module.configured_key()
    finally:
        monkeypatch.undo()
        module.configured_key.cache_clear()
