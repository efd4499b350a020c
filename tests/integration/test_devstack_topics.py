"""`python -m tandem_devstack topics` — docker compose's topic-creation step — against the real broker."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tandem_shared.contracts.topics import TOPICS

pytestmark = pytest.mark.integration


async def partition_counts(bootstrap: str) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([spec.name for spec in TOPICS])
    finally:
        await admin.close()
    return {t["topic"]: len(t["partitions"]) for t in described if t["error_code"] == 0}


def test_topics_command_leaves_every_topic_with_its_partitions(kafka_bootstrap: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tandem_devstack", "topics"],
        env={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"topics on {kafka_bootstrap}" in result.stdout
    assert asyncio.run(partition_counts(kafka_bootstrap)) == {spec.name: spec.partitions for spec in TOPICS}
