"""Drift checks: the deployment files against the code. Pure functions; each returns the problems it found.

Policy (documented here because the checks enforce it):
- A setting must be provided by the deployment when its default is unsafe in a container: it has no default,
  it names a loopback address (KAFKA_BOOTSTRAP_SERVERS, REDIS_URL, a bind host — inside a container that is
  the container itself), or it is a local file (the root filesystem is read-only; state goes on a volume).
- Variables a deployment sets must be read by something: a setting, `make run`'s environment, or an entry of
  AWAITED — settings the manifests already provide and the services do not read yet. An awaited setting that
  a service starts reading is reported, so the list shrinks as the code catches up.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from support.deploy.code import Access, Dockerfile, Package, Setting
from support.deploy.manifests import Container, Doc, of_kind, pod_spec
from tandem_shared.contracts import InstanceConfig
from tandem_shared.contracts.topics import TopicSpec

# Provided by the manifests, not read by the services yet (the lead wires them; see docs/operations.md).
AWAITED: Mapping[str, str] = {
    "TANDEM_MAPPER_GROUP_INSTANCE_ID": "static group membership (group_instance_id) for the mapper",
    "TANDEM_CONSOLE_GROUP_INSTANCE_ID": "static group membership (group_instance_id) for the console",
}

# Variables that are ours to check: the services' and simulators' namespaces and the shared aliases.
OWN_PREFIXES = ("TANDEM_", "KAFKA_", "REDIS_", "MAILCHIMP_SIM_", "ACCESSPLANIT_SIM_")

_LOOPBACK = re.compile(r"(^|[/@,])(127\.\d+\.\d+\.\d+|localhost|\[?::1\]?)([:/,]|$)")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def unsafe_default(setting: Setting) -> str | None:
    """Why a setting's default must not be used in a container, or None when it is safe."""
    if setting.required:
        return "it has no default"
    default = setting.default
    if isinstance(default, str) and _LOOPBACK.search(default):
        return f"its default {default!r} is loopback, i.e. the container itself"
    if isinstance(default, Path) or (isinstance(default, str) and default.startswith(("sqlite:", "file:"))):
        return f"its default {str(default)!r} is on the read-only root filesystem"
    return None


# ------------------------------------------------------------------------------------------------- topics


def check_topics(topics: Sequence[TopicSpec], kafka_topics: Sequence[Doc]) -> list[str]:
    """Every topic in TOPICS has a KafkaTopic with its partitions and every config value it sets."""
    problems = []
    by_name = {t["spec"].get("topicName", t["metadata"]["name"]): t for t in kafka_topics}
    for spec in topics:
        resource = by_name.pop(spec.name, None)
        if resource is None:
            problems.append(f"{spec.name}: in TOPICS but no KafkaTopic")
            continue
        if resource["spec"].get("partitions") != spec.partitions:
            problems.append(
                f"{spec.name}: KafkaTopic has {resource['spec'].get('partitions')} partitions, TOPICS {spec.partitions}"
            )
        config = {k: str(v) for k, v in (resource["spec"].get("config") or {}).items()}
        wanted = {"cleanup.policy": "delete", **spec.config}
        for key, value in wanted.items():
            if config.get(key, "delete" if key == "cleanup.policy" else None) != value:
                problems.append(f"{spec.name}: KafkaTopic {key}={config.get(key)!r}, TOPICS {value!r}")
    problems += [f"{name}: KafkaTopic for a topic not in TOPICS" for name in sorted(by_name)]
    return problems


def _acl_allows(user: Doc, resource_type: str, name: str, operation: str) -> bool:
    for acl in user["spec"].get("authorization", {}).get("acls", []):
        resource = acl["resource"]
        if resource["type"] != resource_type:
            continue
        pattern, kind = resource.get("name", ""), resource.get("patternType", "literal")
        matches = name == pattern if kind == "literal" else name.startswith(pattern)
        if matches and (operation in acl.get("operations", []) or "All" in acl.get("operations", [])):
            return True
    return False


def check_acls(topics: Sequence[TopicSpec], flow: Sequence[Access], users: Sequence[Doc]) -> list[str]:
    """Each service's KafkaUser allows what the data flow needs, and every topic has a producer and a consumer."""
    problems = []
    by_name = {u["metadata"]["name"]: u for u in users}
    for access in flow:
        user = by_name.get(access.user)
        if user is None:
            problems.append(f"{access.user}: no KafkaUser")
            continue
        problems += [
            f"{access.user}: may not read {t}" for t in access.all_reads if not _acl_allows(user, "topic", t, "Read")
        ]
        problems += [
            f"{access.user}: may not write {t}" for t in access.writes if not _acl_allows(user, "topic", t, "Write")
        ]
        if access.group and not _acl_allows(user, "group", access.group, "Read"):
            problems.append(f"{access.user}: may not join its consumer group {access.group}")
    for spec in topics:
        if not any(spec.name in a.writes for a in flow):
            problems.append(f"{spec.name}: no service writes it in the data flow (code.data_flow)")
        if not any(spec.name in a.all_reads for a in flow):
            problems.append(f"{spec.name}: no service reads it in the data flow (code.data_flow)")
    return problems


# ----------------------------------------------------------------------------------------------- settings


def check_settings(
    container: Container,
    settings: Sequence[Setting],
    *,
    known: set[str],
    pending_prefixes: Sequence[str],
) -> list[str]:
    """The container provides every setting with an unsafe default, and sets nothing that nobody reads."""
    problems = []
    for setting in settings:
        reason = unsafe_default(setting)
        if reason and not any(name in container.env for name in setting.env_names):
            problems.append(
                f"{container.origin}: {setting.owner}.{setting.field} must be set "
                f"({' or '.join(setting.env_names)}), because {reason}"
            )
    for name in sorted(container.env):
        if not name.startswith(OWN_PREFIXES) or name in known or name in AWAITED:
            continue
        if name.startswith(tuple(pending_prefixes)):
            continue  # the package that reads it is not in this checkout yet
        problems.append(f"{container.origin}: sets {name}, which nothing reads (a typo, or a removed setting?)")
    return problems


def check_awaited(known: set[str]) -> list[str]:
    return [
        f"{name} is read now ({why}): remove it from checks.AWAITED" for name, why in AWAITED.items() if name in known
    ]


def check_make_run_parity(container: Container, make_run_env: set[str]) -> list[str]:
    """docker compose gives Tandem's processes the same variables as `make run` (devstack stack_env)."""
    return [
        f"{container.origin}: lacks {name}, which make run sets" for name in sorted(make_run_env - set(container.env))
    ]


# ------------------------------------------------------------------------------------- modules and images


def check_module(
    container: Container,
    dockerfile: Dockerfile,
    package_for: Callable[[str], Package | None],
) -> tuple[list[str], list[str]]:
    """(problems, pending): what the container runs exists and is installed in the image target it uses."""
    module = container.module
    if module is None:
        return [f"{container.origin}: cannot tell which module {list(container.argv)} runs"], []
    package = package_for(module)
    if package is None:
        return [f"{container.origin}: {module} is not a package of this repository"], []
    problems = []
    if container.target not in dockerfile.stages:
        problems.append(f"{container.origin}: image target {container.target!r} is not a Dockerfile stage")
    elif package.dir not in dockerfile.stages[container.target].packages:
        problems.append(f"{container.origin}: {package.dir} is not installed in Dockerfile target {container.target}")
    if not package.present:
        return problems, [f"{container.origin}: {module} ({package.dir}) is not in this checkout yet"]
    if importlib.util.find_spec(module) is None:
        problems.append(f"{container.origin}: {module} is not importable")
    elif container.app:
        path, _, attribute = container.app.partition(":")
        if not hasattr(importlib.import_module(path), attribute):
            problems.append(f"{container.origin}: {container.app} does not exist")
    return problems, []


def check_coverage(packages: Iterable[Package], containers: Sequence[Container], where: str) -> list[str]:
    """Every service with sources runs somewhere in this deployment."""
    running = {c.module for c in containers}
    return [
        f"{where}: {p.dir} is not deployed"
        for p in packages
        if p.dir.startswith("services/") and p.module not in running
    ]


def check_roles(apps: Iterable[str], containers: Sequence[Container], where: str) -> list[str]:
    """Every process a service can be run as (code.service_apps) runs in this deployment: a role of a package that
    is deployed otherwise (the writer's reconciler) is not covered by check_coverage."""
    running = {c.app for c in containers}
    return [f"{where}: {app} is not run" for app in apps if app not in running]


RECONCILER_APP = "tandem_writer.reconciler:create_app"
WRITER_APP = "tandem_writer.entrypoint:create_app"
RECONCILE_RUNS = "TANDEM_WRITER_RECONCILE_RUNS"
_FALSE = {"0", "off", "f", "false", "n", "no"}  # pydantic's false values


def check_reconcile_runs(containers: Sequence[Container]) -> list[str]:
    """Reconciliation runs execute in exactly one kind of process: the reconciler where one is deployed (the writers
    then set TANDEM_WRITER_RECONCILE_RUNS=false, so a backfill takes no CPU from live writes), the writers otherwise.
    A writer told to leave runs to a reconciler that is not deployed would leave every run unexecuted."""
    writers = [c for c in containers if c.app == WRITER_APP]
    leaving = [c for c in writers if str(c.env.get(RECONCILE_RUNS)).strip().lower() in _FALSE]
    if any(c.app == RECONCILER_APP for c in containers):
        return [
            f"{c.origin}: executes reconciliation runs beside the reconciler ({RECONCILE_RUNS} is not false)"
            for c in writers
            if c not in leaving
        ]
    return [f"{c.origin}: {RECONCILE_RUNS}=false, but no reconciler is deployed to execute runs" for c in leaving]


def _selects(selector: Doc, labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against a pod's labels."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if {
            "In": not present or labels[key] not in values,
            "NotIn": present and labels[key] in values,
            "Exists": not present,
            "DoesNotExist": present,
        }[operator]:
            return False
    return True


def check_client_policies(
    pairs: Sequence[tuple[Doc, Container]], policies: Sequence[Doc], clients: Mapping[str, str]
) -> list[str]:
    """A pod holding a server's client credentials is admitted by that server's NetworkPolicy (the policies only
    allow listed peers): `clients` maps the credentials' mount path to the policy's name. A peer from this namespace
    is a podSelector without a namespaceSelector."""
    by_name = {p["metadata"]["name"]: p for p in policies}
    problems = []
    for workload, container in pairs:
        labels = workload["spec"]["template"]["metadata"].get("labels", {})
        for path, name in clients.items():
            if path not in container.mounts:
                continue
            rules = by_name.get(name, {}).get("spec", {}).get("ingress", [])
            peers = [peer for rule in rules for peer in rule.get("from", [])]
            if not any(
                "namespaceSelector" not in peer and _selects(peer.get("podSelector", {}), labels) for peer in peers
            ):
                problems.append(f"{container.origin}: mounts {path}, but NetworkPolicy/{name} does not admit its pods")
    return problems


def check_image_user(container: Container, dockerfile: Dockerfile, run_as_user: int | None) -> list[str]:
    uid = dockerfile.uid(container.target) if container.target in dockerfile.stages else None
    if uid is None or uid == 0:
        return [f"{container.origin}: Dockerfile target {container.target} has no numeric non-root USER"]
    if run_as_user is not None and run_as_user != uid:
        return [f"{container.origin}: runAsUser {run_as_user}, but the image's USER is {uid}"]
    return []


def check_compose_volumes(container: Container, dockerfile: Dockerfile) -> list[str]:
    """Named volumes mount on directories the image creates for its user, or they are owned by root."""
    created = dockerfile.stages[container.target].created_dirs if container.target in dockerfile.stages else set()
    return [
        f"{container.origin}: volume at {path} is not a directory the Dockerfile creates for the image's user"
        for path, kind in container.mounts.items()
        if kind.startswith("volume:") and path not in created
    ]


# -------------------------------------------------------------------------------------------- pods and shutdown


def check_shutdown(container: Container, settings: Sequence[Setting], broker_graceful_s: float) -> list[str]:
    """The grace period outlasts a preStop sleep, the consumer's graceful stop and the longest call in flight."""
    timeouts = [
        float(s.default) for s in settings if s.field.endswith("timeout_s") and isinstance(s.default, int | float)
    ]
    uvicorn = container.option("--timeout-graceful-shutdown")
    if uvicorn is None:
        return [f"{container.origin}: uvicorn without --timeout-graceful-shutdown waits for ever for connections"]
    needed = container.prestop_s + broker_graceful_s + max([float(uvicorn), *timeouts])
    if container.grace_s is None or container.grace_s <= needed:
        return [f"{container.origin}: grace period {container.grace_s} s, needs more than {needed:g} s"]
    return []


def check_pod(workload: Doc, container: Container, *, service: bool) -> list[str]:
    """Non-root, read-only root filesystem with an emptyDir /tmp, no escalation; cheap liveness, broker readiness."""
    spec = pod_spec(workload)
    raw = next(c for c in spec["containers"] if c["name"] == container.name)
    pod_sc, sc = spec.get("securityContext", {}), raw.get("securityContext", {})
    problems = []
    if not (pod_sc.get("runAsNonRoot") or sc.get("runAsNonRoot")):
        problems.append("runAsNonRoot is not set")
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append("the root filesystem is writable")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append("privilege escalation is allowed")
    if container.mounts.get("/tmp") != "emptyDir":
        problems.append("/tmp is not an emptyDir")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append("mounts a service account token it does not need")
    if service:
        if raw.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/health/live":
            problems.append("liveness probe is not /health/live")
        if raw.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/health/ready":
            problems.append("readiness probe is not /health/ready")
        for kind in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(raw.get("resources", {}).get(kind, {})):
                problems.append(f"resource {kind} for cpu and memory are not both set")
    return [f"{container.origin}: {p}" for p in problems]


def check_disruption_budgets(workloads: Sequence[Doc], budgets: Sequence[Doc]) -> list[str]:
    problems = []
    for workload in workloads:
        labels = workload["spec"]["template"]["metadata"].get("labels", {})
        matching = [
            b for b in budgets if b["spec"].get("selector", {}).get("matchLabels", {}).items() <= labels.items()
        ]
        if not matching:
            problems.append(f"{workload['kind']}/{workload['metadata']['name']}: no PodDisruptionBudget")
        elif any(b["spec"].get("maxUnavailable") != 1 for b in matching):
            problems.append(
                f"{workload['kind']}/{workload['metadata']['name']}: PodDisruptionBudget is not maxUnavailable 1"
            )
    return problems


# ----------------------------------------------------------------------------------------------- autoscaling


def check_scaling(
    scaled_objects: Sequence[Doc],
    workloads: Sequence[Doc],
    *,
    groups: Mapping[str, str],
    partitions: Callable[[str], int],
    sources: Mapping[str, Sequence[str]],
    bootstrap: str | None,
    scaled_on: Mapping[str, str] | None = None,
) -> list[str]:
    """KEDA scales an existing workload that does not pin replicas, on its real consumer group, within partitions,
    counting the lag of the topic that is its load.

    groups: workload name → the consumer group its settings use; sources: workload name → the topics it
    consumes with that group; scaled_on: workload name → the one topic whose lag is its load.
    """
    scaled_on = scaled_on or {}
    problems = []
    for so in scaled_objects:
        name, spec = so["metadata"]["name"], so["spec"]
        ref = spec["scaleTargetRef"]
        target = next(
            (
                w
                for w in workloads
                if w["metadata"]["name"] == ref["name"] and w["kind"] == ref.get("kind", "Deployment")
            ),
            None,
        )
        if target is None:
            problems.append(
                f"ScaledObject/{name}: targets {ref.get('kind', 'Deployment')}/{ref['name']}, which does not exist"
            )
            continue
        if "replicas" in target["spec"]:
            problems.append(f"ScaledObject/{name}: {ref['name']} sets replicas, which every apply would reset")
        for trigger in spec.get("triggers", []):
            meta = trigger.get("metadata", {})
            if meta.get("consumerGroup") != groups.get(ref["name"]):
                problems.append(
                    f"ScaledObject/{name}: consumerGroup {meta.get('consumerGroup')!r}, "
                    f"the service uses {groups.get(ref['name'])!r}"
                )
            if bootstrap is not None and meta.get("bootstrapServers") != bootstrap:
                problems.append(
                    f"ScaledObject/{name}: bootstrapServers differ from KAFKA_BOOTSTRAP_SERVERS {bootstrap}"
                )
            consumed = list(sources.get(ref["name"], []))
            if scaled_on.get(ref["name"]) is not None and meta.get("topic") != scaled_on[ref["name"]]:
                # Without `topic` KEDA sums the lag of every topic the group reads (for the writer: the retry
                # tiers, whose records wait for their time on purpose and are not load).
                problems.append(
                    f"ScaledObject/{name}: counts lag on {meta.get('topic') or 'every topic of the group'}, "
                    f"not {scaled_on[ref['name']]} only"
                )
            topics = [meta["topic"]] if "topic" in meta else consumed
            ceiling = max((partitions(t) for t in topics), default=0)
            if spec.get("maxReplicaCount", 100) > ceiling:
                problems.append(
                    f"ScaledObject/{name}: maxReplicaCount {spec.get('maxReplicaCount')} > {ceiling} partitions"
                )
    return problems


# ------------------------------------------------------------------------------------------------- instances


def check_instances(instances_json: str, origin: str, resolvers: Sequence[Container]) -> list[str]:
    """Instance configs are valid, and each secret reference resolves in every container that resolves secrets
    (instances live on tandem.instances; the deployment must mount or set what they refer to)."""
    try:
        raw = json.loads(instances_json)
        instances = [InstanceConfig.model_validate(item) for item in raw]
    except (ValueError, ValidationError) as exc:
        return [f"{origin}: invalid instance configuration: {exc}"]
    problems = []
    for instance in instances:
        refs = [
            instance.mailchimp.api_key,
            instance.mailchimp.webhook_secret,
            instance.accessplanit.api_key,
            instance.accessplanit.webhook_secret,
            instance.accessplanit.webhook_path_secret,
        ]
        for ref in filter(None, refs):
            scheme, _, rest = ref.partition(":")
            for container in resolvers:
                if scheme == "file" and not any(
                    rest.startswith(path.rstrip("/") + "/") and kind.startswith("secret:")
                    for path, kind in container.mounts.items()
                ):
                    problems.append(f"{origin}: {instance.id}'s {ref} is not in a Secret mounted by {container.origin}")
                if scheme == "env" and rest not in container.env:
                    problems.append(f"{origin}: {instance.id}'s {ref} is not set in {container.origin}")
    return problems


# ------------------------------------------------------------------------------------------ custom resources


def _require(problems: list[str], where: str, value: Any, what: str, ok: Callable[[Any], bool]) -> None:
    if not ok(value):
        problems.append(f"{where}: {what} is {value!r}")


def check_custom_resources(docs: Sequence[Doc]) -> list[str]:
    """What the operators' CRD schemas (support.deploy.crds) cannot say: names, the Strimzi cluster label,
    Kafka configs as strings, and how the KEDA resources fit together and with Tandem's consumers."""
    problems: list[str] = []
    clusters = set()
    for doc in of_kind(docs, "KafkaTopic") + of_kind(docs, "KafkaUser"):
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        _require(
            problems, where, doc["metadata"]["name"], "metadata.name (a DNS label)", lambda v: bool(_DNS_LABEL.match(v))
        )
        cluster = doc["metadata"].get("labels", {}).get("strimzi.io/cluster")
        _require(problems, where, cluster, "label strimzi.io/cluster", bool)
        clusters.add(cluster)
    for doc in of_kind(docs, "KafkaTopic"):
        where, spec = f"KafkaTopic/{doc['metadata']['name']}", doc.get("spec", {})
        # The CRD keeps `config` as free-form; the Topic Operator wants Kafka's own string values.
        for key, value in (spec.get("config") or {}).items():
            _require(problems, where, value, f"config {key} (Kafka configs are strings)", lambda v: isinstance(v, str))
    for doc in of_kind(docs, "KafkaUser"):
        where = f"KafkaUser/{doc['metadata']['name']}"
        for acl in doc.get("spec", {}).get("authorization", {}).get("acls", []):
            resource = acl.get("resource", {})
            if resource.get("type") != "cluster":
                _require(
                    problems, where, resource.get("name"), "acl resource.name", lambda v: isinstance(v, str) and bool(v)
                )
    if len(clusters) > 1:
        problems.append(f"Strimzi resources name several clusters: {sorted(map(str, clusters))}")
    for doc in of_kind(docs, "ScaledObject"):
        where, spec = f"ScaledObject/{doc['metadata']['name']}", doc.get("spec", {})
        _require(
            problems,
            where,
            (spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)),
            "(minReplicaCount, maxReplicaCount)",
            lambda v: 0 <= v[0] <= v[1],
        )
        for trigger in spec.get("triggers", []):
            meta = trigger.get("metadata", {})
            # The CRD takes any scaler with string metadata; which keys a kafka trigger needs is the scaler's.
            _require(problems, where, trigger.get("type"), "trigger type", lambda v: v == "kafka")
            for key in ("bootstrapServers", "consumerGroup"):
                _require(problems, where, meta.get(key), f"trigger {key}", lambda v: isinstance(v, str) and bool(v))
            _require(
                problems, where, meta.get("lagThreshold"), "lagThreshold", lambda v: isinstance(v, str) and v.isdigit()
            )
            auth = trigger.get("authenticationRef", {}).get("name")
            if auth is not None and not any(
                a["metadata"]["name"] == auth for a in of_kind(docs, "TriggerAuthentication")
            ):
                problems.append(f"{where}: authenticationRef {auth} does not exist")
    return problems
