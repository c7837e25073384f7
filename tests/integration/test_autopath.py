"""autopath end to end: a kdns process from a Corefile, a real upstream (unbound), and
dnspython bound to a pod's address on 127.0.0.x walking the kubelet's ndots:5 search path
as a stub resolver does. Shows the round trips saved: kdns's own request counter.
"""

from __future__ import annotations

import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.support.process import KdnsCommand, free_port
from tests.support.upstreams import Unbound, needs_unbound

POD = "127.0.0.5"
SEARCH = ("apps.svc.cluster.local.", "svc.cluster.local.", "cluster.local.")

MANIFESTS = """\
apiVersion: v1
kind: Namespace
metadata: {name: apps}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: apps}
spec: {containers: [{name: c, image: x}]}
status: {phase: Running, podIP: 127.0.0.5}
"""


def walk(port: int, name: str, rdtype: str = "A") -> tuple[dns.message.Message, int]:
    """A stub resolver with ndots:5: each search element in turn, then the bare name,
    until an answer has records. Returns the last reply and the queries sent."""
    sent = 0
    reply = None
    for candidate in [f"{name}.{s}" for s in SEARCH] + [f"{name}."]:
        query = dns.message.make_query(candidate, rdtype)
        reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=2, source=POD)
        sent += 1
        if reply.rcode() == dns.rcode.NOERROR and reply.answer:
            break
    assert reply is not None
    return reply, sent


def requests(metrics_port: int) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).read()
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith("coredns_dns_requests_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Kdns:
    def __init__(self, tmp: Path, upstream: int, autopath: bool) -> None:
        cluster = tmp / "cluster"
        cluster.mkdir(exist_ok=True)
        (cluster / "all.yaml").write_text(MANIFESTS)
        (tmp / "resolv.conf").write_text("nameserver 192.0.2.53\n")
        self.port, self.metrics = free_port(), free_port()
        corefile = tmp / ("Corefile.autopath" if autopath else "Corefile.plain")
        corefile.write_text(
            textwrap.dedent(f"""\
                .:{self.port} {{
                    kubernetes cluster.local {{
                        pods verified
                    }}
                    manifests {cluster}
                    {"autopath @kubernetes" if autopath else ""}
                    forward . 127.0.0.1:{upstream}
                    cache 30
                    prometheus 127.0.0.1:{self.metrics}
                }}
                """)
        )
        self.cmd = KdnsCommand(
            ["-conf", str(corefile)], self.port, env={"KDNS_RESOLV_CONF": str(tmp / "resolv.conf")}
        )
        deadline = time.monotonic() + 20
        while self.cmd.rcode("apps.svc.cluster.local.") != dns.rcode.NOERROR:
            assert time.monotonic() < deadline, self.cmd.log
            time.sleep(0.05)

    def stop(self) -> None:
        self.cmd.proc.terminate()
        self.cmd.proc.wait(10)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unbound]:
    """unbound: www.example.net has an A record and no AAAA (NODATA with the SOA)."""
    server = Unbound(tmp_path_factory.mktemp("unbound"))
    try:
        yield server
    finally:
        server.stop()


@needs_unbound
@pytest.mark.parametrize(("autopath", "trips"), [(True, 1), (False, 4)])
def test_round_trips_for_an_external_name(
    tmp_path: Path, upstream: Unbound, autopath: bool, trips: int
) -> None:
    kdns = Kdns(tmp_path, upstream.port, autopath)
    try:
        before = requests(kdns.metrics)
        reply, sent = walk(kdns.port, "www.example.net")
        assert sent == trips
        assert [rr.to_text() for rrset in reply.answer for rr in rrset][-1] == "192.0.2.10"
        if autopath:
            assert str(reply.answer[0].name) == "www.example.net.apps.svc.cluster.local."
        # every query the client sent reached kdns, and no other
        assert requests(kdns.metrics) - before == trips
        reply, sent = walk(kdns.port, "www.example.net", "AAAA")
        assert sent == trips  # NODATA at the completed name ends the AAAA walk there too
    finally:
        kdns.stop()


@needs_unbound
def test_clients_that_are_no_pod_walk_themselves(tmp_path: Path, upstream: Unbound) -> None:
    kdns = Kdns(tmp_path, upstream.port, True)
    try:
        query = dns.message.make_query("www.example.net.apps.svc.cluster.local.", "A")
        reply = dns.query.udp(query, "127.0.0.1", port=kdns.port, timeout=2, source="127.0.0.8")
        assert reply.rcode() == dns.rcode.NXDOMAIN
    finally:
        kdns.stop()


# -- glibc's resolver, as a pod ---------------------------------------------------------------

NETNS_POD = "10.244.0.7"  # the pod's address, on the loopback of a namespace the test makes


@pytest.fixture
def pod_netns(tmp_path: Path) -> Iterator[str]:
    """A network namespace holding the pod's address, with kubelet's resolv.conf for a pod
    in ``apps``; kdns runs inside it on that address, so glibc's queries come from the pod."""
    import os
    import shutil
    import subprocess

    if shutil.which("ip") is None or shutil.which("getent") is None:
        pytest.skip("iproute2 or getent is missing")
    name = f"kdns-autopath-{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode != 0:
        pytest.skip("network namespaces are not available here")
    etc = Path("/etc/netns") / name
    try:
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(
            "search apps.svc.cluster.local svc.cluster.local cluster.local\n"
            f"nameserver {NETNS_POD}\noptions ndots:5\n"
        )
        inside = ["ip", "netns", "exec", name]
        subprocess.run([*inside, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run([*inside, "ip", "addr", "add", f"{NETNS_POD}/32", "dev", "lo"], check=True)
        yield name
    finally:
        shutil.rmtree(etc, ignore_errors=True)
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.mark.parametrize("autopath", [True, False], ids=["autopath", "plain"])
def test_glibc_in_a_pod_asks_once_per_type(pod_netns: str, tmp_path: Path, autopath: bool) -> None:
    """``getent hosts www.example.net`` from the pod: glibc walks ndots:5's search path;
    with autopath the first element already answers (a CNAME to the name and its records),
    so kdns sees one query per type instead of four. ``hosts`` stands in for the upstream:
    it acts after autopath, as forward does."""
    import os
    import subprocess
    import sys

    cluster = tmp_path / "cluster"
    cluster.mkdir()
    (cluster / "all.yaml").write_text(MANIFESTS.replace(POD, NETNS_POD))
    corefile = tmp_path / "Corefile"
    corefile.write_text(
        textwrap.dedent(f"""\
            .:53 {{
                bind {NETNS_POD}
                log
                kubernetes cluster.local {{
                    pods verified
                }}
                manifests {cluster}
                {"autopath @kubernetes" if autopath else ""}
                hosts {{
                    192.0.2.10 www.example.net
                    fallthrough
                }}
            }}
            """)
    )
    inside = ["ip", "netns", "exec", pod_netns]
    log_path = tmp_path / "kdns.log"
    log_file = log_path.open("w")  # a file, not a pipe: the log plugin must never block kdns
    proc = subprocess.Popen(
        [*inside, sys.executable, "-m", "kdns", "-conf", str(corefile)],
        stderr=log_file,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "KDNS_RESOLV_CONF": "/dev/null"},
    )
    try:
        # Ready once the namespace's name answers (SERVFAIL until the source is loaded).
        probe = [*inside, "dig", f"@{NETNS_POD}", "+tries=1", "+time=1", "apps.svc.cluster.local"]
        deadline = time.monotonic() + 60  # bounded; a loaded CI machine starts kdns slowly
        while "status: NOERROR" not in subprocess.run(probe, capture_output=True, text=True).stdout:
            assert time.monotonic() < deadline and proc.poll() is None, log_path.read_text()
            time.sleep(0.1)
        found = subprocess.run(
            [*inside, "getent", "hosts", "www.example.net"], capture_output=True, text=True
        )
        assert found.returncode == 0, found.stderr
        assert found.stdout.split()[0] == "192.0.2.10"
    finally:
        proc.terminate()
        proc.wait(10)
        log_file.close()
    log = log_path.read_text()
    # The log plugin's lines: "TYPE IN NAME proto size do bufsize" between quotes.
    asked = [line.split('"')[1].split() for line in log.splitlines() if "www.example.net" in line]
    names = {question[2] for question in asked}
    if autopath:
        # One exchange per type (glibc asks AAAA and A), both at the first search element.
        assert names == {"www.example.net.apps.svc.cluster.local."}, log
        assert sorted(question[0] for question in asked) == ["A", "AAAA"], log
    else:
        assert len(names) == 4 and "www.example.net." in names, log
