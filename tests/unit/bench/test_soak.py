"""The soak's figures (pure): diverged contacts, contacts ending on a provably older edit, convergence time."""

from __future__ import annotations

from tandem_bench.soak import Edit, figures, read_vendor


def test_figures_judge_each_contact_on_its_final_values() -> None:
    edits = [
        Edit(0, "ap", "A", 10.0, 10.1),
        Edit(0, "mc", "B", 10.5, 10.6),  # within a second of A: either may win
        Edit(1, "ap", "C", 10.0, 10.1),
        Edit(1, "mc", "D", 12.0, 12.1),  # provably later than C
        Edit(2, "mc", "E", 11.0, 11.1),
    ]
    observed = {
        0: [(10.7, ("B", "A")), (11.0, ("A", "A")), (13.0, ("A", "A"))],
        1: [(12.5, ("C", "C")), (13.0, ("C", "C"))],
        2: [(13.0, ("E", "F"))],
    }
    traces = [
        {"stage": "writer", "summary": "Updated accessplanit user 7: Forenames (Re-read from Mailchimp: …)"},
        {"stage": "mapper", "summary": "Mapped to a Mailchimp upsert of a@x.io (FNAME); written back to accessplanit"},
        {"stage": "retry", "summary": "Retry pending …: Not written back yet: … still in flight after 1 s"},
        {"stage": "mapper", "summary": "Echo of Tandem's own write to Mailchimp: not sent back"},
    ]
    row = figures(3, 2.0, 60.0, edits, observed, traces, settle_s=3.0)

    assert row["edits"] == 5 and (row["edits_accessplanit"], row["edits_mailchimp"]) == (2, 3)
    assert row["diverged"] == 1 and row["diverged_contacts"] == [2]
    assert row["ended_on_older_edit"] == 1 and row["older_contacts"] == [1]
    assert row["convergence_p50_s"] == row["convergence_p99_s"] == 0.4  # from the last edit to settled for good
    assert row["authoritative_reads_per_edit"] == 0.2
    assert (row["write_backs"], row["write_backs_waited_in_vain"]) == (1, 1)


def test_reads_of_either_vendor_are_counted_and_reported_apart() -> None:
    assert read_vendor(
        "Updated accessplanit user 7 (…): Forenames (Re-read from Mailchimp: FNAME still holds 'A'…)"
    ) == ("mailchimp")
    assert read_vendor("Not written to accessplanit: Re-read from accessplanit: Forenames already holds …") == (
        "accessplanit"
    )
    assert read_vendor("Not written yet: the re-read from accessplanit failed (timeout)") == "accessplanit"
    assert read_vendor("Mailchimp member a@example.com is subscribed") is None

    edits = [Edit(0, "ap", "A", 10.0, 10.1), Edit(0, "mc", "B", 12.0, 12.1)]
    traces = [
        {"stage": "writer", "summary": "Updated accessplanit user 7 (…): Forenames (Re-read from Mailchimp: …)"},
        {"stage": "writer", "summary": "Not written yet: the re-read from accessplanit failed (timeout)"},
        {"stage": "mapper", "summary": "Re-read from accessplanit mentioned by a mapper is no read"},
    ]
    row = figures(1, 2.0, 60.0, edits, {0: [(13.0, ("B", "B"))]}, traces, 3.0)
    assert (
        row["authoritative_reads"],
        row["authoritative_reads_accessplanit"],
        row["authoritative_reads_mailchimp"],
    ) == (2, 1, 1)


def test_convergence_is_also_reported_by_what_the_last_edit_waited_on() -> None:
    edits = [
        Edit(0, "ap", "A", 10.0, 10.1),  # its delivery deferred to the catch-up read
        Edit(1, "ap", "B", 10.0, 10.1),  # read back at once
        Edit(2, "mc", "C", 10.0, 10.1),
    ]
    observed = {0: [(16.1, ("A", "A"))], 1: [(10.6, ("B", "B"))], 2: [(10.4, ("C", "C"))]}
    deferral = {
        "stage": "ingest",
        "summary": "Delivery for accessplanit user 7 deferred to the catch-up read",
        "accessplanit_user_id": "7",
        "started_at": "1970-01-01T00:00:10.120000+00:00",
    }
    row = figures(3, 2.0, 60.0, edits, observed, [deferral], 3.0, user_ids=["7", "8", "9"])
    assert row["convergence_by_last_edit"] == {
        "accessplanit": [0.5, 0.5, 1],
        "accessplanit deferred": [6.0, 6.0, 1],
        "mailchimp": [0.3, 0.3, 1],
    }
