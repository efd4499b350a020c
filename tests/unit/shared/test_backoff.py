"""`Backoff`: the retry loops' delays (exact without jitter) and the waiters' (spread below the same ceiling)."""

from __future__ import annotations

import random

from tandem_shared.concurrency import Backoff


def test_without_jitter_each_delay_doubles_up_to_the_ceiling() -> None:
    backoff = Backoff(1.0, 30.0, jitter=False)
    assert [backoff.next_delay() for _ in range(8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_with_jitter_each_delay_lies_between_half_the_ceiling_and_the_ceiling() -> None:
    backoff = Backoff(0.2, 10.0, random.Random(7))
    ceilings = [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0]
    delays = [backoff.next_delay() for _ in ceilings]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert delays != ceilings


def test_no_delay_stays_no_delay() -> None:
    backoff = Backoff(0.0, 0.0, jitter=False)
    assert [backoff.next_delay() for _ in range(3)] == [0.0, 0.0, 0.0]
