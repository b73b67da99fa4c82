"""Prometheus metrics: what the daemon counts, and the registry `/metrics` serves.

Each daemon has its own registry (several can run in one process, in tests). What the
delivery path counts are plain integers and bisect-bucketed histograms, exported by one
collector: prometheus-client's own metric objects take a lock on every increment, which
cost the pipeline nearly a tenth of its CPU, and the daemon is one event-loop thread.
Gauges that describe current state are read when scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from itertools import accumulate

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from notifyd import __version__
from notifyd.domain import CHANNELS, AttemptStatus, Status

# From 1 ms (a stub) to a minute (a vendor at its timeout).
ATTEMPT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# From 5 ms (an idle daemon) to an hour (retries with backoff across channels).
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
)  # fmt: skip


class Count:
    """A counter for the event loop's thread: no lock."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, by: int = 1) -> None:
        self.value += by


class Buckets:
    """A histogram for the event loop's thread: one bisect and two additions."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def exposition(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative (le, count) pairs and the sum, as Prometheus wants them."""
        cumulative = list(accumulate(self.counts))
        limits = [repr(float(bound)) for bound in self.bounds] + ["+Inf"]
        return list(zip(limits, cumulative, strict=True)), self.sum


class ChannelMetrics:
    """What one channel's actors count."""

    def __init__(self) -> None:
        self.attempt_succeeded = Count()
        self.attempt_failed = Count()
        self.attempt_throttled = Count()
        self.attempt_duration = Buckets(ATTEMPT_BUCKETS)


class Metrics:
    """Every metric of one daemon, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.enqueued = Count()
        self.finished_sent = Count()
        self.finished_failed = Count()
        self.finished_cancelled = Count()
        # Cancels and retries asked for through this instance (API, dashboard, CLI).
        self.cancels = Count()
        self.retries = Count()
        # Status webhooks: requests that got a 2xx, requests that did not (an error, a
        # timeout, another status), and events given up on after webhooks.retry_for.
        self.webhook_delivered = Count()
        self.webhook_failed = Count()
        self.webhook_given_up = Count()
        self.webhook_duration = Buckets(ATTEMPT_BUCKETS)
        self.latency = Buckets(LATENCY_BUCKETS)
        self.channels = {channel: ChannelMetrics() for channel in CHANNELS}
        self.registry.register(_Counted(self))
        self.pending = Gauge(
            "notifyd_pending_notifications",
            "Notifications waiting in the table (all instances), read when scraped.",
            registry=self.registry,
        )
        self.suppressions = Gauge(
            "notifyd_suppressed_contacts",
            "Contacts a vendor said can never be reached, by channel (all instances), read"
            " when scraped.",
            ["channel"],
            registry=self.registry,
        )
        self.next_slot = Gauge(
            "notifyd_channel_next_slot_seconds",
            "Seconds until the channel's next sending slot (all instances): a vendor's pause,"
            " or a backlog paced to the channel's rate_limit; read when scraped.",
            ["channel"],
            registry=self.registry,
        )
        info = Gauge(
            "notifyd_build_info", "The running version.", ["version"], registry=self.registry
        )
        info.labels(__version__).set(1)

    def watch(
        self,
        name: str,
        documentation: str,
        read: Callable[[], Iterable[tuple[str, float]]],
        *,
        label: str | None = None,
        counter: bool = False,
    ) -> None:
        """A metric read from the running daemon when scraped.

        `read` yields (label value, value) pairs; the label value is ignored without `label`.
        """
        self.registry.register(_Watched(name, documentation, read, label, counter))


class _Counted(Collector):
    """Exports the counts and histograms the delivery path keeps."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return self.collect()

    def collect(self) -> Iterable[Metric]:
        m = self._metrics
        enqueued = CounterMetricFamily(
            "notifyd_notifications_enqueued",
            "Notifications accepted by POST /api/notify/ (SQL inserts are not seen here).",
            value=m.enqueued.value,
        )
        finished = CounterMetricFamily(
            "notifyd_notifications_finished",
            "Notifications this instance brought to a final status.",
            labels=["status"],
        )
        finished.add_metric([Status.SENT], m.finished_sent.value)
        finished.add_metric([Status.FAILED], m.finished_failed.value)
        finished.add_metric([Status.CANCELLED], m.finished_cancelled.value)
        lifecycle = CounterMetricFamily(
            "notifyd_lifecycle_requests",
            "Cancels and retries this instance carried out (API, dashboard, CLI).",
            labels=["action"],
        )
        lifecycle.add_metric(["cancel"], m.cancels.value)
        lifecycle.add_metric(["retry"], m.retries.value)
        webhook_requests = CounterMetricFamily(
            "notifyd_webhook_requests",
            "Status webhook requests by result: delivered (2xx) or failed (anything else).",
            labels=["result"],
        )
        webhook_requests.add_metric(["delivered"], m.webhook_delivered.value)
        webhook_requests.add_metric(["failed"], m.webhook_failed.value)
        webhook_given_up = CounterMetricFamily(
            "notifyd_webhook_events_given_up",
            "Status events marked failed after webhooks.retry_for.",
            value=m.webhook_given_up.value,
        )
        webhook_duration = HistogramMetricFamily(
            "notifyd_webhook_duration_seconds", "Time one status webhook request took."
        )
        buckets, total = m.webhook_duration.exposition()
        webhook_duration.add_metric([], buckets, total)
        attempts = CounterMetricFamily(
            "notifyd_attempts",
            "Delivery attempts by channel and outcome.",
            labels=["channel", "status"],
        )
        durations = HistogramMetricFamily(
            "notifyd_attempt_duration_seconds",
            "Time one attempt took, by channel.",
            labels=["channel"],
        )
        for channel, counts in m.channels.items():
            attempts.add_metric([channel, AttemptStatus.SUCCESS], counts.attempt_succeeded.value)
            attempts.add_metric([channel, AttemptStatus.FAILED], counts.attempt_failed.value)
            attempts.add_metric([channel, AttemptStatus.THROTTLED], counts.attempt_throttled.value)
            buckets, total = counts.attempt_duration.exposition()
            durations.add_metric([channel], buckets, total)
        latency = HistogramMetricFamily(
            "notifyd_delivery_latency_seconds",
            "From a notification's creation to its final status.",
        )
        buckets, total = m.latency.exposition()
        latency.add_metric([], buckets, total)
        return [
            enqueued,
            finished,
            lifecycle,
            attempts,
            durations,
            latency,
            webhook_requests,
            webhook_given_up,
            webhook_duration,
        ]


class _Watched(Collector):
    """A gauge or counter whose values are read from the running daemon at scrape time."""

    def __init__(
        self,
        name: str,
        documentation: str,
        read: Callable[[], Iterable[tuple[str, float]]],
        label: str | None,
        counter: bool,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._read = read
        self._labels = [label] if label else None
        self._counter = counter

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for label_value, value in self._read():
            family.add_metric([label_value] if self._labels else [], value)
        return [family]

    def _family(self) -> GaugeMetricFamily | CounterMetricFamily:
        if self._counter:
            return CounterMetricFamily(self._name, self._documentation, labels=self._labels)
        return GaugeMetricFamily(self._name, self._documentation, labels=self._labels)
