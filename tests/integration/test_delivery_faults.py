"""A flaky Mailchimp (30% of writes failing with 5xx, 429 and timeouts) and a misconfigured audience, end to end:
transient failures are retried until applied, permanent ones are dead-lettered with their reasons, and an operator
replays them once the cause is fixed — each change applied exactly once."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from support.delivery import (
    FAST_DELIVERY_ENV,
    MAX_ATTEMPTS,
    TERMINAL,
    Parked,
    Sims,
    applied,
    by_user,
    delivery_traces,
    left_on_retry_tiers,
    parked,
    unique_email,
)
from support.kafka import connect
from support.stack import RunningStack, running_stack
from support.topics import read_all, wait_for_records
from support.waiting import eventually
from tandem_shared.contracts import FieldMapping, Headers, Stage, TraceRecord, TraceStatus, Trigger
from tandem_shared.contracts.topics import COMMANDS, COMMANDS_DLQ, TRACE
from tandem_shared.instance_store import put_instance
from tandem_shared.instances import demo_instance

pytestmark = pytest.mark.integration

PHONE = 4  # the PHONE merge field of the simulator's audience


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    tmp: Path = tmp_path_factory.mktemp("faults")
    # PHONE is left unmapped: the audience requiring it is how these tests make Mailchimp refuse a write.
    without_phone = [m for m in demo_instance().mappings if m.mailchimp != "PHONE"]
    with running_stack(
        kafka_bootstrap, redis_url, tmp, extra_env=FAST_DELIVERY_ENV, instance_changes={"mappings": without_phone}
    ) as running:
        yield running


@pytest.fixture
async def sims(stack: RunningStack) -> AsyncIterator[Sims]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield Sims(stack, client)


def tandem_replay(stack: RunningStack, *args: str) -> str:
    """The operator's command, as a separate process with the same environment a shell would give it."""
    result = subprocess.run(
        [sys.executable, "-m", "tandem_cli", "replay", "--instance", stack.instance.id, *args],
        env={**stack.stack.env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def replays_on_main(stack: RunningStack) -> list[Parked]:
    return [p for p in await parked(stack.kafka, [COMMANDS], stack.instance.id) if Headers.REPLAYED_FROM in p.headers]


async def settled(stack: RunningStack, user_ids: set[str], timeout: float = 120) -> dict[str, list[TraceRecord]]:
    """Every user's change has reached an end: applied, or dead-lettered."""

    async def probe() -> dict[str, list[TraceRecord]] | None:
        grouped = by_user(await delivery_traces(stack.kafka, stack.instance.id))
        done = {u for u in user_ids if any(r.status in TERMINAL for r in grouped.get(u, []))}
        return grouped if done == user_ids else None

    return await eventually(probe, timeout=timeout, interval=1.0)


async def test_flaky_writes_are_retried_permanent_failures_dead_lettered_and_replayed_exactly_once(
    stack: RunningStack, sims: Sims
) -> None:
    # Some faults for certain, then 30% of all member writes: 10% each of 503, 429 and a hang past the timeout.
    await sims.control(fault="503", count=2)
    await sims.control(fault="timeout", count=1, hang_ms=2500)
    await sims.control(fault="429", count=1)
    await sims.control(fault="503", probability=0.1)
    await sims.control(fault="429", probability=0.1 / 0.9)
    await sims.control(fault="timeout", probability=0.1 / 0.8, hang_ms=2500)

    flaky = {await sims.create_user(unique_email(f"flaky{i}"), f"Flaky{i}") for i in range(12)}
    traces = await settled(stack, flaky)
    outcomes = {u: next(r for r in traces[u] if r.status in TERMINAL) for u in flaky}
    retried = [r for u in flaky for r in traces[u] if r.status is TraceStatus.RETRY_PENDING]
    assert len(retried) >= 4, "the certain faults alone make four retries"
    for user in flaky:
        attempts = sorted(r.attempt for r in traces[user])
        assert attempts == list(range(1, len(attempts) + 1)), f"user {user}: one trace per attempt, in order"
        assert len(attempts) <= MAX_ATTEMPTS
        assert all(r.stage is (Stage.WRITER if r.attempt == 1 else Stage.RETRY) for r in traces[user])
    for record in retried:
        assert record.summary.startswith(f"Retry pending (attempt {record.attempt + 1} of {MAX_ATTEMPTS}, next at")
        assert record.error is not None and not record.error.permanent
    # With six attempts at 30% a give-up is rare but possible; it is then a dead letter after all six.
    gave_up = {u for u, r in outcomes.items() if r.status is TraceStatus.DEAD_LETTERED}
    assert all(outcomes[u].attempt == MAX_ATTEMPTS for u in gave_up)

    # The vendor recovers, but the audience gets a required field Tandem does not map: every write of a new member
    # is refused for good.
    await sims.clear_controls()
    await sims.require_merge_field(PHONE, True)
    refused = {await sims.create_user(unique_email(f"refused{i}"), f"Refused{i}") for i in range(3)}
    traces = await settled(stack, refused)
    for user in refused:
        [dead] = [r for r in traces[user] if r.status is TraceStatus.DEAD_LETTERED]
        assert dead.error is not None and dead.error.permanent
        assert dead.summary.startswith("Dead-lettered (permanent error, not retried)")
        assert "PHONE" in dead.error.message
    dead_letters = await parked(stack.kafka, [COMMANDS_DLQ], stack.instance.id)
    assert {p.command.identity.accessplanit_user_id for p in dead_letters} == refused | gave_up
    for letter in dead_letters:
        h = letter.headers
        assert h[Headers.ORIGINAL_TOPIC] == COMMANDS
        assert int(h[Headers.ORIGINAL_OFFSET]) >= 0 and int(h[Headers.ORIGINAL_PARTITION]) == letter.record.partition
        assert h[Headers.FIRST_FAILED_AT] <= h[Headers.LAST_FAILED_AT]
        assert h[Headers.EXCEPTION_TYPE] and h[Headers.EXCEPTION_MESSAGE]
        assert int(h[Headers.ATTEMPT]) == letter.command.attempt

    async def retry_tiers_drained() -> bool:
        group = stack.stack.env["TANDEM_WRITER_GROUP_ID"]
        return await left_on_retry_tiers(stack.kafka, group, stack.instance.id) == []

    assert await eventually(retry_tiers_drained, timeout=30)

    # The cause is fixed; the operator looks first, then replays.
    await sims.require_merge_field(PHONE, False)
    writes_before = await sims.member_writes()
    listing = tandem_replay(stack, "--from", "dlq", "--dry-run")
    assert listing.count("would replay") == len(refused | gave_up) + 1  # one line each, and the summary
    assert "Dry run: nothing was published." in listing
    assert await replays_on_main(stack) == []

    output = tandem_replay(stack, "--from", "dlq")
    assert f"replayed {len(refused | gave_up)}, already applied 0" in output
    everyone = flaky | refused
    traces = await settled(stack, everyone)
    for user in everyone:
        assert [r.status for r in traces[user]].count(TraceStatus.SUCCEEDED) == 1, f"user {user}"
    assert await sims.member_writes() == writes_before + len(refused | gave_up)
    replays = await replays_on_main(stack)
    originals = {p.command.idempotency_key: p for p in dead_letters}
    assert len(replays) == len(originals)
    for replay in replays:
        original = originals[replay.command.idempotency_key]
        assert replay.headers[Headers.REPLAYED_FROM] == (
            f"{COMMANDS_DLQ}@{original.record.partition}:{original.record.offset}"
        )
        assert replay.command.attempt == 1 and replay.command.trigger is Trigger.REPLAY
        assert replay.command.original_execution_id == original.command.execution_id
        assert replay.command.execution_id != original.command.execution_id
    commands = [p.command for p in await parked(stack.kafka, [COMMANDS], stack.instance.id)]
    assert all((await applied(stack.redis, commands)).values())

    # Replaying again finds everything applied and publishes nothing.
    again = tandem_replay(stack, "--from", "dlq")
    assert f"replayed 0, already applied {len(originals)}" in again
    assert len(await replays_on_main(stack)) == len(replays)
    replay_traces = await read_all(
        stack.kafka, TRACE, TraceRecord, where=lambda r: r.instance_id == stack.instance.id and r.stage is Stage.REPLAY
    )
    assert {r.original_execution_id for r in replay_traces} == {p.command.execution_id for p in dead_letters}


async def test_a_dead_letter_replayed_with_remap_is_mapped_again_with_the_current_configuration(
    stack: RunningStack, sims: Sims
) -> None:
    await sims.require_merge_field(PHONE, True)
    email = unique_email("remap")
    user = await sims.create_user(email, "Remap", Phone="01632 960001")
    [dead] = (await settled(stack, {user}))[user]
    assert dead.status is TraceStatus.DEAD_LETTERED

    # The operator maps the accessplanit telephone to PHONE, waits until the mapper uses it, and re-maps.
    mapped = stack.instance.model_copy(
        update={
            "version": stack.instance.version + 1,
            "mappings": [*stack.instance.mappings, FieldMapping(mailchimp="PHONE", accessplanit="Phone")],
        }
    )
    await put_instance(connect(stack.kafka), mapped)

    async def mapper_maps_phone() -> bool:
        probe = await sims.create_user(unique_email("probe"), "Probe", Phone="01632 960002")
        [mapping] = await wait_for_records(
            stack.kafka,
            TRACE,
            TraceRecord,
            where=lambda r: (
                r.instance_id == stack.instance.id and r.stage is Stage.MAPPER and r.accessplanit_user_id == probe
            ),
            until=bool,
        )
        return "PHONE" in ((mapping.output.data_out or {}).get("merge_fields") or {})

    await eventually(mapper_maps_phone, timeout=60)

    output = tandem_replay(stack, "--from", "dlq", "--remap", "--execution", dead.execution_id)
    assert "replay (remap)" in output and "replayed 1" in output

    async def phone() -> str | None:
        member = await sims.member(email)
        return member["merge_fields"]["PHONE"] if member else None

    assert await eventually(phone, timeout=60) == "01632 960001"
    traces = await read_all(
        stack.kafka,
        TRACE,
        TraceRecord,
        where=lambda r: r.instance_id == stack.instance.id and r.original_execution_id == dead.execution_id,
    )
    stages = {r.stage: r for r in traces}
    assert set(stages) >= {Stage.REPLAY, Stage.MAPPER, Stage.WRITER}
    assert stages[Stage.MAPPER].trigger is Trigger.REPLAY
    assert stages[Stage.WRITER].status is TraceStatus.SUCCEEDED
    assert len({r.execution_id for r in traces}) == 1, "one new execution, linked to the original"
    await sims.require_merge_field(PHONE, False)
