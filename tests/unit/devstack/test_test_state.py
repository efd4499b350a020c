"""The suite keeps its broker, Redis and pid files apart from `make run`'s, and shares only the Kafka jars."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.infra import (
    TEST_CONTACT_HASH_KEY,
    TEST_KAFKA_PORT,
    TEST_POSTGRES_PORT,
    TEST_REDIS_PORT,
    use_test_state,
)
from tandem_devstack import infra
from tandem_devstack.__main__ import main
from tandem_devstack.paths import REPO_ROOT, kafka_libs_dir, tandem_home


def test_this_session_runs_in_a_home_of_its_own_and_reads_the_jars_from_make_runs(run_home: Path) -> None:
    assert tandem_home() != run_home
    assert tandem_home() == run_home / "test"
    assert kafka_libs_dir() == run_home / "kafka" / "libs"


def test_the_suites_state_is_not_the_default_make_run_home(monkeypatch: pytest.MonkeyPatch) -> None:
    environ: dict[str, str] = {}
    for name in ("TANDEM_HOME", "TANDEM_TEST_HOME", "TANDEM_KAFKA_LIBS"):
        monkeypatch.delenv(name, raising=False)
    run_home = use_test_state(environ)
    assert run_home == REPO_ROOT / ".tandem"
    assert environ == {
        "TANDEM_HOME": str(REPO_ROOT / ".tandem" / "test"),
        "TANDEM_KAFKA_LIBS": str(REPO_ROOT / ".tandem" / "kafka" / "libs"),
        "TANDEM_KAFKA_PORT": str(TEST_KAFKA_PORT),
        "TANDEM_REDIS_PORT": str(TEST_REDIS_PORT),
        "TANDEM_POSTGRES_PORT": str(TEST_POSTGRES_PORT),
        "TANDEM_CONTACT_HASH_KEY_REF": "env:TANDEM_TEST_CONTACT_HASH_KEY",
        "TANDEM_TEST_CONTACT_HASH_KEY": TEST_CONTACT_HASH_KEY,
    }
    monkeypatch.setattr("os.environ", environ)
    # What make run would use with nothing set: other data dirs and other ports.
    assert (infra.kafka_port(), infra.redis_port()) != (9092, 6379)
    assert infra.postgres_port() != 15432
    assert tandem_home() != run_home


def test_explicit_homes_and_ports_are_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TANDEM_HOME", str(tmp_path / "mine"))
    monkeypatch.delenv("TANDEM_KAFKA_LIBS", raising=False)
    environ = {"TANDEM_TEST_HOME": str(tmp_path / "tests"), "TANDEM_KAFKA_PORT": "9592", "TANDEM_REDIS_PORT": "6879"}
    monkeypatch.setenv("TANDEM_TEST_HOME", environ["TANDEM_TEST_HOME"])
    assert use_test_state(environ) == tmp_path / "mine"
    assert environ["TANDEM_HOME"] == str(tmp_path / "tests")
    assert environ["TANDEM_KAFKA_LIBS"] == str(tmp_path / "mine" / "kafka" / "libs")
    assert (environ["TANDEM_KAFKA_PORT"], environ["TANDEM_REDIS_PORT"]) == ("9592", "6879")


def test_down_also_stops_a_test_stack_kept_running(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TANDEM_HOME", str(tmp_path))
    monkeypatch.delenv("TANDEM_TEST_HOME", raising=False)
    stopped: list[int] = []
    monkeypatch.setattr("tandem_devstack.__main__.read_pid", lambda path: int(path.read_text()))
    monkeypatch.setattr("tandem_devstack.__main__.stop_pid", stopped.append)
    for pidfile, pid in (
        (tmp_path / "redis/redis-6379/redis.pid", 11),
        (tmp_path / "test/kafka/broker-1/kafka.pid", 12),
    ):
        pidfile.parent.mkdir(parents=True)
        pidfile.write_text(str(pid))
    assert main(["down"]) == 0
    assert sorted(stopped) == [11, 12]
    assert not list(tmp_path.rglob("*.pid"))


def test_an_unknown_redis_auth_mode_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_REDIS_AUTH", "tls")
    with pytest.raises(ValueError, match="TANDEM_REDIS_AUTH='tls': expected one of none, tls-acl"):
        infra.redis_auth()
    monkeypatch.delenv("TANDEM_REDIS_AUTH")
    assert infra.redis_auth() == "none"
