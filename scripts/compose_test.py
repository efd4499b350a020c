"""The compose part of `make image-test`: docker-compose.yml with its host-network override, brought up by
podman-compose on free loopback ports, the README's quick-start curl run against it, and always brought down.

scripts/image-test calls this after building the images the compose file names (the runtime and dev targets as
tandem:local and tandem-dev:local, Kafka and Redis built locally from the devstack's jars and Debian's packages as
apache/kafka and redis), with the container engine's settings in its environment (CONTAINERS_CONF, …).

Without systemd, podman runs no healthcheck on its own, and podman-compose ignores `service_healthy` conditions
below podman 4.6 (Debian's is 4.3); podman 4.3 also fails to start a container whose `--requires` dependency has
dependencies of its own ("generating dependency graph … not found in input list"). So the stack comes up here the
way Docker Compose would bring it up: `up -d --no-deps` one stage of the compose file's depends_on at a time, each
stage's conditions checked before the next — readiness by running each service's own compose healthcheck by
hand (`podman healthcheck run`), completion by the one-shot's exit status.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
PROJECT = "tandem-image-test"
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.hostnet.yml")
PORT_VARIABLES = (
    "TANDEM_KAFKA_PORT",
    "TANDEM_KAFKA_CONTROLLER_PORT",
    "TANDEM_REDIS_PORT",
    "TANDEM_INGEST_PORT",
    "TANDEM_MAPPER_PORT",
    "TANDEM_WRITER_PORT",
    "TANDEM_RECONCILER_PORT",
    "TANDEM_CONSOLE_PORT",
    "MAILCHIMP_SIM_PORT",
    "ACCESSPLANIT_SIM_PORT",
)
READY_TIMEOUT_S = 300.0
FLOW_TIMEOUT_S = 120.0
# The README's quick start (README.md, "Quick start"), on the override's ports.
DEMO_ADMIN_KEY = "tandem-demo-admin-key"
MAILCHIMP_DEMO_KEY = "tandemdemo0000000000000000000000-us1"
AUDIENCE = "a1b2c3d4e5"


class Failed(Exception):
    pass


def log(message: str) -> None:
    print(f"compose-test: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def podman_compose() -> str:
    """The podman-compose of the project's virtualenv (requirements-dev.txt): a missing one fails loudly."""
    found = Path(sys.executable).parent / "podman-compose"
    if not found.exists():
        raise Failed(f"{found} is missing: run `make install` (podman-compose is in requirements-dev.txt)")
    return str(found)


class Compose:
    def __init__(self, env: dict[str, str], log_file: Path) -> None:
        self.env = env
        self.log_file = log_file
        self.base = [podman_compose(), "-p", PROJECT]
        for name in COMPOSE_FILES:
            self.base += ["-f", str(REPO / name)]

    def run(self, *args: str, check: bool = True) -> int:
        with self.log_file.open("a") as out:
            out.write(f"\n$ podman-compose {' '.join(args)}\n")
            out.flush()
            done = subprocess.run([*self.base, *args], env=self.env, cwd=REPO, stdout=out, stderr=out, check=False)
        if check and done.returncode != 0:
            raise Failed(f"podman-compose {' '.join(args)} exited {done.returncode} (log: {self.log_file})")
        return done.returncode


def container(service: str) -> str:
    return f"{PROJECT}_{service}_1"


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=False)


def wait_until(what: str, check: Callable[[], bool], timeout: float = READY_TIMEOUT_S) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise Failed(f"{what}: not within {timeout:.0f} s")
        time.sleep(1)
    return time.monotonic() - started


def healthy(service: str) -> Callable[[], bool]:
    """The compose file's own healthcheck of the service, run by hand (no systemd timer runs it here)."""
    return lambda: podman("healthcheck", "run", container(service)).returncode == 0


def exited(service: str) -> int | None:
    state = podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", container(service)).stdout.split()
    if len(state) == 2 and state[0] in ("exited", "stopped"):
        return int(state[1])
    return None


def http(method: str, url: str, body: dict[str, object] | None = None, auth: str | None = None) -> bytes:
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None)
    request.add_header("Content-Type", "application/json")
    if auth:
        request.add_header("Authorization", auth)
    with urllib.request.urlopen(request, timeout=10) as response:
        data: bytes = response.read()
        return data


def member_arrived(url: str, basic: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            member = json.loads(http("GET", url, auth=basic))
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return bool(member.get("merge_fields", {}).get("FNAME") == "Ada")

    return check


def stages(compose_file: Path) -> list[list[str]]:
    """The compose file's services in the order its depends_on allows: each stage depends only on earlier ones."""
    services = yaml.safe_load(compose_file.read_text(encoding="utf-8"))["services"]
    needs = {name: set(service.get("depends_on") or ()) for name, service in services.items()}
    ordered: list[list[str]] = []
    done: set[str] = set()
    while len(done) < len(needs):
        stage = sorted(name for name, deps in needs.items() if name not in done and deps <= done)
        if not stage:
            raise Failed(f"depends_on has a cycle among {sorted(set(needs) - done)}")
        ordered.append(stage)
        done.update(stage)
    return ordered


def up_and_check(compose: Compose, ports: dict[str, str], passed: list[str]) -> None:
    services = yaml.safe_load((REPO / COMPOSE_FILES[0]).read_text(encoding="utf-8"))["services"]
    for stage in stages(REPO / COMPOSE_FILES[0]):
        compose.run("up", "-d", "--no-deps", *stage)
        for service in stage:
            if "healthcheck" in services[service]:
                waited = wait_until(f"{service}'s healthcheck", healthy(service))
                passed.append(f"{service} passes its compose healthcheck")
                log(f"ok: {service} passes its compose healthcheck ({waited:.0f} s)")
            else:  # a one-shot step
                wait_until(f"the one-shot {service} to finish", lambda service=service: exited(service) is not None)
                code = exited(service)
                if code != 0:
                    raise Failed(f"the one-shot {service} exited {code}")
                passed.append(f"{service} exited 0")
                log(f"ok: the one-shot {service} exited 0")

    # README.md's quick start: a user created in accessplanit is a Mailchimp member a moment later.
    email = f"compose-test-{int(time.time())}@example.com"
    http(
        "POST",
        f"http://127.0.0.1:{ports['ACCESSPLANIT_SIM_PORT']}/api/v2/User",
        {"Forenames": "Ada", "Surname": "Lovelace", "Email": email, "Phone": "01632 960000", "MainCompanyID": "2"},
        auth=f"Bearer {DEMO_ADMIN_KEY}",
    )
    basic = "Basic " + base64.b64encode(f"any:{MAILCHIMP_DEMO_KEY}".encode()).decode()
    url = f"http://127.0.0.1:{ports['MAILCHIMP_SIM_PORT']}/3.0/lists/{AUDIENCE}/members/{email}"
    waited = wait_until(
        f"the README's user reaching the Mailchimp simulator ({url})", member_arrived(url, basic), FLOW_TIMEOUT_S
    )
    passed.append("the README's curl: the accessplanit user arrived as a Mailchimp member")
    log(f"ok: the README's accessplanit user arrived as a Mailchimp member ({waited:.0f} s)")


def main() -> int:
    home = Path(os.environ.get("TANDEM_HOME", REPO / ".tandem")) / "image"
    home.mkdir(parents=True, exist_ok=True)
    log_file = home / "compose.log"
    log_file.write_text("")
    ports = {name: str(free_port()) for name in PORT_VARIABLES}
    env = {**os.environ, **ports}
    passed: list[str] = []
    started = time.monotonic()
    try:
        compose = Compose(env, log_file)
    except Failed as failure:
        log(f"FAILED: {failure}")
        return 1
    try:
        compose.run("config", "--quiet")
        compose.run("down", "-v", check=False)  # an earlier run's leftovers
        up_and_check(compose, ports, passed)
    except (Failed, OSError) as failure:  # OSError: the README's curl refused (urllib's errors are OSErrors)
        log(f"FAILED: {failure}")
        for service in yaml.safe_load((REPO / COMPOSE_FILES[0]).read_text(encoding="utf-8"))["services"]:
            tail = podman("logs", "--tail", "15", container(service))
            log(f"--- last lines of {service}")
            print("".join(f"    {line}\n" for line in (tail.stdout + tail.stderr).splitlines()), file=sys.stderr)
        return 1
    finally:
        compose.run("down", "-v", "-t", "10", check=False)
        log(f"compose stack up, checked and down in {time.monotonic() - started:.0f} s")
    print(f"compose-test: {len(passed)} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
