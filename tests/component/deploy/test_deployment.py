"""The real deployment files — every k8s overlay, docker-compose.yml, the Dockerfile — built and checked offline
against the Kubernetes and Compose schemas and against the code (tests/support/deploy)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from functools import cache
from importlib.resources import files
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest

from support.deploy import checks, code, crds
from support.deploy.manifests import (
    DOCKERFILE,
    Container,
    Doc,
    compose_containers,
    k8s_containers,
    kustomize_build,
    load_compose,
    of_kind,
    overlays,
)
from tandem_devstack.paths import REPO_ROOT
from tandem_shared.contracts import AccessplanitConnection, MailchimpConnection
from tandem_shared.contracts.topics import CHANGES, COMMANDS, COMMANDS_RETRY, INSTANCES, TOPICS, topic_spec
from tandem_shared.instances import demo_instance

OVERLAYS = {path.name: path for path in overlays()}
# The oldest Kubernetes minor the manifests support, and the newest the schemas know.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
# The topic whose lag is each scaled workload's load.
SCALED_ON = {"tandem-mapper": CHANGES, "tandem-writer": COMMANDS}
# Kinds validated against their operators' CRD schemas (support.deploy.crds) instead of a Kubernetes schema.
CUSTOM_KINDS = crds.kinds()


@cache
def built(overlay: str) -> list[Doc]:
    return kustomize_build(OVERLAYS[overlay])


@cache
def dockerfile() -> code.Dockerfile:
    return code.parse_dockerfile(DOCKERFILE)


def containers(overlay: str) -> list[tuple[Doc, Container]]:
    return list(k8s_containers(built(overlay), f"k8s/overlays/{overlay}"))


def all_containers() -> list[Container]:
    k8s = [c for overlay in OVERLAYS for _, c in containers(overlay)]
    return k8s + compose_containers(load_compose())


def package(container: Container) -> code.Package | None:
    return code.package_for_module(container.module) if container.module else None


def settings_for(container: Container) -> list[code.Setting]:
    found = package(container)
    return code.package_settings(found) if found is not None and found.present else []


def known_env() -> set[str]:
    names = {name for p in code.present_packages() for s in code.package_settings(p) for name in s.env_names}
    return names | code.make_run_env_names()


def pending_prefixes() -> list[str]:
    return sorted({p.env_prefix for c in all_containers() if (p := package(c)) is not None and not p.present})


def group_of(container: Container) -> str | None:
    for setting in settings_for(container):
        if setting.field == "group_id":
            return next((container.env[n] for n in setting.env_names if container.env.get(n)), setting.default)
    return None


def test_the_dev_and_prod_overlays_exist() -> None:
    assert {"dev", "prod"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_overlay_validates_against_the_kubernetes_schemas(overlay: str) -> None:
    problems = []
    for doc in built(overlay):
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                if doc["kind"] not in CUSTOM_KINDS:
                    problems.append(f"{doc['kind']}: no schema in Kubernetes {version} and no custom check")
            except kubernetes_validate.ValidationError as exc:
                problems.append(f"{doc['kind']}/{doc['metadata']['name']} ({version}): {exc.message}")
    assert problems + crds.check(built(overlay)) + checks.check_custom_resources(built(overlay)) == []


def test_the_vendored_crds_cover_every_custom_kind_the_manifests_use() -> None:
    assert {"KafkaTopic", "KafkaUser", "ScaledObject", "TriggerAuthentication", "PodMonitor", "PrometheusRule"} <= (
        CUSTOM_KINDS
    )


def test_crd_validation_rejects_what_the_operators_would() -> None:
    """The CRD schemas can fail: a misspelt field, a value outside an enum, a missing required field."""
    docs = built("prod")
    user = next(d for d in docs if d["kind"] == "KafkaUser")
    scaled = next(d for d in docs if d["kind"] == "ScaledObject")
    rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "r"}}
    drifted = [
        {**user, "spec": {**user["spec"], "authentication": {"type": "mtls"}}},
        {**scaled, "spec": {**scaled["spec"], "minReplicas": 1}},
        {**rule, "spec": {"groups": [{"name": "g", "rules": [{"alert": "NoExpression"}]}]}},
        {**user, "apiVersion": "kafka.strimzi.io/v1alpha9"},
    ]
    problems = crds.check(drifted)
    assert len(problems) == 4, problems
    assert "'mtls' is not one of" in problems[0]
    assert "'minReplicas' was unexpected" in problems[1]
    assert "'expr' is a required property" in problems[2]
    assert "is not served" in problems[3]


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_topic_in_the_code_has_a_matching_kafka_topic(overlay: str) -> None:
    assert checks.check_topics(TOPICS, of_kind(built(overlay), "KafkaTopic")) == []


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_kafka_users_allow_the_data_flow(overlay: str) -> None:
    groups = {p.dir.removeprefix("services/"): group_of(c) for _, c in containers(overlay) if (p := package(c))}
    flow = code.data_flow(TOPICS, {k: v for k, v in groups.items() if v})
    assert checks.check_acls(TOPICS, flow, of_kind(built(overlay), "KafkaUser")) == []


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_containers_provide_every_setting_without_a_safe_default(overlay: str) -> None:
    known, pending = known_env(), pending_prefixes()
    problems = [
        problem
        for _, container in containers(overlay)
        if container.target is not None
        for problem in checks.check_settings(container, settings_for(container), known=known, pending_prefixes=pending)
    ]
    assert problems == []


def test_compose_provides_every_setting_without_a_safe_default() -> None:
    known, pending = known_env(), pending_prefixes()
    problems = [
        problem
        for container in compose_containers(load_compose())
        if container.target is not None
        for problem in checks.check_settings(container, settings_for(container), known=known, pending_prefixes=pending)
    ]
    assert problems == []


def test_settings_awaited_by_the_manifests_are_not_read_yet() -> None:
    assert checks.check_awaited(known_env()) == []


def test_every_module_the_deployments_run_exists_and_is_in_its_image() -> None:
    problems, pending = [], []
    for container in all_containers():
        if container.target is None:
            continue
        found, waiting = checks.check_module(container, dockerfile(), code.package_for_module)
        problems += found
        pending += waiting
    if pending:
        warnings.warn("not checked until merged: " + "; ".join(pending), stacklevel=1)
    assert problems == []


def test_every_service_is_deployed_everywhere() -> None:
    services = code.present_packages()
    problems = checks.check_coverage(services, compose_containers(load_compose()), "docker-compose.yml")
    for overlay in OVERLAYS:
        problems += checks.check_coverage(services, [c for _, c in containers(overlay)], f"k8s/overlays/{overlay}")
    runtime = dockerfile().stages["runtime"].packages
    problems += [
        f"Dockerfile runtime: {p.dir} not installed"
        for p in services
        if p.dir.startswith("services/") and p.dir not in runtime
    ]
    assert problems == []


def test_every_role_of_every_service_runs_everywhere_and_runs_reconciliations_once() -> None:
    """The writer package's reconciler is deployed beside the writer, and the writers leave runs to it."""
    apps = code.service_apps()
    assert checks.RECONCILER_APP in apps
    deployments = {f"k8s/overlays/{o}": [c for _, c in containers(o)] for o in OVERLAYS}
    deployments["docker-compose.yml"] = compose_containers(load_compose())
    problems = []
    for where, running in deployments.items():
        problems += checks.check_roles(apps, running, where) + checks.check_reconcile_runs(running)
    assert problems == []


# Where a pod holds a server's client credentials → the NetworkPolicy that must let it reach that server.
CLIENT_POLICIES = {
    "/var/run/secrets/kafka/user": "tandem-kafka-clients",
    "/var/run/secrets/redis": "tandem-redis-clients",
}


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_pod_with_kafka_or_redis_credentials_may_reach_them(overlay: str) -> None:
    pairs = containers(overlay)
    holders = {w["metadata"]["name"] for w, c in pairs if set(CLIENT_POLICIES) <= set(c.mounts)}
    assert {"tandem-writer", "tandem-reconciler"} <= holders
    assert checks.check_client_policies(pairs, of_kind(built(overlay), "NetworkPolicy"), CLIENT_POLICIES) == []


def test_packages_follow_the_naming_convention_the_checks_rely_on() -> None:
    assert code.convention_problems() == []


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_pods_run_as_the_image_user_with_a_read_only_root_and_probes(overlay: str) -> None:
    problems = []
    for workload, container in containers(overlay):
        if container.target is None:
            continue
        run_as = workload["spec"]["template"]["spec"].get("securityContext", {}).get("runAsUser")
        problems += checks.check_image_user(container, dockerfile(), run_as)
        problems += checks.check_pod(workload, container, service=container.app is not None)
    assert problems == []


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_services_get_longer_than_their_graceful_shutdown(overlay: str) -> None:
    graceful = code.broker_graceful_timeout_s()
    problems = [
        problem
        for _, container in containers(overlay)
        if container.app is not None
        for problem in checks.check_shutdown(container, settings_for(container), graceful)
    ]
    assert problems == []


def test_compose_services_get_longer_than_their_graceful_shutdown() -> None:
    graceful = code.broker_graceful_timeout_s()
    problems = [
        problem
        for container in compose_containers(load_compose())
        if container.app is not None
        for problem in checks.check_shutdown(container, settings_for(container), graceful)
    ]
    assert problems == []


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_service_has_a_disruption_budget(overlay: str) -> None:
    workloads = [
        d
        for d in built(overlay)
        if d["kind"] in ("Deployment", "StatefulSet")
        and d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "service"
    ]
    assert {w["metadata"]["name"] for w in workloads} >= {"tandem-ingest", "tandem-mapper", "tandem-writer"}
    assert checks.check_disruption_budgets(workloads, of_kind(built(overlay), "PodDisruptionBudget")) == []


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_keda_scales_mapper_and_writer_on_their_own_consumer_groups(overlay: str) -> None:
    docs = built(overlay)
    pairs = containers(overlay)
    groups = {w["metadata"]["name"]: g for w, c in pairs if (g := group_of(c))}
    flow = {a.user: [t for t in a.reads if t != INSTANCES] for a in code.data_flow(TOPICS, {})}
    settings = next(d for d in of_kind(docs, "ConfigMap") if "KAFKA_BOOTSTRAP_SERVERS" in d.get("data", {}))
    scaled = of_kind(docs, "ScaledObject")
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled} == {"tandem-mapper", "tandem-writer"}
    problems = checks.check_scaling(
        scaled,
        [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")],
        groups=groups,
        partitions=lambda topic: topic_spec(topic).partitions,
        sources=flow,
        bootstrap=settings["data"]["KAFKA_BOOTSTRAP_SERVERS"],
        scaled_on=SCALED_ON,
    )
    assert problems == []


def test_keda_counts_the_writers_lag_on_commands_only() -> None:
    """Records waiting in a retry tier are not load: a trigger without `topic` would count them."""
    docs = built("prod")
    writer = next(s for s in of_kind(docs, "ScaledObject") if s["metadata"]["name"] == "tandem-writer")
    unscoped = {
        **writer,
        "spec": {
            **writer["spec"],
            "triggers": [
                {
                    **writer["spec"]["triggers"][0],
                    "metadata": {k: v for k, v in writer["spec"]["triggers"][0]["metadata"].items() if k != "topic"},
                }
            ],
        },
    }
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    problems = checks.check_scaling(
        [unscoped],
        workloads,
        groups={"tandem-writer": "tandem-writer"},
        partitions=lambda topic: topic_spec(topic).partitions,
        sources={"tandem-writer": [COMMANDS, *COMMANDS_RETRY]},
        bootstrap=None,
        scaled_on=SCALED_ON,
    )
    assert problems == ["ScaledObject/tandem-writer: counts lag on every topic of the group, not tandem.commands only"]


# An instance as docs/operations.md registers one: keys as files in the Secret tandem-vendor-keys.
EXAMPLE_INSTANCE = demo_instance().model_copy(
    update={
        "id": "example",
        "mailchimp": MailchimpConnection(
            api_key="file:/var/run/secrets/tandem/example-mailchimp-api-key",
            audience_id="0123456789",
            webhook_secret="file:/var/run/secrets/tandem/example-mailchimp-webhook-secret",
        ),
        "accessplanit": AccessplanitConnection(
            base_url="https://example.accessplanit.com",
            api_key="file:/var/run/secrets/tandem/example-accessplanit-api-key",
            webhook_secret="file:/var/run/secrets/tandem/example-accessplanit-webhook-secret",
        ),
    }
)


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_the_secrets_instances_refer_to_reach_the_services_that_resolve_them(overlay: str) -> None:
    pairs = containers(overlay)
    resolvers = [c for _, c in pairs if c.module in code.secret_resolvers()]
    assert {c.module for c in resolvers} == code.secret_resolvers()
    instances = [EXAMPLE_INSTANCE]
    if any(c.module == "tandem_devstack" and "demo" in c.argv for _, c in pairs):
        instances.append(demo_instance())  # the overlay publishes the demo instance: its env: keys must be set
    document = json.dumps([i.model_dump(mode="json") for i in instances])
    assert checks.check_instances(document, overlay, resolvers) == []


def test_compose_file_validates_against_the_compose_specification() -> None:
    schema = json.loads((files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert [e.message for e in validator.iter_errors(load_compose())] == []


def test_compose_gives_tandem_the_same_environment_as_make_run() -> None:
    make_run = code.make_run_env_names()
    problems = [
        problem
        for container in compose_containers(load_compose())
        if container.target is not None
        for problem in checks.check_make_run_parity(container, make_run)
    ]
    assert problems == []


def test_compose_volumes_are_owned_by_the_image_user() -> None:
    problems = []
    for container in compose_containers(load_compose()):
        if container.target is not None:
            problems += checks.check_image_user(container, dockerfile(), None)
            problems += checks.check_compose_volumes(container, dockerfile())
    assert problems == []


def test_compose_runs_the_kafka_version_the_devstack_runs() -> None:
    pom = (REPO_ROOT / "devstack" / "kafka" / "pom.xml").read_text(encoding="utf-8")
    version = re.search(r"<kafka.version>(.+?)</kafka.version>", pom)
    assert version is not None
    assert load_compose()["services"]["kafka"]["image"] == f"apache/kafka:{version.group(1)}"


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True, check=False, timeout=60)
    assert (result.returncode, result.stdout) == (0, "")


def test_schema_validation_rejects_a_misspelt_field() -> None:
    """The validators above can fail: a typo in a manifest and in the compose file is refused."""
    statefulset = next(d for d in built("prod") if d["kind"] == "StatefulSet")
    drifted = {**statefulset, "spec": {**statefulset["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(drifted, KUBERNETES_VERSIONS[-1], strict=True)
    schema = json.loads((files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text())
    compose = load_compose()
    compose["services"]["ingest"]["enviroment"] = {}
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert ["enviroment" in e.message for e in validator.iter_errors(compose)] == [True]
