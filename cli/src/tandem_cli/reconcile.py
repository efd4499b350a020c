"""`tandem reconcile`: ask the writer to compare both sides of an instance in full, follow the run's progress, print
its counts and write its report; with `--repair` the differences go through the pipeline as changes.

The command only publishes a run request (`tandem.reconcile.requests`); the writer executes it under the
instance's lease and reports on `tandem.reconcile.runs`, which this command follows. Ctrl-C stops following, not
the run: it continues (and an interrupted run resumes from its checkpoint).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from tandem_cli.audit import audited
from tandem_cli.common import (
    EXIT_CODES_HELP,
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Unavailable,
    add_broker_option,
    fail,
    kafka_connection,
)
from tandem_cli.instances import ConfigFileError, load_config
from tandem_shared.contracts import utcnow
from tandem_shared.contracts.reconcile import (
    ReconcileProgress,
    ReconcileRequest,
    RepairSides,
    ReportRow,
    RunStatus,
)
from tandem_shared.reconcile.follow import RunNotStarted, follow_run

REPORT_COLUMNS = (
    "email",
    "category",
    "accessplanit_user_ids",
    "mailchimp_status",
    "accessplanit_updated_at",
    "mailchimp_last_changed",
    "differences",
    "action",
)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}min"
    return f"{seconds / 3600:.1f}h"


class Display:
    """The run's progress on stderr (a bar when stderr is a terminal; nothing otherwise, so pipes stay clean)."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            console=console,
            disable=not console.is_terminal,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> Display:
        self._progress.__enter__()
        self._task = self._progress.add_task("waiting for a writer", total=None, detail="")
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(None, None, None)

    def show(self, p: ReconcileProgress) -> None:
        assert self._task is not None
        if p.phase in ("publishing", "reporting", "finished"):
            total, done = max(p.to_publish, 1), p.published
            if not p.to_publish:
                total, done = 1, 1 if p.status.finished else 0
        else:
            totals = [t for t in (p.total_accessplanit, p.total_mailchimp) if t is not None]
            total = sum(totals) if len(totals) == 2 else None  # type: ignore[assignment]
            done = p.read_accessplanit + p.read_mailchimp
        counts = ", ".join(f"{name} {count}" for name, count in sorted(p.counts.items()))
        detail = f"ETA {_duration(p.eta_s)}" + (f"  {counts}" if counts else "")
        self._progress.update(self._task, description=p.phase, total=total, completed=done, detail=detail)


def write_report(path: Path, rows: list[ReportRow]) -> None:
    """CSV when the file name ends in .csv, JSON lines otherwise; rows in address order."""
    ordered = sorted(rows, key=lambda r: (r.email or "~", r.category))
    with path.open("w", encoding="utf-8", newline="") as out:
        if path.suffix.lower() == ".csv":
            writer = csv.DictWriter(out, fieldnames=REPORT_COLUMNS)
            writer.writeheader()
            for row in ordered:
                data: dict[str, Any] = row.model_dump(mode="json")
                data["accessplanit_user_ids"] = ";".join(row.accessplanit_user_ids)
                data["differences"] = json.dumps(data["differences"], ensure_ascii=False) if row.differences else ""
                writer.writerow(data)
        else:
            for row in ordered:
                out.write(row.model_dump_json() + "\n")


def _summary(progress: ReconcileProgress, rows: int, report: Path | None) -> None:
    mode = "dry run" if progress.dry_run else "repair run"
    print(f"run {progress.run_id} of {progress.instance_id}: {progress.status.value} ({mode})")
    print(f"  read        accessplanit {progress.read_accessplanit}, Mailchimp {progress.read_mailchimp}")
    requests = ", ".join(f"{vendor} {count}" for vendor, count in sorted(progress.requests.items()))
    print(f"  requests    {requests or 'none'}")
    for name, count in sorted(progress.counts.items()):
        print(f"  {name:<26}{count}")
    if not progress.dry_run:
        print(f"  repairs published: {progress.published}")
    if progress.message:
        print(f"  {progress.message}")
    if report is not None:
        print(f"  report: {rows} contact(s) not equal written to {report}")


def cmd_reconcile(args: argparse.Namespace) -> int:
    config = None
    if args.config is not None:
        if args.repair:
            return fail("--config compares only (a shadow run); apply the configuration to repair under it", EXIT_USAGE)
        try:
            config = load_config(args.config)
        except ConfigFileError as exc:
            print("\n".join(exc.lines), file=sys.stderr)
            return exc.code
        if config.id != args.instance_id:
            return fail(f"{args.config} is instance {config.id}, not {args.instance_id}", EXIT_USAGE)
    request = ReconcileRequest(
        run_id=uuid.uuid4().hex[:16],
        instance_id=args.instance_id,
        repair=bool(args.repair),
        only=RepairSides(args.only),
        fields=[f.strip() for f in (args.fields or "").split(",") if f.strip()],
        config=config,
        since=args.since,
        requested_at=utcnow(),
    )
    console = Console(stderr=True)
    try:
        with Display(console) as display:
            progress, rows = asyncio.run(
                follow_run(
                    kafka_connection(args),
                    request,
                    on_progress=display.show,
                    start_timeout_s=args.timeout,
                    detach=args.detach,
                )
            )
    except (Unavailable, RunNotStarted) as exc:
        return fail(str(exc), EXIT_UNAVAILABLE)
    except OSError as exc:
        return fail(f"Kafka at {args.bootstrap_servers}: {exc}", EXIT_UNAVAILABLE)
    except KeyboardInterrupt:
        print(f"stopped following; run {request.run_id} continues in the writer", file=sys.stderr)
        return EXIT_OK
    if progress is None:
        print(f"run {request.run_id} requested")
        return EXIT_OK
    if args.report is not None:
        write_report(args.report, rows)
    _summary(progress, len(rows), args.report)
    if progress.status is RunStatus.DONE:
        return EXIT_OK
    if progress.status is RunStatus.REFUSED:
        print(f"tandem: {progress.message}", file=sys.stderr)
        return EXIT_NOT_FOUND if (progress.message or "").startswith("no instance") else EXIT_INVALID
    print(f"tandem: run failed: {progress.message}", file=sys.stderr)
    return EXIT_UNAVAILABLE


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "reconcile",
        help="compare both sides of an instance in full; report drift, repair it, backfill",
        description="Reads every accessplanit user and every Mailchimp member of the instance, pairs them by "
        "address and reports each contact that is not equal on both sides. With --repair, each difference is "
        "published as a change (trigger 'reconcile') that the pipeline writes under the instance's direction, "
        "mappings, consent and conflict rules: contacts only on one side are created on the other (a backfill); "
        "unsubscribed, cleaned and archived members, duplicates and deleted contacts are only reported.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("instance_id")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="compare and report only (the default)")
    mode.add_argument("--repair", action="store_true", help="publish each difference for the pipeline to write")
    parser.add_argument(
        "--only",
        choices=[s.value for s in RepairSides],
        default=RepairSides.BOTH.value,
        help="the side a repair may write to (default: both, as the instance's direction allows)",
    )
    parser.add_argument("--fields", help="compare (and repair) only these mapped fields, comma-separated")
    parser.add_argument("--report", type=Path, help="write every contact not equal here (.csv, else JSON lines)")
    parser.add_argument(
        "--config", type=Path, help="shadow run: compare under this candidate configuration instead of the applied one"
    )
    parser.add_argument(
        "--since",
        type=_moment,
        help="incremental run: only contacts changed on either side since this ISO 8601 time (e.g. 2026-12-03T09:00Z)",
    )
    parser.add_argument("--detach", action="store_true", help="only request the run; do not follow it")
    add_broker_option(parser)
    parser.set_defaults(handler=cmd_reconcile)
    audited(
        parser,
        "reconcile",
        lambda a: (
            f"reconcile {a.instance_id} {'--repair' if a.repair else '--dry-run'} --only {a.only}",
            a.instance_id,
        ),
    )
