"""`tandem instances …` and `tandem report duplicates` against the real broker and the vendor simulators."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from support.kafka import connect
from support.stack import RunningStack, running_stack
from tandem_cli.common import EXIT_INVALID, EXIT_NOT_FOUND, EXIT_OK, EXIT_UNAVAILABLE
from tandem_cli.main import main
from tandem_devstack.stack import (
    DEMO_ACCESSPLANIT_ADMIN_KEY,
    DEMO_ACCESSPLANIT_API_KEY,
    DEMO_MAILCHIMP_API_KEY,
)
from tandem_shared.instance_store import remove_instance

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "instance.yaml"


@pytest.fixture(scope="module")
def simulators(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningStack]:
    with running_stack(
        kafka_bootstrap, redis_url, tmp_path_factory.mktemp("cli"), services=["mailchimp-sim", "accessplanit-sim"]
    ) as running:
        yield running


@pytest.fixture
def instance_id(kafka_bootstrap: str, redis_url: str) -> Iterator[str]:
    """A fresh instance id, deleted afterwards (later stacks replay every instance's changes)."""
    instance_id = f"cli-{uuid.uuid4().hex[:8]}"
    yield instance_id
    asyncio.run(remove_instance(connect(kafka_bootstrap), redis_url, instance_id))


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_DEMO_MAILCHIMP_API_KEY", DEMO_MAILCHIMP_API_KEY)
    monkeypatch.setenv("TANDEM_DEMO_ACCESSPLANIT_API_KEY", DEMO_ACCESSPLANIT_API_KEY)


def instance_file(tmp_path: Path, stack: RunningStack, instance_id: str, **changes: object) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["id"] = instance_id
    data["mailchimp"]["api_base_url"] = f"{stack.url('mailchimp_sim')}/3.0"
    data["accessplanit"]["base_url"] = stack.url("accessplanit_sim")
    data.update(changes)
    path = tmp_path / f"{instance_id}-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def tandem(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_apply_list_show_pause_resume(
    simulators: RunningStack, tmp_path: Path, capsys: pytest.CaptureFixture[str], instance_id: str
) -> None:
    kafka = ["--bootstrap-servers", simulators.kafka]
    path = instance_file(tmp_path, simulators, instance_id)
    # The simulator keeps custom fields read-only for API keys by default, as accessplanit's v1 API does.
    httpx.post(f"{simulators.url('accessplanit_sim')}/_sim/controls", json={"custom_fields_writable": True})

    code, out, err = tandem(capsys, "instances", "apply", "-f", str(path), *kafka)
    assert code == EXIT_OK, err
    assert f"instance '{instance_id}' created: version 1, active" in out

    code, out, _ = tandem(capsys, "instances", "apply", "-f", str(path), *kafka)
    assert (code, out.strip()) == (EXIT_OK, f"instance '{instance_id}' is unchanged (version 1); nothing was published")

    renamed = instance_file(tmp_path, simulators, instance_id, name="Acme, renamed")
    code, out, _ = tandem(capsys, "instances", "apply", "-f", str(renamed), *kafka)
    assert f"instance '{instance_id}' updated: version 2" in out

    code, out, _ = tandem(capsys, "instances", "list", *kafka)
    line = next(line for line in out.splitlines() if line.startswith(instance_id))
    assert line.split()[1:3] == ["2", "active"]
    assert line.endswith("Acme, renamed")

    code, out, _ = tandem(capsys, "instances", "show", instance_id, *kafka)
    shown = yaml.safe_load(out)
    assert (shown["version"], shown["name"], shown["paused"]) == (2, "Acme, renamed", False)
    assert shown["mailchimp"]["api_key"] == "env:TANDEM_DEMO_MAILCHIMP_API_KEY"  # a reference, never the key

    code, out, _ = tandem(capsys, "instances", "pause", instance_id, *kafka)
    assert f"instance '{instance_id}' paused (version 3)" in out
    code, out, _ = tandem(capsys, "instances", "pause", instance_id, *kafka)
    assert f"instance '{instance_id}' is already paused (version 3)" in out

    # A new file version keeps the instance paused: pausing is an operator's act, not configuration.
    code, out, _ = tandem(capsys, "instances", "apply", "-f", str(path), *kafka)
    assert f"instance '{instance_id}' updated: version 4, paused" in out

    code, out, _ = tandem(capsys, "instances", "resume", instance_id, "--discard-buffered", *kafka)
    assert f"instance '{instance_id}' resumed (version 5)" in out
    assert "are discarded" in out
    code, out, _ = tandem(capsys, "instances", "show", instance_id, "--format", "json", *kafka)
    shown = yaml.safe_load(out)
    assert (shown["version"], shown["paused"], shown["discard_held_on_resume"]) == (5, False, True)


def test_an_invalid_file_is_never_published(
    simulators: RunningStack, tmp_path: Path, capsys: pytest.CaptureFixture[str], instance_id: str
) -> None:
    kafka = ["--bootstrap-servers", simulators.kafka]
    mailchimp = {
        "api_key": "env:TANDEM_DEMO_MAILCHIMP_API_KEY",
        "audience_id": "zzzzzzzzzz",
        "api_base_url": f"{simulators.url('mailchimp_sim')}/3.0",
    }
    path = instance_file(tmp_path, simulators, instance_id, mailchimp=mailchimp)
    code, _, err = tandem(capsys, "instances", "apply", "-f", str(path), *kafka)
    assert code == EXIT_INVALID
    assert (
        "error    mailchimp.audience_id: audience 'zzzzzzzzzz' was not found with this API key; the key's audiences: "
        "a1b2c3d4e5 (Tandem Demo)"
    ) in err
    assert "nothing was applied" in err
    code, _, err = tandem(capsys, "instances", "show", instance_id, *kafka)
    assert code == EXIT_NOT_FOUND
    assert f"no instance '{instance_id}'" in err


def test_validate_reads_both_vendors_schemas(
    simulators: RunningStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["mappings"].append({"mailchimp": "COMPNY", "accessplanit": "custom:Courses Attended"})
    data["mappings"].append(
        {"mailchimp": "COMPANY", "accessplanit": "custom:Courses Attended", "direction": "mailchimp_to_accessplanit"}
    )
    data["accessplanit"]["default_account_id"] = "99"
    path = instance_file(
        tmp_path,
        simulators,
        "cli-validate",
        mappings=data["mappings"],
        accessplanit={**data["accessplanit"], "base_url": simulators.url("accessplanit_sim")},
    )
    code, _, err = tandem(capsys, "instances", "validate", "-f", str(path))
    assert code == EXIT_INVALID
    assert "mappings[6].mailchimp: merge tag 'COMPNY' does not exist in audience 'Tandem Demo'" in err
    assert "did you mean 'COMPANY'?" in err
    assert (
        "mappings[7]: COMPANY → custom:Courses Attended (Mailchimp → accessplanit): a text field cannot feed a number"
        in err
    )
    assert "accessplanit.default_account_id: account '99' does not exist in accessplanit" in err


def test_a_broker_that_does_not_answer_is_exit_4(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = tandem(capsys, "instances", "list", "--bootstrap-servers", "127.0.0.1:1", "--timeout", "5")
    assert code == EXIT_UNAVAILABLE
    assert err.startswith("tandem: Kafka")


def test_report_duplicates_lists_users_sharing_an_address(
    simulators: RunningStack, capsys: pytest.CaptureFixture[str]
) -> None:
    email = f"shared.{uuid.uuid4().hex[:8]}@example.com"
    ids = []
    for forenames in ("Ada", "Augusta"):
        created = httpx.post(
            f"{simulators.url('accessplanit_sim')}/api/v2/User",
            headers={"Authorization": f"Bearer {DEMO_ACCESSPLANIT_ADMIN_KEY}"},
            json={"Forenames": forenames, "Surname": "King", "Email": email, "MainCompanyID": "2"},
        )
        created.raise_for_status()
        ids.append(str(created.json()["ID"]))
    code, out, err = tandem(
        capsys, "report", "duplicates", simulators.instance.id, "--bootstrap-servers", simulators.kafka
    )
    assert code == EXIT_OK, err
    assert f"{email}  (2 users)" in out
    lines = out.splitlines()
    start = lines.index(f"{email}  (2 users)")
    assert lines[start + 1].split()[0] == ids[1]  # changed last: the one Mailchimp shows
    assert lines[start + 1].endswith("← changed last: in Mailchimp")
    assert lines[start + 2].split()[0] == ids[0]
