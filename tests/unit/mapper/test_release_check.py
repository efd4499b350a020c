"""A held change's command, released after a resume, carries a check of its accessplanit target: the values Tandem
knows the field held there and the held change's time (RELEASE_OVER_AN_EDIT, issue 15)."""

from __future__ import annotations

from datetime import timedelta

from unit.mapper.test_domain import AP_HOLDS, MC_HOLDS, T0, T1, ap_event, mc_event, run, side

from tandem_mapper.domain.model import Knowledge
from tandem_mapper.domain.release_check import with_release_check
from tandem_shared.contracts import CheckedField, SourceCheck, System
from tandem_shared.sync.rules import field_digest, ts_ms


def test_a_released_mailchimp_change_is_checked_on_accessplanit_against_what_tandem_knows_there() -> None:
    known = Knowledge(
        source=side(MC_HOLDS),
        # Tandem wrote "Lin" there recently (remembered for its echo): a value Tandem knows, too.
        target=side(AP_HOLDS, recent={f"Forenames|{field_digest('Lin')}": T0 + timedelta(seconds=1)}),
    )
    command = run(mc_event(at=T1, merges={"FNAME": "Grace"}), known).command
    assert command is not None and command.source_check is None

    checked = with_release_check(command, known)

    assert checked.payload == command.payload
    assert checked.source_check == SourceCheck(
        system=System.ACCESSPLANIT,
        email=command.identity.email,
        fields={
            "Forenames": CheckedField(
                source_field="Forenames",
                digest=field_digest("Grace"),
                raced=sorted([field_digest("Ada"), field_digest("Lin")]),
            )
        },
        ts_ms=ts_ms(T1),
        held_change_ms=ts_ms(T1),
    )


def test_a_released_change_for_mailchimp_is_not_read_first() -> None:
    # Mailchimp's webhook carries its edit's own value: a release written over it is repaired when it arrives.
    known = Knowledge(source=side(AP_HOLDS), target=side(MC_HOLDS))
    command = run(ap_event(at=T1, Forenames="Grace"), known).command
    assert command is not None
    assert with_release_check(command, known) == command
