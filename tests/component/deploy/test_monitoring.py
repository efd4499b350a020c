"""k8s/monitoring: the PodMonitor reaches every service's /metrics, the alerts docs/operations.md describes exist,
and the alerts and the dashboard query only metrics (and labels) that exist (support.deploy.metrics)."""

from __future__ import annotations

import json
from functools import cache

import tandem_shared.metrics
from support.deploy import metrics
from support.deploy.manifests import K8S, Doc, kustomize_build, of_kind

# docs/operations.md, "Alerts and metrics": one alert per signal it lists for Prometheus.
ALERTS = {
    "TandemConsumerLagGrowing",
    "TandemConsumerStuck",
    "TandemDeadLettersGrowing",
    "TandemIngestUnavailable",
    "TandemWebhookSecretMismatch",
    "TandemWriterFailureRatio",
    "TandemPodNotReady",
    "TandemPodRestarting",
}


@cache
def built() -> list[Doc]:
    """The prod overlay, which includes k8s/monitoring."""
    return kustomize_build(K8S / "overlays" / "prod")


def test_the_pod_monitor_scrapes_every_service_on_its_metrics_port() -> None:
    (monitor,) = of_kind(built(), "PodMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    scraped = set()
    for workload in (d for d in built() if d["kind"] in ("Deployment", "StatefulSet")):
        template = workload["spec"]["template"]
        if template["metadata"]["labels"].get("app.kubernetes.io/component") != "service":
            continue
        assert selector.items() <= template["metadata"]["labels"].items(), workload["metadata"]["name"]
        ports = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
        assert endpoint["port"] in ports, workload["metadata"]["name"]
        scraped.add(workload["metadata"]["name"])
    assert scraped == {"tandem-ingest", "tandem-mapper", "tandem-writer", "tandem-reconciler", "tandem-console"}


def test_the_rules_hold_the_alerts_the_operations_guide_describes() -> None:
    (rule,) = of_kind(built(), "PrometheusRule")
    alerts = {r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]}
    assert alerts == ALERTS
    assert all(
        r["labels"]["severity"] in ("warning", "critical") and r["annotations"]["summary"]
        for group in rule["spec"]["groups"]
        for r in group["rules"]
    )


def test_the_dashboard_is_provisioned_with_a_panel_per_signal() -> None:
    (config_map,) = [
        d for d in of_kind(built(), "ConfigMap") if d["metadata"].get("labels", {}).get("grafana_dashboard")
    ]
    dashboard = json.loads(config_map["data"]["tandem.json"])
    queried = {
        name for panel in dashboard["panels"] for t in panel["targets"] for name in metrics.references(t["expr"])[0]
    }
    code = metrics.exported(tandem_shared.metrics)
    # Every counter and histogram the services export is on the dashboard.
    assert {name for name in code if not name.endswith(("_created", "_sum", "_count"))} - queried == set()


def test_alerts_and_dashboard_query_only_exported_metrics() -> None:
    code = metrics.exported(tandem_shared.metrics)
    expressions = [*metrics.rule_expressions(built()), *metrics.dashboard_expressions(built())]
    assert len(expressions) > len(ALERTS)
    assert metrics.check(expressions, code) == []


def test_the_drift_check_reports_unknown_metrics_and_labels() -> None:
    code = metrics.exported(tandem_shared.metrics)
    drifted = [
        ("typo", "sum by (target) (rate(tandem_writer_outcome_total[5m]))"),
        ("label", 'sum by (tenant) (rate(tandem_writer_outcomes_total{status="failed"}[5m]))'),
        ("fine", "histogram_quantile(0.95, sum by (le, flow) (rate(tandem_end_to_end_latency_seconds_bucket[5m])))"),
    ]
    assert metrics.check(drifted, code) == [
        "typo: tandem_writer_outcome_total is not exported by tandem_shared.metrics nor a known exporter",
        "label: label 'tenant' is on none of ['tandem_writer_outcomes_total']",
    ]
