"""`tandem reconcile`: its options, and the report files it writes."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from tandem_cli.main import build_parser, main
from tandem_cli.reconcile import Display, write_report
from tandem_shared.contracts.reconcile import ReconcileProgress, ReportRow, RunStatus

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


def test_the_progress_bar_follows_a_run_through_its_phases() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    now = datetime(2026, 12, 3, tzinfo=UTC)
    base = ReconcileProgress(
        run_id="r1",
        instance_id="acme",
        status=RunStatus.RUNNING,
        phase="reading accessplanit",
        dry_run=False,
        started_at=now,
        at=now,
    )
    with Display(console) as display:
        display.show(base.model_copy(update={"read_accessplanit": 1000, "total_accessplanit": 5000}))
        display.show(base.model_copy(update={"phase": "reading mailchimp", "total_mailchimp": 4000, "eta_s": 7200}))
        display.show(base.model_copy(update={"phase": "publishing", "to_publish": 10, "published": 4}))
        display.show(base.model_copy(update={"phase": "finished", "status": RunStatus.DONE, "counts": {"equal": 3}}))
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "finished" in shown and "1/1" in shown and "equal 3" in shown  # the last state is drawn
