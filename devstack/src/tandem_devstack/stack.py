"""The whole local stack as child processes: simulators, ingest, mapper, writer, console (and what later issues add).

Used by `make run` (foreground, demo instance, Ctrl-C stops everything) and by integration tests (free ports,
their own instance file), so both run the services exactly the same way.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tandem_devstack.paths import REPO_ROOT, tandem_home
from tandem_devstack.processes import spawn, stop_pid, wait_until
from tandem_shared.contact_hash import KEY_REF_ENV

DEMO_MAILCHIMP_API_KEY = "tandemdemo0000000000000000000000-us1"
DEMO_MAILCHIMP_AUDIENCE = "a1b2c3d4e5"
DEMO_ACCESSPLANIT_API_KEY = "tandem-demo-integration-key"
DEMO_ACCESSPLANIT_ADMIN_KEY = "tandem-demo-admin-key"
DEMO_ACCESSPLANIT_WEBHOOK_SECRET = "tandem-demo-accessplanit-webhook-secret"
DEMO_MAILCHIMP_WEBHOOK_SECRET = "tandem-demo-mailchimp-webhook-path-secret"
DEMO_ACCESSPLANIT_WEBHOOK_PATH_SECRET = "tandem-demo-accessplanit-webhook-path-secret"


@dataclass
class Ports:
    ingest: int = 8000
    mapper: int = 8001
    writer: int = 8002
    mailchimp_sim: int = 8101
    accessplanit_sim: int = 8102
    console: int = 8080

    @classmethod
    def from_env(cls) -> Ports:
        def get(name: str, default: int) -> int:
            return int(os.environ.get(name, default))

        return cls(
            ingest=get("TANDEM_INGEST_PORT", 8000),
            mapper=get("TANDEM_MAPPER_PORT", 8001),
            writer=get("TANDEM_WRITER_PORT", 8002),
            mailchimp_sim=get("MAILCHIMP_SIM_PORT", 8101),
            accessplanit_sim=get("ACCESSPLANIT_SIM_PORT", 8102),
            console=get("TANDEM_CONSOLE_PORT", 8080),
        )


@dataclass
class ServiceSpec:
    name: str
    module_args: list[str]
    port: int
    health_path: str
    # This process's own settings over the stack's: its Kafka user on a secured broker (TANDEM_KAFKA_AUTH).
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _uvicorn(app: str, port: int) -> list[str]:
    return [
        "uvicorn",
        app,
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--timeout-graceful-shutdown",
        "10",
        # An absolute deadline for each request's headers and body (uvicorn has none), and a bound on the
        # connections served at once (beyond it, 503).
        "--http",
        "tandem_shared.http_server:DeadlineProtocol",
        "--limit-concurrency",
        "1000",
    ]


def reconciler_spec(port: int) -> ServiceSpec:
    """The writer package's reconciler role, as docker compose and Kubernetes run it (beside writers with
    TANDEM_WRITER_RECONCILE_RUNS=false). Not one of `service_specs`: under `make run` the writer executes runs."""
    return ServiceSpec("reconciler", _uvicorn("tandem_writer.reconciler:create_app", port), port, "/health/live")


def service_specs(ports: Ports) -> list[ServiceSpec]:
    return [
        ServiceSpec("mailchimp-sim", ["mailchimp_sim"], ports.mailchimp_sim, "/_sim/health"),
        ServiceSpec("accessplanit-sim", ["accessplanit_sim"], ports.accessplanit_sim, "/_sim/health"),
        ServiceSpec(
            "ingest", _uvicorn("tandem_ingest.entrypoint:create_app", ports.ingest), ports.ingest, "/health/live"
        ),
        ServiceSpec(
            "mapper", _uvicorn("tandem_mapper.entrypoint:create_app", ports.mapper), ports.mapper, "/health/live"
        ),
        ServiceSpec(
            "writer", _uvicorn("tandem_writer.entrypoint:create_app", ports.writer), ports.writer, "/health/live"
        ),
        ServiceSpec("console", _uvicorn("tandem_console.app:create_app", ports.console), ports.console, "/health/live"),
    ]


def stack_env(
    *, kafka: str, redis: str, ports: Ports, data_dir: Path, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": kafka,
            "REDIS_URL": redis,
            "TANDEM_INGEST_PORT": str(ports.ingest),
            "TANDEM_CONSOLE_DATABASE_URL": f"sqlite:///{data_dir / 'console' / 'console.db'}",
            "MAILCHIMP_SIM_PORT": str(ports.mailchimp_sim),
            "MAILCHIMP_SIM_DATA_DIR": str(data_dir / "sim" / "mailchimp"),
            "ACCESSPLANIT_SIM_PORT": str(ports.accessplanit_sim),
            "ACCESSPLANIT_SIM_DATA_DIR": str(data_dir / "sim" / "accessplanit"),
            "TANDEM_DEMO_MAILCHIMP_URL": f"http://127.0.0.1:{ports.mailchimp_sim}/3.0",
            "TANDEM_DEMO_ACCESSPLANIT_URL": f"http://127.0.0.1:{ports.accessplanit_sim}",
            "TANDEM_DEMO_INGEST_URL": f"http://127.0.0.1:{ports.ingest}",
            "TANDEM_DEMO_SECRETS_DIR": str(data_dir / "secrets"),
            "TANDEM_DEMO_MAILCHIMP_API_KEY": DEMO_MAILCHIMP_API_KEY,
            "TANDEM_DEMO_ACCESSPLANIT_API_KEY": DEMO_ACCESSPLANIT_API_KEY,
            "TANDEM_DEMO_ACCESSPLANIT_WEBHOOK_SECRET": DEMO_ACCESSPLANIT_WEBHOOK_SECRET,
            "TANDEM_DEMO_MAILCHIMP_WEBHOOK_SECRET": DEMO_MAILCHIMP_WEBHOOK_SECRET,
            "TANDEM_DEMO_ACCESSPLANIT_WEBHOOK_PATH_SECRET": DEMO_ACCESSPLANIT_WEBHOOK_PATH_SECRET,
            "PYTHONUNBUFFERED": "1",
            # Development only: the instances' vendor URLs may name the simulators on loopback, and file: secret
            # references may be read from the demo's secrets directory (and any the caller already allows).
            "TANDEM_DEVELOPMENT_VENDOR_HOSTS": os.environ.get("TANDEM_DEVELOPMENT_VENDOR_HOSTS")
            or "127.0.0.1,localhost",
            "TANDEM_SECRETS_DIRS": os.pathsep.join(
                filter(None, [str(data_dir / "secrets"), os.environ.get("TANDEM_SECRETS_DIRS")])
            ),
        }
    )
    # The key of contacts' hashes in key names (tandem_shared.contact_hash): one per data directory, generated on
    # first start (`ensure_contact_hash_key`), unless the caller's environment names one (the test suite does).
    env.setdefault(KEY_REF_ENV, f"file:{data_dir / 'secrets' / 'contact-hash-key'}")
    env.update(extra or {})
    return env


def ensure_contact_hash_key(env: Mapping[str, str]) -> None:
    """Creates the key file `env` refers to, if it is a file that does not exist yet (0600, 32 random bytes).

    Never replaced once made: state in Redis is named by hashes under it."""
    scheme, _, path = env.get(KEY_REF_ENV, "").partition(":")
    if scheme != "file" or Path(path).exists():
        return
    Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as key_file:
        key_file.write(secrets.token_hex(32))


@dataclass
class RunningService:
    spec: ServiceSpec
    pid: int
    log: Path


@dataclass
class Stack:
    """Child processes started together and stopped together (reverse order: producers before consumers)."""

    env: dict[str, str]
    log_dir: Path
    running: list[RunningService] = field(default_factory=list)

    def start(self, spec: ServiceSpec, *, timeout: float = 60.0) -> RunningService:
        ensure_contact_hash_key(self.env)
        log = self.log_dir / f"{spec.name}.log"
        env = {**self.env, **spec.env}
        proc = spawn([sys.executable, "-m", *spec.module_args], log=log, env=env, cwd=REPO_ROOT)
        service = RunningService(spec, proc.pid, log)
        self.running.append(service)

        def healthy() -> bool:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{spec.name} exited with {proc.returncode}:\n{tail}")
            try:
                return httpx.get(spec.url + spec.health_path, timeout=1.0).status_code < 300
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout=timeout, what=spec.name)
        return service

    def stop(self, name: str | None = None) -> None:
        for service in reversed(list(self.running)):
            if name is None or service.spec.name == name:
                stop_pid(service.pid)
                self.running.remove(service)

    def kill(self, name: str) -> ServiceSpec:
        """SIGKILL, no chance to clean up — a crash, for the fault tests. Returns the spec to start it again."""
        for service in list(self.running):
            if service.spec.name == name:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(os.getpgid(service.pid), signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(service.pid, 0)
                self.running.remove(service)
                return service.spec
        raise KeyError(name)

    def terminate(self, name: str, *, timeout: float = 60.0) -> int:
        """SIGTERM and wait for the process to exit by itself (never SIGKILL); returns its exit code."""
        for service in list(self.running):
            if service.spec.name == name:
                os.kill(service.pid, signal.SIGTERM)
                deadline = time.monotonic() + timeout
                while (exited := os.waitpid(service.pid, os.WNOHANG))[0] == 0:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{name} did not exit within {timeout:.0f}s of SIGTERM")
                    time.sleep(0.1)
                self.running.remove(service)
                return os.waitstatus_to_exitcode(exited[1])
        raise KeyError(name)

    def logs(self, name: str) -> str:
        for service in self.running:
            if service.spec.name == name:
                return service.log.read_text(errors="replace")
        return ""


def default_data_dir() -> Path:
    return tandem_home() / "run"
