"""The benchmark's pure parts: the figures in bench/results are only as good as this arithmetic."""

from __future__ import annotations

import pytest

from tandem_bench import report
from tandem_bench.stats import (
    budget_ceiling,
    budget_use,
    cpu_percent,
    percentile,
    ratio,
    summarize_latencies,
    throughput,
)


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [10.0, 20.0, 30.0, 40.0, 50.0]
    assert percentile(values, 0) == 10.0
    assert percentile(values, 50) == 30.0
    assert percentile(values, 100) == 50.0
    assert percentile(values, 95) == pytest.approx(48.0)  # rank 3.8 → 40 + 0.8 × 10
    assert percentile([40.0, 10.0, 30.0, 20.0], 50) == pytest.approx(25.0)  # unsorted input, even count


def test_percentile_refuses_no_values_and_out_of_range_q() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_summary_reports_milliseconds_from_seconds() -> None:
    summary = summarize_latencies([i / 1000 for i in range(1, 101)])  # 1 ms … 100 ms
    assert summary is not None
    assert summary.count == 100
    assert summary.p50_ms == pytest.approx(50.5)
    assert summary.p99_ms == pytest.approx(99.01)
    assert summary.max_ms == pytest.approx(100.0)
    assert summarize_latencies([]) is None


def test_budget_is_ten_connections_over_the_request_latency() -> None:
    assert budget_ceiling(0.150) == pytest.approx(66.667, rel=1e-3)
    assert budget_use(60.0, 0.150) == pytest.approx(0.9)
    assert budget_use(66.667, 0.150) == pytest.approx(1.0, rel=1e-3)
    with pytest.raises(ValueError):
        budget_ceiling(0.0)


def test_throughput_ratio_and_cpu_share() -> None:
    assert throughput(1000, 10.0, 12.0) == 500.0
    assert throughput(0, 10.0, 12.0) == 0.0
    assert throughput(10, 12.0, 12.0) == 0.0
    assert ratio(1000, 4000) == 0.25
    assert ratio(1000, 0) is None
    assert ratio(None, 10) is None
    assert cpu_percent(3.0, 2.0) == 150.0


def _results(**tandem: object) -> dict[str, object]:
    return {
        "started_at": "2026-01-01T00:00:00Z",
        "mode": "quick",
        "tandem": {
            "throughput": {"events_per_s": 2500.0},
            "latency": {"200": {"p99_ms": 120.0, "sent": 600, "finished": 600}},
            "budget": {"budget_use": 0.95, "responses_429": 0},
            "burst": {"writes_per_contact": 1.5, "final_state_is_last_update": True},
            **tandem,
        },
        "raw_kafka": {"throughput": {"events_per_s": 4000.0}, "latency": {"200": {"p99_ms": 40.0}}},
        "naive": {"throughput": {"events_per_s": 500.0}, "latency": {"200": {"p99_ms": 60.0}}},
    }


def test_targets_are_judged_from_the_figures() -> None:
    met = {t.name: t.met for t in report.judge(_results())}
    assert all(met.values()), met
    missed = {
        t.name: t.met
        for t in report.judge(
            _results(
                budget={"budget_use": 0.95, "responses_429": 3},
                burst={"writes_per_contact": 1.0, "final_state_is_last_update": False},
            )
        )
    }
    assert missed["Mailchimp connection budget used under backlog (150 ms)"] is False
    assert missed["Burst of 10 updates to one contact within a second (Mailchimp at 150 ms)"] is False
    assert missed["Sustained end-to-end throughput"] is True


def test_share_of_the_ceiling_and_ratios() -> None:
    results = _results()
    judged = {t.name: t for t in report.judge(results)}
    assert judged["Share of the raw Kafka ceiling"].measured == "62.5%"
    ratios = report.ratios(results)
    assert ratios["throughput_tandem_vs_raw_kafka"] == 0.625
    assert ratios["throughput_tandem_vs_naive"] == 5.0
    assert ratios["p99_at_200_tandem_vs_naive"] == 2.0
    assert ratios["p99_at_50_tandem_vs_naive"] is None


def test_unmeasured_targets_are_said_to_be_unmeasured() -> None:
    results = _results()
    del results["tandem"]["budget"]  # type: ignore[attr-defined]
    judged = {t.name: t for t in report.judge(results)}
    assert judged["Mailchimp connection budget used under backlog (150 ms)"].met is None


def test_report_renders_figures_and_history() -> None:
    earlier = _results()
    earlier["started_at"] = "2025-12-31T00:00:00Z"
    earlier["tandem"]["throughput"]["events_per_s"] = 54.0  # type: ignore[index]
    markdown = report.render(_results(), [earlier])
    assert "| Sustained end-to-end throughput | ≥ 2,000 events/s | 2,500 events/s | met |" in markdown
    assert "| 200 | naive sync |" in markdown
    history = markdown.split("## History", 1)[1]
    assert history.index("2025-12-31T00:00:00Z") < history.index("2026-01-01T00:00:00Z")
    assert "| 54 |" in history and "| 2,500 |" in history


def test_cpu_time_per_event_divides_each_process_cpu_by_the_events_finished() -> None:
    usage = {"ingest": {"cpu_s": 2.0}, "writer": {"cpu_s": 0.5}, "loadgen": {"cpu_s": None}}
    assert report.cpu_ms_per_event(usage, 1000) == {"ingest": 2.0, "writer": 0.5, "loadgen": None}
    assert report.cpu_ms_per_event(usage, 0) == {"ingest": None, "writer": None, "loadgen": None}


def test_the_cpu_bound_is_cores_over_the_cpu_every_process_spends_per_event() -> None:
    resources = {"events": 1000, "usage": {"ingest": {"cpu_s": 2.0}, "kafka": {"cpu_s": 3.0}, "redis": {"cpu_s": 5.0}}}
    assert report.cpu_bound(resources, 2) == (10.0, 200.0)  # 10 ms per event → 200 events/s on 2 cores
    assert report.cpu_bound(None, 2) is None


def _reconcile(backfill_rate: float, ceiling_rate: float) -> dict[str, object]:
    cpu = {"writer": {"cpu_s": 10.0, "ms_per_member": 1.0}}
    ceiling = {"commands": 1000, "members_per_s": ceiling_rate, "cpu": cpu, "machine_busy_percent": 50.0}
    return {
        "started_at": "2026-01-01T00:00:00Z",
        "load_before": "up",
        "seed_s": 1.0,
        "executor_rss_idle_mb": 70.0,
        "backfill": {
            "users": 1000,
            "members_written": 1000,
            "audience_size": 1000,
            "members_per_s": backfill_rate,
            "ideal_members_per_s": 4347.8,
            "ratio_to_ideal": round(backfill_rate / 4347.8, 3),
            "modelled_batch_latency_s": 1.15,
            "ratio_to_bound": round(backfill_rate / min(4347.8, ceiling_rate), 3),
            "ratio_to_pipeline_bound": round(backfill_rate / min(4347.8, ceiling_rate), 3),
            "first_write_s": 1.0,
            "request_to_last_write_s": 5.0,
            "run_phases_s": {"reading accessplanit": 0.1, "publishing": 0.5, "finished": 2.0},
            "accessplanit_requests": 2,
            "accessplanit_requests_per_500_users": 1.0,
            "executor": "reconciler",
            "executor_rss_peak_mb": 90.0,
            "cpu": cpu,
            "machine_busy_percent": 60.0,
        },
        "comparison": {
            "contacts_accessplanit": 1000,
            "contacts_mailchimp": 1000,
            "wall_s": 1.0,
            "requests": {"accessplanit": 2, "mailchimp": 2},
            "counts": {"equal": 1000},
            "executor_rss_peak_mb": 80.0,
        },
        "ceiling": {**ceiling, "mapper_changes_per_s": 600.0, "mapper_cpu_ms_per_change": 0.7},
        "pipeline_ceiling": ceiling,
    }


def test_the_backfill_is_judged_against_the_lower_of_the_ideal_and_the_writers_ceiling() -> None:
    met = {t.name: t for t in report.judge({**_results(), "reconcile": _reconcile(400.0, 450.0)})}
    target = met["Backfill of 1,000 users: members/s ÷ min(batch ideal, writer's ceiling)"]
    assert target.met is True
    assert target.measured == "400.0 / 450.0 members/s = 89%"
    missed = {t.name: t.met for t in report.judge({**_results(), "reconcile": _reconcile(300.0, 450.0)})}
    assert missed["Backfill of 1,000 users: members/s ÷ min(batch ideal, writer's ceiling)"] is False
    markdown = report.render({**_results(), "reconcile": _reconcile(300.0, 450.0)}, [])
    assert "| … ratio of the backfill to min(ideal, ceiling) = 450.0/s | 66.7% | ≥ 80% (**not met**) |" in markdown
