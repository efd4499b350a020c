"""The metrics the monitoring manifests query against the metrics the code exports (tandem_shared.metrics)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, Summary
from prometheus_client.metrics import MetricWrapperBase

from support.deploy.manifests import Doc

# Metrics of other exporters the alerts rely on (docs/operations.md, "Alerts and metrics"), with their labels.
EXTERNAL: Mapping[str, frozenset[str]] = {
    # Strimzi's Kafka Exporter (Kafka resource spec.kafkaExporter).
    "kafka_consumergroup_lag": frozenset({"consumergroup", "topic", "partition"}),
    "kafka_consumergroup_current_offset": frozenset({"consumergroup", "topic", "partition"}),
    # kube-state-metrics.
    "kube_pod_status_ready": frozenset({"namespace", "pod", "condition"}),
    "kube_pod_container_status_restarts_total": frozenset({"namespace", "pod", "container"}),
}
# Labels every scraped series carries: Prometheus' target labels and the PodMonitor's relabelling.
TARGET_LABELS = frozenset({"namespace", "pod", "container", "instance", "job", "endpoint", "app", "le"})

_SUFFIXES: Mapping[type, tuple[str, ...]] = {
    Counter: ("_total", "_created"),
    Gauge: ("",),
    Histogram: ("_bucket", "_sum", "_count", "_created"),
    Summary: ("_sum", "_count", "_created"),
}

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_RANGE = re.compile(r"\[[^\]]*\]")
_MATCHERS = re.compile(r"\{([^}]*)\}")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_GRAFANA_VARIABLE = re.compile(r"\$\{?\w+\}?")


def exported(module: Any) -> dict[str, frozenset[str]]:
    """Series name → label names, for every prometheus_client metric defined in module."""
    found: dict[str, frozenset[str]] = {}
    for metric in vars(module).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        kind = next(k for k in _SUFFIXES if isinstance(metric, k))
        base = metric._name  # prometheus_client strips _total from a counter's name; the suffixes add it back
        labels = frozenset(metric._labelnames) | ({"le"} if kind is Histogram else frozenset())
        for suffix in _SUFFIXES[kind]:
            found[base + suffix] = labels
    return found


def references(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) a PromQL expression uses; functions and keywords are not metrics."""
    text = _GRAFANA_VARIABLE.sub("1m", _STRING.sub('""', expr))
    text = _RANGE.sub("", text)
    labels: set[str] = set()
    for match in _MATCHERS.finditer(text):
        labels.update(m.group(0) for m in _IDENT.finditer(match.group(1)))
    text = _MATCHERS.sub(" ", text)
    for match in _GROUPING.finditer(text):
        labels.update(m.group(0) for m in _IDENT.finditer(match.group(2)))
    text = _GROUPING.sub(" ", text)
    metrics = set()
    for match in _IDENT.finditer(text):
        name, rest = match.group(0), text[match.end() :].lstrip()
        if name in _KEYWORDS or rest.startswith("("):
            continue
        metrics.add(name)
    return metrics, labels


def rule_expressions(docs: Iterable[Doc]) -> Iterator[tuple[str, str]]:
    for doc in docs:
        if doc["kind"] != "PrometheusRule":
            continue
        for group in doc["spec"]["groups"]:
            for rule in group["rules"]:
                name = rule.get("alert") or rule.get("record")
                yield f"PrometheusRule/{doc['metadata']['name']} {name}", rule["expr"]


def dashboard_expressions(docs: Iterable[Doc]) -> Iterator[tuple[str, str]]:
    """Queries of the Grafana dashboards the ConfigMaps labelled grafana_dashboard provision."""
    for doc in docs:
        if doc["kind"] != "ConfigMap" or doc["metadata"].get("labels", {}).get("grafana_dashboard") != "1":
            continue
        for filename, text in doc["data"].items():
            dashboard = json.loads(text)
            for panel in dashboard["panels"]:
                for target in panel.get("targets", []):
                    yield f"{filename} panel {panel['title']!r}", target["expr"]


def check(
    expressions: Iterable[tuple[str, str]],
    code: Mapping[str, frozenset[str]],
    external: Mapping[str, frozenset[str]] = EXTERNAL,
) -> list[str]:
    """Every metric an expression queries exists, and every label it matches or groups by is one of its labels."""
    problems = []
    for where, expr in expressions:
        metrics, labels = references(expr)
        if not metrics:
            problems.append(f"{where}: queries no metric: {expr!r}")
        unknown = sorted(name for name in metrics if name not in code and name not in external)
        problems += [
            f"{where}: {name} is not exported by tandem_shared.metrics nor a known exporter" for name in unknown
        ]
        if unknown:
            continue  # its labels cannot be told apart from typos
        allowed = TARGET_LABELS.union(*(code.get(name, external.get(name, frozenset())) for name in metrics))
        problems += [f"{where}: label {label!r} is on none of {sorted(metrics)}" for label in sorted(labels - allowed)]
    return problems
