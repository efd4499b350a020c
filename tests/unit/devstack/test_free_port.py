"""Ports for the processes a stack starts: below the kernel's ephemeral range, free when picked."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tandem_devstack import processes
from tandem_devstack.processes import ephemeral_low, free_port, port_free


def test_ports_are_picked_below_the_ephemeral_range_and_are_free() -> None:
    low = ephemeral_low()
    picked = [free_port() for _ in range(50)]
    ports = set(picked)
    assert len(ports) == len(picked)  # none handed out twice
    assert all(1024 <= port < low for port in ports)
    assert all(port_free(port) for port in ports)


def test_a_port_in_use_is_not_free() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert not port_free(s.getsockname()[1])


def test_the_range_is_read_from_the_kernel_and_defaults_where_it_cannot_be(tmp_path: Path) -> None:
    source = tmp_path / "ip_local_port_range"
    source.write_text("40000\t60999\n")
    assert ephemeral_low(source) == 40000
    assert ephemeral_low(tmp_path / "missing") == 32768
    source.write_text("")
    assert ephemeral_low(source) == 32768


def test_when_every_pick_is_taken_the_kernel_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes, "port_free", lambda port: False)
    assert free_port() >= ephemeral_low()  # what binding port 0 gives
