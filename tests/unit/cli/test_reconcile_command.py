"""`tandem reconcile`: its options, and the report files it writes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tandem_cli.main import build_parser, main
from tandem_cli.reconcile import write_report
from tandem_shared.contracts.reconcile import ReportRow

ROWS = [
    ReportRow(
        email="b@example.com",
        category="different",
        accessplanit_user_ids=["7"],
        differences={"FNAME ⇄ Forenames": {"accessplanit": "Ada", "mailchimp": "Augusta"}},
        action="would repair: → accessplanit",
    ),
    ReportRow(email=None, category="accessplanit_no_email", accessplanit_user_ids=["9"], action="reported only"),
    ReportRow(email="a@example.com", category="only_mailchimp", mailchimp_status="subscribed", action="repaired"),
]


def test_the_options_parse_into_a_run_request() -> None:
    args = build_parser().parse_args(["reconcile", "acme", "--repair", "--only", "accessplanit", "--fields", "FNAME"])
    assert (args.instance_id, args.repair, args.only, args.fields) == ("acme", True, "accessplanit", "FNAME")


def test_dry_run_and_repair_exclude_each_other() -> None:
    try:
        build_parser().parse_args(["reconcile", "acme", "--dry-run", "--repair"])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("--dry-run with --repair was accepted")


def test_a_shadow_run_never_repairs(tmp_path: Path) -> None:
    assert main(["reconcile", "acme", "--repair", "--config", str(tmp_path / "x.yaml")]) == 2


def test_the_report_is_csv_or_json_lines_in_address_order(tmp_path: Path) -> None:
    write_report(tmp_path / "r.csv", ROWS)
    rows = list(csv.DictReader((tmp_path / "r.csv").open(encoding="utf-8")))
    assert [r["email"] for r in rows] == ["a@example.com", "b@example.com", ""]
    assert json.loads(rows[1]["differences"]) == {"FNAME ⇄ Forenames": {"accessplanit": "Ada", "mailchimp": "Augusta"}}
    assert rows[2]["accessplanit_user_ids"] == "9"
    write_report(tmp_path / "r.jsonl", ROWS)
    lines = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [line["category"] for line in lines] == ["only_mailchimp", "different", "accessplanit_no_email"]
