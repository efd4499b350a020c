"""`tandem instances delete`: arguments, confirmation, output and exit codes, with the topic and Redis faked."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
import redis
from aiokafka.errors import KafkaConnectionError

from tandem_cli import instances as cli
from tandem_cli.common import EXIT_NOT_FOUND, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE
from tandem_cli.main import main
from tandem_shared.instance_store import InstancesSnapshot
from tandem_shared.instances import demo_instance
from tandem_shared.kafka import KafkaConnection

DELETED_AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
BROKER = ["--bootstrap-servers", "127.0.0.1:1", "--redis-url", "redis://127.0.0.1:2/0"]


@dataclass
class Topic:
    """What `tandem.instances` holds, and the deletions asked for."""

    snapshot: InstancesSnapshot = field(
        default_factory=lambda: InstancesSnapshot({"demo": demo_instance()}, {"gone": DELETED_AT})
    )
    removed: list[tuple[str, str, str]] = field(default_factory=list)
    redis_down: bool = False
    kafka_down: bool = False

    async def read_snapshot(self, connection: KafkaConnection) -> InstancesSnapshot:
        if self.kafka_down:
            raise KafkaConnectionError("Unable to bootstrap from 127.0.0.1:1")
        return self.snapshot

    async def remove_instance(self, connection: KafkaConnection, redis_url: str, instance_id: str) -> int:
        self.removed.append((connection.bootstrap_servers, redis_url, instance_id))
        if self.redis_down:
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:2. Connection refused.")
        return 7


@pytest.fixture
def topic(monkeypatch: pytest.MonkeyPatch) -> Topic:
    fake = Topic()
    monkeypatch.setattr(cli, "read_snapshot", fake.read_snapshot)
    monkeypatch.setattr(cli, "remove_instance", fake.remove_instance)
    return fake


def tandem(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["instances", "delete", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_delete_with_yes_publishes_the_tombstone_and_purges_redis(
    topic: Topic, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = tandem(capsys, "demo", "--yes", *BROKER)
    assert (code, err) == (EXIT_OK, "")
    assert out == "instance 'demo' deleted: every service stops syncing it; 7 Redis key(s) of its state removed\n"
    assert topic.removed == [("127.0.0.1:1", "redis://127.0.0.1:2/0", "demo")]


def test_an_unknown_id_is_a_clear_error_and_nothing_is_deleted(
    topic: Topic, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = tandem(capsys, "nope", "--yes", *BROKER)
    assert (code, out, err) == (EXIT_NOT_FOUND, "", "tandem: no instance 'nope'\n")
    assert topic.removed == []


def test_an_instance_deleted_already_has_its_redis_state_removed_again(
    topic: Topic, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = tandem(capsys, "gone", "--yes", *BROKER)
    assert code == EXIT_OK
    assert out == "instance 'gone' was deleted already; 7 Redis key(s) of its state removed\n"
    assert [r[2] for r in topic.removed] == ["gone"]


def test_without_yes_a_script_is_refused(
    topic: Topic, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("demo\n"))
    code, out, err = tandem(capsys, "demo", *BROKER)
    assert (code, out) == (EXIT_USAGE, "")
    assert err == "tandem: deleting an instance needs --yes when not run at a terminal; nothing was deleted\n"
    assert topic.removed == []


@pytest.mark.parametrize(("typed", "deleted"), [("demo\n", True), ("dem\n", False), ("", False)])
def test_at_a_terminal_the_operator_types_the_id_to_confirm(
    topic: Topic, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, typed: str, deleted: bool
) -> None:
    monkeypatch.setattr("sys.stdin", Terminal(typed))
    code, out, err = tandem(capsys, "demo", *BROKER)
    assert code == EXIT_OK
    assert "Delete instance 'demo' (Demo: accessplanit simulator ⇄ Mailchimp simulator)?" in err
    assert "Type the instance id (demo) to confirm: " in out
    assert ("deleted: every service stops syncing it" in out) is deleted
    assert ("nothing was deleted" in out) is not deleted
    assert len(topic.removed) == int(deleted)


def test_redis_unreachable_after_the_tombstone_says_what_happened_and_exits_4(
    topic: Topic, capsys: pytest.CaptureFixture[str]
) -> None:
    topic.redis_down = True
    code, out, err = tandem(capsys, "demo", "--yes", *BROKER)
    assert (code, out) == (EXIT_UNAVAILABLE, "")
    assert err.startswith("tandem: instance 'demo' is deleted on tandem.instances, but its Redis state could not ")
    assert err.rstrip().endswith("run the command again once Redis (redis://127.0.0.1:2/0) answers")


def test_kafka_unreachable_exits_4_and_deletes_nothing(topic: Topic, capsys: pytest.CaptureFixture[str]) -> None:
    topic.kafka_down = True
    code, out, err = tandem(capsys, "demo", "--yes", *BROKER)
    assert (code, out) == (EXIT_UNAVAILABLE, "")
    assert err.startswith("tandem: Kafka: ")
    assert topic.removed == []


def test_the_id_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["instances", "delete", "--yes"])
    assert exited.value.code == EXIT_USAGE
    assert "the following arguments are required: id" in capsys.readouterr().err


def test_the_redis_url_defaults_to_redis_url(
    topic: Topic, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:3/5")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:4")
    assert tandem(capsys, "demo", "--yes")[0] == EXIT_OK
    assert topic.removed == [("127.0.0.1:4", "redis://127.0.0.1:3/5", "demo")]
