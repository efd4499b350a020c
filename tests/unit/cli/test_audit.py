"""The CLI's state-changing commands leave an audit record (who, what, on which instance, how it ended) as the
console's actions do; a usage error, which reached nothing, leaves none, and no record holds a contact's address."""

from __future__ import annotations

import pytest

from tandem_cli import contacts, instances
from tandem_cli.common import EXIT_OK, EXIT_UNAVAILABLE
from tandem_cli.main import main
from tandem_shared.contracts import AuditRecord, ErasureRequest

BROKER = ["--bootstrap-servers", "127.0.0.1:1"]
Published = list[tuple[AuditRecord, str | None]]


def test_a_pause_is_recorded_with_its_instance_and_outcome(
    monkeypatch: pytest.MonkeyPatch, audit_records: Published
) -> None:
    monkeypatch.setattr(instances, "cmd_pause", lambda args: EXIT_OK)
    monkeypatch.setattr(instances, "_guarded", lambda handler: handler)

    assert main(["instances", "pause", "acme", *BROKER]) == EXIT_OK

    [(record, instance_id)] = audit_records
    assert (record.action, record.target, record.outcome, record.via, record.source) == (
        "pause_instance",
        "instances pause acme",
        200,
        "cli",
        "cli",
    )
    assert instance_id == "acme"
    assert record.who.startswith("cli:")


def test_a_forget_is_recorded_without_the_address(monkeypatch: pytest.MonkeyPatch, audit_records: Published) -> None:
    async def refused(args: object, request: ErasureRequest) -> None:
        raise OSError("broker down")

    monkeypatch.setattr(contacts, "_publish", refused)

    code = main(["contacts", "forget", "grace.hopper@example.com", "--instance", "acme", *BROKER])

    assert code == EXIT_UNAVAILABLE
    [(record, instance_id)] = audit_records
    assert (record.action, record.outcome, instance_id) == ("forget_contact", 503, "acme")
    assert "grace" not in record.model_dump_json().lower()


def test_read_only_commands_and_usage_errors_leave_no_record(audit_records: Published) -> None:
    with pytest.raises(SystemExit):
        main(["instances", "pause"])
    assert main(["instances", "schema"]) == EXIT_OK
    assert audit_records == []
