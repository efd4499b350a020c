"""A Mailchimp profile change that overtook its member's address change, written to the accessplanit simulator
(issue 15): Mailchimp moved Ada from ada@… to new@… and then changed her names; the profile change's command reached
the writer before the move did. It creates no second user: it waits for the move, then writes the names to the
moved user, and leaves out an edit of that user Tandem has not read; after the grace a user new to accessplanit is
created as before."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from component.accessplanit.accessplanit_fixtures import command, create_user, instance, requests, users
from component.simulators.accessplanit.accessplanit_testkit import SimServer
from redis.asyncio import Redis

from tandem_shared.contracts import InstanceConfig, Operation, SyncCommand, System
from tandem_shared.redis.deferred import RedisDeferredDeliveries
from tandem_shared.redis.state import RedisStateStore
from tandem_shared.sync.rules import field_digest, ts_ms
from tandem_shared.vendors.accessplanit.client import AccessplanitClients
from tandem_shared.vendors.accessplanit.settings import AccessplanitSettings
from tandem_writer.deferred_edits import UnseenEditGuard
from tandem_writer.side_reads import SideReads
from tandem_writer.targets.accessplanit import AccessplanitTarget

OLD, NEW = "ada@example.com", "new@example.com"
GRACE_S = 12.0


@pytest.fixture
def tenant(ap_server: SimServer, sim: httpx.AsyncClient) -> InstanceConfig:
    return instance(ap_server.base_url)


@pytest.fixture
def state(redis: Redis) -> RedisStateStore:
    return RedisStateStore(redis)


@pytest.fixture
async def target(redis: Redis, state: RedisStateStore) -> AsyncIterator[AccessplanitTarget]:
    """As the writer composes it: the pre-write guard and the state reads on the same Redis."""
    target = AccessplanitTarget(
        AccessplanitClients(redis, AccessplanitSettings(http_timeout_s=2.0, budget_max_wait_s=1.0)),
        UnseenEditGuard(RedisDeferredDeliveries(redis), state),
        sides=SideReads(state),
        move_grace_s=GRACE_S,
    )
    yield target
    await target.close()


def _profile_change(*, decided_ago_s: float, changed_ago_s: float = 3.0) -> SyncCommand:
    """The marked command the mapper decided for Mailchimp's profile change of new@… (no contact known there)."""
    now = datetime.now(UTC)
    return command({"Email": NEW, "Forenames": "Grace", "Surname": "Hopper"}, email=NEW).model_copy(
        update={
            "may_precede_move": True,
            "source_occurred_at": now - timedelta(seconds=changed_ago_s),
            "created_at": now - timedelta(seconds=decided_ago_s),
        }
    )


async def _known_at_old(state: RedisStateStore, user_id: str) -> SyncCommand:
    """Tandem saw Ada at ada@… (her names, 10 s ago); the command of Mailchimp's upemail, moving her to new@…."""
    transaction = state.transaction()
    transaction.merge(
        "ap-test",
        System.ACCESSPLANIT,
        OLD,
        {"Forenames": field_digest("Ada"), "Surname": field_digest("Lovelace")},
        source_ts_ms=ts_ms(datetime.now(UTC) - timedelta(seconds=10)),
        origin="seen",
    )
    await transaction.execute()
    return command({"Email": NEW}, operation=Operation.CHANGE_EMAIL, email=NEW, old_email=OLD).model_copy(
        update={"target_user_id": user_id, "command_id": "c-move"}
    )


async def test_with_no_user_at_its_address_it_waits_for_the_move_and_creates_nothing(
    target: AccessplanitTarget, tenant: InstanceConfig, admin: httpx.AsyncClient, sim: httpx.AsyncClient
) -> None:
    await create_user(admin)  # Ada, still at ada@…: Mailchimp's move of her member has not reached accessplanit

    outcome = await target.write(_profile_change(decided_ago_s=0), tenant)

    assert not outcome.ok
    assert outcome.defer_s == 1.0
    assert outcome.error is not None and not outcome.error.permanent
    assert outcome.error.error_class == "MoveAwaited"
    assert outcome.summary == (
        f"Not written to accessplanit yet: no user has {NEW}; this Mailchimp change may have overtaken the address "
        f"change that moves a known contact there: waiting up to {GRACE_S:g} s for it, looked up again in 1.0 s"
    )
    assert [u["Email"] for u in await users(admin)] == [OLD]
    assert await requests(sim, "POST", "/api/v2/User") == 1  # only the admin's create


async def test_once_the_move_is_written_and_recorded_the_names_go_to_the_moved_user(
    target: AccessplanitTarget, state: RedisStateStore, tenant: InstanceConfig, admin: httpx.AsyncClient
) -> None:
    ada = await create_user(admin)
    move = await _known_at_old(state, ada["ID"])
    profile = _profile_change(decided_ago_s=2)
    assert (await target.write(profile, tenant)).defer_s is not None

    moved = await target.write(move, tenant)
    assert moved.ok, moved.summary
    # Landed, not recorded yet: judged now, Ada's names would look like someone's edit Tandem never saw there.
    landing = await target.write(profile, tenant)
    assert landing.defer_s is not None
    assert f"accessplanit user {ada['ID']} has {NEW}, where Tandem knows no contact yet" in landing.summary
    await state.record_written(move)

    outcome = await target.write(profile, tenant)

    assert outcome.ok and outcome.wrote, outcome.summary
    assert outcome.summary == f"Updated accessplanit user {ada['ID']} ({NEW}): Forenames, Surname"
    [after] = await users(admin)
    assert (after["ID"], after["Email"], after["Forenames"], after["Surname"]) == (ada["ID"], NEW, "Grace", "Hopper")


async def test_an_edit_of_the_moved_user_tandem_has_not_read_is_not_written_over(
    target: AccessplanitTarget, state: RedisStateStore, tenant: InstanceConfig, admin: httpx.AsyncClient
) -> None:
    """The reverse risk of waiting: the profile change, written after the move, is older than a person's edit of
    the moved user made meanwhile, whose delivery Tandem has not read yet. The pre-write guard leaves it in place."""
    ada = await create_user(admin)
    move = await _known_at_old(state, ada["ID"])
    profile = _profile_change(decided_ago_s=4)
    assert (await target.write(move, tenant)).ok
    await state.record_written(move)
    (await admin.put(f"/User/{ada['ID']}", json={"Forenames": "Hedy"})).raise_for_status()

    outcome = await target.write(profile, tenant)

    assert outcome.ok and outcome.wrote, outcome.summary
    assert outcome.summary.startswith(f"Updated accessplanit user {ada['ID']} ({NEW}): Surname; ")
    assert "Forenames holds 'Hedy', a value Tandem did not write nor see" in outcome.summary
    assert outcome.written is not None and "Forenames" not in outcome.written.payload
    [after] = await users(admin)
    assert (after["Email"], after["Forenames"], after["Surname"]) == (NEW, "Hedy", "Hopper")


async def test_after_the_grace_a_contact_new_to_accessplanit_is_created(
    target: AccessplanitTarget, tenant: InstanceConfig, admin: httpx.AsyncClient
) -> None:
    outcome = await target.write(_profile_change(decided_ago_s=GRACE_S + 1), tenant)

    assert outcome.ok and outcome.wrote, outcome.summary
    [created] = await users(admin, NEW)
    assert (created["Forenames"], created["Surname"]) == ("Grace", "Hopper")
    assert outcome.summary == (
        f"Created accessplanit user {created['ID']} ({NEW}) in account 1; no user had {NEW} {GRACE_S:g} s after "
        "this change was decided, the wait for a Mailchimp address change to it"
    )


async def test_an_unmarked_create_does_not_wait(
    target: AccessplanitTarget, tenant: InstanceConfig, admin: httpx.AsyncClient
) -> None:
    outcome = await target.write(
        _profile_change(decided_ago_s=0).model_copy(update={"may_precede_move": False}), tenant
    )

    assert outcome.ok and outcome.wrote, outcome.summary
    assert outcome.summary.startswith("Created accessplanit user ")
    assert len(await users(admin, NEW)) == 1
