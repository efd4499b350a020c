"""Apache Kafka (single-node KRaft, jars from Maven Central), Redis and PostgreSQL on loopback, started on demand.

Idempotent: a broker, Redis or Postgres already answering on the configured port is reused and left running;
what this module starts it records in pid files and stops on request. KAFKA_BOOTSTRAP_SERVERS / REDIS_URL /
TANDEM_POSTGRES_URL, when set, point at existing servers and nothing is started.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path

from tandem_devstack import kafka_auth
from tandem_devstack.paths import REPO_ROOT, kafka_libs_dir, tandem_home
from tandem_devstack.processes import port_open, read_pid, spawn, stop_pid, wait_until
from tandem_shared.kafka import KafkaConnection, ensure_topics
from tandem_shared.redis.client import RedisAccess, connect_sync
from tandem_shared.secrets import SECRETS_DIRS_ENV

POM = REPO_ROOT / "devstack" / "kafka" / "pom.xml"
HOST = "127.0.0.1"


def kafka_port() -> int:
    return int(os.environ.get("TANDEM_KAFKA_PORT", "9092"))


def kafka_controller_port() -> int:
    return int(os.environ.get("TANDEM_KAFKA_CONTROLLER_PORT", str(kafka_port() + 1)))


def redis_port() -> int:
    return int(os.environ.get("TANDEM_REDIS_PORT", "6379"))


def postgres_port() -> int:
    # Not 5432: a system Postgres (Debian's package starts one) may hold it.
    return int(os.environ.get("TANDEM_POSTGRES_PORT", "15432"))


@dataclass
class Service:
    name: str
    address: str
    started_here: bool
    pidfile: Path | None = None
    # What a client needs besides the address (Redis with TLS and an ACL user: REDIS_USERNAME, …).
    env: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        if self.started_here and self.pidfile is not None:
            pid = read_pid(self.pidfile)
            if pid is not None:
                stop_pid(pid)
            self.pidfile.unlink(missing_ok=True)


def _apt_install(*packages: str) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(f"please install {' '.join(packages)} (Debian packages)")
    print(f"devstack: installing {' '.join(packages)} with apt-get", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env)


def ensure_prerequisites() -> None:
    """Java 17 and Maven (for the broker), redis-server, PostgreSQL (the console's production store), Chromium
    (browser tests), openssl (the throwaway CAs of the secured Kafka listeners and of Redis TLS): Debian's packages
    when missing. The JDK rather than the JRE: Kafka's tools that set up the secured listeners' users and ACLs run
    through Java's source launcher (`devstack/kafka/ToolBatch.java`)."""
    missing = []
    if shutil.which("java") is None or shutil.which("javac") is None:
        missing.append("openjdk-17-jdk-headless")
    if shutil.which("openssl") is None:
        missing.append("openssl")
    if shutil.which("mvn") is None:
        missing.append("maven")
    if shutil.which("redis-server") is None:
        missing.append("redis-server")
    if shutil.which("chromium") is None:
        missing.append("chromium")
    if postgres_bin() is None:
        missing.append("postgresql")
    if missing:
        _apt_install(*missing)
    kafka_libs()


def kafka_libs() -> Path:
    """Resolve the broker's jars once into .tandem/kafka/libs (Maven keeps its own cache in ~/.m2 too)."""
    libs = kafka_libs_dir()
    stamp = libs / ".pom-stamp"
    pom_text = POM.read_text()
    if stamp.exists() and stamp.read_text() == pom_text:
        return libs
    if libs.exists():
        shutil.rmtree(libs)
    libs.mkdir(parents=True)
    print("devstack: resolving Apache Kafka jars from Maven Central (first run only)", file=sys.stderr)
    subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
        ],
        check=True,
    )
    stamp.write_text(pom_text)
    return libs


def listeners() -> kafka_auth.Listeners:
    return kafka_auth.Listeners.for_port(kafka_port(), kafka_controller_port())


def kafka_home() -> Path:
    return tandem_home() / "kafka" / f"broker-{kafka_port()}"


def secured_listeners_open() -> bool:
    found = listeners()
    return port_open(HOST, found.ssl) and port_open(HOST, found.sasl_ssl) and kafka_credentials().ca.exists()


def kafka_credentials() -> kafka_auth.Credentials:
    """Certificates and SCRAM passwords of the local broker's users (made when the broker was first started)."""
    return kafka_auth.Credentials(kafka_home() / "security")


def _server_properties(data_dir: Path, listeners: kafka_auth.Listeners, creds: kafka_auth.Credentials) -> str:
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers={HOST}:{listeners.controller}",
            *kafka_auth.server_properties(listeners, creds),
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={data_dir / 'logs'}",
            "num.partitions=1",
            # Topics are created explicitly with their partition counts; a typo must fail, not create a topic.
            "auto.create.topics.enable=false",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=6",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "log.cleaner.backoff.ms=1000",
            "",
        ]
    )


def _try_ensure_topics(bootstrap: str) -> list[str] | None:
    """The topics created, or None while the broker cannot take the request yet."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if not port_open(host, int(port)):
        return None
    try:
        return asyncio.run(ensure_topics(KafkaConnection.from_env("tandem-devstack", bootstrap)))
    except Exception:  # the broker answers TCP before its controller is elected; keep waiting
        return None


def _kafka_ready(bootstrap: str) -> bool:
    return _try_ensure_topics(bootstrap) is not None


def create_topics(bootstrap: str, timeout: float = 120.0) -> list[str]:
    """Create Tandem's topics on a broker that may still be starting (docker compose, a fresh cluster).

    Returns the names created; topics that already exist are left as they are.
    """
    created: list[str] = []

    def attempt() -> bool:
        result = _try_ensure_topics(bootstrap)
        if result is None:
            return False
        created.extend(result)
        return True

    wait_until(attempt, timeout=timeout, what=f"Kafka at {bootstrap}")
    return created


def ensure_kafka(timeout: float = 120.0) -> Service:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        wait_until(lambda: _kafka_ready(external), timeout=timeout, what=f"Kafka at {external}")
        return Service("kafka", external, started_here=False)
    port = kafka_port()
    bootstrap = f"{HOST}:{port}"
    home = kafka_home()
    pidfile = home / "kafka.pid"
    if port_open(HOST, port) or read_pid(pidfile) is not None:
        # Someone else's broker (another terminal's devstack, a test session): use it, leave it running.
        wait_until(lambda: _kafka_ready(bootstrap), timeout=timeout, what=f"Kafka at {bootstrap}")
        return Service("kafka", bootstrap, started_here=False)
    libs = kafka_libs()
    home.mkdir(parents=True, exist_ok=True)
    props = home / "server.properties"
    users = kafka_auth.kafka_users()
    creds = kafka_auth.prepare(home / "security", users)
    props.write_text(_server_properties(home, listeners(), creds))
    props.chmod(0o600)  # it holds the keystore's password
    classpath = f"{libs}/*"
    formatted_here = not (home / "logs" / "meta.properties").exists()
    if formatted_here:
        cluster_id = subprocess.run(
            ["java", "-cp", classpath, "kafka.tools.StorageTool", "random-uuid"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        subprocess.run(
            [
                "java",
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                cluster_id,
                "-c",
                str(props),
                *kafka_auth.format_scram_args(creds, users),
            ],
            check=True,
            capture_output=True,
        )
    heap = os.environ.get("TANDEM_KAFKA_HEAP", "768m")
    proc = spawn(
        [
            "java",
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(props),
        ],
        log=home / "kafka.log",
    )
    pidfile.write_text(str(proc.pid))
    wait_until(lambda: _kafka_ready(bootstrap), timeout=timeout, what=f"Kafka at {bootstrap}")
    _apply_acls(home, classpath, bootstrap, users, creds, scram=not formatted_here)
    return Service("kafka", bootstrap, started_here=True, pidfile=pidfile)


def _apply_acls(
    home: Path,
    classpath: str,
    bootstrap: str,
    users: dict[str, list[kafka_auth.Acl]],
    creds: kafka_auth.Credentials,
    *,
    scram: bool,
) -> None:
    """The ACLs of k8s/base/kafka-users.yaml, through the plain (super-user) listener; again only when they changed.

    `scram`: also the users' SCRAM credentials (kafka-configs), unless `kafka-storage format` just made them: a
    broker home formatted before it had them, or a user added to the manifest since.
    """
    stamp = home / "security" / "applied"
    commands = [("org.apache.kafka.tools.AclCommand", args) for args in kafka_auth.acl_commands(users, bootstrap)]
    digest = kafka_auth.setup_digest(commands)
    if stamp.exists() and stamp.read_text() == digest:
        return
    if scram:
        commands += [("kafka.admin.ConfigCommand", args) for args in kafka_auth.scram_commands(creds, users, bootstrap)]
    kafka_auth.run_tools(classpath, commands, home / "security.log")
    stamp.write_text(digest)


def restart_kafka(timeout: float = 120.0) -> Service:
    """Stop the local broker (SIGTERM, as an orderly broker restart) and start it again on the same data.

    For the fault tests and for trying failure handling by hand; an external broker (KAFKA_BOOTSTRAP_SERVERS)
    is not ours to restart.
    """
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        raise RuntimeError("KAFKA_BOOTSTRAP_SERVERS names an external broker; it cannot be restarted from here")
    pidfile = tandem_home() / "kafka" / f"broker-{kafka_port()}" / "kafka.pid"
    pid = read_pid(pidfile)
    if pid is None:
        raise RuntimeError(f"no broker started by the devstack runs on port {kafka_port()}")
    stop_pid(pid, grace=60.0)
    pidfile.unlink(missing_ok=True)
    wait_until(lambda: not port_open(HOST, kafka_port()), timeout=timeout, what="the broker to stop")
    return ensure_kafka(timeout)


REDIS_AUTH_MODES = ("none", "tls-acl")
REDIS_USER = "tandem"


def redis_auth() -> str:
    """TANDEM_REDIS_AUTH: `none` (plain, no password) or `tls-acl` (rediss:// with a throwaway CA, and an ACL user
    `tandem` with a generated password; the default user is off) — the way production Redis is reached."""
    mode = os.environ.get("TANDEM_REDIS_AUTH", "none")
    if mode not in REDIS_AUTH_MODES:
        raise ValueError(f"TANDEM_REDIS_AUTH={mode!r}: expected one of {', '.join(REDIS_AUTH_MODES)}")
    return mode


def redis_answers(port: int) -> bool:
    """PING answered with PONG: an open port is not enough, Redis answers LOADING while it replays its AOF."""
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _redis_answers_as(url: str, access: RedisAccess) -> bool:
    try:
        with connect_sync(url, access=access) as client:
            return bool(client.ping())
    except Exception:  # not up yet (connection refused, TLS handshake on a closing socket, LOADING)
        return False


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=cwd)


def redis_home(port: int) -> Path:
    return tandem_home() / "redis" / f"redis-{port}"


def allow_secrets_dir(path: Path) -> None:
    """Let this process, and every process it starts (they inherit its environment), read `file:` references
    inside `path`, a directory of secrets the devstack made itself."""
    allowed = [d for d in os.environ.get(SECRETS_DIRS_ENV, "").split(os.pathsep) if d]
    if str(path) not in allowed:
        os.environ[SECRETS_DIRS_ENV] = os.pathsep.join([str(path), *allowed])


def _redis_tls_acl_files(home: Path) -> tuple[dict[str, str], list[str]]:
    """Client settings and redis-server arguments for `tls-acl`, made once per Redis home: a CA, a server
    certificate for 127.0.0.1 signed by it, and an ACL file with the user's password as a SHA-256 (the
    password itself only in a 0600 file the clients read through a `file:` reference)."""
    tls = home / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    password_file = home / "secrets" / "redis-password"
    if not (tls / "server.crt").exists():
        days = "825"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", days, "-subj", "/CN=tandem devstack CA",
                 "-keyout", "ca.key", "-out", "ca.crt", cwd=tls)  # fmt: skip
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
                 "-out", "server.csr", cwd=tls)  # fmt: skip
        (tls / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", days, "-extfile", "san.ext", "-out", "server.crt", cwd=tls)  # fmt: skip
    if not password_file.exists():
        password_file.parent.mkdir(parents=True, exist_ok=True)
        password_file.touch(mode=0o600)
        password_file.write_text(secrets.token_urlsafe(24))
    digest = hashlib.sha256(password_file.read_text().encode()).hexdigest()
    acl = home / "users.acl"
    acl.write_text(f"user default off\nuser {REDIS_USER} on #{digest} ~* &* +@all\n")
    acl.chmod(0o600)
    env = {
        "REDIS_USERNAME": REDIS_USER,
        "REDIS_PASSWORD": f"file:{password_file}",
        "REDIS_SSL_CA_FILE": str(tls / "ca.crt"),
    }
    args = [
        "--port", "0",
        "--tls-port", "{port}",
        "--tls-cert-file", str(tls / "server.crt"),
        "--tls-key-file", str(tls / "server.key"),
        "--tls-ca-cert-file", str(tls / "ca.crt"),
        "--tls-auth-clients", "no",
        "--aclfile", str(acl),
    ]  # fmt: skip
    return env, args


def ensure_redis(timeout: float = 30.0, *, port: int | None = None, auth: str | None = None) -> Service:
    """port and auth default to TANDEM_REDIS_PORT and TANDEM_REDIS_AUTH."""
    external = os.environ.get("REDIS_URL")
    if external:
        return Service("redis", external, started_here=False)
    port = port if port is not None else redis_port()
    auth = auth if auth is not None else redis_auth()
    home = redis_home(port)
    pidfile = home / "redis.pid"
    if auth == "tls-acl":
        env, listen = _redis_tls_acl_files(home)
        # The password is named by a `file:` reference: whoever reaches this Redis must allow its directory.
        allow_secrets_dir(home / "secrets")
        url = f"rediss://{HOST}:{port}/0"
        access = RedisAccess(env["REDIS_USERNAME"], env["REDIS_PASSWORD"], env["REDIS_SSL_CA_FILE"])

        def answers() -> bool:
            return _redis_answers_as(url, access)
    else:
        env, listen, url = {}, ["--port", "{port}"], f"redis://{HOST}:{port}/0"

        def answers() -> bool:
            return redis_answers(port)

    if port_open(HOST, port) or read_pid(pidfile) is not None:
        wait_until(answers, timeout=timeout, what=f"Redis at {url}")
        return Service("redis", url, started_here=False, env=env)
    if shutil.which("redis-server") is None:
        _apt_install("redis-server")
    home.mkdir(parents=True, exist_ok=True)
    proc = spawn(
        [
            "redis-server",
            "--bind",
            HOST,
            *(arg.format(port=port) for arg in listen),
            "--dir",
            str(home),
            "--save",
            "",
            # Held changes of paused instances live in Redis until resumed: they must survive a restart.
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--protected-mode",
            "yes",
        ],
        log=home / "redis.log",
    )
    pidfile.write_text(str(proc.pid))
    wait_until(answers, timeout=timeout, what=f"Redis at {url}")
    return Service("redis", url, started_here=True, pidfile=pidfile, env=env)


POSTGRES_DB = "tandem"
POSTGRES_USER = "postgres"


def postgres_bin() -> Path | None:
    """The newest installed server's bin directory (Debian keeps initdb and postgres off PATH, per version)."""
    found = sorted(glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path else None


def _postgres_ready(bindir: Path, port: int, database: str) -> bool:
    probe = [str(bindir / "pg_isready"), "-q", "-h", HOST, "-p", str(port), "-U", POSTGRES_USER, "-d", database]
    return subprocess.run(probe, check=False).returncode == 0


def ensure_postgres(timeout: float = 60.0) -> Service:
    """A PostgreSQL cluster of the devstack's own (data dir under TANDEM_HOME, TANDEM_POSTGRES_PORT) with a
    database `tandem`; trust authentication, on loopback only."""
    external = os.environ.get("TANDEM_POSTGRES_URL")
    if external:
        return Service("postgres", external, started_here=False)
    bindir = postgres_bin()
    if bindir is None:
        _apt_install("postgresql")
        bindir = postgres_bin()
        assert bindir is not None, "Debian's postgresql package installs its server under /usr/lib/postgresql"
    port = postgres_port()
    url = f"postgresql://{POSTGRES_USER}@{HOST}:{port}/{POSTGRES_DB}"
    home = tandem_home() / "postgres" / f"postgres-{port}"
    pidfile = home / "postgres.pid"
    if port_open(HOST, port) or read_pid(pidfile) is not None:
        wait_until(lambda: _postgres_ready(bindir, port, POSTGRES_DB), timeout=timeout, what=f"Postgres at {url}")
        return Service("postgres", url, started_here=False)
    # Postgres refuses to run as root: root (CI, containers) runs it as Debian's postgres account.
    user = "postgres" if os.geteuid() == 0 else None
    data = home / "data"
    home.mkdir(parents=True, exist_ok=True)
    if user is not None:
        shutil.chown(home, user=user)
        if subprocess.run(["test", "-w", str(home)], check=False, user=user).returncode != 0:
            # A home under a directory only root may enter (a checkout in /root): the cluster goes to the postgres
            # account's own home instead, one per devstack home and port.
            tag = hashlib.sha256(str(home).encode()).hexdigest()[:12]
            data = Path(pwd.getpwnam(user).pw_dir) / "tandem" / f"{port}-{tag}"
            data.parent.mkdir(parents=True, exist_ok=True)
            shutil.chown(data.parent, user=user)
    if not (data / "PG_VERSION").exists():
        subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", POSTGRES_USER, "--auth=trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
            user=user,
        )
    proc = spawn(
        [
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-c",
            f"listen_addresses={HOST}",
            # TCP only: no socket in /var/run/postgresql, which belongs to the system cluster.
            "-c",
            "unix_socket_directories=",
        ],
        log=home / "postgres.log",
        user=user,
    )
    pidfile.write_text(str(proc.pid))
    wait_until(lambda: _postgres_ready(bindir, port, "postgres"), timeout=timeout, what=f"Postgres on port {port}")
    created = subprocess.run(
        [str(bindir / "createdb"), "-h", HOST, "-p", str(port), "-U", POSTGRES_USER, POSTGRES_DB],
        check=False,
        capture_output=True,
        text=True,
    )
    if created.returncode != 0 and "already exists" not in created.stderr:
        raise RuntimeError(f"createdb {POSTGRES_DB} failed: {created.stderr.strip()}")
    return Service("postgres", url, started_here=True, pidfile=pidfile)
