"""Prometheus metrics: what the daemon counts, and the registry `/metrics` serves.

Each daemon has its own registry (several can run in one process, in tests). The hot path
only increments pre-resolved label children; gauges that describe current state are read
when scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from notifyd import __version__
from notifyd.constants import ATTEMPT_FAILED, ATTEMPT_SUCCESS, CHANNELS, FAILED, SENT

# From 1 ms (a stub) to a minute (a vendor at its timeout).
ATTEMPT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# From 5 ms (an idle daemon) to an hour (retries with backoff across channels).
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
)  # fmt: skip


class ChannelMetrics:
    """The label children of one channel, resolved once."""

    def __init__(self, metrics: Metrics, channel: str) -> None:
        self.attempt_succeeded = metrics.attempts.labels(channel, ATTEMPT_SUCCESS)
        self.attempt_failed = metrics.attempts.labels(channel, ATTEMPT_FAILED)
        self.attempt_duration = metrics.attempt_duration.labels(channel)


class Metrics:
    """Every metric of one daemon, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.enqueued = Counter(
            "notifyd_notifications_enqueued",
            "Notifications accepted by POST /api/notify/ (SQL inserts are not seen here).",
            registry=registry,
        )
        finished = Counter(
            "notifyd_notifications_finished",
            "Notifications this instance brought to a final status.",
            ["status"],
            registry=registry,
        )
        self.finished_sent = finished.labels(SENT)
        self.finished_failed = finished.labels(FAILED)
        self.attempts = Counter(
            "notifyd_attempts",
            "Delivery attempts by channel and outcome.",
            ["channel", "status"],
            registry=registry,
        )
        self.attempt_duration = Histogram(
            "notifyd_attempt_duration_seconds",
            "Time one attempt took, by channel.",
            ["channel"],
            buckets=ATTEMPT_BUCKETS,
            registry=registry,
        )
        self.latency = Histogram(
            "notifyd_delivery_latency_seconds",
            "From a notification's creation to its final status.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.pending = Gauge(
            "notifyd_pending_notifications",
            "Notifications waiting in the table (all instances), read when scraped.",
            registry=registry,
        )
        self.channels = {channel: ChannelMetrics(self, channel) for channel in CHANNELS}
        info = Gauge("notifyd_build_info", "The running version.", ["version"], registry=registry)
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
