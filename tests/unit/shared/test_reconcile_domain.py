"""Reconciliation's pure rules: pairing by address, the categories, per-field differences and the repairs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tandem_shared.contracts import Direction, FieldMapping, Flow, System, Transform, Trigger
from tandem_shared.contracts.reconcile import RepairSides
from tandem_shared.instances import demo_instance
from tandem_shared.reconcile.domain import (
    ApUser,
    Category,
    McMember,
    Policy,
    Sides,
    accessplanit_select,
    ap_user,
    classify,
    comparable,
    field_pairs,
    mailchimp_fields,
    mc_member,
    repair_event,
    unknown_fields,
    writes_eta_s,
)

T1 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
T2 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
INSTANCE = demo_instance()
PAIRS = field_pairs(INSTANCE)


def user(user_id: str, email: str | None, first: str = "Ada", last: str = "Lovelace", at: datetime = T1) -> ApUser:
    record: dict[str, Any] = {"ID": user_id, "Email": email, "Forenames": first, "Surname": last}
    record["DateUpdated"] = at.isoformat()
    found = ap_user(record)
    assert found is not None
    return found


def member(
    email: str, first: str = "Ada", last: str = "Lovelace", status: str = "subscribed", at: datetime = T1
) -> McMember:
    doc = {"email_address": email, "status": status, "last_changed": at.isoformat()}
    found = mc_member({**doc, "merge_fields": {"FNAME": first, "LNAME": last}})
    assert found is not None
    return found


def run(sides: Sides, *, repair: bool = True, **policy: Any) -> dict[str, Any]:
    return {f.key: f for f in classify(INSTANCE, sides, Policy(repair=repair, **policy), PAIRS)}


def sides(users: list[ApUser] = [], members: list[McMember] = []) -> Sides:  # noqa: B006 - never mutated
    found = Sides()
    for u in users:
        found.add_user(u)
    for m in members:
        found.add_member(m)
    return found


def test_contacts_pair_by_address_case_insensitively_and_equal_ones_are_not_reported() -> None:
    found = run(sides([user("1", "Ada@Example.com")], [member("ada@example.COM")]))
    assert found["ada@example.com"].category is Category.EQUAL
    assert found["ada@example.com"].row is None


def test_a_difference_names_the_field_with_both_values_and_the_later_side_repairs_it() -> None:
    found = run(sides([user("1", "ada@example.com", at=T1)], [member("ada@example.com", first="Augusta", at=T2)]))
    finding = found["ada@example.com"]
    assert finding.category is Category.DIFFERENT
    assert finding.row.differences == {"FNAME ⇄ Forenames": {"accessplanit": "Ada", "mailchimp": "Augusta"}}
    assert finding.repair.source is System.MAILCHIMP
    assert finding.row.mailchimp_last_changed == T2


def test_on_a_tie_accessplanits_record_repairs() -> None:
    found = run(sides([user("1", "ada@example.com", at=T2)], [member("ada@example.com", first="Augusta", at=T2)]))
    assert found["ada@example.com"].repair.source is System.ACCESSPLANIT


def test_the_direction_and_only_decide_which_side_a_difference_may_be_written_to() -> None:
    one_way = INSTANCE.model_copy(update={"direction": Direction.ACCESSPLANIT_TO_MAILCHIMP})
    data = sides([user("1", "ada@example.com", at=T1)], [member("ada@example.com", first="Augusta", at=T2)])
    found = {f.key: f for f in classify(one_way, data, Policy(repair=True), field_pairs(one_way))}
    assert found["ada@example.com"].repair.source is System.ACCESSPLANIT
    only_ap = run(data, only=RepairSides.ACCESSPLANIT)
    assert only_ap["ada@example.com"].repair.source is System.MAILCHIMP
    nothing = {f.key: f for f in classify(one_way, data, Policy(repair=True, only=RepairSides.ACCESSPLANIT), PAIRS)}
    assert nothing["ada@example.com"].repair is None
    assert nothing["ada@example.com"].row.action.startswith("reported only")


def test_backfill_both_ways() -> None:
    found = run(sides([user("1", "ada@example.com")], [member("grace@example.com", "Grace", "Hopper")]))
    assert found["ada@example.com"].category is Category.ONLY_ACCESSPLANIT
    assert found["ada@example.com"].repair.source is System.ACCESSPLANIT
    assert found["grace@example.com"].category is Category.ONLY_MAILCHIMP
    assert found["grace@example.com"].repair.source is System.MAILCHIMP


def test_opted_out_duplicates_no_email_and_nameless_contacts_are_reported_never_repaired() -> None:
    data = sides(
        [user("1", "dup@example.com"), user("2", "DUP@example.com"), user("3", None), user("4", "quit@example.com")],
        [
            member("quit@example.com", first="Changed", status="unsubscribed"),
            member("gone@example.com", status="cleaned"),
            member("nameless@example.com", first="", last=""),
        ],
    )
    found = run(data)
    assert found["dup@example.com"].category is Category.DUPLICATE_ACCESSPLANIT
    assert found["dup@example.com"].row.accessplanit_user_ids == ["1", "2"]
    assert found["quit@example.com"].category is Category.MAILCHIMP_UNSUBSCRIBED
    assert found["gone@example.com"].category is Category.MAILCHIMP_CLEANED
    assert found["nameless@example.com"].category is Category.MISSING_NAMES
    assert found["~ap:3"].category is Category.NO_EMAIL
    assert all(f.repair is None for f in found.values())


def test_an_archived_member_is_its_own_category() -> None:
    archived = mc_member({"email_address": "old@example.com", "status": "subscribed"}, archived=True)
    assert archived is not None
    found = run(sides([user("1", "old@example.com")], [archived]))
    assert found["old@example.com"].category is Category.MAILCHIMP_ARCHIVED
    assert found["old@example.com"].repair is None


def test_a_tombstone_stops_re_creation_on_the_side_it_was_deleted_from() -> None:
    def hasher(email: str) -> str:
        return f"h:{email.lower()}"

    tombstones = {System.ACCESSPLANIT: frozenset({"h:grace@example.com"}), System.MAILCHIMP: frozenset()}
    data = sides([user("1", "ada@example.com")], [member("grace@example.com", "Grace", "Hopper")])
    found = run(data, tombstones=tombstones, tombstone_digest=hasher)
    assert found["grace@example.com"].category is Category.TOMBSTONED
    assert found["grace@example.com"].repair is None
    assert found["ada@example.com"].repair is not None


def test_the_repair_event_is_dated_by_the_record_and_carries_trigger_reconcile() -> None:
    now = datetime(2026, 12, 3, tzinfo=UTC)
    found = run(sides([user("1", "ada@example.com", at=T1)], [member("ada@example.com", first="Augusta", at=T2)]))
    event = repair_event(INSTANCE, found["ada@example.com"].repair, run_id="r1", received_at=now, pairs=PAIRS)
    assert event is not None
    assert event.trigger is Trigger.RECONCILE
    assert event.occurred_at == T2
    assert event.flow is Flow.MAILCHIMP_TO_ACCESSPLANIT
    assert event.fields["FNAME"] == "Augusta"
    again = repair_event(INSTANCE, found["ada@example.com"].repair, run_id="r1", received_at=now, pairs=PAIRS)
    assert again is not None and (again.event_id, again.execution_id) == (event.event_id, event.execution_id)


def test_fields_narrow_the_comparison_and_the_repair() -> None:
    assert [p.accessplanit for p in field_pairs(INSTANCE, ["lname"])] == ["Surname"]  # merge tags: any case
    assert [p.mailchimp for p in field_pairs(INSTANCE, ["Forenames"])] == ["FNAME"]
    pairs = field_pairs(INSTANCE, ["LNAME"])
    assert unknown_fields(INSTANCE, ["LNAME", "Nope"]) == ["Nope"]
    data = sides([user("1", "ada@example.com", at=T2)], [member("ada@example.com", first="Augusta", at=T1)])
    found = {f.key: f for f in classify(INSTANCE, data, Policy(repair=True), pairs)}
    assert found["ada@example.com"].category is Category.EQUAL


def test_values_compare_in_the_form_both_sides_share() -> None:
    assert comparable(None, "  Ada  ") == comparable(None, "Ada")
    assert comparable(None, None) == comparable(None, "")
    assert comparable(Transform.DATE, "1990-03-28T00:00:00") == comparable(Transform.DATE, "1990-03-28")
    assert comparable(Transform.BIRTHDAY, "1990-03-28T00:00:00") == comparable(Transform.BIRTHDAY, "3/28")
    assert comparable(Transform.NUMBER, 12) == comparable(Transform.NUMBER, "12.0")
    assert comparable(None, "Ada") != comparable(None, "ada")


def test_only_mapped_fields_are_read() -> None:
    instance = INSTANCE.model_copy(
        update={"mappings": [*INSTANCE.mappings, FieldMapping(mailchimp="DEPT", accessplanit="custom:Department")]}
    )
    assert accessplanit_select(instance).split(",")[-4:] == ["Forenames", "Surname", "Phone", "CustomFields"]
    assert "members.merge_fields.DEPT" in mailchimp_fields(instance).split(",")
    assert "members.merge_fields.EMAIL" not in mailchimp_fields(instance)


def test_deleted_accessplanit_users_are_not_contacts() -> None:
    assert ap_user({"ID": "9", "Email": "x@example.com", "Status": "Deleted"}) is None


def test_the_eta_of_the_writes_is_bound_by_the_slower_vendor() -> None:
    # 50,000 users to accessplanit: two requests each out of 5,000 an hour is 20 hours.
    assert writes_eta_s({System.ACCESSPLANIT: 50_000}, ap_requests_per_hour=5000, mailchimp_members_per_s=1000) == 72000
    assert writes_eta_s({System.MAILCHIMP: 50_000}, ap_requests_per_hour=5000, mailchimp_members_per_s=1000) == 50
