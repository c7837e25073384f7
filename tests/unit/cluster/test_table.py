"""The compiled table against the resolver it compiles from, and what a change costs.

The resolver is the reference (:mod:`kdns.cluster.resolver`): for every name shape of
the fixture cluster, every ndots:5 search-path expansion and every type, the table's
answer (compiled, a structural negative template, or computed on first use and cached)
must be the resolver's, byte for byte, before and after writes. The rest pins down the
issue-14 costs without timing anything: a write drops only the cached names it
affects, a large headless service compiles in a number of steps linear in its
endpoints, one endpoint change recompiles a few names, and the compile stops inside a
service when its budget is spent.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdns.cluster import manifests, objects, resolver, store, table
from kdns.dns import names, wire

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "cluster"
ZONES = ("cluster.local.", "in-addr.arpa.", "ip6.arpa.")
QTYPES = (
    wire.A, wire.AAAA, wire.SRV, wire.TXT, wire.CNAME, wire.PTR, wire.SOA, wire.NS,
    wire.ANY, wire.MX, wire.AXFR,
)  # fmt: skip


@pytest.fixture(autouse=True)
def _one_serial(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SOA serial is the store's modification time: hold it still, so that answers
    compiled or cached before a write compare byte for byte with fresh ones (kdns keeps
    a compiled name's serial until the name is recompiled)."""
    monkeypatch.setattr(store.time, "time", lambda: 1_700_000_000.0)


def _service(ns: str, name: str, ip: str, *ports: objects.ServicePort) -> objects.Service:
    return objects.Service(
        ns, name, "ClusterIP", (ip,), "", ports, None, False, ("IPv4",), "SingleStack"
    )


def _settings(**kw: object) -> resolver.Settings:
    return resolver.Settings(zones=ZONES, **kw)  # type: ignore[arg-type]


def _loaded(settings: resolver.Settings) -> tuple[store.Store, table.Table]:
    st = store.Store()
    manifests.ManifestsSource(FIXTURE, st).load()
    st.mark_synced()
    tbl = table.Table(st, resolver.Resolver(st, settings))
    tbl.rebuild()
    return st, tbl


def _names(st: store.Store) -> Iterator[str]:
    """Every name shape of the cluster, and what a pod's search path makes of them."""
    zone = "cluster.local."
    yield from (zone, "svc." + zone, "pod." + zone, "ns.dns." + zone, "dns-version." + zone)
    yield from ("nothing." + zone, "a.b.c.d.e.svc." + zone, "x.y.z.pod." + zone)
    namespaces = [*sorted(st.namespaces), "missing"]
    for ns in namespaces:
        yield f"{ns}.svc.{zone}"
        yield f"{ns}.pod.{zone}"
        yield f"10-1-2-3.{ns}.pod.{zone}"
        yield f"not-an-ip.{ns}.pod.{zone}"
        yield f"missing.{ns}.svc.{zone}"
    for svc in st.services.values():
        base = f"{svc.name}.{svc.namespace}.svc.{zone}"
        yield base
        yield f"nohost.{base}"
        yield f"_http._tcp.{base}"
        yield f"http.tcp.{base}"
        for port in svc.ports:
            yield f"_{port.name.lower()}._{port.protocol.lower()}.{base}"
        for eps in st.slices_of(svc.namespace, svc.name):
            for endpoint in eps.endpoints:
                for ip in endpoint.addresses:
                    if eps.address_type != "FQDN":
                        yield names.reverse_name(ip)
                        yield f"{names.dashed(ip)}.{base}"
                    if endpoint.hostname:
                        yield f"{endpoint.hostname.lower()}.{base}"
                    if endpoint.target_name:
                        yield f"{endpoint.target_name.lower()}.{base}"
        for ip in svc.cluster_ips:
            if ip != "None":
                yield names.reverse_name(ip)
        # ndots:5 from a pod in each namespace: "<svc>.<ns>" then "<svc>" alone.
        for short in (f"{svc.name}.{svc.namespace}", svc.name, "www.example.com"):
            for ns in namespaces[:4]:
                yield f"{short}.{ns}.svc.{zone}"
            yield f"{short}.svc.{zone}"
            yield f"{short}.{zone}"
    yield "1.0.0.10.in-addr.arpa."
    yield "0.10.in-addr.arpa."
    yield "example.org."


def _same(tbl: table.Table, qnames: list[str]) -> list[str]:
    """Names and types where the table's answer is not the resolver's."""
    res = tbl.resolver
    bad = []
    for text in qnames:
        name = names.to_wire(text)
        zone = res.zone_of(text)
        for qtype in QTYPES:
            for _ in range(2):  # first use, then from the cache
                got = tbl.lookup(name, qtype)
                if zone is None:
                    if got is not None:
                        bad.append(f"{text} {qtype}: answered outside the zones")
                    continue
                want = res.answer(text, zone, qtype)
                if got is None or (got.rcode, got.counts, got.body) != (
                    want.rcode,
                    want.counts,
                    want.body,
                ):
                    bad.append(f"{text} {qtype}: {got and got.rcode} != {want.rcode}")
    return bad


SETTINGS = [
    _settings(),
    _settings(pods="insecure"),
    _settings(pods="verified", endpoint_pod_names=True),
    _settings(fallthrough=("svc.cluster.local.",), ignore_empty_service=True),
    _settings(noendpoints=True),
    _settings(namespaces=frozenset({"apps", "stateful"})),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: repr(s)[9:60])
def test_table_answers_as_the_resolver(settings: resolver.Settings) -> None:
    st, tbl = _loaded(settings)
    qnames = sorted(set(_names(st)))
    assert len(qnames) > 300
    assert _same(tbl, qnames) == []
    # Writes of every kind, then the same names again: nothing cached may be stale.
    svc = st.services[("apps", "single")]
    st.put_namespace(objects.Namespace("missing"))
    st.put_service(_service("missing", "missing", "10.96.9.9"))
    st.put_service(_service("apps", "www", "10.96.9.8"))
    st.delete_service(*svc.key)
    for eps in list(st.slices.values()):
        if eps.endpoints and eps.address_type == "IPv4":
            first = eps.endpoints[0]
            moved = objects.Endpoint(("10.244.99.1",), not first.ready, "moved", "")
            st.put_slice(objects.EndpointSlice(
                eps.namespace, eps.name, eps.service, eps.address_type,
                (moved, *eps.endpoints[1:]), eps.ports))  # fmt: skip
    st.delete_namespace("orphan")
    tbl.update()
    assert _same(tbl, sorted(set(_names(st)) | set(qnames))) == []


def test_negatives_from_structure_never_ask_the_resolver() -> None:
    """Search-path misses come from a shared template, whatever their count."""
    _, tbl = _loaded(_settings())
    asked: list[str] = []
    real = tbl.resolver.answer

    def counting(qname: str, zone: str, qtype: int) -> wire.Answer:
        asked.append(qname)
        return real(qname, zone, qtype)

    tbl.resolver.answer = counting  # type: ignore[method-assign]
    misses = [
        f"{svc}.{suffix}"
        for svc in ("web", "api.prod", "www.example.com", "redis.cache")
        for suffix in ("apps.svc.cluster.local.", "svc.cluster.local.", "cluster.local.")
    ]
    for text in misses:
        for qtype in (wire.A, wire.AAAA):
            got = tbl.lookup(names.to_wire(text), qtype)
            assert got is not None and got.rcode == wire.NXDOMAIN
    assert asked == []


def test_a_write_drops_only_the_names_it_affects() -> None:
    st, tbl = _loaded(_settings())
    qnames = sorted(set(_names(st)))
    for text in qnames:
        tbl.lookup(names.to_wire(text), wire.A)
    cached = dict(tbl.lazy)
    eps = st.slices[("stateful", "hl-1")]
    st.put_slice(objects.EndpointSlice(
        eps.namespace, eps.name, eps.service, eps.address_type, eps.endpoints[1:], eps.ports
    ))  # fmt: skip
    dropped = {names.wire_to_text(n) for n in cached if n not in tbl.lazy}
    assert dropped, "the names below the changed service were cached"
    for text in dropped:
        assert (
            text.endswith(".arpa.")
            or text.endswith(".hl.stateful.svc.cluster.local.")
            or (text == "cluster.local.")
        ), text
    assert len(tbl.lazy) > len(cached) * 0.8


# -- a large headless service ---------------------------------------------------------------


def _headless(size: int) -> tuple[store.Store, table.Table]:
    st = store.Store()
    st.put_namespace(objects.Namespace("big"))
    st.put_service(_service("big", "web", "None"))
    port = (objects.EndpointPort("http", 80, "TCP"),)
    for start in range(0, size, 100):
        endpoints = tuple(
            objects.Endpoint((f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}",), True, f"web-{i}", "")
            for i in range(start, min(size, start + 100))
        )
        st.put_slice(objects.EndpointSlice("big", f"web-{start}", "web", "IPv4", endpoints, port))
    st.mark_synced()
    return st, table.Table(st, resolver.Resolver(st, _settings()))


class _Visits:
    """Counts endpoints unpacked from slices: the work a scan does."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = objects.EndpointSlice.__dict__["endpoints"]

        def endpoints(eps: objects.EndpointSlice) -> tuple[objects.Endpoint, ...]:
            found: tuple[objects.Endpoint, ...] = real.__get__(eps)
            self.count += len(found)
            return found

        monkeypatch.setattr(objects.EndpointSlice, "endpoints", property(endpoints))


def test_headless_compile_is_linear(monkeypatch: pytest.MonkeyPatch) -> None:
    """3,000 endpoints: a bounded number of endpoint visits per endpoint (it was ~5 per
    endpoint per host name, 45 million here), one index, five questions per name."""
    size = 3000
    st, tbl = _headless(size)
    visits = _Visits(monkeypatch)
    tbl.rebuild()
    assert visits.count <= 12 * size
    assert tbl.resolver.indexed == 1
    names_compiled = size + 2  # the hosts, the service, its port name
    assert tbl.steps <= 5 * names_compiled
    host = names.to_wire("web-1234.web.big.svc.cluster.local.")
    got = tbl.lookup(host, wire.A)
    assert got is not None and got.ancount == 1

    # One endpoint gets a new address: the service's own names and that host only.
    eps = st.slices[("big", "web-1200")]
    moved = list(eps.endpoints)
    moved[34] = objects.Endpoint(("10.250.0.1",), True, "web-1234", "")
    st.put_slice(objects.EndpointSlice("big", eps.name, "web", "IPv4", tuple(moved), eps.ports))
    visits.count = steps = 0
    steps = tbl.steps
    assert tbl.update()
    assert tbl.steps - steps <= 5 * 3
    assert visits.count <= 12 * size
    got = tbl.lookup(host, wire.A)
    assert got is not None and got.body.endswith(bytes([10, 250, 0, 1]))


def test_compile_budget_applies_inside_a_service() -> None:
    """With no time to spare, each update asks one question: no query waits for a whole
    service, and the old answers serve until the new ones are complete."""
    st, tbl = _headless(500)
    tbl.rebuild()
    eps = st.slices[("big", "web-0")]
    st.put_slice(
        objects.EndpointSlice("big", eps.name, "web", "IPv4", eps.endpoints[1:], eps.ports)
    )
    gone = names.to_wire("web-0.web.big.svc.cluster.local.")
    calls = 0
    while True:
        before = tbl.steps
        done = tbl.update(budget=0.0)
        calls += 1
        assert tbl.steps - before <= 1
        if done:
            break
        # Until the swap, the service's compiled names are the old ones.
        assert gone in tbl.packed
    assert calls > 5
    assert gone not in tbl.packed
    got = tbl.lookup(gone, wire.A)
    assert got is not None and got.rcode == wire.NXDOMAIN


def test_rarely_asked_names_come_from_one_index() -> None:
    """Endpoint names and PTRs of a ClusterIP service: one index, not a scan per name."""
    st = store.Store()
    st.put_namespace(objects.Namespace("apps"))
    st.put_service(
        _service("apps", "api", "10.96.0.10", objects.ServicePort("http", 80, "TCP", 80))
    )
    endpoints = tuple(
        objects.Endpoint((f"10.1.{i >> 8}.{i & 255}",), True, "", f"api-{i}") for i in range(1000)
    )
    port = (objects.EndpointPort("http", 8080, "TCP"),)
    st.put_slice(objects.EndpointSlice("apps", "api-1", "api", "IPv4", endpoints, port))
    st.mark_synced()
    tbl = table.Table(st, resolver.Resolver(st, _settings()))
    tbl.rebuild()
    for i in itertools.islice(range(1000), 0, 1000, 7):
        ip = f"10.1.{i >> 8}.{i & 255}"
        a = tbl.lookup(names.to_wire(f"{names.dashed(ip)}.api.apps.svc.cluster.local."), wire.A)
        assert a is not None and a.ancount == 1
        ptr = tbl.lookup(names.to_wire(names.reverse_name(ip)), wire.PTR)
        assert ptr is not None and ptr.ancount == 1
    assert tbl.resolver.indexed == 1
    assert not any(n.startswith(b"\x0810-1-") for n in tbl.packed), "compiled up front"
