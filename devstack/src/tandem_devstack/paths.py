"""Where the devstack keeps jars, broker data, pid files and logs (all under `.tandem/`, ignored by git).

The test suite keeps its state (broker and Redis data, pid files) in a home of its own, `test_home()`, so that
`make run` never sees what the tests left; the broker's jars stay in one place for both (`kafka_libs_dir()`).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]


def tandem_home() -> Path:
    home = Path(os.environ.get("TANDEM_HOME", REPO_ROOT / ".tandem"))
    home.mkdir(parents=True, exist_ok=True)
    return home


def test_home() -> Path:
    """The test suite's home: TANDEM_TEST_HOME, else `test/` inside the home `make run` uses."""
    return Path(os.environ.get("TANDEM_TEST_HOME") or tandem_home() / "test")


def kafka_libs_dir() -> Path:
    """The broker's jars: TANDEM_KAFKA_LIBS (homes that share them: the suite's uses `make run`'s), else the home's."""
    return Path(os.environ.get("TANDEM_KAFKA_LIBS") or tandem_home() / "kafka" / "libs")
