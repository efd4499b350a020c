"""The reconciler role: reconciliation runs in a process of their own, the live writer left without them."""

from __future__ import annotations

from fakes.producer import InMemoryProducer
from tandem_shared.instances import StaticInstanceRegistry, demo_instance
from tandem_shared.kafka.gate import KafkaGate
from tandem_writer.bootstrap import bootstrap, bootstrap_reconciler
from tandem_writer.reconcile_service import ReconcileService
from tandem_writer.reconciler import create_app
from tandem_writer.settings import WriterSettings


def _registry() -> StaticInstanceRegistry:
    return StaticInstanceRegistry([demo_instance()])


def test_a_writer_runs_reconciliations_unless_told_a_reconciler_does() -> None:
    assert bootstrap(WriterSettings(), producer=InMemoryProducer(), registry=_registry()).reconcile is not None
    settings = WriterSettings(reconcile_runs=False)
    assert bootstrap(settings, producer=InMemoryProducer(), registry=_registry()).reconcile is None


def test_the_reconciler_executes_runs_with_the_writers_settings() -> None:
    reconciler = bootstrap_reconciler(WriterSettings(), producer=InMemoryProducer(), registry=_registry())
    assert isinstance(reconciler.service, ReconcileService)
    assert create_app(WriterSettings(), registry=_registry()) is not None


def test_the_reconciler_process_waits_behind_the_kafka_gate_like_the_other_services() -> None:
    """As uvicorn's factory (no settings) it is not built until Kafka accepts its credentials."""
    assert isinstance(create_app(), KafkaGate)
