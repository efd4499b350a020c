"""Issue 15's first scenario as pure decisions: a Mailchimp edit stamped in the same whole second as the change
Tandem just wrote there is not provably older, so it is sent with a source check instead of being dropped."""

from __future__ import annotations

from datetime import timedelta

from unit.mapper.test_domain import AP_HOLDS, MC_HOLDS, T0, T1, ap_event, mc_event, run, side

from tandem_mapper.domain.model import Knowledge, MergeSeen
from tandem_shared.contracts import System, TraceStatus
from tandem_shared.sync.rules import field_digest, parse_state, proven_older, ts_ms

# accessplanit's change (ms clock) that Tandem wrote to Mailchimp, 700 ms into a second.
WRITTEN_AT = T1 + timedelta(milliseconds=700)


def _known() -> Knowledge:
    return Knowledge(source=side(MC_HOLDS, at=WRITTEN_AT, origin="written"), target=side(AP_HOLDS, at=WRITTEN_AT))


def test_proven_older_allows_for_mailchimps_whole_seconds() -> None:
    assert not proven_older(System.MAILCHIMP, ts_ms(T1), ts_ms(WRITTEN_AT))
    assert proven_older(System.MAILCHIMP, ts_ms(T1 - timedelta(seconds=1)), ts_ms(WRITTEN_AT))
    assert proven_older(System.ACCESSPLANIT, ts_ms(T1), ts_ms(T1) + 1)
    assert not proven_older(System.ACCESSPLANIT, ts_ms(T1), ts_ms(T1))


def test_a_same_second_mailchimp_edit_is_sent_with_a_source_check_not_skipped_as_an_echo() -> None:
    decision = run(mc_event(at=T1, merges={"FNAME": "Grace"}), _known())

    assert decision.status is TraceStatus.SUCCEEDED
    assert decision.changes_detected is True
    command = decision.command
    assert command is not None and command.target is System.ACCESSPLANIT
    assert command.payload["Forenames"] == "Grace"
    check = command.source_check
    assert check is not None and check.system is System.MAILCHIMP
    assert check.fields["Forenames"].source_field == "FNAME"
    assert check.fields["Forenames"].digest == field_digest("Grace")
    # Ordered just after the write it raced: the field's time, and the state it leaves, say so.
    assert check.ts_ms == ts_ms(WRITTEN_AT) + 1
    assert ts_ms(command.source_occurred_at) == check.ts_ms
    assert MergeSeen(System.MAILCHIMP, "ada@example.com", {"FNAME": field_digest("Grace")}, check.ts_ms) in (
        decision.updates
    )
    assert decision.repair is None
    assert any(line.startswith("FNAME: Mailchimp's change is stamped") and "re-read" in line for line in decision.logs)


def test_a_mailchimp_edit_a_whole_second_before_tandems_write_is_proven_older() -> None:
    decision = run(mc_event(at=T1 - timedelta(seconds=1), merges={"FNAME": "Grace"}), _known())

    assert decision.command is None
    assert decision.summary.startswith("Echo of Tandem's own write to Mailchimp")
    assert "FNAME older than the values already applied" in decision.summary
    assert any(line.startswith("FNAME not sent: older than the value already applied") for line in decision.logs)


def test_two_mailchimp_edits_stamped_the_same_second_are_settled_by_a_re_read() -> None:
    # Delivered in either order, the second to arrive cannot be ordered by its stamp: the source decides.
    known = Knowledge(source=side({**MC_HOLDS, "FNAME": "Grace"}, at=T1), target=side(AP_HOLDS, at=T1))
    decision = run(mc_event(at=T1, merges={"FNAME": "Hedy"}), known)

    command = decision.command
    assert command is not None and command.source_check is not None
    assert set(command.source_check.fields) == {"Forenames"}


def test_an_accessplanit_change_with_the_same_millisecond_stamp_needs_no_re_read() -> None:
    known = Knowledge(source=side({**AP_HOLDS, "Forenames": "Grace"}, at=T1), target=side(MC_HOLDS, at=T0))
    decision = run(ap_event(at=T1, Forenames="Hedy"), known)

    assert decision.command is not None and decision.command.source_check is None


def test_a_change_made_while_tandems_write_to_its_side_is_in_flight_is_written_back_after_that_write() -> None:
    # Tandem decided (at T1 + 200 ms) to write Mailchimp's "Grace" to accessplanit; before it lands a person changes
    # the first name in accessplanit. That write will land over the person's change: it is repaired after it.
    pending = {f"p:Forenames|{field_digest('Grace')}": str(ts_ms(T1) + 200)}
    raw = {
        **{f"f:{k}": f"{field_digest(v)}|{ts_ms(T0)}|seen" for k, v in AP_HOLDS.items()},
        **pending,
        "_last": f"seen|{ts_ms(T0)}",
    }
    source = parse_state(raw)
    known = Knowledge(source=source, target=side({**MC_HOLDS, "FNAME": "Grace"}, at=T1))
    decision = run(ap_event(at=T1 + timedelta(milliseconds=100), Forenames="Hedy"), known)

    assert decision.command is not None and decision.command.payload["merge_fields"] == {"FNAME": "Hedy"}
    repair = decision.repair
    assert repair is not None and repair.target is System.ACCESSPLANIT
    assert repair.payload["Forenames"] == "Hedy"
    assert repair.waits_for == {f"Forenames|{field_digest('Grace')}": ts_ms(T1) + 200}
    # Keyed by the accessplanit user, unlike Mailchimp's writes to accessplanit: the writer leaves out a field
    # accessplanit has been given a later change for meanwhile.
    assert repair.write_back
    assert any("while Tandem's write of another value to it was in flight" in line for line in decision.logs)
