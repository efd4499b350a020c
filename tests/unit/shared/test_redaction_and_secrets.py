from __future__ import annotations

from pathlib import Path

import pytest

from tandem_shared.redaction import MASK, redact, redact_text
from tandem_shared.secrets import SecretUnavailable, resolve_secret


def test_secret_looking_keys_and_values_are_masked_at_any_depth() -> None:
    data = {
        "api_key": "k",
        "nested": [{"Authorization": "Bearer abc.def"}],
        "note": "key 0123456789abcdef0123456789abcdef-us6 leaked",
        "Email": "ada@example.com",
    }
    masked = redact(data)
    assert masked["api_key"] == MASK
    assert masked["nested"][0]["Authorization"] == MASK
    assert "0123456789abcdef" not in masked["note"]
    assert masked["Email"] == "ada@example.com"
    assert redact_text("Authorization: Bearer tok.en") == f"Authorization: Bearer {MASK}"


def test_secret_references_resolve_from_env_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_TEST_SECRET", "from-env")
    secret_file = tmp_path / "key"
    secret_file.write_text("from-file\n")
    assert resolve_secret("env:TANDEM_TEST_SECRET") == "from-env"
    assert resolve_secret(f"file:{secret_file}") == "from-file"
    with pytest.raises(SecretUnavailable, match="not set"):
        resolve_secret("env:TANDEM_TEST_SECRET_MISSING")
    with pytest.raises(SecretUnavailable, match="cannot be read"):
        resolve_secret(f"file:{tmp_path / 'nope'}")


def test_masking_ignores_case_where_the_patterns_do_and_leaves_clean_text_alone() -> None:
    assert redact_text("key 0123456789ABCDEF0123456789abcdef-US6 leaked") == f"key {MASK} leaked"
    assert redact_text("Authorization: Basic dGFuZGVtOmtleQ==") == f"Authorization: Basic {MASK}"
    clean = "Forename1 Surname-user 01632 960000 bench.1@example.com"
    assert redact_text(clean) is clean
    assert redact({"Signature": "", "X-Signature": "t=1,v1=ab"}) == {"Signature": "", "X-Signature": MASK}
