"""The drift checks catch drift: each is fed a deliberately drifted TOPICS, manifest or compose service."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.deploy import checks, code
from support.deploy.manifests import Container, compose_containers, k8s_containers
from tandem_shared.contracts.topics import COMMANDS, COMMANDS_DLQ, TOPICS, TopicSpec, topic_spec
from tandem_shared.instances import demo_instance

BASE = Path(__file__).resolve().parents[3] / "k8s" / "base"


def load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((BASE / name).read_text()) if d]


def setting(field: str, env: str, default: Any = None, required: bool = False) -> code.Setting:
    return code.Setting("S", field, (env,), default, required)


def container(env: dict[str, str | None], **kw: Any) -> Container:
    defaults: dict[str, Any] = {
        "origin": "test",
        "name": "c",
        "image": "tandem",
        "target": "runtime",
        "argv": ("uvicorn", "tandem_writer.entrypoint:create_app", "--timeout-graceful-shutdown", "30"),
    }
    return Container(env=env, **{**defaults, **kw})


# ------------------------------------------------------------------------------------------------- topics


def test_the_real_topic_manifests_match_the_real_topics() -> None:
    assert checks.check_topics(TOPICS, load("kafka-topics.yaml")) == []


def test_a_topic_added_to_the_code_without_a_kafka_topic_is_reported() -> None:
    drifted = (*TOPICS, TopicSpec("tandem.commands.retry.1", 6))
    assert checks.check_topics(drifted, load("kafka-topics.yaml")) == [
        "tandem.commands.retry.1: in TOPICS but no KafkaTopic"
    ]


def test_different_partitions_and_cleanup_policy_are_reported() -> None:
    resources = load("kafka-topics.yaml")
    changes = next(r for r in resources if r["spec"]["topicName"] == "tandem.changes")
    changes["spec"]["partitions"] = 12
    instances = next(r for r in resources if r["spec"]["topicName"] == "tandem.instances")
    instances["spec"]["config"]["cleanup.policy"] = "delete"
    assert checks.check_topics(TOPICS, resources) == [
        "tandem.changes: KafkaTopic has 12 partitions, TOPICS 6",
        "tandem.instances: KafkaTopic cleanup.policy='delete', TOPICS 'compact'",
    ]


def test_a_changed_retention_in_the_code_is_reported() -> None:
    drifted = tuple(
        TopicSpec(t.name, t.partitions, {**t.config, "retention.ms": "1"}) if t.name == COMMANDS_DLQ else t
        for t in TOPICS
    )
    assert checks.check_topics(drifted, load("kafka-topics.yaml")) == [
        "tandem.commands.dlq: KafkaTopic retention.ms='2592000000', TOPICS '1'"
    ]


def test_a_kafka_topic_for_a_topic_the_code_dropped_is_reported() -> None:
    assert checks.check_topics(TOPICS[1:], load("kafka-topics.yaml")) == [
        "tandem.changes: KafkaTopic for a topic not in TOPICS"
    ]


# --------------------------------------------------------------------------------------------------- ACLs


GROUPS = {"mapper": "tandem-mapper", "writer": "tandem-writer", "console": "tandem-console"}


def test_the_real_kafka_users_allow_the_real_data_flow() -> None:
    assert checks.check_acls(TOPICS, code.data_flow(TOPICS, GROUPS), load("kafka-users.yaml")) == []


def test_a_new_retry_tier_is_covered_by_the_writers_prefix_acl() -> None:
    drifted = (*TOPICS, TopicSpec(f"{COMMANDS}.retry.1", 6))
    assert checks.check_acls(drifted, code.data_flow(drifted, GROUPS), load("kafka-users.yaml")) == []


def test_a_retry_tier_outside_the_acls_is_reported() -> None:
    drifted = (*TOPICS, TopicSpec(f"{COMMANDS}.backoff.1", 6))
    problems = checks.check_acls(drifted, code.data_flow(drifted, GROUPS), load("kafka-users.yaml"))
    assert "tandem-writer: may not read tandem.commands.backoff.1" in problems
    assert "tandem-writer: may not write tandem.commands.backoff.1" in problems


def test_a_renamed_consumer_group_and_a_missing_write_acl_are_reported() -> None:
    users = load("kafka-users.yaml")
    mapper = next(u for u in users if u["metadata"]["name"] == "tandem-mapper")
    mapper["spec"]["authorization"]["acls"] = [
        a for a in mapper["spec"]["authorization"]["acls"] if a["resource"]["name"] != "tandem.commands"
    ]
    problems = checks.check_acls(TOPICS, code.data_flow(TOPICS, {**GROUPS, "writer": "tandem-writer-v2"}), users)
    assert problems == [
        "tandem-mapper: may not write tandem.commands",
        "tandem-writer: may not join its consumer group tandem-writer-v2",
    ]


def test_a_topic_nobody_consumes_is_reported() -> None:
    drifted = (*TOPICS, TopicSpec("tandem.audit", 3))
    problems = checks.check_acls(drifted, code.data_flow(drifted, GROUPS), load("kafka-users.yaml"))
    assert "tandem.audit: no service writes it in the data flow (code.data_flow)" in problems


# ----------------------------------------------------------------------------------------------- settings


KAFKA = setting("kafka_bootstrap_servers", "KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
REDIS = setting("redis_url", "REDIS_URL", "redis://localhost:6379/0")
LEVEL = setting("log_level", "TANDEM_LOG_LEVEL", "INFO")


@pytest.mark.parametrize(
    ("candidate", "unsafe"),
    [
        (KAFKA, True),
        (REDIS, True),
        (setting("host", "H", "127.0.0.1"), True),
        (setting("db", "D", "sqlite:///./.tandem/console.db"), True),
        (setting("data_dir", "D", Path(".tandem/sim")), True),
        (setting("token", "T", required=True), True),
        (LEVEL, False),
        (setting("url", "U", "https://api.mailchimp.com"), False),
        (setting("host", "H", "0.0.0.0"), False),
    ],
)
def test_unsafe_defaults_in_a_container(candidate: code.Setting, unsafe: bool) -> None:
    assert (checks.unsafe_default(candidate) is not None) is unsafe


def test_a_missing_bootstrap_server_is_reported() -> None:
    provided = container({"REDIS_URL": "redis://r:6379/0"})
    problems = checks.check_settings(provided, [KAFKA, REDIS, LEVEL], known={"REDIS_URL"}, pending_prefixes=[])
    assert problems == [
        "test: S.kafka_bootstrap_servers must be set (KAFKA_BOOTSTRAP_SERVERS), "
        "because its default '127.0.0.1:9092' is loopback, i.e. the container itself"
    ]


def test_a_mistyped_variable_is_reported_unless_its_package_is_pending() -> None:
    provided = container({"TANDEM_MAPER_GROUP_ID": "x", "TANDEM_CONSOLE_DATABASE_URL": "sqlite:////d", "HOME": "/"})
    problems = checks.check_settings(
        provided, [], known={"TANDEM_MAPPER_GROUP_ID"}, pending_prefixes=["TANDEM_CONSOLE_"]
    )
    assert problems == ["test: sets TANDEM_MAPER_GROUP_ID, which nothing reads (a typo, or a removed setting?)"]


def test_an_awaited_setting_that_is_read_now_is_reported() -> None:
    assert checks.check_awaited({"TANDEM_MAPPER_GROUP_INSTANCE_ID"}) == [
        "TANDEM_MAPPER_GROUP_INSTANCE_ID is read now (static group membership (group_instance_id) for the mapper): "
        "remove it from checks.AWAITED"
    ]


def test_compose_lacking_a_make_run_variable_is_reported() -> None:
    assert checks.check_make_run_parity(container({"A": "1"}), {"A", "TANDEM_DEMO_INGEST_URL"}) == [
        "test: lacks TANDEM_DEMO_INGEST_URL, which make run sets"
    ]


def test_env_names_follow_pydantic_settings_aliases_and_prefixes() -> None:
    from tandem_writer.settings import WriterSettings

    by_field = {s.field: s.env_names for s in code.settings_of(WriterSettings)}
    assert by_field["kafka_bootstrap_servers"] == ("KAFKA_BOOTSTRAP_SERVERS", "TANDEM_KAFKA_BOOTSTRAP_SERVERS")
    assert by_field["group_id"] == ("TANDEM_WRITER_GROUP_ID",)


# ------------------------------------------------------------------------------------ modules and images

DOCKERFILE = code.Dockerfile(
    {
        "runtime": code.Stage("runtime", {"shared", "services/ingest", "services/writer"}, set(), "10001:10001"),
        "root": code.Stage("root", {"services/writer"}, set(), None),
    }
)


def package_for(module: str) -> code.Package | None:
    return code.package_for_module(module)


def test_a_module_missing_from_the_image_target_is_reported() -> None:
    mapper = container({}, argv=("uvicorn", "tandem_mapper.entrypoint:create_app"))
    assert checks.check_module(mapper, DOCKERFILE, package_for) == (
        ["test: services/mapper is not installed in Dockerfile target runtime"],
        [],
    )


def test_a_misspelt_app_factory_is_reported() -> None:
    writer = container({}, argv=("uvicorn", "tandem_writer.entrypoint:make_app"))
    assert checks.check_module(writer, DOCKERFILE, package_for) == (
        ["test: tandem_writer.entrypoint:make_app does not exist"],
        [],
    )


def test_a_module_outside_the_repository_is_reported() -> None:
    other = container({}, argv=("python", "-m", "celery"))
    assert checks.check_module(other, DOCKERFILE, package_for) == (
        ["test: celery is not a package of this repository"],
        [],
    )


def test_a_package_not_merged_yet_is_pending_not_failing(tmp_path: Path) -> None:
    console = container({}, argv=("uvicorn", "tandem_console.app:create_app"))
    pending_repo = code.package_for_module("tandem_console", repo=tmp_path)
    problems, pending = checks.check_module(console, DOCKERFILE, lambda _: pending_repo)
    assert problems == ["test: services/console is not installed in Dockerfile target runtime"]
    assert pending == ["test: tandem_console (services/console) is not in this checkout yet"]


def test_an_image_without_a_numeric_non_root_user_or_another_uid_is_reported() -> None:
    assert checks.check_image_user(container({}, target="root"), DOCKERFILE, None) == [
        "test: Dockerfile target root has no numeric non-root USER"
    ]
    assert checks.check_image_user(container({}), DOCKERFILE, 1000) == [
        "test: runAsUser 1000, but the image's USER is 10001"
    ]


def test_the_dockerfile_parser_follows_stages(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM python:3.11-slim AS build\n"
        "RUN pip install ./shared ./services/ingest\n"
        "FROM build AS more\n"
        "RUN pip install ./devstack\n"
        "FROM python:3.11-slim AS final\n"
        "RUN useradd x && install -d -o 7 /var/lib/x\n"
        "COPY --from=more /opt/tandem /opt/tandem\n"
        "USER 7:7\n"
    )
    parsed = code.parse_dockerfile(dockerfile)
    assert parsed.stages["build"].packages == {"shared", "services/ingest"}
    assert parsed.stages["final"].packages == {"shared", "services/ingest", "devstack"}
    assert parsed.stages["final"].created_dirs == {"/var/lib/x"}
    assert parsed.uid("final") == 7


def test_a_compose_volume_on_a_directory_the_image_does_not_create_is_reported() -> None:
    sim = container({}, mounts={"/var/lib/tandem/sim": "volume:sim-data", "/tmp": "tmpfs"})
    assert checks.check_compose_volumes(sim, DOCKERFILE) == [
        "test: volume at /var/lib/tandem/sim is not a directory the Dockerfile creates for the image's user"
    ]


def test_a_service_without_a_deployment_is_reported() -> None:
    ingest = code.Package("services/ingest", "tandem_ingest", "TANDEM_INGEST_", True)
    writer = code.Package("services/writer", "tandem_writer", "TANDEM_WRITER_", True)
    assert checks.check_coverage([ingest, writer], [container({})], "compose") == [
        "compose: services/ingest is not deployed"
    ]


def test_a_role_of_a_deployed_package_that_does_not_run_is_reported() -> None:
    apps = [checks.WRITER_APP, checks.RECONCILER_APP]
    assert checks.check_roles(apps, [container({})], "compose") == [f"compose: {checks.RECONCILER_APP} is not run"]


def test_the_reconcile_runs_check_passes_one_executor_either_way() -> None:
    writer, leaving = container({}), container({checks.RECONCILE_RUNS: "false"})
    reconciler = container({}, argv=("uvicorn", checks.RECONCILER_APP))
    assert checks.check_reconcile_runs([writer]) == []
    assert checks.check_reconcile_runs([leaving, reconciler]) == []


def test_runs_left_to_a_missing_reconciler_or_taken_beside_it_are_reported() -> None:
    writer, leaving = container({}, origin="w"), container({checks.RECONCILE_RUNS: "False"}, origin="l")
    reconciler = container({}, argv=("uvicorn", checks.RECONCILER_APP))
    assert checks.check_reconcile_runs([leaving]) == [
        f"l: {checks.RECONCILE_RUNS}=false, but no reconciler is deployed to execute runs"
    ]
    assert checks.check_reconcile_runs([writer, leaving, reconciler]) == [
        f"w: executes reconciliation runs beside the reconciler ({checks.RECONCILE_RUNS} is not false)"
    ]


def test_a_pod_the_kafka_policy_does_not_admit_is_reported() -> None:
    def workload(name: str, component: str) -> dict[str, Any]:
        labels = {"app.kubernetes.io/part-of": "tandem", "app.kubernetes.io/component": component}
        return {
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {"template": {"metadata": {"labels": labels}}},
        }

    kafka = {"/var/run/secrets/kafka/user": "secret:tandem-writer"}
    pairs = [
        (workload("ok", "service"), container({}, origin="ok", mounts=kafka)),
        (workload("tool", "operator"), container({}, origin="tool", mounts=kafka)),
        (workload("odd", "batch"), container({}, origin="odd", mounts=kafka)),
        (workload("none", "batch"), container({}, origin="none")),
    ]
    policies = load("network-policies.yaml")
    clients = {"/var/run/secrets/kafka/user": "tandem-kafka-clients"}
    assert checks.check_client_policies(pairs, policies, clients) == [
        "odd: mounts /var/run/secrets/kafka/user, but NetworkPolicy/tandem-kafka-clients does not admit its pods"
    ]


def test_the_service_apps_are_discovered_from_the_sources() -> None:
    assert {checks.WRITER_APP, checks.RECONCILER_APP, "tandem_console.app:create_app"} <= set(code.service_apps())


# ------------------------------------------------------------------------------------------ pods and shutdown


def test_a_grace_period_shorter_than_the_graceful_shutdown_is_reported() -> None:
    timeout = setting("http_timeout_s", "T", 30.0)
    assert checks.check_shutdown(container({}, grace_s=60.0), [timeout], 15.0) == []
    assert checks.check_shutdown(container({}, grace_s=30.0), [timeout], 15.0) == [
        "test: grace period 30.0 s, needs more than 45 s"
    ]
    assert checks.check_shutdown(container({}, grace_s=50.0, prestop_s=5.0), [timeout], 15.0) == [
        "test: grace period 50.0 s, needs more than 50 s"
    ]


def test_a_writable_root_and_a_liveness_probe_on_the_broker_are_reported() -> None:
    workload = load("writer.yaml")[0]
    spec = workload["spec"]["template"]["spec"]
    spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    spec["containers"][0]["livenessProbe"]["httpGet"]["path"] = "/health/ready"
    (_, writer), *_ = k8s_containers([workload, *_settings_config_map()], "k8s")
    assert checks.check_pod(workload, writer, service=True) == [
        "k8s StatefulSet/tandem-writer: the root filesystem is writable",
        "k8s StatefulSet/tandem-writer: liveness probe is not /health/live",
    ]


def _settings_config_map() -> list[dict[str, Any]]:
    return [{"kind": "ConfigMap", "metadata": {"name": "tandem-settings"}, "data": {}}]


def test_a_service_without_a_budget_or_with_a_blocking_one_is_reported() -> None:
    workload, _, budget = load("mapper.yaml")
    blocking = copy.deepcopy(budget)
    blocking["spec"]["maxUnavailable"] = 0
    assert checks.check_disruption_budgets([workload], [budget]) == []
    assert checks.check_disruption_budgets([workload], []) == ["StatefulSet/tandem-mapper: no PodDisruptionBudget"]
    assert checks.check_disruption_budgets([workload], [blocking]) == [
        "StatefulSet/tandem-mapper: PodDisruptionBudget is not maxUnavailable 1"
    ]


# ----------------------------------------------------------------------------------------------- autoscaling


def scaling(scaled: list[dict[str, Any]], workloads: list[dict[str, Any]], **kw: Any) -> list[str]:
    arguments: dict[str, Any] = {
        "groups": {"tandem-mapper": "tandem-mapper", "tandem-writer": "tandem-writer"},
        "partitions": lambda topic: topic_spec(topic).partitions,
        "sources": {"tandem-writer": [COMMANDS]},
        "bootstrap": "tandem-kafka-kafka-bootstrap:9093",
    }
    return checks.check_scaling(scaled, workloads, **{**arguments, **kw})


def test_the_real_scaled_objects_match_the_workloads() -> None:
    workloads = [load("mapper.yaml")[0], load("writer.yaml")[0]]
    assert scaling(load("keda.yaml")[:2], workloads) == []


def test_scaling_drift_is_reported() -> None:
    mapper = load("mapper.yaml")[0]
    mapper["spec"]["replicas"] = 2
    scaled = load("keda.yaml")[:1]
    scaled[0]["spec"]["maxReplicaCount"] = 12
    problems = scaling(scaled, [mapper], groups={"tandem-mapper": "tandem-mapper-v2"})
    assert problems == [
        "ScaledObject/tandem-mapper: tandem-mapper sets replicas, which every apply would reset",
        "ScaledObject/tandem-mapper: consumerGroup 'tandem-mapper', the service uses 'tandem-mapper-v2'",
        "ScaledObject/tandem-mapper: maxReplicaCount 12 > 6 partitions",
    ]


def test_a_scaled_object_for_a_missing_workload_is_reported() -> None:
    assert scaling(load("keda.yaml")[:1], []) == [
        "ScaledObject/tandem-mapper: targets StatefulSet/tandem-mapper, which does not exist"
    ]


# ------------------------------------------------------------------------------------------------- instances


def test_instance_secret_references_must_resolve_in_the_resolving_containers() -> None:
    instance = demo_instance().model_copy(
        update={"mailchimp": demo_instance().mailchimp.model_copy(update={"api_key": "file:/etc/keys/mc"})}
    )
    document = json.dumps([instance.model_dump(mode="json")])
    writer = container(
        {"TANDEM_DEMO_ACCESSPLANIT_API_KEY": "k", "TANDEM_DEMO_ACCESSPLANIT_WEBHOOK_SECRET": "s"},
        mounts={"/var/run/secrets/tandem": "secret:tandem-vendor-keys"},
    )
    assert checks.check_instances(document, "dev", [writer]) == [
        "dev: demo's file:/etc/keys/mc is not in a Secret mounted by test",
        "dev: demo's env:TANDEM_DEMO_MAILCHIMP_WEBHOOK_SECRET is not set in test",
        "dev: demo's env:TANDEM_DEMO_ACCESSPLANIT_WEBHOOK_PATH_SECRET is not set in test",
    ]


def test_an_invalid_instance_configuration_is_reported() -> None:
    problems = checks.check_instances('[{"id": "Not Valid"}]', "prod", [])
    assert len(problems) == 1 and problems[0].startswith("prod: invalid instance configuration")


# ------------------------------------------------------------------------------------------ custom resources


def test_the_real_custom_resources_have_their_required_fields() -> None:
    docs = load("kafka-topics.yaml") + load("kafka-users.yaml") + load("keda.yaml")
    assert checks.check_custom_resources(docs) == []


def test_custom_resources_missing_required_fields_are_reported() -> None:
    topic, *_ = load("kafka-topics.yaml")
    topic["metadata"]["name"] = "tandem.changes"
    topic["metadata"]["labels"] = {}
    topic["spec"]["config"]["retention.ms"] = 604800000
    scaled, _, auth = load("keda.yaml")
    del scaled["spec"]["triggers"][0]["metadata"]["consumerGroup"]
    problems = checks.check_custom_resources([topic, scaled, auth])
    assert problems == [
        "KafkaTopic/tandem.changes: metadata.name (a DNS label) is 'tandem.changes'",
        "KafkaTopic/tandem.changes: label strimzi.io/cluster is None",
        "KafkaTopic/tandem.changes: config retention.ms (Kafka configs are strings) is 604800000",
        "ScaledObject/tandem-mapper: trigger consumerGroup is None",
    ]


# ----------------------------------------------------------------------------------------------- compose


def test_compose_services_are_read_with_their_environment_and_mounts() -> None:
    doc = {
        "services": {
            "writer": {
                "image": "tandem:local",
                "build": {"context": ".", "target": "runtime"},
                "command": ["uvicorn", "tandem_writer.entrypoint:create_app"],
                "environment": ["KAFKA_BOOTSTRAP_SERVERS=kafka:19092", "TANDEM_LOG_LEVEL"],
                "volumes": ["data:/var/lib/tandem/console:rw"],
                "tmpfs": ["/tmp"],
                "stop_grace_period": "1m5s",
            }
        }
    }
    (writer,) = compose_containers(doc)
    assert (writer.module, writer.target, writer.image, writer.grace_s) == ("tandem_writer", "runtime", "tandem", 65.0)
    assert writer.env == {"KAFKA_BOOTSTRAP_SERVERS": "kafka:19092", "TANDEM_LOG_LEVEL": None}
    assert writer.mounts == {"/var/lib/tandem/console": "volume:data", "/tmp": "tmpfs"}
