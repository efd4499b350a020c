"""`make lint`'s dependency audit never passes in silence: with no advisory service answering it says it skipped,
and fails instead when the audit is required. (No service answers here: every request goes to a dead proxy.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "scripts" / "audit"


def audit(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    lock = tmp_path / "requirements.lock"
    lock.write_text("# a comment\nidna==3.10 \\\n    --hash=sha256:00\n")
    never_run = tmp_path / "pip-audit"  # not called: nothing answers
    dead_proxy = {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": ""}
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(never_run), str(lock)],
        env={**os.environ, **dead_proxy, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_an_advisory_service_the_audit_says_it_was_skipped(tmp_path: Path) -> None:
    skipped = audit(tmp_path)
    assert skipped.returncode == 0
    assert "audit skipped: advisory service unreachable" in skipped.stderr


def test_a_required_audit_fails_without_an_advisory_service(tmp_path: Path) -> None:
    required = audit(tmp_path, TANDEM_AUDIT_REQUIRED="1")
    assert required.returncode == 1
    assert "audit skipped: advisory service unreachable" in required.stderr
