"""The contracts between Tandem's stages. Services import from here and never redefine them."""

from tandem_shared.contracts.audit import AuditRecord
from tandem_shared.contracts.commands import (
    CheckedField,
    Operation,
    SourceCheck,
    SyncCommand,
    canonical_json,
    fingerprint,
    idempotency_key,
)
from tandem_shared.contracts.common import (
    ContactIdentity,
    Contract,
    Flow,
    System,
    Trigger,
    email_key,
    subscriber_hash,
    utcnow,
)
from tandem_shared.contracts.erasure import ERASURE_SERVICES, ErasureAcknowledgement, ErasureRequest
from tandem_shared.contracts.events import ChangeEvent, ChangeKind, deterministic_event_id
from tandem_shared.contracts.instances import (
    AccessplanitConnection,
    Direction,
    EmailChangePolicy,
    FieldMapping,
    InstanceConfig,
    MailchimpConnection,
    SecretRef,
    Transform,
)
from tandem_shared.contracts.topics import TOPICS, Headers, TopicSpec, message_key
from tandem_shared.contracts.trace import (
    ErrorInfo,
    LogLine,
    Stage,
    StepOutput,
    TraceRecord,
    TraceStatus,
)

__all__ = [
    "AuditRecord",
    "TOPICS",
    "AccessplanitConnection",
    "ChangeEvent",
    "ERASURE_SERVICES",
    "ErasureAcknowledgement",
    "ErasureRequest",
    "CheckedField",
    "ChangeKind",
    "ContactIdentity",
    "Contract",
    "Direction",
    "EmailChangePolicy",
    "ErrorInfo",
    "FieldMapping",
    "Flow",
    "Headers",
    "InstanceConfig",
    "LogLine",
    "MailchimpConnection",
    "Operation",
    "SourceCheck",
    "SecretRef",
    "Stage",
    "StepOutput",
    "SyncCommand",
    "System",
    "TopicSpec",
    "TraceRecord",
    "TraceStatus",
    "Transform",
    "Trigger",
    "canonical_json",
    "deterministic_event_id",
    "email_key",
    "fingerprint",
    "idempotency_key",
    "message_key",
    "subscriber_hash",
    "utcnow",
]
