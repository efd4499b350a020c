from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tandem_mapper.held import HeldChange
from tandem_shared.contracts import ChangeEvent, ChangeKind, ContactIdentity, System, Trigger
from tandem_shared.instances import demo_instance

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
EVENT = ChangeEvent(
    event_id="e",
    execution_id="x",
    instance_id="demo",
    source=System.ACCESSPLANIT,
    kind=ChangeKind.UPDATED,
    identity=ContactIdentity(accessplanit_user_id="7", email="ada@example.com"),
    occurred_at=NOW,
    received_at=NOW,
    trigger=Trigger.WEBHOOK,
)


@pytest.mark.parametrize(
    ("while_paused", "held_at", "resumed_at", "discard", "discarded"),
    [
        (True, 2, 3, True, True),  # held while paused, resumed with --discard-buffered
        (True, 2, 3, False, False),  # resumed normally: processed in order
        (False, 3, 3, True, False),  # queued behind the backlog after the resume: never discarded
        (True, 4, 3, True, False),  # held by a later pause: that pause's own resume decides
    ],
)
def test_only_what_was_held_while_paused_is_discarded_by_the_resume_that_says_so(
    while_paused: bool, held_at: int, resumed_at: int, discard: bool, discarded: bool
) -> None:
    held = HeldChange("1-0", EVENT, while_paused=while_paused, version=held_at)
    instance = demo_instance().model_copy(
        update={"version": resumed_at, "paused": False, "discard_held_on_resume": discard}
    )
    assert held.discarded_by(instance) is discarded
