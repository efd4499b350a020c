"""`python -m tandem_devstack prerequisites|up|down|status|run|topics|demo` — the local stack behind make run /
make test, and the one-shot steps of docker compose."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from tandem_devstack import demo, infra, kafka_auth
from tandem_devstack.console_login import ConsoleLogin, ensure_console_login
from tandem_devstack.paths import tandem_home, test_home
from tandem_devstack.processes import read_pid, stop_pid
from tandem_devstack.stack import (
    DEMO_ACCESSPLANIT_ADMIN_KEY,
    DEMO_ACCESSPLANIT_API_KEY,
    DEMO_MAILCHIMP_API_KEY,
    DEMO_MAILCHIMP_AUDIENCE,
    Ports,
    ServiceSpec,
    Stack,
    default_data_dir,
    service_specs,
    stack_env,
)
from tandem_shared.contracts import InstanceConfig
from tandem_shared.instance_store import put_instance, read_instances
from tandem_shared.instances import demo_instance
from tandem_shared.kafka import KafkaConnection
from tandem_shared.secrets import SECRETS_DIRS_ENV

# Long enough for a broker started alongside (docker compose) to elect its controller.
TOPICS_TIMEOUT_S = 180.0
# Long enough for the simulators and ingest started alongside (docker compose) to answer.
DEMO_WAIT_S = 180.0


def cmd_prerequisites(_: argparse.Namespace) -> int:
    infra.ensure_prerequisites()
    return 0


def cmd_up(_: argparse.Namespace) -> int:
    infra.ensure_prerequisites()
    kafka, redis, postgres = infra.ensure_kafka(), infra.ensure_redis(), infra.ensure_postgres()
    print(f"Kafka     {kafka.address}  ({'started' if kafka.started_here else 'already running'})")
    print(f"Redis     {redis.address}  ({'started' if redis.started_here else 'already running'})")
    for name, value in redis.env.items():
        print(f"          {name}={value}")
    if redis.env:  # its password is a `file:` reference, readable only inside the secrets directories
        print(f"          {SECRETS_DIRS_ENV}={os.environ[SECRETS_DIRS_ENV]}")
    print(f"Postgres  {postgres.address}  ({'started' if postgres.started_here else 'already running'})")
    return 0


def _pidfiles() -> list[Path]:
    """What `up` and `run` started, and what a test session kept running (TANDEM_KEEP_STACK=1) in its own home."""
    return sorted({*tandem_home().glob("*/*/*.pid"), *test_home().glob("*/*/*.pid")})


def cmd_down(_: argparse.Namespace) -> int:
    for pidfile in _pidfiles():
        pid = read_pid(pidfile)
        if pid is not None:
            print(f"stopping {pidfile.stem} (pid {pid})")
            stop_pid(pid)
        pidfile.unlink(missing_ok=True)
    return 0


def cmd_restart_kafka(_: argparse.Namespace) -> int:
    kafka = infra.restart_kafka()
    print(f"Kafka  {kafka.address}  (restarted)")
    return 0


def cmd_status(_: argparse.Namespace) -> int:
    for pidfile in _pidfiles():
        pid = read_pid(pidfile)
        name = f"{pidfile.parent.name} (tests)" if pidfile.is_relative_to(test_home()) else pidfile.parent.name
        print(f"{name:24} {'running, pid ' + str(pid) if pid else 'not running'}")
    return 0


def _publish_demo_instance(bootstrap: str) -> InstanceConfig:
    """The demo instance on tandem.instances, unless one is there (an operator may have changed it since)."""
    kafka = KafkaConnection.from_env("tandem-devstack", bootstrap)
    instance = asyncio.run(read_instances(kafka)).get(demo_instance().id)
    if instance is None:
        instance = demo_instance()
        asyncio.run(put_instance(kafka, instance))
    return instance


def _register_demo_webhooks(
    endpoints: demo.Endpoints, bootstrap: str, secrets_dir: Path, instance: InstanceConfig
) -> None:
    demo.register_accessplanit_webhook(endpoints, instance.id)
    try:
        demo.register_mailchimp_webhook(endpoints, bootstrap, secrets_dir, instance)
    except Exception as exc:  # the accessplanit → Mailchimp direction works without it
        print(f"error: Mailchimp webhook not registered ({exc})", file=sys.stderr)


def cmd_topics(_: argparse.Namespace) -> int:
    """Create Tandem's topics (tandem_shared.contracts.topics.TOPICS) on the broker KAFKA_BOOTSTRAP_SERVERS names."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", f"{infra.HOST}:{infra.kafka_port()}")
    created = infra.create_topics(bootstrap, timeout=TOPICS_TIMEOUT_S)
    print(f"topics on {bootstrap}: created {', '.join(created) if created else 'none (all exist)'}")
    return 0


def cmd_console_login(args: argparse.Namespace) -> int:
    """The console's local operator login, made once into a folder (docker compose's one-shot `console-login`)."""
    login = ensure_console_login(Path(args.folder))
    made = "made" if login.new_password is not None else "kept"
    print(f"console login {made}: {login.name}, password in {login.password_file} (not printed)")
    return 0


def cmd_demo(_: argparse.Namespace) -> int:
    """Publish the demo instance and register its webhooks with the simulators named by TANDEM_DEMO_*_URL
    (docker compose, the dev overlay): what `make run` does on loopback."""
    try:
        endpoints = demo.Endpoints.from_env(os.environ)
        bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    except KeyError as missing:
        print(f"demo: set {missing.args[0]} (see docker-compose.yml)", file=sys.stderr)
        return 2
    # The default only when unset: computing it creates the devstack's home, which a read-only container has not.
    secrets_dir = Path(os.environ.get("TANDEM_DEMO_SECRETS_DIR") or default_data_dir() / "secrets")
    demo.wait_for_endpoints(endpoints, timeout=DEMO_WAIT_S)
    _register_demo_webhooks(endpoints, bootstrap, secrets_dir, _publish_demo_instance(bootstrap))
    print(f"demo instance published; accessplanit and Mailchimp deliver its webhooks to {endpoints.ingest}")
    return 0


def _banner(ports: Ports, kafka: str, redis: str) -> str:
    ap = f"http://127.0.0.1:{ports.accessplanit_sim}"
    mc = f"http://127.0.0.1:{ports.mailchimp_sim}"
    return f"""
Tandem is running (Ctrl-C stops everything started here).

  ingest (webhooks)        http://127.0.0.1:{ports.ingest}
  mapper                   http://127.0.0.1:{ports.mapper}/health/ready
  writer                   http://127.0.0.1:{ports.writer}/health/ready
  console (executions)     http://127.0.0.1:{ports.console}
  accessplanit simulator   {ap}/api/v2
  Mailchimp simulator      {mc}/3.0
  Kafka                    {kafka}
  Redis                    {redis}

Demo instance 'demo' syncs both ways between the two simulators.
  accessplanit API keys    {DEMO_ACCESSPLANIT_ADMIN_KEY} (a person)   {DEMO_ACCESSPLANIT_API_KEY} (Tandem's own)
  Mailchimp API key        {DEMO_MAILCHIMP_API_KEY}   audience {DEMO_MAILCHIMP_AUDIENCE}

Create a user in accessplanit:
  curl -s -X POST {ap}/api/v2/User -H 'Authorization: Bearer {DEMO_ACCESSPLANIT_ADMIN_KEY}' \\
       -H 'Content-Type: application/json' \\
       -d '{{"Forenames":"Ada","Surname":"Lovelace","Email":"ada@example.com","MainCompanyID":"2"}}'
Read the member back from Mailchimp:
  curl -s -u any:{DEMO_MAILCHIMP_API_KEY} {mc}/3.0/lists/{DEMO_MAILCHIMP_AUDIENCE}/members/ada@example.com
Edit it as a marketer would in Mailchimp (a signed webhook reaches ingest, a change lands on tandem.changes):
  curl -s -X PATCH {mc}/_sim/admin/lists/{DEMO_MAILCHIMP_AUDIENCE}/members/ada@example.com \\
       -H 'Content-Type: application/json' -d '{{"merge_fields":{{"FNAME":"Augusta"}}}}'
"""


def secured(specs: list[ServiceSpec], mode: str | None, env: Mapping[str, str]) -> list[ServiceSpec]:
    """With TANDEM_KAFKA_AUTH=mtls|scram, each service connects to the broker's SSL or SASL_SSL listener as its own
    Kafka user (k8s/base/kafka-users.yaml), under that user's ACLs; the simulators do not use Kafka."""
    if not mode:
        return specs
    creds, listeners = infra.kafka_credentials(), infra.listeners()
    for spec in specs:
        user = kafka_auth.SERVICE_USERS.get(spec.name)
        if user is not None:
            spec.env.update(creds.client_env(user, mode, listeners, {**env, **spec.env}))
    return specs


def _kafka_line(plain: str, auth: str | None) -> str:
    if auth is None:
        return plain
    listeners = infra.listeners()
    port = listeners.ssl if auth == "mtls" else listeners.sasl_ssl
    return f"{plain} (plain, admin); services on 127.0.0.1:{port} ({auth}, each as its own Kafka user)"


def _login_banner(login: ConsoleLogin) -> str:
    """To the terminal of `make run` only (never a log): the password in full once, when it was just made."""
    if login.new_password is not None:
        return (
            f"Console login (made now, shown this once): {login.name} / {login.new_password}\n"
            f"  kept in {login.password_file} (readable by you only)"
        )
    return f"Console login: {login.name}, password in {login.password_file}"


def cmd_run(_: argparse.Namespace) -> int:
    auth = os.environ.get("TANDEM_KAFKA_AUTH") or None
    if auth is not None and auth not in kafka_auth.MODES:
        print(f"TANDEM_KAFKA_AUTH={auth!r}: use one of {', '.join(kafka_auth.MODES)}", file=sys.stderr)
        return 2
    infra.ensure_prerequisites()
    kafka, redis = infra.ensure_kafka(), infra.ensure_redis()
    if auth is not None and not infra.secured_listeners_open():
        print(
            f"TANDEM_KAFKA_AUTH={auth}: the broker at {kafka.address} has no secured listeners (started by an older"
            " devstack?); stop it with `python -m tandem_devstack down` and run again",
            file=sys.stderr,
        )
        return 2
    ports = Ports.from_env()
    data_dir = default_data_dir()
    login = ensure_console_login(data_dir)
    stack = Stack(
        env=stack_env(
            kafka=kafka.address,
            redis=redis.address,
            ports=ports,
            data_dir=data_dir,
            extra={**redis.env, **login.env()},
        ),
        log_dir=data_dir / "logs",
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        os.environ.update(stack.env)  # the demo instance takes the simulators' URLs from it
        instance = _publish_demo_instance(kafka.address)
        for spec in secured(service_specs(ports), auth, stack.env):
            print(f"starting {spec.name} on {spec.url}", flush=True)
            stack.start(spec)
        _register_demo_webhooks(
            demo.Endpoints.from_env(stack.env), kafka.address, Path(stack.env["TANDEM_DEMO_SECRETS_DIR"]), instance
        )
        print(_banner(ports, _kafka_line(kafka.address, auth), redis.address), flush=True)
        print(_login_banner(login), flush=True)
        print(f"logs: {data_dir / 'logs'}", flush=True)
        stop.wait()
    finally:
        print("\nstopping…", flush=True)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.stop()
        redis.stop()
        kafka.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tandem-devstack")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, help_ in [
        (
            "prerequisites",
            cmd_prerequisites,
            "install Java/Maven/redis-server/postgresql if missing, resolve Kafka jars",
        ),
        ("up", cmd_up, "start Kafka, Redis and Postgres (the console's production store) in the background"),
        ("down", cmd_down, "stop what 'up' started"),
        ("status", cmd_status, "show what is running"),
        ("restart-kafka", cmd_restart_kafka, "stop the local broker and start it again (try failure handling)"),
        ("run", cmd_run, "the whole stack in the foreground, with the demo instance"),
        ("topics", cmd_topics, "create Tandem's topics on KAFKA_BOOTSTRAP_SERVERS (waits for the broker)"),
        ("demo", cmd_demo, "publish the demo instance, register its webhooks at TANDEM_DEMO_*_URL"),
    ]:
        sub.add_parser(name, help=help_).set_defaults(fn=fn)
    login = sub.add_parser("console-login", help="make the console's local operator login once, into FOLDER")
    login.add_argument("folder")
    login.set_defaults(fn=cmd_console_login)
    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    raise SystemExit(main())
