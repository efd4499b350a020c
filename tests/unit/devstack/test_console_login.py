"""`make run`'s console login: made once, private files, and in the console's own accounts format."""

from __future__ import annotations

import stat
from pathlib import Path

from tandem_console.credentials import Accounts, Role
from tandem_devstack.console_login import ensure_console_login


def test_the_login_is_made_once_privately_and_the_console_accepts_it(tmp_path: Path) -> None:
    first = ensure_console_login(tmp_path)
    assert first.new_password is not None
    for path in (first.password_file, first.accounts_file, first.session_secret_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert first.new_password not in first.accounts_file.read_text()
    who = Accounts.load(first.accounts_file).login(first.name, first.new_password)
    assert who is not None and who.role is Role.OPERATOR

    again = ensure_console_login(tmp_path)
    assert again.new_password is None
    assert first.password_file.read_text().strip() == first.new_password
    assert again.env() == first.env()
