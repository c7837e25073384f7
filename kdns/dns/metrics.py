"""CoreDNS's DNS metrics, counted without prometheus-client on the query path.

A labelled ``Counter.inc()`` costs about a microsecond; the fast path answers in a few.
So the query path bumps plain dict counters and integer bucket arrays
(:class:`QueryStats`), and a custom collector turns them into CoreDNS's metric
families, names, labels and buckets at scrape time, so dashboards and alerts written
for CoreDNS keep working. Everything that is not per query uses prometheus-client
directly on the shared :data:`REGISTRY`.
"""

from __future__ import annotations

import bisect
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from kdns import __version__
from kdns.dns import rcode as rcodes
from kdns.dns import rdatatype

# CoreDNS's buckets (plugin/metrics/vars: prometheus.ExponentialBuckets(0.00025, 2, 16)).
DURATION_BUCKETS = tuple(0.00025 * 2**i for i in range(16))
# Request and response sizes, CoreDNS's bucket bounds.
SIZE_BUCKETS = (0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16e3, 32e3, 48e3, 64e3)


# CoreDNS exports no *_created series; dashboards do not expect them.
disable_created_metrics()  # type: ignore[no-untyped-call]


class _ReloadSafeRegistry(CollectorRegistry):
    """A registry where the newest collector of a metric name replaces the older one.

    A reload builds the new configuration's plugins beside the old ones, metrics
    included, and a plain registry refuses the second ``kdns_envinject_requests``;
    here the new generation's collectors take over the names, and the old one's go
    quiet with it.
    """

    def register(self, collector: Collector) -> None:
        names = self._get_names(collector)  # type: ignore[no-untyped-call]
        with self._lock:
            older = {self._names_to_collectors[n] for n in names if n in self._names_to_collectors}
        for old in older:
            if old is not collector:
                self.unregister(old)
        super().register(collector)


REGISTRY: CollectorRegistry = _ReloadSafeRegistry(auto_describe=True)

SIZE_INDEX = bytes(bisect.bisect_left(SIZE_BUCKETS, n) for n in range(65536))
"""Bucket index of every message size, so the fast path counts a size with one lookup."""
FAST_BOUND = DURATION_BUCKETS[0]


class Buckets:
    """A histogram as integer counts per bucket plus a sum; cheap to observe."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def family_samples(self) -> tuple[list[tuple[str, float]], float]:
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip(self.bounds, self.counts, strict=False):
            cumulative += count
            buckets.append((_float(bound), cumulative))
        cumulative += self.counts[-1]
        buckets.append(("+Inf", cumulative))
        return buckets, self.total


def _float(value: float) -> str:
    return repr(float(value))


@dataclass(slots=True)
class QueryStats:
    """Per-server query counters; keys are small tuples, values plain ints."""

    server: str
    # (zone, proto, family, qtype) -> count
    requests: dict[tuple[str, str, str, int], int] = field(default_factory=dict)
    # (zone, rcode, plugin) -> count
    responses: dict[tuple[str, int, str], int] = field(default_factory=dict)
    do_requests: dict[str, int] = field(default_factory=dict)
    duration: dict[str, Buckets] = field(default_factory=dict)
    request_size: dict[tuple[str, str], Buckets] = field(default_factory=dict)
    response_size: dict[tuple[str, str], Buckets] = field(default_factory=dict)
    # The fast path counts here, one dict update per query, expanded at scrape time:
    # (qtype, rcode, do, tcp, ipv6, request size, response size) -> count. Sizes stay
    # exact, for the histograms' sums; a scrape interval holds a few thousand keys.
    fast: dict[tuple[int, int, bool, bool, int, int, int], int] = field(default_factory=dict)
    fast_zone: str = "."
    fast_seconds: float = 0.0  # summed durations of fast answers under FAST_BOUND
    fast_quick: int = 0  # how many fast answers took under FAST_BOUND
    # Response-cache hits of the fast path, the same way but with their zone and plugin:
    # (zone, plugin, qtype, rcode, do, tcp, ipv6, request size, response size).
    outside: dict[tuple[str, str, int, int, bool, bool, bool, int, int], int] = field(
        default_factory=dict
    )

    def expand_fast(self) -> None:
        """Fold the fast path's compact counters into the labelled ones (at scrape time)."""
        fast, self.fast = self.fast, {}
        outside, self.outside = self.outside, {}
        zone = self.fast_zone
        items = [((zone, "kubernetes", *key), n) for key, n in fast.items()]
        items += outside.items()
        for (zone, plugin, qtype, rcode, do, tcp, ipv6, req, resp), n in items:
            proto = "tcp" if tcp else "udp"
            key = (zone, proto, "2" if ipv6 else "1", qtype)
            self.requests[key] = self.requests.get(key, 0) + n
            rkey = (zone, rcode, plugin)
            self.responses[rkey] = self.responses.get(rkey, 0) + n
            if do:
                self.do_requests[zone] = self.do_requests.get(zone, 0) + n
            for sizes, size in ((self.request_size, req), (self.response_size, resp)):
                hist = sizes.get((zone, proto))
                if hist is None:
                    hist = sizes[(zone, proto)] = Buckets(SIZE_BUCKETS)
                hist.counts[SIZE_INDEX[size]] += n
                hist.total += size * n
        zone = self.fast_zone
        if self.fast_quick:
            hist = self.duration.get(zone)
            if hist is None:
                hist = self.duration[zone] = Buckets(DURATION_BUCKETS)
            hist.counts[0] += self.fast_quick
            hist.total += self.fast_seconds
            self.fast_quick = 0
            self.fast_seconds = 0.0

    def duration_observe(self, zone: str, seconds: float) -> None:
        hist = self.duration.get(zone)
        if hist is None:
            hist = self.duration[zone] = Buckets(DURATION_BUCKETS)
        hist.observe(seconds)

    def count(
        self,
        zone: str,
        proto: str,
        family: str,
        qtype: int,
        rcode: int,
        plugin: str,
        do: bool,
        seconds: float,
        request_size: int,
        response_size: int,
    ) -> None:
        key = (zone, proto, family, qtype)
        self.requests[key] = self.requests.get(key, 0) + 1
        rkey = (zone, rcode, plugin)
        self.responses[rkey] = self.responses.get(rkey, 0) + 1
        if do:
            self.do_requests[zone] = self.do_requests.get(zone, 0) + 1
        hist = self.duration.get(zone)
        if hist is None:
            hist = self.duration[zone] = Buckets(DURATION_BUCKETS)
        hist.observe(seconds)
        skey = (zone, proto)
        req = self.request_size.get(skey)
        if req is None:
            req = self.request_size[skey] = Buckets(SIZE_BUCKETS)
        req.observe(request_size)
        resp = self.response_size.get(skey)
        if resp is None:
            resp = self.response_size[skey] = Buckets(SIZE_BUCKETS)
        resp.observe(response_size)


type_name = rdatatype.metric_label
rcode_name = rcodes.metric_label


class DNSCollector(Collector):
    """Turns every server's :class:`QueryStats` into CoreDNS's metric families."""

    def __init__(self) -> None:
        self.stats: list[QueryStats] = []

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        requests = CounterMetricFamily(
            "coredns_dns_requests",
            "Counter of DNS requests made per zone, protocol and family.",
            labels=["server", "zone", "view", "proto", "family", "type"],
        )
        responses = CounterMetricFamily(
            "coredns_dns_responses",
            "Counter of response status codes.",
            labels=["server", "zone", "view", "rcode", "plugin"],
        )
        do_requests = CounterMetricFamily(
            "coredns_dns_do_requests",
            "Counter of DNS requests with DO bit set per zone.",
            labels=["server", "zone", "view"],
        )
        duration = HistogramMetricFamily(
            "coredns_dns_request_duration_seconds",
            "Histogram of the time (in seconds) each request took per zone.",
            labels=["server", "zone", "view"],
        )
        req_size = HistogramMetricFamily(
            "coredns_dns_request_size_bytes",
            "Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone and protocol.",
            labels=["server", "zone", "view", "proto"],
        )
        resp_size = HistogramMetricFamily(
            "coredns_dns_response_size_bytes",
            "Size of the returned response in bytes.",
            labels=["server", "zone", "view", "proto"],
        )
        for st in self.stats:
            st.expand_fast()
            merged: dict[tuple[str, str, str, str], int] = {}
            for (zone, proto, family, qtype), n in st.requests.items():
                key = (zone, proto, family, type_name(qtype))
                merged[key] = merged.get(key, 0) + n
            for (zone, proto, family, tname), n in merged.items():
                requests.add_metric([st.server, zone, "", proto, family, tname], n)
            for (zone, rcode, plugin), n in st.responses.items():
                responses.add_metric([st.server, zone, "", rcode_name(rcode), plugin], n)
            for zone, n in st.do_requests.items():
                do_requests.add_metric([st.server, zone, ""], n)
            for zone, hist in st.duration.items():
                buckets, total = hist.family_samples()
                duration.add_metric([st.server, zone, ""], buckets, total)
            for (zone, proto), hist in st.request_size.items():
                buckets, total = hist.family_samples()
                req_size.add_metric([st.server, zone, "", proto], buckets, total)
            for (zone, proto), hist in st.response_size.items():
                buckets, total = hist.family_samples()
                resp_size.add_metric([st.server, zone, "", proto], buckets, total)
        yield from (requests, responses, do_requests, duration, req_size, resp_size)


class PluginsCollector(Collector):
    """coredns_plugin_enabled: which plugins each server block runs."""

    def __init__(self) -> None:
        self.enabled: list[tuple[str, str, str]] = []  # (server, zone, plugin)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "coredns_plugin_enabled",
            "A metric that indicates whether a plugin is enabled on per server and zone basis.",
            labels=["server", "zone", "view", "name"],
        )
        for server, zone, name in self.enabled:
            family.add_metric([server, zone, "", name], 1)
        yield family


DNS = DNSCollector()
PLUGINS = PluginsCollector()
REGISTRY.register(DNS)
REGISTRY.register(PLUGINS)

BUILD_INFO = Gauge(
    "coredns_build_info",
    "A metric with a constant '1' value labeled by version, revision, and goversion from "
    "which CoreDNS was built.",
    ["version", "revision", "goversion"],
    registry=REGISTRY,
)
BUILD_INFO.labels(__version__, "kdns", f"python{platform.python_version()}").set(1)

PANICS = Counter("coredns_panics", "A metrics that counts the number of panics.", registry=REGISTRY)
RELOAD_FAILED = Counter(
    "coredns_reload_failed",
    "Counter of the number of failed reload attempts.",
    registry=REGISTRY,
)
RELOAD_VERSION = Gauge(
    "coredns_reload_version_info",
    "A metric with a constant '1' value labeled by hash, and value which type of hash generated.",
    ["hash", "value"],
    registry=REGISTRY,
)
HEALTH_DURATION = Histogram(
    "coredns_health_request_duration_seconds",
    "Histogram of the time (in seconds) each request took.",
    buckets=(0.00025, 0.0025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 2.0, 5.0, 10.0),
    registry=REGISTRY,
)
HEALTH_FAILURES = Counter(
    "coredns_health_request_failures",
    "The number of times the health check failed.",
    registry=REGISTRY,
)
PROPAGATION = Histogram(
    "kdns_propagation_seconds",
    "Delay from a cluster change reaching kdns to the new answers being served.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
PROGRAMMING = Histogram(
    "coredns_kubernetes_dns_programming_duration_seconds",
    "Histogram of the time (in seconds) it took to program a dns instance.",
    ["service_kind"],
    buckets=(
        0.001,
        0.002,
        0.004,
        0.008,
        0.016,
        0.032,
        0.064,
        0.128,
        0.256,
        0.512,
        1.024,
        2.048,
        4.096,
        8.192,
        16.384,
        32.768,
        65.536,
        131.072,
        262.144,
        524.288,
    ),
    registry=REGISTRY,
)
COMPILED_NAMES = Gauge(
    "kdns_compiled_names",
    "Names whose answers are compiled into wire bytes.",
    registry=REGISTRY,
)


class Sized(Protocol):
    def __len__(self) -> int: ...


class CompiledTable(Protocol):
    """What :data:`COMPILED_NAMES` reads of a cluster table: its map of compiled names."""

    @property
    def packed(self) -> Sized: ...


COMPILED_TABLES: list[CompiledTable] = []
"""The running generation's cluster tables (set by the lifecycle when it publishes one)."""
COMPILED_NAMES.set_function(lambda: float(sum(len(t.packed) for t in COMPILED_TABLES)))


# coredns-mixin's dashboard reads process_resident_memory_bytes and
# process_cpu_seconds_total, which CoreDNS gets from Go's process collector; python_info
# stands where go_info would.
PROCESS = ProcessCollector(registry=REGISTRY)
PLATFORM = PlatformCollector(registry=REGISTRY)


class RuntimeMetrics:
    """``prometheus { runtime_metrics }``: the interpreter's collector, while asked for.

    CoreDNS 1.12+ adds Go's runtime metrics (go_gc_*, go_sched_*...) only with this
    option; kdns's equivalent is Python's garbage collector (``python_gc_*``), registered
    while at least one running configuration asks for it. A reload starts the new
    generation before the old one stops, hence a count rather than a flag.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._users = 0
        self._collector: GCCollector | None = None

    @property
    def enabled(self) -> bool:
        return self._collector is not None

    def acquire(self) -> None:
        self._users += 1
        if self._collector is None:
            self._collector = GCCollector(registry=CollectorRegistry())  # ours below
            self._registry.register(self._collector)

    def release(self) -> None:
        self._users = max(0, self._users - 1)
        if self._users == 0 and self._collector is not None:
            self._registry.unregister(self._collector)
            self._collector = None


RUNTIME = RuntimeMetrics(REGISTRY)


class CertificatesCollector(Collector):
    """``kdns_tls_certificate_expiry_timestamp_seconds{listener, path}``.

    A listener that serves a certificate (the webhooks, DoT/DoH ones) calls
    :meth:`watch` with its name and the certificate file; each scrape reads the file's
    notAfter (parsed again only when the file changed), so a rotation by cert-manager
    or a kubelet secret swap shows without a restart. An alert on
    ``kdns_tls_certificate_expiry_timestamp_seconds - time() < 7 * 86400`` catches a
    certificate nobody renews. A file that cannot be read or parsed has no sample.
    """

    NAME = "kdns_tls_certificate_expiry_timestamp_seconds"

    def __init__(self) -> None:
        self._watched: dict[tuple[str, str], tuple[tuple[int, int], float] | None] = {}

    def watch(self, listener: str, path: str) -> None:
        self._watched.setdefault((listener, str(path)), None)

    def forget(self, listener: str) -> None:
        for key in [k for k in self._watched if k[0] == listener]:
            del self._watched[key]

    def expiry(self, listener: str, path: str) -> float | None:
        """The certificate's notAfter as a Unix time, None when it cannot be read."""
        key = (listener, path)
        try:
            st = os.stat(path)
        except OSError:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        cached = self._watched.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            from cryptography import x509

            with open(path, "rb") as f:
                cert = x509.load_pem_x509_certificate(f.read())
        except (OSError, ValueError):
            return None
        value = cert.not_valid_after_utc.timestamp()
        if key in self._watched:
            self._watched[key] = (stamp, value)
        return value

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            self.NAME,
            "Expiry time (notAfter, Unix seconds) of each certificate kdns serves.",
            labels=["listener", "path"],
        )
        for listener, path in list(self._watched):
            value = self.expiry(listener, path)
            if value is not None:
                family.add_metric([listener, path], value)
        yield family


CERTIFICATES = CertificatesCollector()
REGISTRY.register(CERTIFICATES)
