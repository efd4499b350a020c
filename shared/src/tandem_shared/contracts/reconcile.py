"""Reconciliation: a run request (from the CLI, the console or an instance's schedule) and what the run reports
back while and after it executes (progress, report rows, outcome).

Requests go to `tandem.reconcile.requests` keyed by instance id; the writer, which holds the vendor credentials,
executes them one instance at a time under a lease. Its updates go to `tandem.reconcile.runs` keyed by run id.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from tandem_shared.contracts.common import Contract
from tandem_shared.contracts.instances import InstanceConfig


class RepairSides(StrEnum):
    """Which side(s) a repair run may write to (`--only`)."""

    ACCESSPLANIT = "accessplanit"
    MAILCHIMP = "mailchimp"
    BOTH = "both"


class RequestedBy(StrEnum):
    CLI = "cli"
    CONSOLE = "console"
    SCHEDULE = "schedule"


class ReconcileRequest(Contract):
    run_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    instance_id: str
    repair: bool = Field(default=False, description="Publish each difference as a change; false: report only.")
    only: RepairSides = Field(default=RepairSides.BOTH, description="The side(s) a repair may write to.")
    fields: list[str] = Field(
        default_factory=list, description="Compare only these mapped fields (either side's name); empty: all."
    )
    config: InstanceConfig | None = Field(
        default=None, description="Shadow run: compare under this candidate configuration (never with repair)."
    )
    since: datetime | None = Field(
        default=None,
        description="Incremental run: only contacts changed on either side since then (each compared with its "
        "counterpart, read one by one); None: both sides in full.",
    )
    requested_by: RequestedBy = RequestedBy.CLI
    requested_at: datetime


class RunStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    REFUSED = "refused"  # not started: another run of the instance holds it, or the request is invalid

    @property
    def finished(self) -> bool:
        return self is not RunStatus.RUNNING


class ReportRow(Contract):
    """One contact that is not equal on both sides."""

    email: str | None
    category: str
    accessplanit_user_ids: list[str] = Field(default_factory=list)
    mailchimp_status: str | None = None
    accessplanit_updated_at: datetime | None = None
    mailchimp_last_changed: datetime | None = None
    # field (both names, "FNAME ⇄ Forenames") → {"accessplanit": value, "mailchimp": value}
    differences: dict[str, dict[str, Any]] = Field(default_factory=dict)
    action: str = Field(description="What the run did or would do about it (report only, repair to a side, …).")


class ReconcileProgress(Contract):
    run_id: str
    instance_id: str
    status: RunStatus
    phase: str = Field(description="reading accessplanit, reading mailchimp, comparing, publishing, finished")
    dry_run: bool
    read_accessplanit: int = 0
    read_mailchimp: int = 0
    total_accessplanit: int | None = None
    total_mailchimp: int | None = None
    compared: int = 0
    published: int = 0
    to_publish: int = 0
    counts: dict[str, int] = Field(default_factory=dict, description="Contacts per category.")
    requests: dict[str, int] = Field(default_factory=dict, description="Vendor requests spent, per vendor.")
    eta_s: float | None = Field(default=None, description="Seconds the rest of the run should take; None: unknown.")
    resumed: bool = Field(default=False, description="Continued from a checkpoint of an interrupted run.")
    message: str | None = None
    started_at: datetime
    at: datetime


class ReconcileUpdate(Contract):
    """One record on `tandem.reconcile.runs`: the run's progress, with the report rows found since the last one."""

    progress: ReconcileProgress
    rows: list[ReportRow] = Field(default_factory=list)
