"""``kdns serve`` forwards names outside the cluster zones, as CoreDNS's default Corefile
does: to the nameservers of resolv.conf by default (a real dnsmasq on 127.0.0.77:53, named
by a resolv.conf override), to ``--upstream`` when given, nowhere with ``--no-forward``
(REFUSED, the answer before this change). Cluster names answer as before."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from kdns.cli import serve
from kdns.server.plan import ListenAddress
from tests.support.process import ROOT, KdnsCommand, free_port, wait_until
from tests.support.upstreams import DNSMASQ, Dnsmasq, needs_dnsmasq

pytestmark = [pytest.mark.timeout(60), needs_dnsmasq]

EXAMPLES = str(ROOT / "examples" / "cluster")
UPSTREAM_IP = "127.0.0.77"  # resolv.conf has no port: a loopback address of its own, port 53
CLUSTER_NAME = "web.default.svc.cluster.local"


@pytest.fixture(scope="module")
def resolv_dnsmasq() -> Iterator[str]:
    """dnsmasq on 127.0.0.77:53 answering www.example.org, REFUSED for anything else."""
    proc = subprocess.Popen(
        [DNSMASQ, "-k", "--no-resolv", "--no-hosts", "--no-poll", "--port=53",
         f"--listen-address={UPSTREAM_IP}", "--bind-interfaces", "--pid-file=",
         "--user=root", "--log-facility=-", "--address=/www.example.org/192.0.2.53"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    query = dns.message.make_query("www.example.org.", "A")
    deadline = time.monotonic() + 10
    while True:
        assert proc.poll() is None, f"dnsmasq exited: {proc.stderr.read() if proc.stderr else ''!r}"
        try:
            dns.query.udp(query, UPSTREAM_IP, port=53, timeout=0.2)
            break
        except (OSError, dns.exception.Timeout):
            assert time.monotonic() < deadline, "dnsmasq did not answer"
    yield UPSTREAM_IP
    proc.terminate()
    proc.wait(5)


def start(tmp_path: Path, *args: str) -> KdnsCommand:
    port = free_port()
    proc = KdnsCommand(
        ["serve", "--manifests", EXAMPLES, "--listen", f"127.0.0.1:{port}", *args], port
    )
    wait_until(lambda: proc.rcode(CLUSTER_NAME) == dns.rcode.NOERROR, timeout=20)
    return proc


def resolv_conf(tmp_path: Path, *servers: str) -> str:
    path = tmp_path / "resolv.conf"
    path.write_text("search example.org\n" + "".join(f"nameserver {s}\n" for s in servers))
    return str(path)


def test_default_forwards_to_resolv_conf(tmp_path: Path, resolv_dnsmasq: str) -> None:
    conf = resolv_conf(tmp_path, resolv_dnsmasq)
    proc = start(tmp_path, "--resolv-conf", conf)
    try:
        assert proc.records("www.example.org") == ["192.0.2.53"]
        assert proc.records(CLUSTER_NAME) == ["10.96.0.20"]
        assert f"forwarding names outside the cluster zones to {resolv_dnsmasq}:53" in proc.log
    finally:
        proc.stop()


def test_upstream_flag_and_no_forward(tmp_path: Path) -> None:
    upstream = Dnsmasq({"api.example.com": "192.0.2.80"})
    try:
        chosen = start(tmp_path, "--upstream", f"127.0.0.1:{upstream.port}")
        try:
            assert chosen.records("api.example.com") == ["192.0.2.80"]
        finally:
            chosen.stop()
    finally:
        upstream.stop()
    refused = start(tmp_path, "--no-forward")
    try:
        assert refused.rcode("api.example.com") == dns.rcode.REFUSED
        assert refused.records(CLUSTER_NAME) == ["10.96.0.20"]
    finally:
        refused.stop()


@pytest.mark.parametrize(
    ("listen", "servers", "expected"),
    [
        # kdns on the port resolv.conf implies: its own address is a loop, skipped.
        ("127.0.0.1:53", ("127.0.0.1", "192.0.2.1"), [("192.0.2.1", 53)]),
        (":53", ("127.0.0.53", "::1", "192.0.2.1"), [("192.0.2.1", 53)]),
        # systemd-resolved's stub is another server when kdns is on another port.
        ("127.0.0.1:1053", ("127.0.0.53",), [("127.0.0.53", 53)]),
        ("127.0.0.1:53", ("127.0.0.1",), []),
    ],
)
def test_resolv_conf_skips_kdns_itself(
    tmp_path: Path, listen: str, servers: tuple[str, ...], expected: list[tuple[str, int]]
) -> None:
    args = serve._serve_parser().parse_args(
        [
            "--manifests",
            EXAMPLES,
            "--listen",
            listen,
            "--resolv-conf",
            resolv_conf(tmp_path, *servers),
        ]
    )
    assert serve._upstreams(args) == expected
    plan = serve.plan_of(args)
    assert not isinstance(plan, int)
    zones = [b.zones for b in plan.servers[0].blocks]
    assert zones[-1:] == ([(".",)] if expected else [zones[0]])
    assert plan.servers[0].address == ListenAddress.parse(listen)


def test_bad_upstream_is_a_usage_error() -> None:
    assert serve.plan(["--manifests", EXAMPLES, "--upstream", "dns.google"]) == 2
