"""Tandem on the secured listeners of the test broker: each service as its own Kafka user, held to its ACLs
(k8s/base/kafka-users.yaml, applied by the devstack); credentials the broker does not accept are named as such."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

from support.groups import start_at_end
from support.sims import Sims
from support.stack import RunningStack, running_stack
from support.topics import wait_for_records
from support.waiting import eventually
from tandem_devstack import certs, infra, kafka_auth
from tandem_devstack.processes import wait_until
from tandem_shared.contracts import Stage, TraceRecord, TraceStatus
from tandem_shared.contracts.topics import CHANGES, COMMANDS, COMMANDS_DLQ, COMMANDS_RETRY, TRACE
from tandem_shared.kafka import KafkaConnection, partitions_of
from tandem_shared.secrets import SECRETS_DIRS_ENV
from tandem_shared.settings import CommonSettings

pytestmark = pytest.mark.integration

MODES_IN_PIPELINE = {"ingest": "mtls", "mapper": "scram", "writer": "mtls"}


@pytest.fixture(scope="module")
def secured(kafka_bootstrap: str) -> tuple[kafka_auth.Credentials, kafka_auth.Listeners]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        pytest.skip("KAFKA_BOOTSTRAP_SERVERS names an external broker: its listeners and users are not ours")
    if not infra.secured_listeners_open():
        pytest.fail(
            f"the test broker at {kafka_bootstrap} has no SSL/SASL_SSL listeners: it was started by an older devstack"
            " and kept (TANDEM_KEEP_STACK=1); stop it with `python -m tandem_devstack down` (same environment)"
        )
    return infra.kafka_credentials(), infra.listeners()


def as_user(
    secured: tuple[kafka_auth.Credentials, kafka_auth.Listeners], user: str, mode: str, monkeypatch: pytest.MonkeyPatch
) -> KafkaConnection:
    """A connection built the way every Tandem process builds it: from the KAFKA_* environment."""
    creds, listeners = secured
    for name, value in creds.client_env(user, mode, listeners).items():
        monkeypatch.setenv(name, value)
    return KafkaConnection.from_settings(CommonSettings(), user)


# ------------------------------------------------------------------------------------------- the pipeline


@pytest.fixture(scope="module")
def secured_stack(
    secured: tuple[kafka_auth.Credentials, kafka_auth.Listeners],
    kafka_bootstrap: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningStack]:
    creds, listeners = secured
    # The groups the ACLs name (not a stack's own, as elsewhere in the suite), started at the end of their topics.
    asyncio.run(start_at_end(kafka_bootstrap, "tandem-mapper", [CHANGES]))
    asyncio.run(start_at_end(kafka_bootstrap, "tandem-writer", [COMMANDS, *COMMANDS_RETRY]))
    # Both secured listeners in one pipeline: the mapper logs in with SCRAM, ingest and writer with certificates.
    service_env = {
        name: creds.client_env(user, MODES_IN_PIPELINE[name], listeners)
        for name, user in kafka_auth.SERVICE_USERS.items()
        if name in MODES_IN_PIPELINE
    }
    with running_stack(
        kafka_bootstrap,
        redis_url,
        tmp_path_factory.mktemp("secured"),
        services=["mailchimp-sim", "accessplanit-sim", "ingest", "mapper", "writer"],
        extra_env={"TANDEM_MAPPER_GROUP_ID": "tandem-mapper", "TANDEM_WRITER_GROUP_ID": "tandem-writer"},
        service_env=service_env,
    ) as running:
        yield running


async def test_a_change_flows_end_to_end_with_each_service_as_its_own_kafka_user(secured_stack: RunningStack) -> None:
    stack = secured_stack
    email = f"ada.{uuid.uuid4().hex[:8]}@example.com"
    async with httpx.AsyncClient(timeout=10) as client:
        for name in ("ingest", "mapper", "writer"):
            ready = await client.get(f"{stack.url(name)}/health/ready")
            assert ready.status_code < 300, (name, ready.text)
        sims = Sims(client, stack)
        user_id = await sims.create_user(email)
        found = await eventually(lambda: sims.member(email), timeout=60)
    assert found["email_address"] == email

    records = await wait_for_records(
        stack.kafka,
        TRACE,
        TraceRecord,
        where=lambda r: r.instance_id == stack.instance.id and r.accessplanit_user_id == user_id,
        until=lambda found: {r.stage for r in found} >= {Stage.INGEST, Stage.MAPPER, Stage.WRITER},
    )
    assert all(r.status is TraceStatus.SUCCEEDED for r in records), [(r.stage, r.summary) for r in records]
    # Each service was on a secured listener as its own user: none of them fell back to the plain one.
    used = {r.spec.name: r.spec.env for r in stack.stack.running if r.spec.name in MODES_IN_PIPELINE}
    assert {name: env["KAFKA_SECURITY_PROTOCOL"] for name, env in used.items()} == {
        "ingest": "SSL",
        "mapper": "SASL_SSL",
        "writer": "SSL",
    }
    assert used["mapper"]["KAFKA_SASL_USERNAME"] == "tandem-mapper"
    assert used["ingest"]["KAFKA_SSL_CERT_FILE"].endswith("tandem-ingest.crt")
    assert used["writer"]["KAFKA_SSL_CERT_FILE"].endswith("tandem-writer.crt")


# ---------------------------------------------------------------------------------------- outside the ACLs


@pytest.mark.parametrize("mode", kafka_auth.MODES)
async def test_a_service_is_refused_what_its_acls_do_not_grant(
    secured: tuple[kafka_auth.Credentials, kafka_auth.Listeners], monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    mapper = as_user(secured, "tandem-mapper", mode, monkeypatch)

    # Granted: reading tandem.changes (the control: the same client, the same listener, an allowed topic).
    reader = mapper.consumer(enable_auto_commit=False)
    await reader.start()
    try:
        reader.assign([TopicPartition(CHANGES, 0)])
        await reader.seek_to_end(TopicPartition(CHANGES, 0))
        await reader.getmany(timeout_ms=200)
        # Refused: reading tandem.commands (the writer's) and writing the DLQ.
        reader.assign([TopicPartition(COMMANDS, 0)])
        await reader.seek_to_beginning(TopicPartition(COMMANDS, 0))
        with pytest.raises(TopicAuthorizationFailedError):
            await asyncio.wait_for(reader.getmany(timeout_ms=5000), 30)
    finally:
        await reader.stop()
    producer = mapper.producer()
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await asyncio.wait_for(producer.send_and_wait(COMMANDS_DLQ, b"not allowed"), 30)
    finally:
        await producer.stop()
    # Refused, and said so: the DLQ's metadata (a topic outside the ACLs is not reported as missing).
    with pytest.raises(LookupError, match="may not describe it"):
        await partitions_of(mapper, COMMANDS_DLQ)
    # Refused: joining the writer's consumer group.
    joiner = mapper.consumer(CHANGES, group_id="tandem-writer", enable_auto_commit=False)
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            await asyncio.wait_for(joiner.start(), 30)
    finally:
        await joiner.stop()


def test_the_acls_on_the_broker_are_those_the_devstack_generated(
    secured: tuple[kafka_auth.Credentials, kafka_auth.Listeners], kafka_bootstrap: str
) -> None:
    """Read back from the broker with kafka-acls --list: what it enforces is the manifest's ACLs, no more."""
    listed = kafka_auth.list_acls(f"{infra.kafka_libs()}/*", kafka_bootstrap)
    expected = kafka_auth.granted(kafka_auth.acl_commands(kafka_auth.kafka_users(), kafka_bootstrap))
    assert listed == expected


# ------------------------------------------------------------------------------------ credentials refused


def foreign_certificate(tmp: Path) -> certs.Issued:
    """tandem-mapper's name on a certificate from a CA the broker does not trust."""
    return certs.issue(certs.make_ca(tmp / "ca", "someone-else"), tmp, "tandem-mapper")


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("mtls", "closed the TLS connection: the broker does not accept the client certificate KAFKA_SSL_CERT_FILE="),
        ("mtls-ca", "the broker's certificate is not trusted with KAFKA_SSL_CA_FILE="),
        ("scram", "refused the SASL SCRAM-SHA-512 login of user 'tandem-mapper' (authentication refused"),
    ],
)
def test_refused_credentials_keep_the_service_up_not_ready_saying_why_until_they_work(
    secured: tuple[kafka_auth.Credentials, kafka_auth.Listeners],
    kafka_bootstrap: str,
    redis_url: str,
    tmp_path: Path,
    mode: str,
    reason: str,
) -> None:
    creds, listeners = secured
    env = creds.client_env("tandem-mapper", mode.removesuffix("-ca"), listeners)
    foreign = foreign_certificate(tmp_path / "foreign")
    # The files the mapper is given hold refused credentials first, as a mounted secret not yet right would; the
    # test then writes the right ones there (as the secret's update would), without restarting the mapper.
    given = tmp_path / "given"
    given.mkdir()
    right: dict[Path, Path | str] = {}
    if mode == "mtls":
        cert, key = Path(env["KAFKA_SSL_CERT_FILE"]), Path(env["KAFKA_SSL_KEY_FILE"])
        shutil.copy(foreign.cert, given / "user.crt")
        shutil.copy(foreign.key, given / "user.key")
        env.update(KAFKA_SSL_CERT_FILE=str(given / "user.crt"), KAFKA_SSL_KEY_FILE=str(given / "user.key"))
        right = {given / "user.crt": cert, given / "user.key": key}
    elif mode == "mtls-ca":  # the mapper's own certificate, but another CA file: the broker is not trusted
        ca = Path(env["KAFKA_SSL_CA_FILE"])
        shutil.copy(tmp_path / "foreign" / "ca" / "ca.crt", given / "ca.crt")
        env.update(KAFKA_SSL_CA_FILE=str(given / "ca.crt"))
        right = {given / "ca.crt": ca}
    else:
        password = env["KAFKA_SASL_PASSWORD"].removeprefix("file:")
        (given / "password").write_text("not-the-password")
        env["KAFKA_SASL_PASSWORD"] = f"file:{given / 'password'}"
        env[SECRETS_DIRS_ENV] = os.pathsep.join([str(given), env[SECRETS_DIRS_ENV]])
        right = {given / "password": Path(password)}
    env["TANDEM_KAFKA_RETRY_S"] = "1"
    with running_stack(kafka_bootstrap, redis_url, tmp_path, services=["mapper"], service_env={"mapper": env}) as stack:
        where = f"Kafka at 127.0.0.1:{listeners.sasl_ssl if mode == 'scram' else listeners.ssl}"
        with httpx.Client(base_url=stack.url("mapper"), timeout=10) as client:
            # Up, and saying so once per retry period.
            wait_until(
                lambda: stack.stack.logs("mapper").count("kafka does not accept this service") >= 2,
                timeout=30,
                what="two refusals logged",
            )
            logged = stack.stack.logs("mapper")
            ready, live = client.get("/health/ready"), client.get("/health/live")
            assert ready.status_code == 503
            assert ready.text.startswith(f"not ready: {where}")
            assert reason in ready.text
            assert live.status_code == 200
            assert client.get("/metrics").status_code == 200  # Prometheus still sees a service that is not ready
            assert reason in logged
            assert "not-the-password" not in logged + ready.text
            assert [r.spec.name for r in stack.stack.running] == ["mapper"]  # still running: no exit, no loop

            for target, source in right.items():
                shutil.copy(source, target)
            wait_until(lambda: client.get("/health/ready").status_code < 300, timeout=60, what="the mapper ready")
        assert "kafka accepts this service now; starting" in stack.stack.logs("mapper")
