"""How an execution's status, changes and source event are derived from its trace records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from support.traces import MISSING_EMAIL, change_event, ingest_record, trace
from tandem_console.domain import (
    ExecutionStatus,
    changes_detected,
    derive_status,
    end_to_end_seconds,
    has_source_step,
    summarize,
)
from tandem_console.filters import ExecutionFilter
from tandem_console.models import StepOut
from tandem_console.settings import ConsoleSettings
from tandem_shared.contracts import ErrorInfo, Stage, TraceStatus, Trigger
from tandem_shared.erasure import acknowledgement, erasure_request
from tandem_shared.privacy import MASK

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
INSTANCE = "acme"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def step(stage: Stage, status: TraceStatus, seconds: float, **kwargs: object):  # type: ignore[no-untyped-def]
    return trace("e1", INSTANCE, stage, status, at=at(seconds), **kwargs)  # type: ignore[arg-type]


TRANSIENT = ErrorInfo(error_class="HTTP503", message="Mailchimp unavailable", permanent=False)


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([(Stage.INGEST, TraceStatus.SUCCEEDED)], ExecutionStatus.SUCCEEDED),
        (
            [(Stage.INGEST, TraceStatus.SUCCEEDED), (Stage.MAPPER, TraceStatus.SKIPPED)],
            ExecutionStatus.SUCCEEDED,
        ),
        (
            [(Stage.INGEST, TraceStatus.SUCCEEDED), (Stage.MAPPER, TraceStatus.FAILED)],
            ExecutionStatus.FAILED,
        ),
        (
            [(Stage.INGEST, TraceStatus.SUCCEEDED), (Stage.MAPPER, TraceStatus.HELD)],
            ExecutionStatus.HELD,
        ),
        # Held, then released on resume: the mapper's later record decides.
        (
            [
                (Stage.INGEST, TraceStatus.SUCCEEDED),
                (Stage.MAPPER, TraceStatus.HELD),
                (Stage.MAPPER, TraceStatus.SUCCEEDED),
                (Stage.WRITER, TraceStatus.SUCCEEDED),
            ],
            ExecutionStatus.SUCCEEDED,
        ),
        # A transient failure with a retry scheduled is pending, not failed.
        (
            [
                (Stage.MAPPER, TraceStatus.SUCCEEDED),
                (Stage.WRITER, TraceStatus.FAILED),
                (Stage.RETRY, TraceStatus.RETRY_PENDING),
            ],
            ExecutionStatus.PENDING,
        ),
        # A later success of the same step (the retry worked) clears the failure.
        (
            [
                (Stage.WRITER, TraceStatus.FAILED),
                (Stage.RETRY, TraceStatus.RETRY_PENDING),
                (Stage.WRITER, TraceStatus.SUCCEEDED),
            ],
            ExecutionStatus.SUCCEEDED,
        ),
        (
            [(Stage.WRITER, TraceStatus.FAILED), (Stage.RETRY, TraceStatus.DEAD_LETTERED)],
            ExecutionStatus.FAILED,
        ),
        # A success in another step does not clear a failure.
        (
            [(Stage.MAPPER, TraceStatus.FAILED), (Stage.WRITER, TraceStatus.SUCCEEDED)],
            ExecutionStatus.FAILED,
        ),
    ],
)
def test_status_follows_each_steps_latest_record(
    steps: list[tuple[Stage, TraceStatus]], expected: ExecutionStatus
) -> None:
    records = [step(stage, status, i, attempt=i + 1) for i, (stage, status) in enumerate(steps)]
    assert derive_status(records) is expected
    # Arrival order must not matter: the topic does not promise it across partitions.
    assert derive_status(list(reversed(records))) is expected


def test_the_dot_colours() -> None:
    assert ExecutionStatus.SUCCEEDED.dot == "green"
    assert ExecutionStatus.FAILED.dot == "red"
    assert ExecutionStatus.HELD.dot == "amber"
    assert ExecutionStatus.PENDING.dot == "amber"


def test_summary_of_a_failed_execution_names_the_error() -> None:
    event = change_event(INSTANCE, "e1", email=None, at=at(0))
    records = [
        ingest_record(event),
        step(
            Stage.MAPPER,
            TraceStatus.FAILED,
            1,
            summary="Not sent to Mailchimp: User has no email address",
            error=MISSING_EMAIL,
            changes_detected=True,
            user_id="1001",
        ),
    ]
    summary = summarize(records)
    assert summary.status is ExecutionStatus.FAILED
    assert summary.error_message == "User has no email address"
    assert summary.summary == "Not sent to Mailchimp: User has no email address"
    assert summary.trigger is Trigger.WEBHOOK
    assert summary.accessplanit_user_id == "1001"
    assert summary.contact_email is None
    assert summary.started_at == at(0)
    assert summary.finished_at == at(1) + timedelta(milliseconds=5)
    assert summary.record_count == 2


def test_a_retry_that_worked_has_no_error_message() -> None:
    records = [
        step(Stage.WRITER, TraceStatus.FAILED, 0, error=TRANSIENT),
        step(Stage.WRITER, TraceStatus.SUCCEEDED, 5, attempt=2, summary="Mailchimp member is subscribed"),
    ]
    summary = summarize(records)
    assert summary.status is ExecutionStatus.SUCCEEDED
    assert summary.error_message is None
    assert summary.summary == "Mailchimp member is subscribed"


def test_changes_detected_is_the_mappers_verdict() -> None:
    assert changes_detected([step(Stage.INGEST, TraceStatus.SUCCEEDED, 0)]) is None
    assert changes_detected([step(Stage.MAPPER, TraceStatus.SKIPPED, 0, changes_detected=False)]) is False
    assert (
        changes_detected(
            [
                step(Stage.MAPPER, TraceStatus.SUCCEEDED, 0, changes_detected=True),
                step(Stage.MAPPER, TraceStatus.SKIPPED, 1, changes_detected=False),
            ]
        )
        is False
    )
    assert changes_detected([step(Stage.WRITER, TraceStatus.SUCCEEDED, 0, changes_detected=True)]) is True


def test_end_to_end_latency_runs_from_the_source_step_to_the_successful_write() -> None:
    source = step(Stage.INGEST, TraceStatus.SUCCEEDED, 0)
    write = step(Stage.WRITER, TraceStatus.SUCCEEDED, 2)
    failed_write = step(Stage.WRITER, TraceStatus.FAILED, 2)
    assert end_to_end_seconds([source, write], write) == pytest.approx(2.005)
    assert end_to_end_seconds([source, failed_write], failed_write) is None
    assert end_to_end_seconds([write], write) is None


def test_only_an_execution_a_source_stage_started_is_replayable() -> None:
    event = change_event(INSTANCE, "e1", at=at(0))
    assert has_source_step([step(Stage.MAPPER, TraceStatus.FAILED, 1), ingest_record(event)])
    assert not has_source_step([step(Stage.MAPPER, TraceStatus.FAILED, 1)])
    # The step's data is not read: a minimised (or foreign) output still marks the source step.
    masked = step(Stage.INGEST, TraceStatus.SUCCEEDED, 0, data_out={"event_id": "x"})
    assert has_source_step([masked])
    assert has_source_step([step(Stage.REPLAY, TraceStatus.SUCCEEDED, 0)])


def test_filters_from_an_html_form() -> None:
    where = ExecutionFilter.model_validate(
        {
            "status": "failed",
            "flow": "",
            "instance": " acme ",
            "since": "2025-03-01T12:00",
            "until": "",
            "original_only": "1",
            "email": "",
        }
    )
    assert where.status is ExecutionStatus.FAILED
    assert where.flow is None
    assert where.instance == "acme"
    assert where.since == T0
    assert where.original_only is True
    assert where.exclude_no_changes is False
    assert where.query_params() == {
        "status": "failed",
        "instance": "acme",
        "since": "2025-03-01T12:00:00",
        "original_only": "1",
    }


def test_a_bad_filter_value_is_refused() -> None:
    with pytest.raises(ValueError, match="status"):
        ExecutionFilter.model_validate({"status": "green"})


def test_a_step_shows_the_configured_fields_masked() -> None:
    record = step(Stage.MAPPER, TraceStatus.SUCCEEDED, 1, data_in={"DOB": "1980-01-01", "Surname": "Lee"})
    settings = ConsoleSettings(masked_fields=[" dob "])
    assert StepOut.of(record, masked=settings.masked).output.data_in == {"DOB": MASK, "Surname": "Lee"}
    assert StepOut.of(record).output.data_in == {"DOB": "1980-01-01", "Surname": "Lee"}


def test_an_erasure_request_counts_each_service_once_however_many_replicas_acknowledged() -> None:
    request = erasure_request("ada@example.com", instance_id=INSTANCE)
    replies = [acknowledgement(request, s, {}) for s in ("writer", "writer", "mapper", "writer", "console")]

    summary = summarize(replies)

    assert summary.summary == "Erasure acknowledged by 3 of 4 services; waiting for ingest"
    assert summary.status is ExecutionStatus.SUCCEEDED
    assert summary.record_count == 5  # the trace's records stay as they came
    everyone = summarize([*replies, acknowledgement(request, "ingest", {})])
    assert everyone.summary == "Erasure acknowledged by 4 of 4 services"
