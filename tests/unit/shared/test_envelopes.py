"""Each contract's record: topic, key and headers decided once, for every producer."""

from __future__ import annotations

from datetime import UTC, datetime

from support.commands import sync_command
from support.mapper import accessplanit_change
from support.traces import ingest_record
from tandem_shared.contracts import ChangeEvent, Headers, System, Trigger, message_key
from tandem_shared.contracts.envelopes import change_envelope, command_envelope, instance_envelope, trace_envelope
from tandem_shared.contracts.topics import CHANGES, COMMANDS, INSTANCES, TRACE
from tandem_shared.instances import demo_instance
from tandem_shared.replay import replay_event_id, replayed_event

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


def test_a_change_carries_the_stage_marks_first_then_the_standard_headers() -> None:
    event = accessplanit_change("acme", "42", at=NOW)
    envelope = change_envelope(event, headers={"x-origin": "tandem"})
    assert (envelope.topic, envelope.key) == (CHANGES, message_key("acme", "ap:42").encode())
    assert ChangeEvent.model_validate_json(envelope.value or b"") == event
    assert list(envelope.headers.items()) == [
        ("x-origin", "tandem"),
        (Headers.INSTANCE_ID, "acme"),
        (Headers.EXECUTION_ID, event.execution_id),
        (Headers.EVENT_ID, event.event_id),
    ]


def test_a_replayed_change_is_linked_to_what_it_repeats_and_has_the_same_id_every_time() -> None:
    original = accessplanit_change("acme", "42", at=NOW)
    first = replayed_event(original, "x-new", original_execution_id=original.execution_id)
    again = replayed_event(original, "x-newer", original_execution_id=original.execution_id)
    assert first.event_id == again.event_id == replay_event_id(original) != original.event_id
    assert (first.trigger, first.original_execution_id, first.fields) == (
        Trigger.REPLAY,
        original.execution_id,
        original.fields,
    )
    headers = change_envelope(first, replayed_from=original.execution_id).headers
    assert headers[Headers.ORIGINAL_EXECUTION_ID] == original.execution_id
    assert headers[Headers.REPLAYED_FROM] == original.execution_id
    other = accessplanit_change("acme", "42", at=NOW)
    assert replay_event_id(other) != replay_event_id(original)


def test_a_command_and_a_trace_record() -> None:
    command = sync_command("acme", System.MAILCHIMP, {"email_address": "ada@example.com"}, email="ada@example.com")
    envelope = command_envelope(command)
    assert (envelope.topic, envelope.key) == (COMMANDS, message_key("acme", command.identity.contact_key).encode())
    assert dict(envelope.headers) == {
        Headers.INSTANCE_ID: "acme",
        Headers.EXECUTION_ID: command.execution_id,
        Headers.IDEMPOTENCY_KEY: command.idempotency_key,
    }
    record = ingest_record(accessplanit_change("acme", "42", at=NOW))
    trace = trace_envelope(record)
    assert (trace.topic, trace.key) == (TRACE, record.execution_id.encode())
    assert dict(trace.headers) == {Headers.INSTANCE_ID: "acme", Headers.EXECUTION_ID: record.execution_id}


def test_an_instance_configuration_and_its_tombstone() -> None:
    config = demo_instance()
    assert instance_envelope(config.id, config).value == config.model_dump_json().encode()
    tombstone = instance_envelope(config.id, None)
    assert (tombstone.topic, tombstone.key, tombstone.value) == (INSTANCES, config.id.encode(), None)
