"""Kafka topic names, their layout, and the header names every stage reads or writes.

One place for all of them: services, devstack, the k8s drift checks and the docs import these names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CHANGES = "tandem.changes"
COMMANDS = "tandem.commands"
COMMANDS_DLQ = "tandem.commands.dlq"
# Retry tiers, one topic per tier so a record waiting two hours never holds up one due in ten seconds. The delays
# are configured in the writer (TANDEM_WRITER_RETRY_DELAYS_S); retries beyond the last tier reuse it.
COMMANDS_RETRY = tuple(f"tandem.commands.retry.{tier}" for tier in range(1, 6))
TRACE = "tandem.trace"
INSTANCES = "tandem.instances"
ERASURE = "tandem.erasure"
# Reconciliation: run requests (CLI, console, schedule) for the writer to execute, and what each run reports back
# (progress, report rows, outcome), keyed by run id so one run's records stay in order.
RECONCILE_REQUESTS = "tandem.reconcile.requests"
RECONCILE_RUNS = "tandem.reconcile.runs"

# Per-contact ordering needs the same partition count on topics a record moves between (command → retry → DLQ),
# so a record keeps its partition number when forwarded.
DEFAULT_PARTITIONS = 6

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    purpose: str = ""


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(CHANGES, DEFAULT_PARTITIONS, {"retention.ms": str(7 * DAY_MS)}, "normalized change events from ingest"),
    TopicSpec(COMMANDS, DEFAULT_PARTITIONS, {"retention.ms": str(7 * DAY_MS)}, "write commands from the mapper"),
    *(
        TopicSpec(topic, DEFAULT_PARTITIONS, {"retention.ms": str(7 * DAY_MS)}, f"writer retry tier {tier}")
        for tier, topic in enumerate(COMMANDS_RETRY, start=1)
    ),
    TopicSpec(COMMANDS_DLQ, DEFAULT_PARTITIONS, {"retention.ms": str(30 * DAY_MS)}, "commands that failed for good"),
    TopicSpec(TRACE, 3, {"retention.ms": str(14 * DAY_MS)}, "execution trace records from every stage"),
    # Holds addresses to forget: as short as a service may plausibly be down, no longer.
    TopicSpec(ERASURE, 1, {"retention.ms": str(7 * DAY_MS)}, "contact erasure requests (tandem contacts forget)"),
    TopicSpec(
        RECONCILE_REQUESTS, 3, {"retention.ms": str(7 * DAY_MS)}, "reconciliation run requests, keyed by instance"
    ),
    TopicSpec(
        RECONCILE_RUNS, 3, {"retention.ms": str(7 * DAY_MS)}, "reconciliation progress, report rows and outcomes"
    ),
    TopicSpec(
        INSTANCES,
        1,
        {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
        "instance configurations, keyed by instance id",
    ),
)


def topic_spec(name: str) -> TopicSpec:
    for spec in TOPICS:
        if spec.name == name:
            return spec
    raise KeyError(name)


class Headers:
    """Kafka header names. Values are always str on the wire (FastStream requires it).

    On retry and dead-letter records: `x-attempt` is the attempt the record is for (retry topics) or the attempts
    made (DLQ); `x-not-before` is epoch milliseconds; `x-first-failed-at`/`x-last-failed-at` are ISO-8601 UTC;
    `x-original-*` name the `tandem.commands` record the delivery started from.
    """

    INSTANCE_ID = "x-instance-id"
    EXECUTION_ID = "x-execution-id"
    ORIGINAL_EXECUTION_ID = "x-original-execution-id"
    EVENT_ID = "x-event-id"
    IDEMPOTENCY_KEY = "x-idempotency-key"
    ATTEMPT = "x-attempt"
    NOT_BEFORE = "x-not-before"
    ORIGINAL_TOPIC = "x-original-topic"
    ORIGINAL_PARTITION = "x-original-partition"
    ORIGINAL_OFFSET = "x-original-offset"
    ORIGINAL_TIMESTAMP = "x-original-timestamp"
    FIRST_FAILED_AT = "x-first-failed-at"
    LAST_FAILED_AT = "x-last-failed-at"
    EXCEPTION_TYPE = "x-exception-type"
    EXCEPTION_MESSAGE = "x-exception-message"
    ERROR_PERMANENT = "x-error-permanent"
    REPLAYED_FROM = "x-replayed-from"
    ORIGIN = "x-origin"


def message_key(instance_id: str, contact_key: str) -> str:
    """Kafka key: one contact of one instance always lands on the same partition, so its changes stay in order."""
    return f"{instance_id}:{contact_key}"
