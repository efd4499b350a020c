"""`make bench` stops what it started (a redis-server left behind was reused, and never stopped, by `make run`)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tandem_bench.stack import bench_infra
from tandem_devstack import infra
from tandem_devstack.processes import free_port, pid_alive, port_open, spawn, wait_until


@pytest.fixture
def own_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A home and ports of this test's own; the broker is a stand-in process (what is checked is who stops it)."""
    monkeypatch.setenv("TANDEM_HOME", str(tmp_path))
    monkeypatch.setenv("TANDEM_REDIS_PORT", str(free_port()))
    monkeypatch.setenv("TANDEM_KAFKA_PORT", str(free_port()))
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    yield tmp_path
    for pidfile in tmp_path.rglob("*.pid"):  # whatever a failing test left running
        infra.Service("leftover", "", started_here=True, pidfile=pidfile).stop()


def stand_in_broker(home: Path) -> Path:
    """A process listening on the broker's port, recorded as the devstack records the broker; its pid file."""
    port = infra.kafka_port()
    broker_dir = home / "kafka" / f"broker-{port}"
    listen = f"import socket, time; s = socket.create_server(('127.0.0.1', {port})); time.sleep(120)"
    proc = spawn([sys.executable, "-c", listen], log=broker_dir / "kafka.log")
    pidfile = broker_dir / "kafka.pid"
    pidfile.write_text(str(proc.pid))
    wait_until(lambda: port_open(infra.HOST, port), timeout=10, what="the stand-in broker")
    return pidfile


def broker_started_by_bench(home: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """`ensure_kafka` starts a stand-in; the pids it started."""
    pids: list[int] = []

    def ensure_kafka() -> infra.Service:
        pidfile = stand_in_broker(home)
        pids.append(int(pidfile.read_text()))
        return infra.Service("kafka", f"127.0.0.1:{infra.kafka_port()}", started_here=True, pidfile=pidfile)

    monkeypatch.setattr(infra, "ensure_kafka", ensure_kafka)
    return pids


def test_a_run_stops_the_redis_and_the_broker_it_started_and_empties_the_broker(
    own_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker_pids = broker_started_by_bench(own_home, monkeypatch)
    with bench_infra() as started:
        assert infra.redis_answers(infra.redis_port())
        assert started.redis == f"redis://127.0.0.1:{infra.redis_port()}/0"
        assert started.kafka_started_here
    assert not infra.redis_answers(infra.redis_port())
    [broker_pid] = broker_pids
    assert not pid_alive(broker_pid)
    assert not (own_home / "kafka" / f"broker-{infra.kafka_port()}").exists()
    assert not list(own_home.rglob("*.pid"))


def test_a_run_that_fails_stops_them_too(own_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broker_pids = broker_started_by_bench(own_home, monkeypatch)
    with pytest.raises(RuntimeError, match="phase broke"), bench_infra():
        raise RuntimeError("phase broke")
    assert not infra.redis_answers(infra.redis_port())
    assert not any(pid_alive(pid) for pid in broker_pids)
    assert not list(own_home.rglob("*.pid"))


def test_servers_that_were_running_already_are_left_running(own_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pidfile = stand_in_broker(own_home)
    address = f"127.0.0.1:{infra.kafka_port()}"
    monkeypatch.setattr(infra, "ensure_kafka", lambda: infra.Service("kafka", address, started_here=False))
    redis = infra.ensure_redis()
    try:
        with bench_infra() as started:
            assert not started.kafka_started_here
        assert infra.redis_answers(infra.redis_port())
        assert pid_alive(int(pidfile.read_text()))
        assert (own_home / "kafka" / f"broker-{infra.kafka_port()}" / "kafka.log").exists()
    finally:
        redis.stop()
