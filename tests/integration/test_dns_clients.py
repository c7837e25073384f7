"""Real clients against kdns: ``dig`` and ``nslookup`` (the seed guide's diagnostic
commands) as subprocesses, and glibc's stub resolver with a pod's resolv.conf.

The glibc test is the closest this machine gets to a pod: a network namespace of its
own, ``/etc/netns/<name>/resolv.conf`` (which ``ip netns exec`` bind-mounts over
``/etc/resolv.conf``) holding the kubelet's search path and ``ndots:5``, and kdns on
127.0.0.1:53 inside it, so ``getent`` resolves short names the way an application in a
pod does, through the search path.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.process import ROOT, KdnsProcess

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "cluster"
SINGLE = "single.apps.svc.cluster.local"

needs_dig = pytest.mark.skipif(shutil.which("dig") is None, reason="dig (dnsutils) not installed")
needs_nslookup = pytest.mark.skipif(
    shutil.which("nslookup") is None, reason="nslookup (dnsutils) not installed"
)


@pytest.fixture(scope="module", params=["bound", "wildcard-ipv4", "wildcard-ipv6"])
def server(request: pytest.FixtureRequest) -> Iterator[KdnsProcess]:
    """kdns bound to 127.0.0.1, and without an address (``.:53``, every distribution's
    default), where the clients reach it over IPv4 and over IPv6, UDP and TCP alike."""
    proc = KdnsProcess(FIXTURE, listen="127.0.0.1:0" if request.param == "bound" else ":0")
    if request.param != "bound":
        proc.host = "::1" if request.param.endswith("ipv6") else "127.0.0.1"
    try:
        yield proc
    finally:
        proc.stop()


def _run(cmd: list[str], timeout: float = 10) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    return done.stdout + done.stderr


def _dig(server: KdnsProcess, *args: str) -> str:
    return _run(["dig", f"@{server.host}", "-p", str(server.port), "+tries=1", "+time=3", *args])


def _answer_lines(output: str) -> list[str]:
    """dig's +noall +answer lines as single-spaced records."""
    return sorted(" ".join(line.split()) for line in output.splitlines() if line.strip())


# -- dig ------------------------------------------------------------------------------------


@needs_dig
def test_dig_a(server: KdnsProcess) -> None:
    """The line the README tells users to try."""
    out = _dig(server, SINGLE, "+noall", "+answer")
    assert _answer_lines(out) == [f"{SINGLE}. 5 IN A 10.96.1.1"]


@needs_dig
def test_dig_tcp_and_short(server: KdnsProcess) -> None:
    """``+tcp`` goes over TCP, ``+short`` prints the bare addresses."""
    out = _dig(server, "+tcp", "+short", "hl.stateful.svc.cluster.local")
    assert sorted(out.split()) == ["10.244.1.1", "10.244.1.2"]


@needs_dig
def test_dig_srv(server: KdnsProcess) -> None:
    """SRV with its additional section, as dig prints it."""
    out = _dig(
        server, "_http._tcp.multi.apps.svc.cluster.local", "SRV", "+noall", "+answer", "+additional"
    )
    assert _answer_lines(out) == [
        "_http._tcp.multi.apps.svc.cluster.local. 5 IN SRV 0 100 80 multi.apps.svc.cluster.local.",
        "multi.apps.svc.cluster.local. 5 IN A 10.96.1.2",
    ]


@needs_dig
@pytest.mark.parametrize(
    ("address", "target"),
    [
        ("10.96.1.1", "single.apps.svc.cluster.local."),
        ("fd00:96::103", "dual.apps.svc.cluster.local."),
        ("10.244.1.1", "web-0.hl.stateful.svc.cluster.local."),
    ],
)
def test_dig_reverse(server: KdnsProcess, address: str, target: str) -> None:
    """``dig -x`` builds the in-addr.arpa / full-nibble ip6.arpa name itself."""
    out = _dig(server, "-x", address, "+short")
    assert out.split() == [target]


@needs_dig
def test_dig_nxdomain_status(server: KdnsProcess) -> None:
    """dig's header line shows the rcode and the aa flag; the SOA is in AUTHORITY."""
    out = _dig(server, "missing.apps.svc.cluster.local")
    assert re.search(r"status: NXDOMAIN", out), out
    flags = re.search(r";; flags: ([a-z ]+);", out)
    assert flags is not None and "aa" in flags.group(1).split()
    assert re.search(r"AUTHORITY: 1", out)
    assert "ns.dns.cluster.local. hostmaster.cluster.local." in out


@needs_dig
def test_dig_nodata_and_txt(server: KdnsProcess) -> None:
    """NOERROR with an empty answer for an A-only service asked AAAA; the schema TXT."""
    out = _dig(server, SINGLE, "AAAA")
    assert "status: NOERROR" in out and "ANSWER: 0" in out
    txt = _dig(server, "dns-version.cluster.local", "TXT", "+short")
    assert txt.strip() == '"1.1.0"'


@needs_dig
def test_dig_mixed_case_and_edns(server: KdnsProcess) -> None:
    """dig's default EDNS query with a mixed-case name: echoed as sent, OPT answered."""
    out = _dig(
        server, "SiNgLe.ApPs.SvC.cLuStEr.LoCaL", "+noall", "+answer", "+question", "+comments"
    )
    assert ";SiNgLe.ApPs.SvC.cLuStEr.LoCaL.\t" in out.replace(" ", "\t") or (
        ";SiNgLe.ApPs.SvC.cLuStEr.LoCaL." in out
    )
    assert "udp: 1232" in out, out
    assert "10.96.1.1" in out


# -- nslookup ---------------------------------------------------------------------------------


def _nslookup(server: KdnsProcess, *args: str) -> str:
    return _run(["nslookup", "-timeout=3", "-retry=1", f"-port={server.port}", *args, server.host])


@needs_nslookup
def test_nslookup_a(server: KdnsProcess) -> None:
    """nslookup asks A and AAAA; it prints the address of the service."""
    out = _nslookup(server, SINGLE)
    assert re.search(rf"Name:\s+{re.escape(SINGLE)}\s+Address:\s+10\.96\.1\.1", out), out


@needs_nslookup
def test_nslookup_dual_stack(server: KdnsProcess) -> None:
    """Both families of a dual-stack service show up."""
    out = _nslookup(server, "dual.apps.svc.cluster.local")
    assert "10.96.1.3" in out and "fd00:96::103" in out, out


@needs_nslookup
def test_nslookup_srv(server: KdnsProcess) -> None:
    out = _nslookup(server, "-type=SRV", "_dns._udp.resolver.apps.svc.cluster.local")
    assert "service = 0 100 53 resolver.apps.svc.cluster.local." in out, out


@needs_nslookup
def test_nslookup_ptr(server: KdnsProcess) -> None:
    out = _nslookup(server, "10.96.1.1")
    assert "name = single.apps.svc.cluster.local." in out, out


@needs_nslookup
def test_nslookup_nxdomain(server: KdnsProcess) -> None:
    out = _nslookup(server, "missing.apps.svc.cluster.local")
    assert "NXDOMAIN" in out, out


# -- glibc in a network namespace ---------------------------------------------------------------


class _NetnsKdns:
    """kdns started inside a namespace on 127.0.0.1:53; stderr collected like KdnsProcess."""

    def __init__(self, netns: str, manifests: Path, listen: str = "127.0.0.1:53") -> None:
        cmd = [
            "ip",
            "netns",
            "exec",
            netns,
            sys.executable,
            "-m",
            "kdns",
            "serve",
            "--manifests",
            str(manifests),
            "--listen",
            listen,
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if "serving DNS on" in line:
                self.ready.set()
        self.ready.set()  # exited: wake the waiter, which then sees the log

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(2)


# Where kdns listens in the namespace, and the nameserver line the pod's resolv.conf has:
# bound to 127.0.0.1, and the wildcard (``.:53``) reached over IPv4 and over IPv6.
RESOLVERS = {
    "bound": ("127.0.0.1:53", "127.0.0.1"),
    "wildcard-ipv4": (":53", "127.0.0.1"),
    "wildcard-ipv6": (":53", "::1"),
}


@pytest.fixture(params=sorted(RESOLVERS))
def pod_netns(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """A namespace with lo up and a pod's resolv.conf for namespace ``apps``; also the
    address kdns should listen on there."""
    listen, nameserver = RESOLVERS[request.param]
    name = f"kdns-test-{os.getpid()}"
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (ip) is not installed")
    added = subprocess.run(
        ["ip", "netns", "add", name], capture_output=True, text=True, check=False
    )
    if added.returncode != 0:
        pytest.skip(f"network namespaces are not available here: {added.stderr.strip()}")
    etc = Path("/etc/netns") / name
    try:
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(
            "search apps.svc.cluster.local svc.cluster.local cluster.local\n"
            f"nameserver {nameserver}\n"
            "options ndots:5\n"
        )
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name, listen
    finally:
        shutil.rmtree(etc, ignore_errors=True)
        subprocess.run(["ip", "netns", "del", name], check=False)


def _getent(netns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", netns, "getent", *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_glibc_resolves_through_search_path(pod_netns: tuple[str, str]) -> None:
    """``getent hosts single`` and ``getent ahosts dual.apps`` as a pod in ``apps`` would."""
    netns, listen = pod_netns
    kdns = _NetnsKdns(netns, FIXTURE, listen)
    try:
        assert kdns.ready.wait(20), "kdns did not start"
        assert kdns.proc.poll() is None, "".join(kdns.lines)
        # glibc tries single.apps.svc.cluster.local first (ndots:5 puts the search path first).
        hosts = _getent(netns, "hosts", "single")
        assert hosts.returncode == 0, hosts.stderr + "".join(kdns.lines)
        assert hosts.stdout.split()[:2] == ["10.96.1.1", "single.apps.svc.cluster.local"]
        # <svc>.<ns> resolves through the second search entry, svc.cluster.local.
        ahosts = _getent(netns, "ahosts", "dual.apps")
        assert ahosts.returncode == 0, ahosts.stderr
        addresses = {line.split()[0] for line in ahosts.stdout.splitlines() if line.strip()}
        assert "10.96.1.3" in addresses
        assert "fd00:96::103" in addresses
        assert "dual.apps.svc.cluster.local" in ahosts.stdout
        # A headless service from another namespace, by <svc>.<ns>. (Not ahostsv4: it sets
        # AI_ADDRCONFIG, and a namespace with only loopback has no address that counts.)
        headless = _getent(netns, "hosts", "hl.stateful")
        assert {line.split()[0] for line in headless.stdout.splitlines()} == {
            "10.244.1.1",
            "10.244.1.2",
        }
        # A name that exists nowhere fails after walking the whole search path.
        missing = _getent(netns, "hosts", "nosuchservice")
        assert missing.returncode == 2, missing.stdout
    finally:
        kdns.stop()
