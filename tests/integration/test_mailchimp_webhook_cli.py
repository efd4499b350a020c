"""`tandem webhooks register` end to end: instance from tandem.instances, webhook on the simulator, secret kept."""

from __future__ import annotations

import asyncio
import re
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from component.simulators.mailchimp.mailchimp_testkit import (
    DEMO_KEY,
    DEMO_LIST,
    Receiver,
    SimServer,
    running_receiver,
    sim_settings,
)

from support.kafka import connect
from tandem_cli.main import main
from tandem_shared.contracts import InstanceConfig
from tandem_shared.instance_store import put_instance, read_instances, remove_instance
from tandem_shared.instances import demo_instance

pytestmark = pytest.mark.integration

PATH_SECRET = "cli-test-path-secret"


@pytest.fixture(scope="module")
def sim_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    with SimServer(sim_settings(tmp_path_factory.mktemp("mailchimp-sim-cli"))) as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as state:
        yield state


@pytest.fixture
def instance(
    sim_server: SimServer, kafka_bootstrap: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[InstanceConfig]:
    monkeypatch.setenv("TANDEM_CLI_TEST_MAILCHIMP_KEY", DEMO_KEY)
    monkeypatch.setenv("TANDEM_CLI_TEST_PATH_SECRET", PATH_SECRET)
    base = demo_instance()
    config = base.model_copy(
        update={
            "id": f"cli-{uuid.uuid4().hex[:8]}",
            "mailchimp": base.mailchimp.model_copy(
                update={
                    "api_key": "env:TANDEM_CLI_TEST_MAILCHIMP_KEY",
                    "api_base_url": f"{sim_server.base_url}/3.0",
                    "webhook_secret": "env:TANDEM_CLI_TEST_PATH_SECRET",
                }
            ),
        }
    )
    asyncio.run(put_instance(connect(kafka_bootstrap), config))
    yield config
    asyncio.run(remove_instance(connect(kafka_bootstrap), redis_url, config.id))


def public_url(receiver: Receiver) -> str:
    return receiver.url.removesuffix("/hook")


def hooks(sim_server: SimServer) -> list[dict[str, object]]:
    response = httpx.get(f"{sim_server.base_url}/3.0/lists/{DEMO_LIST}/webhooks", auth=("x", DEMO_KEY), timeout=10)
    return list(response.json()["webhooks"])


def stored(kafka: str, instance_id: str) -> InstanceConfig:
    return asyncio.run(read_instances(connect(kafka)))[instance_id]


def test_register_keeps_the_signing_secret_in_a_file_and_points_the_instance_at_it(
    instance: InstanceConfig,
    sim_server: SimServer,
    receiver: Receiver,
    kafka_bootstrap: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret_file = tmp_path / "signing-secret"
    argv = ["webhooks", "register", instance.id, "--public-url", public_url(receiver), "--kafka", kafka_bootstrap]
    assert main([*argv, "--signing-secret-file", str(secret_file)]) == 0

    secret = secret_file.read_text()
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    ours = [
        h
        for h in hooks(sim_server)
        if h["url"] == f"{public_url(receiver)}/webhooks/mailchimp/{instance.id}/{PATH_SECRET}"
    ]
    assert len(ours) == 1
    assert ours[0]["sources"] == {"user": True, "admin": True, "api": True}
    assert receiver.gets, "Mailchimp (the simulator) checked the URL with a GET"
    updated = stored(kafka_bootstrap, instance.id)
    assert updated.mailchimp.webhook_signing_secret == f"file:{secret_file}"
    assert updated.version == instance.version + 1
    output = capsys.readouterr()
    assert secret not in output.out + output.err
    assert PATH_SECRET not in output.out + output.err

    # Again: the webhook is kept (its secret cannot be read back) and nothing changes.
    assert main([*argv, "--signing-secret-file", str(secret_file)]) == 0
    assert secret_file.read_text() == secret
    assert len(hooks(sim_server)) == len(ours)
    assert "--replace" in capsys.readouterr().err

    # --replace: a new webhook, a new secret.
    assert main([*argv, "--signing-secret-file", str(secret_file), "--replace"]) == 0
    assert secret_file.read_text() != secret
    assert [h["id"] for h in hooks(sim_server)] != [h["id"] for h in ours]


def test_register_can_print_a_kubectl_command_as_its_only_output(
    instance: InstanceConfig,
    receiver: Receiver,
    kafka_bootstrap: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["webhooks", "register", instance.id, "--public-url", public_url(receiver), "--kafka", kafka_bootstrap]
    ref = "file:/var/run/secrets/tandem/mailchimp-webhook-signing-secret"
    assert main([*argv, "--kubectl-secret", "tandem-mailchimp", "--namespace", "tandem", "--secret-ref", ref]) == 0
    output = capsys.readouterr()
    lines = output.out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kubectl create secret generic tandem-mailchimp")
    secret = re.search(r"mailchimp-webhook-signing-secret=([0-9a-f]{64})", lines[0])
    assert secret is not None
    assert secret.group(1) not in output.err
    assert stored(kafka_bootstrap, instance.id).mailchimp.webhook_signing_secret == ref


def test_register_refuses_without_a_place_for_the_secret_or_with_unusable_input(
    instance: InstanceConfig, receiver: Receiver, kafka_bootstrap: str, sim_server: SimServer
) -> None:
    before = len(hooks(sim_server))
    base = ["webhooks", "register", instance.id, "--public-url", public_url(receiver), "--kafka", kafka_bootstrap]
    assert main(base) == 2
    assert main([*base, "--kubectl-secret", "s", "--secret-ref", "plain-secret"]) == 1
    assert (
        main(
            [
                "webhooks",
                "register",
                "no-such-instance",
                "--public-url",
                "https://x",
                "--kafka",
                kafka_bootstrap,
                "--kubectl-secret",
                "s",
            ]
        )
        == 1
    )
    receiver.get_status = 404
    assert main([*base, "--kubectl-secret", "s"]) == 1
    assert len(hooks(sim_server)) == before


def test_list_shows_the_webhooks_with_their_secrets_masked(
    instance: InstanceConfig,
    receiver: Receiver,
    kafka_bootstrap: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["webhooks", "register", instance.id, "--public-url", public_url(receiver), "--kafka", kafka_bootstrap]
    assert main([*argv, "--signing-secret-file", str(tmp_path / "s"), "--no-update-instance"]) == 0
    assert stored(kafka_bootstrap, instance.id).mailchimp.webhook_signing_secret is None
    capsys.readouterr()
    assert main(["webhooks", "list", instance.id, "--kafka", kafka_bootstrap]) == 0
    out = capsys.readouterr().out
    assert f"/webhooks/mailchimp/{instance.id}/***" in out
    assert PATH_SECRET not in out
    assert "signed" in out
