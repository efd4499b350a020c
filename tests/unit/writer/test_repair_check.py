"""A repair's authoritative read: Tandem's write raced a person's change on the same side; the side itself says
whether that write landed over the change (write it back), before it (nothing to do) or whether the side changed
again since (its own event carries that)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fakes.state import InMemoryStateStore
from fakes.target import ScriptedTarget
from support.commands import sync_command
from tandem_shared.contracts import CheckedField, InstanceConfig, SourceCheck, SyncCommand, System
from tandem_shared.instances import demo_instance
from tandem_shared.sync.rules import field_digest
from tandem_writer.domain.source_check import check
from tandem_writer.source_check import SourceCheckedTarget, user_fields

EMAIL = "ada@example.com"


def repair(**fields: Any) -> SyncCommand:
    """The person's "Hedy" written back to accessplanit, where Tandem's "Grace" may have landed over it."""
    command = sync_command("demo", System.ACCESSPLANIT, {"Email": EMAIL, **fields}, email=EMAIL, user_id="7")
    spec = SourceCheck(
        system=System.ACCESSPLANIT,
        email=EMAIL,
        fields={
            "Forenames": CheckedField(
                source_field="Forenames", digest=field_digest("Hedy"), raced=[field_digest("Grace")]
            )
        },
        ts_ms=1234,
    )
    return command.model_copy(update={"source_check": spec})


class Reader:
    system = System.ACCESSPLANIT

    def __init__(self, values: Mapping[str, Any] | None) -> None:
        self.values = values
        self.read_for: list[tuple[str, str | None]] = []

    async def read(self, instance: InstanceConfig, spec: SourceCheck, user_id: str | None) -> Mapping[str, Any] | None:
        self.read_for.append((spec.email, user_id))
        return self.values


def test_a_side_holding_tandems_raced_write_gets_the_change_back() -> None:
    command = repair(Forenames="Hedy")
    result = check(command, {"Forenames": "Grace"})
    assert result.command == command
    assert result.confirmed == ["Forenames"]
    assert result.read_digests == {}
    assert result.logs == [
        "Re-read from accessplanit: Forenames holds 'Grace', the value of Tandem's write that landed over this "
        "change, so the change is written back"
    ]


def test_a_side_already_holding_the_change_gets_no_write() -> None:
    result = check(repair(Forenames="Hedy"), {"Forenames": "Hedy"})
    assert result.command is None
    assert result.read_digests == {}
    assert "already holds this change's value 'Hedy' (Tandem's write landed before it)" in result.logs[0]


def test_a_side_that_changed_again_is_left_to_that_change_and_nothing_read_is_recorded() -> None:
    # Recording "Lin" as known would make Lin's own event look like no news: it must still reach Mailchimp.
    result = check(repair(Forenames="Hedy"), {"Forenames": "Lin"})
    assert result.command is None
    assert result.read_digests == {}
    assert "now holds 'Lin', neither this change's value nor Tandem's write it raced" in result.logs[0]


def test_only_the_overwritten_fields_of_a_repair_are_written_back() -> None:
    command = repair(Forenames="Hedy", Surname="Lamarr")
    spec = command.source_check
    assert spec is not None
    surname = CheckedField(source_field="Surname", digest=field_digest("Lamarr"), raced=[field_digest("Hopper")])
    command = command.model_copy(
        update={"source_check": spec.model_copy(update={"fields": {**spec.fields, "Surname": surname}})}
    )
    result = check(command, {"Forenames": "Grace", "Surname": "Lamarr"})
    assert result.command is not None
    assert result.command.payload == {"Email": EMAIL, "Forenames": "Hedy"}


async def test_the_writer_reads_accessplanit_before_a_repair_and_skips_a_needless_write() -> None:
    inner = ScriptedTarget(system=System.ACCESSPLANIT)
    state = InMemoryStateStore()
    reader = Reader({"Forenames": "Hedy", "Surname": "Lovelace"})
    target = SourceCheckedTarget(inner, {System.ACCESSPLANIT: reader}, state)
    command = repair(Forenames="Hedy")

    outcome = await target.write(command, demo_instance())

    assert outcome.ok and not outcome.wrote
    assert inner.writes == []
    assert reader.read_for == [(EMAIL, "7")] and target.reads[System.ACCESSPLANIT] == 1
    assert outcome.summary.startswith("Not written to accessplanit: Re-read from accessplanit: Forenames already")
    assert state.raw("demo", System.ACCESSPLANIT, EMAIL) == {}


async def test_the_writer_writes_a_repair_back_when_accessplanit_holds_tandems_write() -> None:
    inner = ScriptedTarget(system=System.ACCESSPLANIT)
    target = SourceCheckedTarget(inner, {System.ACCESSPLANIT: Reader({"Forenames": "Grace"})}, InMemoryStateStore())
    command = repair(Forenames="Hedy")

    outcome = await target.write(command, demo_instance())

    assert outcome.ok and outcome.wrote and inner.writes == [command]
    assert "Re-read from accessplanit: Forenames holds 'Grace'" in outcome.summary


def test_a_user_is_read_by_the_names_mappings_use() -> None:
    user = {"ID": "7", "Forenames": "Ada", "CustomFields": {"Mailchimp Company": "ACME"}}
    assert user_fields(user) == {"ID": "7", "Forenames": "Ada", "custom:Mailchimp Company": "ACME"}
