"""The forward plugin's per-query metrics as plain integers, exported at scrape time.

Every forwarded query bumped ``coredns_forward_requests_total``, then
``coredns_forward_responses_total`` and two duration histograms (the current
``coredns_proxy_*`` one and the legacy ``coredns_forward_*`` one): six locked
prometheus-client operations, about 5 µs, a sixth of a forwarded query's Python time.
Here a request is one integer bump and a reply one :class:`metrics.Buckets` observe,
and :class:`Collector` turns them into the same families, names, labels and buckets
when Prometheus scrapes (as :mod:`kdns.dns.metrics` does for the DNS server's own).

The legacy families carry no ``proxy_name``: they are the sums over it, as when both
were counted in CoreDNS. Tallies live in the registry's collector, keyed by their
labels, so a reload's new forwarders keep counting where the old ones stopped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector as BaseCollector

from kdns.dns import metrics


class Requests:
    """``coredns_forward_requests_total`` of one upstream: one bump per exchange."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class Collector(BaseCollector):
    """The per-query forward families of one registry, from plain tallies."""

    def __init__(self) -> None:
        self.requests: dict[str, Requests] = {}  # to -> tally
        # (proxy_name, to, rcode name) -> duration histogram (its count: the responses)
        self.replies: dict[tuple[str, str, str], metrics.Buckets] = {}

    def requests_of(self, to: str) -> Requests:
        found = self.requests.get(to)
        if found is None:
            found = self.requests[to] = Requests()
        return found

    def replies_of(self, proxy_name: str, to: str, rcode: str) -> metrics.Buckets:
        key = (proxy_name, to, rcode)
        found = self.replies.get(key)
        if found is None:
            found = self.replies[key] = metrics.Buckets(metrics.DURATION_BUCKETS)
        return found

    def describe(self) -> Iterable[Metric]:
        return list(self._families(False))

    def collect(self) -> Iterable[Metric]:
        return list(self._families(True))

    def _families(self, with_samples: bool) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "coredns_forward_requests", "Counter of requests made per upstream.", labels=["to"]
        )
        responses = CounterMetricFamily(
            "coredns_forward_responses",
            "Counter of responses received per upstream.",
            labels=["rcode", "to"],
        )
        legacy = HistogramMetricFamily(
            "coredns_forward_request_duration_seconds",
            "Histogram of the time each request took.",
            labels=["to", "rcode"],
        )
        proxy = HistogramMetricFamily(
            "coredns_proxy_request_duration_seconds",
            "Histogram of the time each request took.",
            labels=["proxy_name", "to", "rcode"],
        )
        if with_samples:
            for to, tally in list(self.requests.items()):
                requests.add_metric([to], tally.n)
            summed: dict[tuple[str, str], metrics.Buckets] = {}
            for (proxy_name, to, rcode), hist in list(self.replies.items()):
                buckets, total = hist.family_samples()
                proxy.add_metric([proxy_name, to, rcode], buckets, total)
                both = summed.get((to, rcode))
                if both is None:
                    both = summed[(to, rcode)] = metrics.Buckets(hist.bounds)
                both.counts = [a + b for a, b in zip(both.counts, hist.counts, strict=True)]
                both.total += hist.total
            for (to, rcode), hist in summed.items():
                responses.add_metric([rcode, to], sum(hist.counts))
                buckets, total = hist.family_samples()
                legacy.add_metric([to, rcode], buckets, total)
        yield from (requests, responses, legacy, proxy)
