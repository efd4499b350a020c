"""`make run` generates its contact hash key once per data directory and keeps it."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

from tandem_devstack.stack import Ports, ensure_contact_hash_key, stack_env
from tandem_shared.contact_hash import KEY_REF_ENV


def test_make_run_gets_a_private_key_file_made_once(tmp_path: Path) -> None:
    with mock.patch.dict("os.environ", clear=True):
        env = stack_env(kafka="k:1", redis="redis://r:1/0", ports=Ports(), data_dir=tmp_path)
    key_file = tmp_path / "secrets" / "contact-hash-key"
    assert env[KEY_REF_ENV] == f"file:{key_file}"

    ensure_contact_hash_key(env)
    first = key_file.read_text()
    ensure_contact_hash_key(env)

    assert len(first) == 64 and key_file.read_text() == first
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"


def test_a_key_the_caller_names_is_kept(tmp_path: Path) -> None:
    with mock.patch.dict("os.environ", {KEY_REF_ENV: "env:MY_KEY"}, clear=True):
        env = stack_env(kafka="k:1", redis="redis://r:1/0", ports=Ports(), data_dir=tmp_path)
    ensure_contact_hash_key(env)
    assert env[KEY_REF_ENV] == "env:MY_KEY"
    assert not (tmp_path / "secrets").exists()
