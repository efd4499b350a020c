"""Drift check: the ACLs the devstack applies to its secured broker against the KafkaUsers of k8s/base.

The devstack generates its `kafka-acls` commands from kafka-users.yaml (tandem_devstack.kafka_auth); this reads
the manifest on its own and compares, entry by entry, so a translation that drops, widens or renames anything
(a prefix applied as a literal, an operation lost) is reported. `check_acls` ties the same manifest to the code's
topics and groups; together: code ↔ manifest ↔ devstack.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from support.deploy.manifests import Doc

Entry = tuple[str, str, str, str, str]  # principal, resource type, name, pattern type, OPERATION


def manifest_entries(users: Sequence[Doc]) -> set[Entry]:
    entries = set()
    for user in users:
        name = user["metadata"]["name"]
        for acl in user["spec"].get("authorization", {}).get("acls", []):
            resource = acl["resource"]
            for operation in acl["operations"]:
                entries.add(
                    (
                        name,
                        resource["type"],
                        resource.get("name", "kafka-cluster"),
                        resource.get("patternType", "literal"),
                        operation.upper(),
                    )
                )
    return entries


def check_devstack_acls(applied: Iterable[Entry], users: Sequence[Doc]) -> list[str]:
    """Every ACL entry of the manifest is applied by the devstack, and nothing else is."""
    applied, wanted = set(applied), manifest_entries(users)
    missing = [f"{p}: {op} on {kind} {name} ({pattern}) not applied by the devstack" for p, kind, name, pattern, op
               in sorted(wanted - applied)]  # fmt: skip
    extra = [f"{p}: {op} on {kind} {name} ({pattern}) applied by the devstack, not in kafka-users.yaml" for
             p, kind, name, pattern, op in sorted(applied - wanted)]  # fmt: skip
    return missing + extra


def check_service_users(service_users: Mapping[str, str], users: Sequence[Doc], flow_users: Iterable[str]) -> list[str]:
    """Each service the devstack runs connects as a KafkaUser of the manifest that the data flow knows."""
    names, known = {u["metadata"]["name"] for u in users}, set(flow_users)
    problems = [f"{s}: runs as {u}, which has no KafkaUser" for s, u in service_users.items() if u not in names]
    problems += [
        f"{s}: runs as {u}, which the data flow does not know" for s, u in service_users.items() if u not in known
    ]
    return problems
