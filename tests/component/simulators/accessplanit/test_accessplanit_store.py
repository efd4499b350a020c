"""The simulator's store keeps parsed users in memory: what it answers must stay what the database holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from accessplanit_sim.store import Store


def user(user_id: int, email: str) -> dict[str, object]:
    return {"ID": str(user_id), "Email": email, "CustomFields": {"Colour": "red"}}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "ap.sqlite3")


def test_reads_follow_writes_and_a_callers_changes_never_reach_the_store(store: Store, tmp_path: Path) -> None:
    doc = user(200001, "a@example.com")
    with store.transaction():
        store.put_user(doc)
    doc["Email"] = "changed-after-put@example.com"
    read = store.user("200001")
    assert read is not None and read["Email"] == "a@example.com"
    read["Email"] = "changed-after-read@example.com"
    assert [u["Email"] for u in store.users() if u["ID"] == "200001"] == ["a@example.com"]

    with store.transaction():
        store.remove_user("200001")
    assert store.user("200001") is None
    assert all(u["ID"] != "200001" for u in store.users())


def test_a_rolled_back_write_is_not_answered(store: Store, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.put_user(user(200002, "b@example.com"))
        raise RuntimeError("the audit insert failed")
    assert store.user("200002") is None
    assert all(u["ID"] != "200002" for u in store.users())
    # A second store on the same file (a restarted simulator) agrees.
    store.close()
    assert Store(tmp_path / "ap.sqlite3").user("200002") is None


def test_users_come_in_id_order(store: Store) -> None:
    with store.transaction():
        for user_id in (200010, 200003, 200007):
            store.put_user(user(user_id, f"{user_id}@example.com"))
    ids = [int(str(u["ID"])) for u in store.users()]
    assert ids == sorted(ids)
