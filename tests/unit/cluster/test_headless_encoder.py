"""Headless services compiled by the one-pass encoder answer as the resolver does.

The resolver (:mod:`kdns.cluster.resolver`) is the reference, its answers built record
by record for every question: the table's compiled answers for a headless service
(its own name, its SRV port names, its host names, from :mod:`kdns.cluster.headless`,
or from the resolver where the encoder declines) must be those bytes, for random
services and after random changes, recompiled incrementally (only the hosts whose
endpoints changed) or from scratch.
"""

from __future__ import annotations

import struct
import unittest.mock
from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from kdns.cluster import headless, objects, resolver, store, table
from kdns.dns import names, wire

ZONE = "cluster.local."
QTYPES = (0, wire.A, wire.AAAA, wire.SRV, wire.TXT, wire.CNAME, wire.SOA, wire.ANY, wire.MX)
PORTS = (
    objects.EndpointPort("peer", 7000, "TCP"),
    objects.EndpointPort("peer", 7000, "UDP"),
    objects.EndpointPort("Metrics", 9090, "TCP"),
    objects.EndpointPort("", 80, "TCP"),
)
ADDRESSES = {
    "IPv4": ("10.0.0.1", "10.0.0.2", "10.0.0.3", "not-an-ip"),
    "IPv6": ("fd00::1", "fd00::2", "fe80::1%eth0"),
    "FQDN": ("a.example.com", "b.example.com"),
}


@st.composite
def _slice(draw: st.DrawFn, name: str) -> objects.EndpointSlice:
    kind = draw(st.sampled_from(("IPv4", "IPv4", "IPv6", "FQDN")))
    # Mostly plain addresses; the odd one the resolver has to chase.
    pool = st.sampled_from(ADDRESSES[kind][:2]) | st.sampled_from(ADDRESSES[kind])
    endpoints = draw(
        st.lists(
            st.builds(
                objects.Endpoint,
                st.lists(pool, min_size=1, max_size=2).map(tuple),
                st.booleans(),
                st.sampled_from(("", "web-0", "web-1", "Web-1", "db")),
                st.sampled_from(("", "pod-a", "pod-b")),
            ),
            max_size=5,
        )
    )
    # Often the service's one port (its port name then takes the service name's records).
    ports = draw(
        st.just(PORTS[:1]) | st.lists(st.sampled_from(PORTS), max_size=2, unique=True).map(tuple)
    )
    return objects.EndpointSlice("big", name, "web", kind, endpoints, ports)


Cluster = tuple[resolver.Settings, objects.Service, list[objects.EndpointSlice]]


@st.composite
def _cluster(draw: st.DrawFn) -> Cluster:
    options = resolver.Settings(
        endpoint_pod_names=draw(st.booleans()),
        ttl=draw(st.sampled_from((5, 30))),
        fallthrough=draw(st.sampled_from(((), ("cluster.local.",)))),
    )
    svc = objects.Service(
        "big", "web", "ClusterIP", ("None",), "",
        tuple(objects.ServicePort(p.name, p.port, p.protocol, p.port) for p in PORTS[:1]),
        None, draw(st.booleans()), ("IPv4",), "SingleStack",
    )  # fmt: skip
    count = draw(st.integers(1, 4))
    slices = [draw(_slice(f"web-{i}")) for i in range(count)]
    return options, svc, slices


def _answers(tbl: table.Table, text: str) -> Iterator[tuple[int, tuple[object, ...]]]:
    for qtype in QTYPES:
        got = tbl.lookup(names.to_wire(text), qtype)
        assert got is not None, text
        yield qtype, (got.rcode, got.counts, got.body, got.an_sizes, got.flags, got.chase)


def _reference(res: resolver.Resolver, text: str) -> Iterator[tuple[int, tuple[object, ...]]]:
    for qtype in QTYPES:
        want = res.answer(text, ZONE, qtype)
        yield qtype, (want.rcode, want.counts, want.body, want.an_sizes, want.flags, want.chase)


def _names(st_: store.Store) -> set[str]:
    base = f"web.big.svc.{ZONE}"
    out = {base, f"_peer._tcp.{base}", f"_peer._udp.{base}", f"_metrics._tcp.{base}"}
    for eps in st_.slices_of("big", "web"):
        for endpoint in eps.endpoints:
            for label in (endpoint.hostname, endpoint.target_name):
                if label:
                    out.add(f"{label.lower()}.{base}")
            for ip in endpoint.addresses:
                out.add(f"{names.dashed(ip)}.{base}")
    return out


def _check(st_: store.Store, tbl: table.Table, asked: set[str]) -> None:
    """Every name compiled or asked answers as the old full encoding (a table compiled
    from scratch a resolver question at a time) and, for the types a table compiles,
    as the resolver."""
    old = table.Table(st_, tbl.resolver)
    with unittest.mock.patch.object(table.Table, "_fast", lambda self, svc: False):
        old.rebuild()
    assert set(tbl.packed) == set(old.packed)
    for text in sorted({names.wire_to_text(n) for n in tbl.packed} | asked):
        got = dict(_answers(tbl, text))
        assert got == dict(_answers(old, text)), text
        # CNAME: a host whose address is not an IP is a CNAME to the resolver, a name
        # without one to the table (it asks CNAME of ExternalNames only), before too.
        want = dict(_reference(tbl.resolver, text))
        assert {**got, wire.CNAME: None} == {**want, wire.CNAME: None}, text


@settings(max_examples=150, deadline=None)
@given(_cluster(), st.data())
def test_random_headless_services_and_changes(
    cluster: Cluster,
    data: st.DataObject,
) -> None:
    options, svc, slices = cluster
    with unittest.mock.patch("time.time", lambda: 1_700_000_000.0):
        st_ = store.Store()
        st_.put_namespace(objects.Namespace("big"))
        st_.put_service(svc)
        for eps in slices:
            st_.put_slice(eps)
        st_.mark_synced()
        tbl = table.Table(st_, resolver.Resolver(st_, options))
        tbl.rebuild()
        asked = _names(st_)
        _check(st_, tbl, asked)
        for _ in range(data.draw(st.integers(1, 3))):
            name = f"web-{data.draw(st.integers(0, len(slices)))}"
            if data.draw(st.booleans()) and ("big", name) in st_.slices:
                st_.delete_slice("big", name)
            else:
                st_.put_slice(data.draw(_slice(name)))
            tbl.update(budget=data.draw(st.sampled_from((None, 0.0))))
            while not tbl.update(budget=0.0):
                pass
            asked |= _names(st_)
            _check(st_, tbl, asked)


def test_a_large_service_is_encoded_in_steps() -> None:
    """600 endpoints: the service's own name and its port name are encoded across
    several steps, byte for byte as the resolver builds them."""
    with unittest.mock.patch("time.time", lambda: 1_700_000_000.0):
        st_ = store.Store()
        st_.put_namespace(objects.Namespace("big"))
        st_.put_service(
            objects.Service(
                "big", "web", "ClusterIP", ("None",), "", (), None, False, ("IPv4",), "SingleStack"
            )
        )
        for start in range(0, 600, 100):
            endpoints = tuple(
                objects.Endpoint((f"10.1.{i >> 8}.{i & 255}",), True, f"web-{i}", "")
                for i in range(start, start + 100)
            )
            st_.put_slice(
                objects.EndpointSlice("big", f"web-{start}", "web", "IPv4", endpoints, PORTS[:1])
            )
        st_.mark_synced()
        res = resolver.Resolver(st_, resolver.Settings())
        index = res.index("big", "web", False)
        base = f"web.big.svc.{ZONE}"
        for text, port, proto in ((base, "", ""), (f"_peer._tcp.{base}", "peer", "tcp")):
            encoding = headless.encode(
                text, resolver.service_entries(index, base, port, proto), 5, res.soa(ZONE)
            )
            steps = 0
            while True:
                try:
                    next(encoding)
                    steps += 1
                except StopIteration as done:
                    node = done.value
                    break
            assert steps >= 600 // headless.CHUNK
            assert node is not None
            for qtype in (0, wire.A, wire.AAAA, wire.SRV):
                got, want = node[qtype], res.answer(text, ZONE, qtype)
                assert (got.rcode, got.counts, got.body, got.an_sizes, got.flags) == (
                    want.rcode, want.counts, want.body, want.an_sizes, want.flags,
                )  # fmt: skip
            assert node[wire.SRV].ancount == 600
        # Compiled: the port name's records are the service name's (one blob for both).
        tbl = table.Table(st_, res)
        tbl.rebuild()
        packed = tbl.packed[names.to_wire(base)]
        assert tbl.packed[names.to_wire(f"_peer._tcp.{base}")] is packed
        assert packed[0] == 1  # deflated


def _truncated_whole(question: bytes, ans: wire.Answer, limit: int) -> bytes:
    """wire.truncate as it was: every RR size unpacked, then as many as fit."""
    room = limit - 12 - len(question)
    keep = used = 0
    for (size,) in struct.iter_unpack("!H", ans.an_sizes):
        if used + size > room:
            break
        used += size
        keep += 1
    counts = struct.pack("!HHHH", 1, keep, 0, 0)
    return b"\x12\x34" + wire.FLAGS_TC[ans.rcode][1][0] + counts + question + ans.body[:used]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(11, 300), max_size=400), st.integers(0, 4096))
def test_truncating_a_large_answer_reads_only_what_fits(sizes: list[int], limit: int) -> None:
    """A UDP answer of thousands of records is truncated from the sizes that may fit
    (each RR takes 11 octets at least): the same bytes as unpacking them all."""
    body = b"".join(bytes([i % 251]) * size for i, size in enumerate(sizes))
    ans = wire.Answer(
        wire.NOERROR, (len(sizes), 0, 0), body, struct.pack(f"!{len(sizes)}H", *sizes)
    )
    question = names.to_wire("web.big.svc.cluster.local.") + b"\x00\x01\x00\x01"
    got = wire.truncate(b"\x12\x34", 1, 0, question, ans, b"", limit)
    assert got == _truncated_whole(question, ans, limit)


def _naive_index(
    slices: list[objects.EndpointSlice], publish: bool, pod_names: bool
) -> tuple[list[object], dict[str, list[object]], dict[str, list[str]], set[str]]:
    """What a service index holds, the plain way: entries, per host, per address, labels."""
    entries: list[object] = []
    hosts: dict[str, list[object]] = {}
    addresses: dict[str, list[str]] = {}
    labels: set[str] = set()
    for eps in slices:
        ports = eps.ports or resolver._NO_PORTS
        for endpoint in eps.endpoints:
            if not (endpoint.ready or publish):
                continue
            for ip in endpoint.addresses:
                host = resolver.endpoint_hostname(endpoint, ip, pod_names).lower()
                labels.add(host)
                addresses.setdefault(ip, []).append(host)
                if eps.address_type != "FQDN":
                    hosts.setdefault(host, []).append((ip, ports, host))
                    entries.append((ip, ports, host))
    return entries, hosts, addresses, labels


def _built(
    slices: list[objects.EndpointSlice],
    publish: bool,
    pod_names: bool,
    previous: resolver.ServiceIndex | None = None,
) -> resolver.ServiceIndex:
    *_, index = resolver.ServiceIndex.build(slices, publish, pod_names, 0, previous)
    assert index is not None
    entries, hosts, addresses, labels = _naive_index(slices, publish, pod_names)
    assert list(index.entries()) == entries
    assert index.labels == labels
    assert {h: index.host_entries(h) for h in labels} == {h: hosts.get(h, []) for h in labels}
    assert {ip: list(index.hosts_of(ip)) for ip in addresses} == addresses
    assert len(index.addresses) == len(addresses)
    return index


@settings(max_examples=150, deadline=None)
@given(st.data(), st.booleans(), st.booleans())
def test_an_index_rebuilt_from_the_last_one_is_a_fresh_one(
    data: st.DataObject, publish: bool, pod_names: bool
) -> None:
    """A service index rebuilt after some slices changed copies the unchanged slices'
    entries from the old index: the same index as one built from scratch."""
    old = [data.draw(_slice(f"web-{i}")) for i in range(data.draw(st.integers(0, 4)))]
    before = _built(old, publish, pod_names)
    new: list[objects.EndpointSlice] = []
    for i in range(data.draw(st.integers(0, 5))):
        if i < len(old) and data.draw(st.booleans()):
            new.append(old[i])  # the same object: copied
        elif data.draw(st.booleans()):
            new.append(data.draw(_slice(f"web-{i}")))
    again = data.draw(st.booleans())
    _built(new, publish if again else not publish, pod_names, before)
