"""The lock-free counters and histograms, and how they are exported."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from notifyd.metrics import Buckets, Metrics


def test_buckets_are_cumulative_and_a_value_on_a_bound_counts_in_it() -> None:
    histogram = Buckets((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        histogram.observe(value)
    buckets, total = histogram.exposition()
    assert buckets == [("0.1", 2), ("1.0", 4), ("+Inf", 5)]
    assert total == 8.65


def test_the_registry_exports_what_the_pipeline_counted() -> None:
    metrics = Metrics()
    sms = metrics.channels["sms"]
    sms.attempt_succeeded.inc()
    sms.attempt_failed.inc()
    sms.attempt_failed.inc()
    sms.attempt_duration.observe(0.003)
    metrics.finished_sent.inc()
    metrics.latency.observe(0.02)
    metrics.enqueued.inc()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
        for s in family.samples
    }
    assert samples[("notifyd_attempts_total", (("channel", "sms"), ("status", "failed")))] == 2
    assert samples[("notifyd_attempts_total", (("channel", "email"), ("status", "success")))] == 0
    bucket = ("notifyd_attempt_duration_seconds_bucket", (("channel", "sms"), ("le", "0.005")))
    assert samples[bucket] == 1
    assert samples[("notifyd_delivery_latency_seconds_count", ())] == 1
    assert samples[("notifyd_notifications_finished_total", (("status", "sent"),))] == 1
    assert samples[("notifyd_notifications_enqueued_total", ())] == 1
