"""hosts: CoreDNS's hostsfile parsing, answer policy, reload and metrics, on built answers."""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from prometheus_client import CollectorRegistry

from kdns.dns import names, wire
from kdns.plugins.hosts import hosts
from kdns.plugins.hosts.setup import HostsConfig
from kdns.plugins.loader import load_text

HOSTS = """\
# The following lines are desirable for IPv4 capable hosts
127.0.0.1       localhost
192.168.1.10    Example.COM            example   # trailing comment
::1             localhost ip6-localhost ip6-loopback
fdfc:a744:27b5:3b0e::1  example.com example
fe80::1%eth0    linklocal
::ffff:10.1.2.3 mapped
not-an-ip       ignored
10.9.9.9
10.0.0.1        outside.other.zone
"""


def reply(answer: wire.Answer, qname: str, qtype: int) -> dns.message.Message:
    question = names.to_wire(qname) + struct.pack("!HH", qtype, 1)
    return dns.message.from_wire(
        b"\x12\x34" + answer.flags[1][0] + answer.counts + question + answer.body
    )


def records(msg: dns.message.Message) -> list[str]:
    return sorted(line for rrset in msg.answer for line in rrset.to_text().splitlines())


def make(tmp_path: Path, text: str = HOSTS, **kw: object) -> hosts.Hosts:
    path = tmp_path / "hosts"
    path.write_text(text)
    opts: dict[str, object] = {"path": str(path), "zones": (".",), "reload": 0.0}
    opts.update(kw)
    return hosts.Hosts(HostsConfig(**opts))  # type: ignore[arg-type]


def ask(h: hosts.Hosts, qname: str, qtype: int) -> dns.message.Message | None:
    answer = h.lookup(qname, qtype)
    return None if answer is None else reply(answer, qname, qtype)


def test_parse_like_hostsfile_go(tmp_path: Path) -> None:
    h = make(tmp_path)
    assert h.names() == {
        "localhost.", "example.com.", "example.", "ip6-localhost.", "ip6-loopback.",
        "linklocal.", "mapped.", "outside.other.zone.",
    }  # fmt: skip
    msg = ask(h, "example.com.", wire.A)
    assert msg is not None and msg.flags & dns.flags.AA and msg.rcode() == dns.rcode.NOERROR
    assert records(msg) == ["example.com. 3600 IN A 192.168.1.10"]
    msg = ask(h, "example.", wire.AAAA)
    assert msg is not None and records(msg) == ["example. 3600 IN AAAA fdfc:a744:27b5:3b0e::1"]
    msg = ask(h, "linklocal.", wire.AAAA)
    assert msg is not None and records(msg) == ["linklocal. 3600 IN AAAA fe80::1"]
    # An IPv4-mapped address is IPv4 for Go's To4, so it is an A record.
    msg = ask(h, "mapped.", wire.A)
    assert msg is not None and records(msg) == ["mapped. 3600 IN A 10.1.2.3"]


def test_known_name_other_types_are_nodata(tmp_path: Path) -> None:
    h = make(tmp_path)
    for qname, qtype in (
        ("ip6-localhost.", wire.A),
        ("example.com.", wire.MX),
        ("mapped.", wire.AAAA),
    ):
        msg = ask(h, qname, qtype)
        assert msg is not None, (qname, qtype)
        assert msg.rcode() == dns.rcode.NOERROR and not msg.answer and msg.flags & dns.flags.AA


def test_unknown_name_is_servfail_without_fallthrough(tmp_path: Path) -> None:
    h = make(tmp_path)
    msg = ask(h, "nothere.", wire.A)
    assert msg is not None and msg.rcode() == dns.rcode.SERVFAIL
    assert not msg.flags & dns.flags.AA and not msg.answer


def test_fallthrough_scoped_by_zone(tmp_path: Path) -> None:
    h = make(tmp_path, fallthrough=("example.org.",))
    assert h.lookup("a.example.org.", wire.A) is None
    assert h.lookup("a.example.net.", wire.A) is hosts.SERVFAIL
    everything = make(tmp_path, fallthrough=(".",))
    assert everything.lookup("nothere.", wire.A) is None
    # A known name never falls through, even for the family it lacks.
    assert everything.lookup("ip6-localhost.", wire.A) is hosts.NODATA


def test_fallthrough_unsupported(tmp_path: Path) -> None:
    h = make(tmp_path, fallthrough=(".",), fallthrough_unsupported=True)
    assert h.lookup("example.com.", wire.TXT) is None
    assert h.lookup("ip6-localhost.", wire.A) is hosts.NODATA  # A/AAAA keep NODATA


def test_zones_limit_names_and_queries(tmp_path: Path) -> None:
    h = make(tmp_path, zones=("other.zone.",))
    assert h.names() == {"outside.other.zone."}
    assert h.lookup("example.com.", wire.A) is None  # outside the zones: next plugin
    assert h.lookup("x.other.zone.", wire.A) is hosts.SERVFAIL


def test_ptr_records(tmp_path: Path) -> None:
    h = make(tmp_path, zones=("other.zone.",), fallthrough=())
    # PTR is answered for names in the zones even though the reverse zone is not one.
    msg = ask(h, "1.0.0.10.in-addr.arpa.", wire.PTR)
    assert msg is not None and records(msg) == [
        "1.0.0.10.in-addr.arpa. 3600 IN PTR outside.other.zone."
    ]
    # An unknown address always goes to the next plugin, fallthrough or not.
    assert h.lookup("2.0.0.10.in-addr.arpa.", wire.PTR) is None
    full = make(tmp_path)
    msg = ask(full, names.reverse_name("::1"), wire.PTR)
    assert msg is not None and records(msg) == [
        f"{names.reverse_name('::1')} 3600 IN PTR {n}"
        for n in ("ip6-localhost.", "ip6-loopback.", "localhost.")
    ]
    msg = ask(full, "3.2.1.10.in-addr.arpa.", wire.PTR)
    assert msg is not None and records(msg) == ["3.2.1.10.in-addr.arpa. 3600 IN PTR mapped."]
    # A forward name asked for PTR is not an address: next plugin.
    assert full.lookup("example.com.", wire.PTR) is None


def test_no_reverse_and_ttl(tmp_path: Path) -> None:
    h = make(tmp_path, no_reverse=True, ttl=60)
    assert h.lookup("1.0.0.127.in-addr.arpa.", wire.PTR) is None
    msg = ask(h, "localhost.", wire.A)
    assert msg is not None and records(msg) == ["localhost. 60 IN A 127.0.0.1"]


def test_inline_entries_follow_file_entries(tmp_path: Path) -> None:
    h = make(
        tmp_path,
        "10.0.0.1 both\n10.0.0.1 both\n",
        inline=("10.0.0.2 both", "10.0.0.1 both", "fd00::2 inline-only"),
    )
    msg = ask(h, "both.", wire.A)
    assert msg is not None
    assert [rr.address for rr in msg.answer[0]] == ["10.0.0.1", "10.0.0.2"]  # duplicates dropped
    msg = ask(h, "1.0.0.10.in-addr.arpa.", wire.PTR)
    assert msg is not None and records(msg) == ["1.0.0.10.in-addr.arpa. 3600 IN PTR both."]
    assert h.lookup("inline-only.", wire.AAAA) is not None


def test_wildcards(tmp_path: Path) -> None:
    h = make(
        tmp_path,
        "192.168.1.10 *.example.com\n192.168.1.11 a.example.com\nfd00::10 *.example.com\n",
        zones=("example.com.",),
    )
    assert [r.address for r in ask(h, "apps.example.com.", wire.A).answer[0]] == ["192.168.1.10"]  # type: ignore[union-attr]
    assert [r.address for r in ask(h, "a.example.com.", wire.A).answer[0]] == ["192.168.1.11"]  # type: ignore[union-attr]
    # Exact names win per family: a.example.com has no AAAA of its own, the wildcard's applies.
    assert [r.address for r in ask(h, "a.example.com.", wire.AAAA).answer[0]] == ["fd00::10"]  # type: ignore[union-attr]
    assert h.lookup("example.com.", wire.A) is hosts.SERVFAIL  # the apex is not matched
    assert h.lookup("deep.apps.example.com.", wire.A) is hosts.SERVFAIL  # one label only
    assert h.lookup("10.1.168.192.in-addr.arpa.", wire.PTR) is None  # wildcards get no PTR


def test_same_addresses_share_one_answer(tmp_path: Path) -> None:
    h = make(tmp_path, "".join(f"0.0.0.0 ad{i}.example\n" for i in range(1000)))
    assert len({id(h.lookup(f"ad{i}.example.", wire.A)) for i in range(1000)}) == 1


def test_reload_by_mtime_and_size(tmp_path: Path) -> None:
    h = make(tmp_path, "10.0.0.1 a\n")
    assert not h.maybe_reload()
    path = Path(h.path)
    path.write_text("10.0.0.2 a\n10.0.0.3 b\n")
    os.utime(path, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    assert h.maybe_reload()
    assert [r.address for r in ask(h, "a.", wire.A).answer[0]] == ["10.0.0.2"]  # type: ignore[union-attr]
    assert "b." in h.names()


def test_missing_file_warns_once_and_keeps_entries(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = make(tmp_path, "10.0.0.1 a\n")
    Path(h.path).unlink()
    with caplog.at_level(logging.WARNING, logger="kdns.plugins.hosts.hosts"):
        assert not h.maybe_reload()
        assert not h.maybe_reload()
    assert [r.getMessage() for r in caplog.records] == [
        f"plugin/hosts: File does not exist: {h.path}"
    ]
    assert h.lookup("a.", wire.A) is not None


def test_k3s_nodehosts_missing_then_created(tmp_path: Path) -> None:
    """k3s: the NodeHosts file may appear after start; reload picks it up."""
    node_hosts = tmp_path / "NodeHosts"
    corefile = (
        f".:53 {{\n hosts {node_hosts} {{\n  ttl 60\n  reload 15s\n  fallthrough\n }}\n"
        " forward . 127.0.0.1\n}\n"
    )
    config = load_text(corefile, str(tmp_path / "Corefile")).blocks[0].get(HostsConfig)
    assert config is not None and config.reload == 15.0
    h = hosts.Hosts(config)
    assert h.lookup("k3d-server-0.", wire.A) is None  # falls through to forward
    node_hosts.write_text("172.18.0.3 k3d-server-0\n")
    assert h.maybe_reload()
    msg = ask(h, "k3d-server-0.", wire.A)
    assert msg is not None and records(msg) == ["k3d-server-0. 60 IN A 172.18.0.3"]


def test_minikube_inline_host() -> None:
    corefile = ".:53 {\n hosts {\n  192.168.49.1 host.minikube.internal\n  fallthrough\n }\n}\n"
    config = load_text(corefile, "Corefile").blocks[0].get(HostsConfig)
    assert config is not None
    h = hosts.Hosts(config)
    msg = ask(h, "host.minikube.internal.", wire.A)
    assert msg is not None and records(msg) == ["host.minikube.internal. 3600 IN A 192.168.49.1"]
    assert h.lookup("kubernetes.default.svc.cluster.local.", wire.A) is None


def test_relative_path_uses_root(tmp_path: Path) -> None:
    (tmp_path / "example.hosts").write_text("10.0.0.7 rel\n")
    config = HostsConfig(path="example.hosts", zones=(".",), reload=0.0)
    h = hosts.Hosts(config, root=str(tmp_path))
    assert h.path == str(tmp_path / "example.hosts") and "rel." in h.names()


def test_metrics(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    path = tmp_path / "hosts"
    path.write_text("10.0.0.1 a b\n")
    os.utime(path, (1_600_000_000, 1_600_000_000))
    h = hosts.Hosts(
        HostsConfig(path=str(path), zones=(".",), inline=("fd00::1 c",)), registry=registry
    )
    # 2 forward + 2 reverse from the file, 1 + 1 inline.
    assert registry.get_sample_value("coredns_hosts_entries", {"hostsfile": h.path}) == 6
    assert registry.get_sample_value("coredns_hosts_reload_timestamp_seconds") == 1_600_000_000
    hosts.Hosts(
        HostsConfig(path=str(path), zones=(".",)), registry=registry
    )  # same registry: shared


def test_run_polls_and_stops(tmp_path: Path) -> None:
    h = make(tmp_path, "10.0.0.1 a\n", reload=0.01)
    Path(h.path).write_text("10.0.0.1 a\n10.0.0.2 b\n")
    (tmp_path / "off").mkdir()
    off = make(tmp_path / "off", "10.0.0.1 a\n", reload=0.0)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        reloaded = asyncio.Event()
        original = h.maybe_reload

        def watched() -> bool:  # run() calls this in a worker thread
            changed = original()
            if changed:
                loop.call_soon_threadsafe(reloaded.set)
            return changed

        h.maybe_reload = watched  # type: ignore[method-assign]
        task = asyncio.create_task(h.run())
        await asyncio.wait_for(reloaded.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(off.run(), 1)  # reload 0: returns at once

    asyncio.run(scenario())
    assert "b." in h.names()


@pytest.mark.parametrize(
    ("options", "rcode"),
    [
        ("", dns.rcode.SERVFAIL),  # CoreDNS: a name of its zones it lacks, no SOA to deny it
        ("fallthrough", dns.rcode.NOERROR),
        ("fallthrough cluster.local", dns.rcode.NOERROR),
        ("fallthrough example.org", dns.rcode.SERVFAIL),
    ],
)
def test_hosts_without_fallthrough_shadows_the_cluster_zone(options: str, rcode: int) -> None:
    """The chain and the compiled fast path agree: a cluster name reaches kubernetes only
    through hosts' fallthrough (kdns answered it on the fast path regardless)."""
    from kdns.server import lifecycle, planner

    cluster = Path(__file__).resolve().parents[2] / "fixtures" / "cluster"
    text = f""".:53 {{
    hosts {{
        192.0.2.10 www.example.net
        {options}
    }}
    kubernetes cluster.local
    manifests {cluster}
}}
"""
    plan = planner.from_corefile(load_text(text, "Corefile"), dns_port=0)
    gen = lifecycle.Generation(plan)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(gen.start())
        (handler,) = gen.routes.values()
        for qname in ("single.apps.svc.cluster.local", "www.example.net"):
            query = dns.message.make_query(qname, "A").to_wire()
            answer = handler.answer_udp(query, ("127.0.0.1", 40000))
            if answer is not None and not isinstance(answer, bytes):
                answer = loop.run_until_complete(answer)
            assert isinstance(answer, bytes)
            got = dns.message.from_wire(answer).rcode()
            assert got == (rcode if qname.endswith("cluster.local") else dns.rcode.NOERROR)
    finally:
        loop.run_until_complete(gen.retire())
        loop.close()
