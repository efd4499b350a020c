from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tandem_shared.contracts import ErrorInfo, Headers
from tandem_shared.contracts.topics import COMMANDS, COMMANDS_RETRY
from tandem_writer.domain.retry import Origin, RetryPolicy, forward_headers, header_attempt, not_before

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
DEFAULT = RetryPolicy.from_delays([10, 60, 300, 1800, 7200])


def test_the_default_schedule_makes_six_attempts_with_growing_delays_one_tier_each() -> None:
    hops = [DEFAULT.after_failure(attempt, NOW) for attempt in range(1, 6)]
    assert [h.attempt for h in hops if h] == [2, 3, 4, 5, 6]
    assert [h.topic for h in hops if h] == list(COMMANDS_RETRY)
    assert [(h.not_before - NOW).total_seconds() for h in hops if h] == [10, 60, 300, 1800, 7200]
    assert DEFAULT.max_attempts == 6
    assert DEFAULT.after_failure(6, NOW) is None


def test_more_delays_than_tiers_reuse_the_last_tier() -> None:
    policy = RetryPolicy.from_delays([1, 2, 4, 8, 16, 32, 64])
    hops = [policy.after_failure(attempt, NOW) for attempt in range(1, 8)]
    assert [h.topic for h in hops if h][-3:] == [COMMANDS_RETRY[-1]] * 3
    assert policy.after_failure(8, NOW) is None


def test_a_deferral_keeps_the_attempt_and_waits_in_the_slowest_tier_not_longer_than_the_wait() -> None:
    hop = DEFAULT.deferral(3, 125.0, NOW)
    assert hop.attempt == 3
    assert hop.topic == COMMANDS_RETRY[1]  # 60 s tier: everything ahead of it there is due before it
    assert hop.not_before == NOW + timedelta(seconds=125)
    assert DEFAULT.deferral(1, 2.0, NOW).topic == COMMANDS_RETRY[0]


def test_forward_headers_keep_the_first_origin_and_failure_and_record_the_latest() -> None:
    error = ErrorInfo(error_class="TooManyRequests", message="x" * 5000, permanent=False)
    first = forward_headers(
        {Headers.INSTANCE_ID: "i1", Headers.EXECUTION_ID: "e1", "unrelated": "dropped"},
        Origin(COMMANDS, 3, 41, 1_700_000_000_000),
        attempt=2,
        error=error,
        now=NOW,
        not_before_at=NOW + timedelta(seconds=10),
    )
    later = NOW + timedelta(minutes=1)
    second = forward_headers(
        first,
        Origin(COMMANDS_RETRY[0], 3, 7, 1_700_000_100_000),
        attempt=3,
        error=error,
        now=later,
        not_before_at=None,
    )
    assert "unrelated" not in first
    assert second[Headers.INSTANCE_ID] == "i1" and second[Headers.EXECUTION_ID] == "e1"
    assert (second[Headers.ORIGINAL_TOPIC], second[Headers.ORIGINAL_PARTITION], second[Headers.ORIGINAL_OFFSET]) == (
        COMMANDS,
        "3",
        "41",
    )
    assert second[Headers.FIRST_FAILED_AT] == NOW.isoformat()
    assert second[Headers.LAST_FAILED_AT] == later.isoformat()
    assert len(second[Headers.EXCEPTION_MESSAGE]) == 1000
    assert second[Headers.ERROR_PERMANENT] == "false"
    assert Headers.NOT_BEFORE not in second
    assert header_attempt(second) == 3
    assert not_before(first) == NOW + timedelta(seconds=10)
