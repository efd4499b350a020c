"""The benchmark's arithmetic (pure): percentiles, throughput, the Mailchimp connection budget and ratios."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

# Mailchimp allows 10 simultaneous connections per account; with every request taking `latency_s`, no client can
# make more than 10 / latency_s requests a second. That ceiling is the budget a sync can use up.
MAILCHIMP_MAX_CONNECTIONS = 10


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100) with linear interpolation between closest ranks (numpy's default method)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class LatencySummary:
    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def summarize_latencies(latencies_s: Iterable[float]) -> LatencySummary | None:
    """p50/p95/p99 of latencies given in seconds, reported in milliseconds; None when nothing was measured."""
    values = [v * 1000 for v in latencies_s]
    if not values:
        return None
    return LatencySummary(
        count=len(values),
        p50_ms=round(percentile(values, 50), 2),
        p95_ms=round(percentile(values, 95), 2),
        p99_ms=round(percentile(values, 99), 2),
        max_ms=round(max(values), 2),
        mean_ms=round(sum(values) / len(values), 2),
    )


def throughput(count: int, first_at: float, last_at: float) -> float:
    """Events per second between the first start and the last finish; 0 when nothing or no time elapsed."""
    elapsed = last_at - first_at
    if count <= 0 or elapsed <= 0:
        return 0.0
    return count / elapsed


def budget_ceiling(latency_s: float, connections: int = MAILCHIMP_MAX_CONNECTIONS) -> float:
    """Requests per second the connection limit allows when every request takes `latency_s`."""
    if latency_s <= 0:
        raise ValueError("the budget is only defined for a positive per-request latency")
    return connections / latency_s


def budget_use(requests_per_s: float, latency_s: float, connections: int = MAILCHIMP_MAX_CONNECTIONS) -> float:
    """Share (0..1+) of the Mailchimp connection budget that `requests_per_s` achieves."""
    return requests_per_s / budget_ceiling(latency_s, connections)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator ÷ denominator, None when either is missing or the denominator is zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def cpu_percent(cpu_seconds: float, wall_seconds: float) -> float:
    """CPU use over a window, in percent of one core (200 = both cores of a 2-core machine)."""
    if wall_seconds <= 0:
        return 0.0
    return 100.0 * cpu_seconds / wall_seconds
