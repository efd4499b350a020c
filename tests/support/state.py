"""Reading single sides of the sync state in tests, through the store's one read (`load_many`)."""

from __future__ import annotations

from tandem_shared.contracts import System
from tandem_shared.redis.state import StateStore
from tandem_shared.sync.rules import SideState


async def side(store: StateStore, instance_id: str, system: System, email: str) -> SideState | None:
    return (await store.load_many([(instance_id, system, email)])).side(instance_id, system, email)


async def user_email(store: StateStore, instance_id: str, user_id: str) -> str | None:
    return (await store.load_many([], user_ids=[(instance_id, user_id)])).user_email(instance_id, user_id)
