"""Where the devstack keeps jars, broker data, pid files and logs (all under `.tandem/`, ignored by git)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]


def tandem_home() -> Path:
    home = Path(os.environ.get("TANDEM_HOME", REPO_ROOT / ".tandem"))
    home.mkdir(parents=True, exist_ok=True)
    return home
