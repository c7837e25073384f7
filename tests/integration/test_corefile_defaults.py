"""Every distribution's default Corefile runs under kdns and answers like CoreDNS would.

Each fixture in ``Corefile.compat/examples/`` is run as written, except for what ties
it to a real node: ports become free loopback ports, ``/etc/resolv.conf`` and the
upstream IPs become a real dnsmasq on 127.0.0.1, link-local ``bind`` addresses become
127.0.0.1, and the ``kubernetes`` block reads the example cluster through ``manifests``.
Then a cluster name and a forwarded name must both resolve.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.support.process import EXAMPLES, ROOT, KdnsCommand, KdnsProcess, free_port, wait_until
from tests.support.upstreams import DNSMASQ, Dnsmasq

FIXTURES = ROOT / "Corefile.compat" / "examples"
DISTROS = [
    "kubeadm",
    "kubeadm-1.31",
    "kind",
    "k3s",
    "rke2",
    "eks",
    "aks",
    "minikube",
    "microk8s",
    "nodelocaldns",
]


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    """A real dnsmasq answering the names the tests forward."""
    if not Path(DNSMASQ).exists():
        pytest.skip("dnsmasq is not installed (make test installs it)")
    server = Dnsmasq({"example.org": "192.0.2.1", "example.com": "192.0.2.2"})
    yield server.port
    server.stop()


@pytest.fixture(scope="module")
def kube_dns() -> Iterator[KdnsProcess]:
    """The cluster DNS NodeLocal DNSCache forwards cluster zones to."""
    server = KdnsProcess(EXAMPLES)
    yield server
    server.stop()


def adapt(text: str, dns_port: int, upstream: int, kube_dns: int, cluster: Path) -> str:
    """Tie a distribution's Corefile to loopback ports, a real upstream and the example cluster."""
    text = re.sub(r":53(?=[\s{])", f":{dns_port}", text)
    text = re.sub(r"forward\s+\.\s+/etc/resolv\.conf", f"forward . 127.0.0.1:{upstream}", text)
    text = re.sub(r"forward\s+\.\s+\$NAMESERVERS", f"forward . 127.0.0.1:{upstream}", text)
    text = re.sub(r"forward\s+\.\s+10\.96\.0\.11", f"forward . 127.0.0.1:{kube_dns}", text)
    text = re.sub(r"bind\s+169\.254\.20\.10\s+10\.96\.0\.10", "bind 127.0.0.1", text)
    # Nothing may leave the machine: every forward must now point at loopback.
    for line in re.findall(r"(?m)^\s*forward\s+.*$", text):
        assert "127.0.0.1:" in line, f"unadapted upstream in {line!r}"
    text = re.sub(r"(?m)^(\s*)health\s+169\.254\.20\.10:8080", r"\1health 127.0.0.1:0", text)
    text = re.sub(r"(?m)^(\s*)health(?=\s*(\{|$))", r"\1health 127.0.0.1:0", text)
    text = re.sub(r"(?m)^(\s*)ready\s*$", r"\1ready 127.0.0.1:0", text)
    text = re.sub(r"(?m)^(\s*)prometheus\s+\S+", r"\1prometheus 127.0.0.1:0", text)
    text = re.sub(
        r"(?m)^(\s*)(kubernetes [^{\n]*\{)",
        lambda m: f"{m.group(1)}{m.group(2)}\n{m.group(1)}  manifests {cluster}",
        text,
    )
    return text


@pytest.mark.parametrize("distro", DISTROS)
def test_default_corefile_serves_cluster_and_forwarded_names(
    distro: str, tmp_path: Path, upstream: int, kube_dns: KdnsProcess
) -> None:
    port = free_port()
    text = (FIXTURES / f"{distro}.Corefile").read_text()
    corefile = tmp_path / "Corefile"
    corefile.write_text(adapt(text, port, upstream, kube_dns.port, EXAMPLES))
    (tmp_path / "custom").mkdir()  # AKS and k3s import custom/*.override, often empty
    server = KdnsCommand(["-conf", str(corefile)], port, cwd=tmp_path)
    try:
        wait_until(lambda: server.rcode("www.example.org") is not None, timeout=20)
        forwarded = server.query("www.example.org")
        assert forwarded.rcode() == dns.rcode.NOERROR
        assert [rr.to_text() for rrset in forwarded.answer for rr in rrset] == ["192.0.2.1"]
        cluster = server.query("web.default.svc.cluster.local")
        assert cluster.rcode() == dns.rcode.NOERROR
        assert [rr.to_text() for rrset in cluster.answer for rr in rrset] == ["10.96.0.20"]
        if distro == "aks":
            internal = server.query("a.b.c.d.internal.cloudapp.net")
            assert internal.rcode() == dns.rcode.NXDOMAIN
            assert server.query("x.reddog.microsoft.com").rcode() == dns.rcode.NXDOMAIN
        if distro != "nodelocaldns":
            # An ExternalName: the CNAME, then its target's address from upstream.
            external = server.query("payments.shop.svc.cluster.local")
            assert [rr.to_text() for rrset in external.answer for rr in rrset] == [
                "payments.example.com.",
                "192.0.2.2",
            ]
            missing = server.query("nope.default.svc.cluster.local")
            assert missing.rcode() == dns.rcode.NXDOMAIN
            assert missing.authority, "NXDOMAIN carries the SOA"
    finally:
        server.stop(graceful=False)  # a graceful stop would sit out the 5 s lameduck


@pytest.mark.parametrize(
    "fixture", sorted(p.name for p in FIXTURES.glob("bad-*.Corefile")), ids=lambda n: n
)
def test_broken_corefile_fails_with_coredns_message(fixture: str, tmp_path: Path) -> None:
    source = FIXTURES / fixture
    match = re.search(r'expect: "(.*)"', source.read_text().splitlines()[0])
    assert match is not None, "the fixture's first line names the expected error"
    expected = match.group(1).replace("<file>", fixture)
    target = tmp_path / fixture
    shutil.copy(source, target)
    result = subprocess.run(
        [sys.executable, "-m", "kdns", "-conf", fixture],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
    )
    assert result.returncode == 1
    assert expected in result.stderr
