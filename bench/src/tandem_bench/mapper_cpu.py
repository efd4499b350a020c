"""The mapper's CPU per backfill change: its service in this process, on the devstack's Redis, Kafka left out.

    TANDEM_REDIS_PORT=... .venv/bin/python -m tandem_bench.mapper_cpu -n 5000 [--profile FILE]

N changes shaped as a backfill publishes them (`repair_event` of synthetic accessplanit users, each a new contact)
are encoded as Kafka values, then decided in batches of the mapper's size: parsed by the contract as the consumer
does, and handed to `Mapper.on_changes` with the real Redis state store. The producer is a stand-in that accepts
every record at once, so the figure is the mapper's own code and its Redis handling (aiokafka's send is not in it).
Reports `time.process_time` per change per round (on a shared machine, compare medians of many rounds); `--profile`
writes a cProfile of the last timed round.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import statistics
import sys
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from tandem_devstack.infra import ensure_redis
from tandem_mapper.entrypoint import decide_batch
from tandem_mapper.service import Mapper
from tandem_mapper.settings import MapperSettings
from tandem_shared.contact_hash import DEFAULT_KEY_REF, KEY_REF_ENV
from tandem_shared.contracts import ChangeEvent, InstanceConfig, System, utcnow
from tandem_shared.instances import StaticInstanceRegistry, demo_instance
from tandem_shared.reconcile.domain import Repair, ap_user, field_pairs, repair_event
from tandem_shared.redis.client import connect_url
from tandem_shared.redis.purge import purge_instance
from tandem_shared.redis.state import RedisStateStore


class AcceptingProducer:
    """Every record acknowledged at once (the mapper waits for its deliveries; Kafka's cost is measured elsewhere)."""

    def __init__(self) -> None:
        self.records = 0

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None,
        headers: Mapping[str, str],
        partition: int | None = None,
    ) -> asyncio.Future[Any]:
        self.records += 1
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def backfill_values(instance: InstanceConfig, n: int, tag: str) -> list[bytes]:
    """N backfill changes as the reconciler publishes them, each for a user of its own, encoded as on the topic."""
    pairs, received = field_pairs(instance), utcnow()
    updated = datetime(2026, 11, 1, tzinfo=UTC)
    values = []
    for i in range(n):
        record = {
            "ID": f"bf-{tag}-{i}",
            "Email": f"b{i}.{tag}@example.com",
            "Forenames": f"Ada{i % 97}",
            "Surname": f"Lovelace{i % 89}",
            "DateCreated": (updated - timedelta(days=30)).isoformat(),
            "DateUpdated": (updated + timedelta(seconds=i)).isoformat(),
            "Status": "Active",
            "UpdatedByID": "1",
        }
        user = ap_user(record)
        assert user is not None
        event = repair_event(
            instance, Repair(System.ACCESSPLANIT, ap_user=user), run_id=f"bf-{tag}", received_at=received, pairs=pairs
        )
        assert event is not None
        values.append(event.model_dump_json().encode())
    return values


async def decide_all(mapper: Mapper, values: list[bytes], batch: int) -> None:
    for start in range(0, len(values), batch):
        events = [ChangeEvent.model_validate_json(v) for v in values[start : start + batch]]
        await decide_batch(mapper, events)


async def measure(n: int, warmup: int, batch: int, rounds: int, profile: str | None) -> list[float]:
    instance = demo_instance().model_copy(update={"id": f"cpu-{uuid.uuid4().hex[:8]}"})
    producer = AcceptingProducer()
    state_client = connect_url(ensure_redis().address)
    state = RedisStateStore(state_client, owns_client=True)
    mapper = Mapper(producer, MapperSettings(), StaticInstanceRegistry([instance]), state)
    tag = uuid.uuid4().hex[:6]
    try:
        await decide_all(mapper, backfill_values(instance, warmup, f"w{tag}"), batch)
        figures = []
        for r in range(rounds):
            values = backfill_values(instance, n, f"{r}{tag}")
            profiler = cProfile.Profile() if profile else None
            before = time.process_time()
            if profiler:
                profiler.enable()
            await decide_all(mapper, values, batch)
            if profiler:
                profiler.disable()
                profiler.dump_stats(profile or "")
            figures.append(1000 * (time.process_time() - before) / n)
        return figures
    finally:
        await purge_instance(state_client, instance.id)  # its state would outlive the run by the state's TTL
        await state.close()


def main() -> int:
    # State keys are keyed hashes of addresses: a throwaway key unless the environment names the deployment's.
    if KEY_REF_ENV not in os.environ and DEFAULT_KEY_REF == "env:TANDEM_CONTACT_HASH_KEY":
        os.environ.setdefault("TANDEM_CONTACT_HASH_KEY", uuid.uuid4().hex)
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--batch", type=int, default=MapperSettings().batch_max_records)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", help="write a cProfile of the (last) timed round here")
    args = parser.parse_args()
    figures = asyncio.run(measure(args.n, args.warmup, args.batch, args.rounds, args.profile))
    shown = " ".join(f"{f:.3f}" for f in figures)
    summary = f"best={min(figures):.3f} median={statistics.median(figures):.3f}"
    sys.stdout.write(f"n={args.n} batch={args.batch} cpu_ms_per_change={shown} {summary}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
