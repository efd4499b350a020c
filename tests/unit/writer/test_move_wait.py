"""How long a command that may precede a move waits, and what becomes of its delivery meanwhile (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from support.commands import sync_command
from tandem_shared.contracts import SyncCommand, System, TraceStatus
from tandem_writer.domain.decisions import Disposition, after_write
from tandem_writer.domain.move_wait import MOVE_GRACE_S, created_after_waiting, move_wait
from tandem_writer.domain.retry import RetryPolicy

T0 = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)
NEW = "new@example.com"


def _marked(*, marked: bool = True) -> SyncCommand:
    payload = {"Email": NEW, "Forenames": "Grace", "Surname": "Hopper"}
    return sync_command("demo", System.ACCESSPLANIT, payload, email=NEW, occurred=T0, may_precede_move=marked)


@pytest.mark.parametrize(
    ("waited_s", "wait_s"),
    [(0.0, 1.0), (0.5, 1.0), (1.0, 1.0), (2.0, 2.0), (4.0, 4.0), (8.0, 4.0), (11.5, 0.5)],
)
def test_each_wait_is_as_long_as_the_command_waited_so_far_within_the_grace(waited_s: float, wait_s: float) -> None:
    wait = move_wait(_marked(), T0 + timedelta(seconds=waited_s), MOVE_GRACE_S)

    assert wait is not None
    assert (wait.wait_s, wait.grace_s) == (wait_s, MOVE_GRACE_S)


def test_after_the_grace_it_is_written_at_once() -> None:
    assert move_wait(_marked(), T0 + timedelta(seconds=MOVE_GRACE_S), MOVE_GRACE_S) is None
    assert move_wait(_marked(), T0 + timedelta(seconds=60), MOVE_GRACE_S) is None


def test_a_command_not_marked_or_a_grace_of_zero_never_waits() -> None:
    assert move_wait(_marked(marked=False), T0, MOVE_GRACE_S) is None
    assert move_wait(_marked(), T0, 0.0) is None
    assert created_after_waiting(_marked(marked=False), NEW, MOVE_GRACE_S) == ""
    assert created_after_waiting(_marked(), NEW, 0.0) == ""


def test_the_wait_is_a_deferral_of_the_same_attempt_not_a_failed_one() -> None:
    command = _marked()
    wait = move_wait(command, T0, MOVE_GRACE_S)
    assert wait is not None
    policy = RetryPolicy.from_delays([10, 60, 300, 1800, 7200])

    verdict = after_write(command, wait.outcome(f"no user has {NEW}"), policy, T0)

    assert (verdict.disposition, verdict.status) == (Disposition.DEFERRED, TraceStatus.RETRY_PENDING)
    assert verdict.retry is not None
    assert (verdict.retry.attempt, verdict.retry.not_before) == (command.attempt, T0 + timedelta(seconds=1))
    assert verdict.summary == (
        f"Retry pending (attempt 1 of 6, next at 2026-12-04 03:00:01 UTC): Not written to accessplanit yet: no user "
        f"has {NEW}; this Mailchimp change may have overtaken the address change that moves a known contact there: "
        "waiting up to 12 s for it, looked up again in 1.0 s"
    )
