from __future__ import annotations

from tandem_cli.report import duplicate_groups, render
from tandem_shared.instances import demo_instance

USERS = [
    {
        "ID": "100001",
        "Email": "ada@example.com",
        "Forenames": "Ada",
        "Surname": "Lovelace",
        "DateUpdated": "2026-11-20T10:00:00.000Z",
    },
    {
        "ID": "100002",
        "Email": "ADA@example.com ",
        "Forenames": "Augusta",
        "Surname": "King",
        "DateUpdated": "2026-11-25T10:00:00.000Z",
    },
    {
        "ID": "100003",
        "Email": "grace@example.com",
        "Forenames": "Grace",
        "Surname": "Hopper",
        "DateUpdated": "2026-11-21T10:00:00.000Z",
    },
    {"ID": "100004", "Email": None, "Forenames": "No", "Surname": "Email", "DateUpdated": "2026-11-21T10:00:00.000Z"},
    {"ID": "100005", "Email": "", "Forenames": "Blank", "Surname": "Email", "DateUpdated": "2026-11-21T10:00:00.000Z"},
]


def test_users_sharing_an_address_are_grouped_case_insensitively_newest_first() -> None:
    groups = duplicate_groups(USERS)
    assert [g.email for g in groups] == ["ada@example.com"]
    assert [u.id for u in groups[0].users] == ["100002", "100001"]
    assert groups[0].users[0].name == "Augusta King"


def test_the_report_says_which_user_mailchimp_shows() -> None:
    text = render(demo_instance(), duplicate_groups(USERS))
    assert "1 email address(es) are shared by more than one accessplanit user (instance 'demo')" in text
    line = next(line for line in text.splitlines() if "100002" in line)
    assert line.endswith("← changed last: in Mailchimp")
    assert "← changed last" not in next(line for line in text.splitlines() if "100001" in line)


def test_no_duplicates_is_said_plainly() -> None:
    assert duplicate_groups(USERS[2:]) == []
    assert render(demo_instance(), []) == "No two accessplanit users share an email address (instance 'demo')."
