"""Simulator-only test and benchmark controls: injected latency and faults, request statistics, in-flight counts."""

import random
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FaultKind = Literal["500", "503", "429", "429_empty", "403_empty", "502_html", "timeout"]
ANY_ROUTE = "*"


class ControlRequest(BaseModel):
    """Body of ``POST /_sim/controls``: a latency for a route, or a fault rule, or both."""

    model_config = ConfigDict(extra="forbid")

    route: str = ANY_ROUTE
    latency_ms: int | None = Field(default=None, ge=0)
    # Batch subscribe only: the simulated cost per member, replacing the BATCH_LATENCY_PER_MEMBER_MS setting until
    # the controls are cleared.
    latency_per_member_ms: float | None = Field(default=None, ge=0)
    fault: FaultKind | None = None
    probability: float | None = Field(default=None, ge=0.0, le=1.0)
    count: int | None = Field(default=None, ge=1)
    # Only for "timeout": how long the request hangs before the server gives up (Mailchimp's limit is 120 s).
    hang_ms: int = Field(default=130_000, ge=0)

    @model_validator(mode="after")
    def _one_trigger(self) -> "ControlRequest":
        if self.fault is None and self.latency_ms is None and self.latency_per_member_ms is None:
            raise ValueError("give latency_ms, latency_per_member_ms and/or fault")
        if self.fault is not None and self.probability is not None and self.count is not None:
            raise ValueError("a fault fires either with a probability or for the next `count` requests")
        return self


@dataclass
class FaultRule:
    route: str
    kind: FaultKind
    probability: float | None
    remaining: int | None
    hang_ms: int


class Controls:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._latency: dict[str, int] = {}
        self._faults: list[FaultRule] = []
        self._member_latency_ms: float | None = None

    def add(self, request: ControlRequest) -> None:
        if request.latency_per_member_ms is not None:
            self._member_latency_ms = request.latency_per_member_ms
        if request.latency_ms is not None:
            if request.latency_ms == 0:
                self._latency.pop(request.route, None)
            else:
                self._latency[request.route] = request.latency_ms
        if request.fault is not None:
            # Without a trigger a fault applies to every matching request until cleared.
            probability = request.probability if request.count is None else None
            if probability is None and request.count is None:
                probability = 1.0
            self._faults.append(FaultRule(request.route, request.fault, probability, request.count, request.hang_ms))

    def clear(self) -> None:
        self._latency.clear()
        self._faults.clear()
        self._member_latency_ms = None

    def member_latency_ms(self, configured: float) -> float:
        """A batch subscribe's cost per member: the runtime control if one is set, else the setting."""
        return configured if self._member_latency_ms is None else self._member_latency_ms

    def latency_ms(self, route: str) -> int:
        return self._latency.get(route, self._latency.get(ANY_ROUTE, 0))

    def take_fault(self, route: str) -> FaultRule | None:
        for rule in self._faults:
            if rule.route not in (route, ANY_ROUTE):
                continue
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining == 0:
                    self._faults.remove(rule)
                return rule
            if rule.probability is not None and self._rng.random() < rule.probability:
                return rule
        return None

    def snapshot(self) -> dict[str, Any]:
        return {
            "latency_ms": dict(self._latency),
            "latency_per_member_ms": self._member_latency_ms,
            "faults": [asdict(r) for r in self._faults],
        }


class Stats:
    """Counts for benchmarks. Accounts are named by account id, never by API key."""

    def __init__(self, max_in_flight: int) -> None:
        self._max_in_flight = max_in_flight
        self._by_route: dict[str, Counter[int]] = defaultdict(Counter)
        self._in_flight: Counter[str] = Counter()
        self._peak: Counter[str] = Counter()
        self._rejected: Counter[str] = Counter()
        # Members written, by route: a batch subscribe writes many in one request, and a benchmark counts how
        # often each contact was written, not only how many requests carried the writes.
        self._members_written: Counter[str] = Counter()

    def enter(self, account_id: str) -> bool:
        """Claims an in-flight slot; False (and nothing claimed) when the account is at its limit."""
        if self._in_flight[account_id] >= self._max_in_flight:
            self._rejected[account_id] += 1
            return False
        self._in_flight[account_id] += 1
        self._peak[account_id] = max(self._peak[account_id], self._in_flight[account_id])
        return True

    def leave(self, account_id: str) -> None:
        self._in_flight[account_id] -= 1

    def record(self, route: str, status: int) -> None:
        self._by_route[route][status] += 1

    def members_written(self, route: str, count: int) -> None:
        self._members_written[route] += count

    def reset(self) -> None:
        self._by_route.clear()
        self._members_written.clear()
        self._peak.clear()
        self._rejected.clear()
        # In-flight counts are live requests, not history: they survive a reset.
        self._peak.update({a: n for a, n in self._in_flight.items() if n > 0})

    def snapshot(self) -> dict[str, Any]:
        totals: Counter[int] = Counter()
        for counts in self._by_route.values():
            totals.update(counts)
        accounts = set(self._in_flight) | set(self._peak) | set(self._rejected)
        return {
            "requests": {
                route: {str(code): n for code, n in sorted(counts.items())}
                for route, counts in sorted(self._by_route.items())
            },
            "status_totals": {str(code): n for code, n in sorted(totals.items())},
            "members_written": dict(sorted(self._members_written.items())),
            "responses_429": totals[429],
            "concurrency_rejections": sum(self._rejected.values()),
            "accounts": {
                a: {
                    "in_flight": self._in_flight[a],
                    "peak_in_flight": self._peak[a],
                    "concurrency_rejections": self._rejected[a],
                }
                for a in sorted(accounts)
            },
        }
