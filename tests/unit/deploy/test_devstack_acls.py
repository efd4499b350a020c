"""The secured devstack broker holds the ACLs of k8s/base/kafka-users.yaml: the drift check, fed the real data and
drifted copies of it. (tests/integration/test_kafka_security.py reads the same ACLs back from the running broker.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from support.deploy import checks, code
from support.deploy.devstack_acls import check_devstack_acls, check_service_users
from tandem_devstack import kafka_auth
from tandem_mapper.settings import MapperSettings
from tandem_shared.contracts.topics import TOPICS
from tandem_writer.settings import WriterSettings

KAFKA_USERS = Path(__file__).resolve().parents[3] / "k8s" / "base" / "kafka-users.yaml"
BOOTSTRAP = "127.0.0.1:1"


def users() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(KAFKA_USERS.read_text()) if d and d["kind"] == "KafkaUser"]


def applied(path: Path = KAFKA_USERS) -> set[kafka_auth.Entry]:
    return kafka_auth.granted(kafka_auth.acl_commands(kafka_auth.kafka_users(path), BOOTSTRAP))


def groups() -> dict[str, str]:
    """The services' consumer groups, as their settings default them (the console reads without a group)."""
    return {
        "mapper": str(MapperSettings.model_fields["group_id"].default),
        "writer": str(WriterSettings.model_fields["group_id"].default),
    }


def test_the_devstack_applies_exactly_the_manifests_acls() -> None:
    assert check_devstack_acls(applied(), users()) == []


def test_the_acls_the_devstack_applies_allow_the_codes_data_flow() -> None:
    # The manifest's ACLs, as the devstack applies them, checked against the code's topics and groups.
    assert checks.check_acls(TOPICS, code.data_flow(TOPICS, groups()), users()) == []
    flow_users = [access.user for access in code.data_flow(TOPICS, groups())]
    assert check_service_users(kafka_auth.SERVICE_USERS, users(), flow_users) == []
    assert kafka_auth.OPERATOR in flow_users


def test_an_acl_the_devstack_leaves_out_or_widens_is_reported() -> None:
    drifted = applied() - {("tandem-mapper", "group", "tandem-mapper", "literal", "READ")}
    drifted |= {("tandem-writer", "topic", "tandem.commands", "prefix", "READ")}
    assert check_devstack_acls(drifted, users()) == [
        "tandem-mapper: READ on group tandem-mapper (literal) not applied by the devstack",
        "tandem-writer: READ on topic tandem.commands (prefix) applied by the devstack, not in kafka-users.yaml",
    ]


def test_a_manifest_change_reaches_the_devstack(tmp_path: Path) -> None:
    # The devstack reads the manifest itself: an ACL added there is applied, with no second list to update.
    text = KAFKA_USERS.read_text().replace(
        "      - resource: {type: group, name: tandem-mapper, patternType: literal}",
        "      - resource: {type: topic, name: tandem.audit, patternType: prefix}\n"
        "        operations: [Write]\n"
        "      - resource: {type: group, name: tandem-mapper, patternType: literal}",
    )
    (tmp_path / "kafka-users.yaml").write_text(text)
    changed = [d for d in yaml.safe_load_all(text) if d and d["kind"] == "KafkaUser"]
    assert ("tandem-mapper", "topic", "tandem.audit", "prefix", "WRITE") in applied(tmp_path / "kafka-users.yaml")
    assert check_devstack_acls(applied(tmp_path / "kafka-users.yaml"), changed) == []
    assert check_devstack_acls(applied(), changed) == [
        "tandem-mapper: WRITE on topic tandem.audit (prefix) not applied by the devstack"
    ]


def test_a_service_running_as_an_unknown_user_is_reported() -> None:
    flow_users = [access.user for access in code.data_flow(TOPICS, groups())]
    assert check_service_users({**kafka_auth.SERVICE_USERS, "mapper": "tandem-mapper-v2"}, users(), flow_users) == [
        "mapper: runs as tandem-mapper-v2, which has no KafkaUser",
        "mapper: runs as tandem-mapper-v2, which the data flow does not know",
    ]
