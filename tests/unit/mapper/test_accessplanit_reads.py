"""When the mapper asks the writer to read accessplanit (pure decisions).

accessplanit's clock has milliseconds and every write moves `DateUpdated`, so its own changes are ordered by their
stamps: deliveries that arrive reversed need no read (the older is proven older), and two with the same stamp are
one event (the event id is the user and its `DateUpdated`). What the stamps cannot tell is whether Tandem's write to
accessplanit, in flight or recorded after the person's change, landed over that change or before it: the repair that
writes the change back carries a check, and the writer reads the user first.
"""

from __future__ import annotations

from datetime import timedelta

from unit.mapper.test_domain import AP_HOLDS, MC_HOLDS, T0, T1, ap_event, run, side

from tandem_mapper.domain.model import Knowledge
from tandem_shared.contracts import System
from tandem_shared.sync.rules import FieldState, RecentWrite, SideState, field_digest, parse_state, ts_ms


def test_a_repair_of_a_change_made_while_tandems_write_was_in_flight_is_checked_against_accessplanit() -> None:
    pending = {f"p:Forenames|{field_digest('Grace')}": str(ts_ms(T1) + 200)}
    raw = {
        **{f"f:{k}": f"{field_digest(v)}|{ts_ms(T0)}|seen" for k, v in AP_HOLDS.items()},
        **pending,
        "_last": f"seen|{ts_ms(T0)}",
    }
    known = Knowledge(source=parse_state(raw), target=side({**MC_HOLDS, "FNAME": "Grace"}, at=T1))
    event = ap_event(at=T1 + timedelta(milliseconds=100), Forenames="Hedy")

    decision = run(event, known)

    repair = decision.repair
    assert repair is not None and repair.target is System.ACCESSPLANIT
    check = repair.source_check
    assert check is not None and check.system is System.ACCESSPLANIT
    assert check.email == "ada@example.com" and check.ts_ms == ts_ms(event.occurred_at)
    assert set(check.fields) == {"Forenames"}
    # Written back only while accessplanit holds Tandem's "Grace": then that write landed over "Hedy".
    assert check.fields["Forenames"].digest == field_digest("Hedy")
    assert check.fields["Forenames"].raced == [field_digest("Grace")]
    # The change itself goes to Mailchimp unchecked: accessplanit's stamp orders it.
    assert decision.command is not None and decision.command.source_check is None


def test_a_repair_of_a_change_tandems_recorded_write_may_have_overwritten_is_checked_against_that_write() -> None:
    # Tandem wrote Mailchimp's "Grace" (changed at T0) to accessplanit and recorded it at T1 + 500 ms; the person's
    # "Hedy" is stamped T1 + 100 ms. Whether the write landed before or after "Hedy" only accessplanit can say.
    grace = field_digest("Grace")
    fields = {k: FieldState(field_digest(v), ts_ms(T0), "seen") for k, v in AP_HOLDS.items()}
    fields["Forenames"] = FieldState(grace, ts_ms(T0), "written")
    recent = {f"Forenames|{grace}": RecentWrite(ts_ms(T0), ts_ms(T1) + 500)}
    source = SideState(fields, "written", ts_ms(T1) + 500, recent)
    known = Knowledge(source=source, target=side({**MC_HOLDS, "FNAME": "Grace"}, at=T0))

    decision = run(ap_event(at=T1 + timedelta(milliseconds=100), Forenames="Hedy"), known)

    repair = decision.repair
    assert repair is not None and repair.payload["Forenames"] == "Hedy"
    assert repair.waits_for == {}
    assert repair.source_check is not None
    assert repair.source_check.fields["Forenames"].raced == [grace]


def test_an_accessplanit_delivery_arriving_after_a_later_one_is_proven_older_without_a_read() -> None:
    known = Knowledge(source=side({**AP_HOLDS, "Forenames": "Hedy"}, at=T1), target=side(MC_HOLDS, at=T0))

    decision = run(ap_event(at=T1 - timedelta(milliseconds=1), Forenames="Grace"), known)

    assert decision.command is None and decision.repair is None
    assert any(line.startswith("Forenames not sent: older than the value already applied") for line in decision.logs)


def test_a_later_accessplanit_change_with_nothing_of_tandems_in_flight_needs_no_read() -> None:
    known = Knowledge(source=side(AP_HOLDS, at=T0), target=side(MC_HOLDS, at=T0))

    decision = run(ap_event(at=T1, Forenames="Hedy"), known)

    assert decision.command is not None and decision.command.source_check is None
    assert decision.repair is None
