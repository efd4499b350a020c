"""The trace contract as an AsyncAPI document, for teams that consume `tandem.trace` (dashboards, alerting).

`faststream docs gen tandem_console.trace_spec:app --yaml --out docs/asyncapi.yaml` (or `make asyncapi`)
regenerates docs/asyncapi.yaml; a test fails when the committed file no longer matches the contract.
"""

from __future__ import annotations

from faststream import FastStream
from faststream.specification import AsyncAPI

from tandem_shared.contracts import AuditRecord, ErasureAcknowledgement, TraceRecord
from tandem_shared.contracts.topics import TRACE, topic_spec
from tandem_shared.kafka import KafkaConnection

_SPEC = topic_spec(TRACE)
DESCRIPTION = "\n\n".join(
    [
        f"Every stage of Tandem (ingest, poller, mapper, writer, retries, replays) publishes one TraceRecord to "
        f"`{TRACE}` for each step it takes. Records that share an `execution_id` form one execution; retries and "
        "replays carry the id of the execution they repeat in `original_execution_id`.",
        f"Kafka key: the execution id (UTF-8), so one execution's records stay in order on one partition. Headers: "
        f"`x-instance-id`, `x-execution-id`. Partitions: {_SPEC.partitions}. Retention: "
        f"{int(_SPEC.config['retention.ms']) // 86_400_000} days. Secrets are masked (`***`) before publishing.",
        "The contract only grows: new optional fields, new enum members. Ignore what you do not know.",
        "docs/trace.md says how to derive an execution's status from its records.",
    ]
)

broker = KafkaConnection("127.0.0.1:9092", "tandem-console").broker(
    description="The devstack's broker; use your deployment's bootstrap servers."
)

broker.publisher(
    TRACE,
    title=f"{TRACE}:publish",
    description="Published by every stage: one record per step of an execution.",
    schema=TraceRecord,
)

broker.publisher(
    TRACE,
    title=f"{TRACE}:erasure-acknowledgement",
    description=(
        "What `output.data_out` holds in a record of stage `erasure`: a service's acknowledgement of an erasure "
        "request (the record's execution id is the request id). Names the contact by its keyed hash only."
    ),
    schema=ErasureAcknowledgement,
)

broker.publisher(
    TRACE,
    title=f"{TRACE}:audit",
    description=(
        "What `output.data_out` holds in a record of stage `audit`: one operator action (who, what, when, the "
        "status it was answered with), published by the console; the record's execution id is the audit id."
    ),
    schema=AuditRecord,
)


@broker.subscriber(
    TRACE,
    title=f"{TRACE}:console",
    description="The console reads the whole topic (no consumer group) into its store.",
)
async def consume(record: TraceRecord) -> None:
    """Never run: it declares the subscription so the document shows the console as a consumer."""


app = FastStream(
    broker,
    specification=AsyncAPI(
        broker,
        title="Tandem execution trace",
        version="1.0.0",
        description=DESCRIPTION,
        schema_version="3.0.0",
    ),
)
