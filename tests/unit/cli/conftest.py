"""Unit tests of the CLI never reach a broker: the audit records commands publish are kept in a list instead."""

from __future__ import annotations

import pytest

from tandem_cli import audit
from tandem_shared.contracts import AuditRecord
from tandem_shared.kafka import KafkaConnection

Published = list[tuple[AuditRecord, str | None]]


@pytest.fixture(autouse=True)
def audit_records(monkeypatch: pytest.MonkeyPatch) -> Published:
    published: Published = []

    async def publish(connection: KafkaConnection, entry: AuditRecord, instance_id: str | None) -> None:
        published.append((entry, instance_id))

    monkeypatch.setattr(audit, "publish", publish)
    return published
