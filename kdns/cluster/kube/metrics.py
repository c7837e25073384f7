"""The informers' metrics: kdns's own ``kdns_informer_*`` and CoreDNS's where it has one.

Counters are bumped once per watch event or request, never per query, so plain
prometheus-client objects are cheap enough. Values that are ages (seconds since the
API server was last heard from) are computed at scrape time by a collector, so a
silent informer ages in the metrics without anyone having to tick a gauge.

Every metric lives in the registry given (the process's shared one in production, a
fresh one per test); the two histograms that the rest of kdns may already own
(``kdns_propagation_seconds``, ``coredns_kubernetes_dns_programming_duration_seconds``)
can be passed in instead of created.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PROPAGATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# CoreDNS: prometheus.ExponentialBuckets(0.001, 2, 20).
PROGRAMMING_BUCKETS = tuple(0.001 * 2**i for i in range(20))
REQUEST_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)


@dataclass(frozen=True, slots=True)
class InformerState:
    """What the scrape-time collector reads from one informer."""

    resource: str
    synced: bool
    stale: bool
    last_heard: float | None
    """``time.monotonic()`` of the last list, event or bookmark; None before any."""


class _StateCollector(Collector):
    def __init__(self, source: Callable[[], Iterable[InformerState]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        now = time.monotonic()
        age = GaugeMetricFamily(
            "kdns_informer_last_sync_age_seconds",
            "Seconds since the informer last heard from the API server (list, event or "
            "bookmark); -1 before its first list.",
            labels=["resource"],
        )
        stale = GaugeMetricFamily(
            "kdns_informer_stale",
            "1 while the informer has no working watch: answers may lag the cluster.",
            labels=["resource"],
        )
        synced = GaugeMetricFamily(
            "kdns_informer_synced",
            "1 once the informer completed its first list.",
            labels=["resource"],
        )
        for state in self._source():
            heard = -1.0 if state.last_heard is None else now - state.last_heard
            age.add_metric([state.resource], heard)
            stale.add_metric([state.resource], 1.0 if state.stale else 0.0)
            synced.add_metric([state.resource], 1.0 if state.synced else 0.0)
        yield age
        yield stale
        yield synced

    def describe(self) -> Iterator[Metric]:
        return iter(())


class Metrics:
    """All informer metrics in one place; see the module docstring."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        propagation: Histogram | None = None,
        programming: Histogram | None = None,
    ) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        r = self.registry
        self.events = Counter(
            "kdns_informer_events",
            "Watch events received, by resource and type (ADDED, MODIFIED, DELETED, BOOKMARK).",
            ["resource", "type"],
            registry=r,
        )
        self.relists = Counter(
            "kdns_informer_relists",
            "Full lists: the first one (reason start) and those after 410 Gone (reason gone).",
            ["resource", "reason"],
            registry=r,
        )
        self.restarts = Counter(
            "kdns_informer_watch_restarts",
            "Watch streams resumed from the last resourceVersion, by why the previous ended "
            "(timeout: the server closed it; inactive: nothing arrived in time; error).",
            ["resource", "reason"],
            registry=r,
        )
        self.errors = Counter(
            "kdns_informer_errors",
            "Failed list or watch requests, by error class.",
            ["resource", "error"],
            registry=r,
        )
        self.invalid = Counter(
            "kdns_informer_invalid_objects",
            "Objects skipped because DNS could not serve them (see the log for the field).",
            ["resource"],
            registry=r,
        )
        self.requests = Counter(
            "coredns_kubernetes_rest_client_requests",
            "Number of HTTP requests, partitioned by status code, method, and host.",
            ["code", "method", "host"],
            registry=r,
        )
        self.request_duration = Histogram(
            "coredns_kubernetes_rest_client_request_duration_seconds",
            "Request latency in seconds. Broken down by verb and host.",
            ["verb", "host"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.propagation = propagation or Histogram(
            "kdns_propagation_seconds",
            "Delay from a watch event reaching kdns to the new answers being served.",
            buckets=PROPAGATION_BUCKETS,
            registry=r,
        )
        self.programming = programming or Histogram(
            "coredns_kubernetes_dns_programming_duration_seconds",
            "Histogram of the time (in seconds) it took to program a dns instance.",
            ["service_kind"],
            buckets=PROGRAMMING_BUCKETS,
            registry=r,
        )

    def track(self, source: Callable[[], Iterable[InformerState]]) -> None:
        """Export the scrape-time gauges (ages, stale, synced) of these informers."""
        self.registry.register(_StateCollector(source))

    def response_hook(self, host: str) -> Callable[[str, str, float], None]:
        """The client's ``on_response``: CoreDNS's rest-client metrics for one host."""

        def observe(verb: str, code: str, seconds: float) -> None:
            self.requests.labels(code, "GET", host).inc()
            self.request_duration.labels(verb, host).observe(seconds)

        return observe
