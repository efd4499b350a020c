"""Starting, finding and stopping the background processes the devstack owns."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_PICK_BELOW = 12_000  # how far below the ephemeral range ports are picked
_given: set[int] = set()  # never the same port twice from one process: the first may not be bound yet


def free_port() -> int:
    """A loopback port nothing listens on now, for a process about to start.

    Picked below the kernel's ephemeral range. A port from that range (what binding port 0 gives) can be taken
    before the process binds it, as the local end of any outgoing connection: a service started first connecting
    to Kafka took a test stack's mapper port that way. The kernel never gives ports below the range to outgoing
    connections.
    """
    low = ephemeral_low()
    for _ in range(100):
        port = random.randint(max(1024, low - _PICK_BELOW), low - 1)
        if port not in _given and port_free(port):
            _given.add(port)
            return port
    with socket.socket() as s:  # everything tried is taken: a port the kernel picks
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ephemeral_low(source: Path = _EPHEMERAL_RANGE) -> int:
    """The first port of the kernel's ephemeral range; Linux's default where it cannot be read (not Linux)."""
    try:
        return int(source.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def spawn(
    argv: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start a process in its own session, so Ctrl-C in the terminal reaches us first and we stop it in order.

    user: run it as that account (a server that refuses to run as root, started by root)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            user=user,
        )


def stop_pid(pid: int, *, grace: float = 20.0) -> None:
    """SIGTERM the process group, wait for a graceful exit, then SIGKILL what is left."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not pid_alive(pid):
            break
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def wait_until(predicate: object, *, timeout: float, what: str, interval: float = 0.2) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} did not come up within {timeout:.0f}s")
