"""The local broker's secured listeners: SSL (mTLS) and SASL_SSL (SCRAM), with ACLs, beside the plain one.

One broker, three listeners. The plain listener is unchanged for everything that uses it (the test suite, the
devstack's own topic and instance set-up): its principal, User:ANONYMOUS, is a super user. On the secured ones each
Kafka user of `k8s/base/kafka-users.yaml` is a principal of its own, the same name either way: its certificate's CN
(mapped by ssl.principal.mapping.rules, as Strimzi's `CN=<user>` would be) or its SCRAM username. StandardAuthorizer
holds the ACLs, generated from that file by `acl_commands` for Kafka's own `kafka-acls`; no ACL, no access.

Credentials are made when a broker home is first formatted (`prepare`): a throwaway CA, the broker's certificate,
one client certificate and one SCRAM password per user, all under the broker home's `security/`.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tandem_devstack import certs
from tandem_devstack.paths import REPO_ROOT
from tandem_shared.secrets import SECRETS_DIRS_ENV

KAFKA_USERS = REPO_ROOT / "k8s" / "base" / "kafka-users.yaml"
ACL_BATCH = REPO_ROOT / "devstack" / "kafka" / "ToolBatch.java"
SCRAM = "SCRAM-SHA-512"
# The tools' admin clients log their whole configuration at INFO, once per call.
QUIET = "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn"
HOST = "127.0.0.1"
# Which Kafka user each process of the stack connects as (the KafkaUser its manifest mounts).
SERVICE_USERS = {
    "ingest": "tandem-ingest",
    "mapper": "tandem-mapper",
    "writer": "tandem-writer",
    "console": "tandem-console",
}
OPERATOR = "tandem-operator"  # people and the `tandem` CLI
MODES = ("mtls", "scram")
# Strimzi's patternType → kafka-acls's --resource-pattern-type.
PATTERN_TYPES = {"literal": "LITERAL", "prefix": "PREFIXED"}


Entry = tuple[str, str, str, str, str]  # principal, resource type, name, pattern type, OPERATION


@dataclass(frozen=True)
class Acl:
    principal: str
    resource_type: str  # topic | group | cluster
    name: str
    pattern: str  # literal | prefix
    operations: tuple[str, ...]


def kafka_users(path: Path = KAFKA_USERS) -> dict[str, list[Acl]]:
    """Each KafkaUser's ACLs, as the manifest states them."""
    users: dict[str, list[Acl]] = {}
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc or doc.get("kind") != "KafkaUser":
            continue
        name = doc["metadata"]["name"]
        users[name] = [
            Acl(
                name,
                acl["resource"]["type"],
                acl["resource"].get("name", "kafka-cluster"),
                acl["resource"].get("patternType", "literal"),
                tuple(acl["operations"]),
            )
            for acl in doc["spec"].get("authorization", {}).get("acls", [])
        ]
    return users


def acl_commands(users: Mapping[str, Sequence[Acl]], bootstrap: str) -> list[list[str]]:
    """`kafka-acls --add` arguments granting exactly the ACLs of `users` (one command per ACL entry)."""
    commands = []
    for acls in users.values():
        for acl in acls:
            resource = {"topic": ["--topic", acl.name], "group": ["--group", acl.name], "cluster": ["--cluster"]}
            args = ["--bootstrap-server", bootstrap, "--add", "--allow-principal", f"User:{acl.principal}"]
            args += [*resource[acl.resource_type], "--resource-pattern-type", PATTERN_TYPES[acl.pattern]]
            for operation in acl.operations:
                args += ["--operation", operation]
            commands.append(args)
    return commands


def granted(commands: Iterable[Sequence[str]]) -> set[Entry]:
    """(principal, resource type, name, pattern, operation) each command grants: what the broker is asked to hold,
    read back from the commands themselves, for the drift check against the manifest."""
    out = set()
    for args in commands:
        principal = args[args.index("--allow-principal") + 1].removeprefix("User:")
        pattern = {v: k for k, v in PATTERN_TYPES.items()}[args[args.index("--resource-pattern-type") + 1]]
        if "--topic" in args:
            kind, name = "topic", args[args.index("--topic") + 1]
        elif "--group" in args:
            kind, name = "group", args[args.index("--group") + 1]
        else:
            kind, name = "cluster", "kafka-cluster"
        operations = [_operation(args[i + 1]) for i, a in enumerate(args) if a == "--operation"]
        out |= {(principal, kind, name, pattern, op) for op in operations}
    return out


def _operation(name: str) -> str:
    """Strimzi's and kafka-acls's spelling (Read, DescribeConfigs) as the broker lists it (READ, DESCRIBE_CONFIGS)."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).upper()


_LISTED_RESOURCE = re.compile(r"resourceType=(\w+), name=(.*?), patternType=(\w+)\)")
_LISTED_ENTRY = re.compile(r"principal=User:([^,]+), host=\*, operation=(\w+), permissionType=ALLOW")


def list_acls(classpath: str, bootstrap: str) -> set[Entry]:
    """The ACLs the broker holds (`kafka-acls --list`), in `granted`'s terms."""
    result = subprocess.run(
        ["java", QUIET, "-cp", classpath, str(ACL_BATCH)],
        input="\t".join(["org.apache.kafka.tools.AclCommand", "--bootstrap-server", bootstrap, "--list"]) + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    held = set()
    resource: tuple[str, str, str] | None = None
    patterns = {v: k for k, v in PATTERN_TYPES.items()}
    for line in result.stdout.splitlines():
        if found := _LISTED_RESOURCE.search(line):
            kind, name, pattern = found.groups()
            resource = (kind.lower(), name, patterns.get(pattern, pattern.lower()))
        elif (entry := _LISTED_ENTRY.search(line)) and resource is not None:
            held.add((entry.group(1), *resource, entry.group(2)))
    return held


@dataclass(frozen=True)
class Listeners:
    plain: int
    controller: int
    ssl: int
    sasl_ssl: int

    @classmethod
    def for_port(cls, port: int, controller: int) -> Listeners:
        ssl = int(os.environ.get("TANDEM_KAFKA_SSL_PORT", str(port + 2)))
        return cls(port, controller, ssl, int(os.environ.get("TANDEM_KAFKA_SASL_SSL_PORT", str(port + 3))))


@dataclass(frozen=True)
class Credentials:
    """What `prepare` made under a broker home: where clients find their certificates and passwords."""

    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca" / "ca.crt"

    @property
    def keystore(self) -> Path:
        return self.directory / "broker.p12"

    @property
    def keystore_password(self) -> Path:
        return self.directory / "broker.p12.password"

    def cert(self, user: str) -> certs.Issued:
        return certs.Issued(self.directory / "users" / f"{user}.crt", self.directory / "users" / f"{user}.key")

    def password_file(self, user: str) -> Path:
        return self.directory / "scram" / f"{user}.password"

    def client_env(
        self, user: str, mode: str, listeners: Listeners, env: Mapping[str, str] = os.environ
    ) -> dict[str, str]:
        """The KAFKA_* settings that make a Tandem process connect as `user` ("mtls" or "scram"); for SCRAM also
        `TANDEM_SECRETS_DIRS`, the password's directory added to those `env` (the process's environment) allows:
        `file:` references are read only there."""
        if mode == "mtls":
            cert = self.cert(user)
            return {
                "KAFKA_BOOTSTRAP_SERVERS": f"{HOST}:{listeners.ssl}",
                "KAFKA_SECURITY_PROTOCOL": "SSL",
                "KAFKA_SSL_CA_FILE": str(self.ca),
                "KAFKA_SSL_CERT_FILE": str(cert.cert),
                "KAFKA_SSL_KEY_FILE": str(cert.key),
            }
        if mode == "scram":
            return {
                "KAFKA_BOOTSTRAP_SERVERS": f"{HOST}:{listeners.sasl_ssl}",
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SSL_CA_FILE": str(self.ca),
                "KAFKA_SASL_MECHANISM": SCRAM,
                "KAFKA_SASL_USERNAME": user,
                "KAFKA_SASL_PASSWORD": f"file:{self.password_file(user)}",
                SECRETS_DIRS_ENV: os.pathsep.join(
                    filter(None, [str(self.password_file(user).parent), env.get(SECRETS_DIRS_ENV)])
                ),
            }
        raise ValueError(f"TANDEM_KAFKA_AUTH={mode!r}: use one of {', '.join(MODES)}")


def prepare(directory: Path, users: Iterable[str]) -> Credentials:
    """The CA, each user's certificate and SCRAM password, the broker's keystore: what is missing is made (a user
    added to kafka-users.yaml since gets its own), what is there is kept."""
    creds = Credentials(directory)
    ca = certs.Issued(creds.ca, creds.ca.with_suffix(".key"))
    if not ca.cert.exists():
        certs.make_ca(ca.cert.parent)
    (directory / "scram").mkdir(exist_ok=True)
    for user in users:
        if not creds.cert(user).cert.exists():
            certs.issue(ca, directory / "users", user)
        if not creds.password_file(user).exists():
            creds.password_file(user).write_text(secrets.token_urlsafe(18))
            creds.password_file(user).chmod(0o600)
    if creds.keystore.exists():
        return creds
    broker = certs.issue(ca, directory / "broker", "tandem-devstack-broker", server=True)
    password = secrets.token_urlsafe(18)
    creds.keystore_password.write_text(password)
    creds.keystore_password.chmod(0o600)
    # PKCS12: the broker's PEM keystore would insist on an encrypted key; this keeps every key file plain PEM.
    result = subprocess.run(
        [
            "openssl", "pkcs12", "-export", "-in", str(broker.cert), "-inkey", str(broker.key),
            "-certfile", str(ca.cert), "-name", "broker", "-out", str(creds.keystore), "-passout", "stdin",
        ],
        input=password, capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"openssl pkcs12 failed: {result.stderr.strip()}")
    return creds


def server_properties(listeners: Listeners, creds: Credentials) -> list[str]:
    """The broker settings for the three listeners and the authorizer (the plain and controller lines included)."""
    plain, ssl, sasl = f"{HOST}:{listeners.plain}", f"{HOST}:{listeners.ssl}", f"{HOST}:{listeners.sasl_ssl}"
    controller = f"{HOST}:{listeners.controller}"
    return [
        f"listeners=PLAINTEXT://{plain},CONTROLLER://{controller},SSL://{ssl},SASL_SSL://{sasl}",
        f"advertised.listeners=PLAINTEXT://{plain},CONTROLLER://{controller},SSL://{ssl},SASL_SSL://{sasl}",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        # The plain and controller listeners authenticate nobody: everything on them is User:ANONYMOUS, the admin.
        "super.users=User:ANONYMOUS",
        "allow.everyone.if.no.acl.found=false",
        "ssl.keystore.type=PKCS12",
        f"ssl.keystore.location={creds.keystore}",
        f"ssl.keystore.password={creds.keystore_password.read_text()}",
        f"ssl.key.password={creds.keystore_password.read_text()}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={creds.ca}",
        "listener.name.ssl.ssl.client.auth=required",
        "ssl.principal.mapping.rules=RULE:^CN=([^,]+)$/$1/,DEFAULT",
        f"sasl.enabled.mechanisms={SCRAM}",
        f"listener.name.sasl_ssl.{SCRAM.lower()}.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required;",
    ]


def format_scram_args(creds: Credentials, users: Iterable[str]) -> list[str]:
    """`kafka-storage format` arguments that create each user's SCRAM credential with the metadata log."""
    args = []
    for user in users:
        args += ["--add-scram", f"{SCRAM}=[name={user},password={creds.password_file(user).read_text()}]"]
    return args


def scram_commands(creds: Credentials, users: Iterable[str], bootstrap: str) -> list[list[str]]:
    """`kafka-configs` arguments for the same credentials, for a broker home formatted before it had them."""
    return [
        [
            "--bootstrap-server", bootstrap, "--alter", "--entity-type", "users", "--entity-name", user,
            "--add-config", f"{SCRAM}=[password={creds.password_file(user).read_text()}]",
        ]
        for user in users
    ]  # fmt: skip


def run_tools(classpath: str, commands: Sequence[tuple[str, Sequence[str]]], log: Path) -> None:
    """Run Kafka's command-line tools (main class, arguments) in one JVM: one JVM start per tool call would add
    seconds per ACL to the broker's first start. Their output goes to `log` (it names no secret)."""
    lines = "".join("\t".join([tool, *args]) + "\n" for tool, args in commands)
    with log.open("a") as out:
        result = subprocess.run(
            ["java", QUIET, "-cp", classpath, str(ACL_BATCH)],
            input=lines,
            text=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if result.returncode != 0:
        raise RuntimeError(f"Kafka's tools failed to set up users and ACLs; see {log}")


def setup_digest(*parts: Any) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()
