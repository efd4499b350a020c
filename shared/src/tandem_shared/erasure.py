"""Asking for a contact's erasure, and acknowledging it: one way for the CLI, the console and the services.

`request_erasure` publishes an `ErasureRequest` on `tandem.erasure` and returns once Kafka has it (acks=all). Each
service applies it to its own stores and publishes an acknowledgement (`acknowledgement`): a trace record of stage
`erasure` whose execution id is the request id, saying what was removed, without the address.
"""

from __future__ import annotations

from tandem_shared.contracts import ErasureRequest, Stage, TraceRecord, TraceStatus, utcnow
from tandem_shared.contracts.envelopes import erasure_envelope
from tandem_shared.ids import new_id
from tandem_shared.kafka.producer import Producer, send_envelope
from tandem_shared.tracing import StepRecorder

# The instance an acknowledgement names when the request was for every instance.
EVERY_INSTANCE = "*"


def erasure_request(email: str, *, instance_id: str | None = None, requested_by: str = "operator") -> ErasureRequest:
    return ErasureRequest(
        request_id=new_id(), email=email, instance_id=instance_id, requested_at=utcnow(), requested_by=requested_by
    )


async def request_erasure(producer: Producer, request: ErasureRequest) -> None:
    await (await send_envelope(producer, erasure_envelope(request)))


def acknowledgement(request: ErasureRequest, service: str, removed: str) -> TraceRecord:
    """`removed`: what the service removed, in counts (never the address)."""
    step = StepRecorder(
        stage=Stage.ERASURE, execution_id=request.request_id, instance_id=request.instance_id or EVERY_INSTANCE
    )
    step.log("info", f"requested by {request.requested_by} at {request.requested_at.isoformat()}")
    return step.finish(
        TraceStatus.SUCCEEDED,
        f"Contact erased by the {service} ({request.scope}): {removed}",
        data_out={"request_id": request.request_id, "service": service, "removed": removed},
    )
