"""The DNS transports under real clients and hostile ones (issue 12, items 1, 6, 7, 13).

Every test runs the real ``kdns`` process. Listeners without ``bind`` must answer UDP
and TCP over IPv4 and IPv6 (a cluster's ``.:53``); a client that drips bytes or never
reads must not hold a TCP slot or memory; the query log prints what CoreDNS prints.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.support.process import EXAMPLES, KdnsCommand, free_port, wait_until

SERVICE = "kubernetes.default.svc.cluster.local."
needs_dig = pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed")


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


# Lowered TCP limits, so the hostile-client tests take seconds (kdns reads them at start).
_LIMITS = {"KDNS_TCP_LIMITS": "connections=50,idle=2,read=1,write=1"}

HOSTS = ["127.0.0.1", "::1"] if _has_ipv6_loopback() else ["127.0.0.1"]


def _corefile(tmp_path: Path, header: str, body: str = "", manifests: Path = EXAMPLES) -> Path:
    corefile = tmp_path / "Corefile"
    corefile.write_text(
        f"{header} {{\n    kubernetes cluster.local {{\n        manifests {manifests}\n    }}\n"
        f"{body}}}\n"
    )
    return corefile


def _started(proc: KdnsCommand, name: str = SERVICE) -> KdnsCommand:
    """Wait until kdns answers over UDP on 127.0.0.1 (its listeners are all open then)."""
    rdtype = "SRV" if name.startswith("_") else "A"
    wait_until(lambda: proc.rcode(name, rdtype) == dns.rcode.NOERROR, timeout=20)
    return proc


@pytest.fixture
def run_kdns() -> Iterator[type[KdnsCommand]]:
    """KdnsCommand whose processes are all stopped after the test."""
    started: list[KdnsCommand] = []

    class Command(KdnsCommand):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            started.append(self)

    yield Command
    for proc in started:
        proc.stop()


def _ask(host: str, port: int, tcp: bool, name: str = SERVICE) -> dns.message.Message:
    query = dns.message.make_query(name, "SRV" if name.startswith("_") else "A")
    if tcp:
        return dns.query.tcp(query, host, port=port, timeout=3)
    return dns.query.udp(query, host, port=port, timeout=3)


# -- item 1: a block without bind answers UDP and TCP on IPv4 and IPv6 -----------------------


@pytest.mark.parametrize("how", ["zone-port", "dns.port", "serve-listen"])
def test_wildcard_listener_answers_every_family_and_transport(
    tmp_path: Path, run_kdns: type[KdnsCommand], how: str
) -> None:
    port = free_port()
    if how == "zone-port":
        args = ["-conf", str(_corefile(tmp_path, f".:{port}"))]
    elif how == "dns.port":
        args = ["-conf", str(_corefile(tmp_path, ".")), "-dns.port", str(port)]
    else:
        args = ["serve", "--manifests", str(EXAMPLES), "--listen", f":{port}"]
    proc = _started(run_kdns(args, port))
    for host in HOSTS:
        for tcp in (False, True):
            reply = _ask(host, port, tcp)
            assert reply.rcode() == dns.rcode.NOERROR, (host, tcp)
            assert [rr.to_text() for rrset in reply.answer for rr in rrset] == ["10.96.0.1"]
    proc.alive()


@needs_dig
def test_dig_tcp_over_ipv4_and_ipv6_without_bind(
    tmp_path: Path, run_kdns: type[KdnsCommand]
) -> None:
    """What NodeLocal DNSCache's force_tcp and a truncated answer's retry both need."""
    port = free_port()
    _started(run_kdns(["-conf", str(_corefile(tmp_path, f".:{port}"))], port))
    for host in HOSTS:
        out = subprocess.run(
            ["dig", f"@{host}", "-p", str(port), "+tcp", "+tries=1", "+time=3", "+short",
             SERVICE],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        assert out.stdout.strip() == "10.96.0.1", (host, out.stdout, out.stderr)


# -- item 13: the query log prints clients and durations as CoreDNS does ---------------------

_LINE = re.compile(
    r'\[INFO\] (?P<remote>\S+):(?P<port>\d+) - \d+ "A IN '
    + re.escape(SERVICE)
    + r' (?P<proto>udp|tcp) \d+ false \d+" NOERROR qr,aa,rd \d+ (?P<duration>\S+)$'
)
# Go's Duration.Seconds() of whole nanoseconds, 'f' format: at most nine decimals.
_GO_SECONDS = re.compile(r"^\d+(\.\d{1,9})?s$")


def test_log_shows_ipv4_clients_and_go_durations(
    tmp_path: Path, run_kdns: type[KdnsCommand]
) -> None:
    port = free_port()
    proc = _started(run_kdns(["-conf", str(_corefile(tmp_path, f".:{port}", "    log\n"))], port))
    for tcp in (False, True):
        _ask("127.0.0.1", port, tcp)
    wait_until(lambda: sum(1 for line in proc.lines if _LINE.search(line)) >= 3)
    lines = [m for line in proc.lines if (m := _LINE.search(line.rstrip("\n")))]
    assert {m["proto"] for m in lines} == {"udp", "tcp"}
    for match in lines:
        assert match["remote"] == "127.0.0.1", match.string
        assert _GO_SECONDS.match(match["duration"]), match.string
    if "::1" in HOSTS:
        _ask("::1", port, True)
        wait_until(lambda: any("[::1]:" in line for line in proc.lines))


# -- item 7: clients that never read ---------------------------------------------------------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _framed(name: str, ident: int) -> bytes:
    wire = dns.message.make_query(name, "SRV", id=ident).to_wire()
    return struct.pack("!H", len(wire)) + wire


def _big_headless(tmp_path: Path, endpoints: int = 1000) -> Path:
    """A headless Service whose SRV answer is ~47 KiB: 60-byte queries fill buffers fast."""
    folder = tmp_path / "cluster"
    folder.mkdir()
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "big", "namespace": "default"},
        "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]},
    }
    (folder / "big.json").write_text(json.dumps(service))
    for first in range(0, endpoints, 1000):  # at most 1000 endpoints a slice, as the API
        ips = [f"10.244.{i // 250}.{i % 250 + 1}" for i in range(first, first + 1000)]
        piece = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"big-{first}",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": "big"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            "endpoints": [{"addresses": ips}],
        }
        (folder / f"big-{first}.json").write_text(json.dumps(piece))
    return folder


BIG = "_http._tcp.big.default.svc.cluster.local."


def _never_reading_clients(port: int, count: int, queries: int) -> list[socket.socket]:
    """``count`` clients that pipeline ``queries`` queries each and read nothing."""
    burst = b"".join(_framed(BIG, i) for i in range(queries))
    clients = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(burst)
        clients.append(sock)
    return clients


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_clients_that_never_read_cost_bounded_memory(
    tmp_path: Path, run_kdns: type[KdnsCommand]
) -> None:
    """Before the bound, 60 such clients took RSS from 47 MB to 253 MB (3.4 MB each)."""
    port = free_port()
    corefile = _corefile(tmp_path, f".:{port}", manifests=_big_headless(tmp_path))
    proc = _started(run_kdns(["-conf", str(corefile)], port, env=_LIMITS), BIG)
    pid = proc.proc.pid
    for _ in range(5):  # warm the answer path, so its caches do not count as growth
        _ask("127.0.0.1", port, True, BIG)
    before, fds = _rss_kib(pid), _open_fds(pid)
    clients = _never_reading_clients(port, count=60, queries=120)
    try:
        peak = before
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:  # sample while kdns works through the bursts
            peak = max(peak, _rss_kib(pid))
            time.sleep(0.05)
        print(f"RSS {before} KiB -> peak {peak} KiB with {len(clients)} clients")
        assert peak - before < 30_000, (before, peak)
        assert _ask("127.0.0.1", port, True, BIG).rcode() == dns.rcode.NOERROR
        # The write timeout (1 s here) closes every client that does not read.
        wait_until(lambda: _open_fds(pid) <= fds, timeout=5)
    finally:
        for sock in clients:
            sock.close()
    proc.alive()


# -- item 6: slow-drip TCP -------------------------------------------------------------------


def _closed_by_peer(sock: socket.socket) -> bool:
    """True once kdns has closed (FIN or RST) a client that expects no answer yet."""
    try:
        return sock.recv(1, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def _drip_clients(port: int, count: int) -> list[socket.socket]:
    clients = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.settimeout(None)  # blocking, so MSG_DONTWAIT reads raise BlockingIOError
        sock.send(b"\x00")  # the first byte of a length prefix: a query has begun
        clients.append(sock)
    return clients


def test_drip_fed_queries_are_closed_and_fresh_clients_answered(
    tmp_path: Path, run_kdns: type[KdnsCommand]
) -> None:
    """A byte every 0.2 s used to restart the idle timer forever; read=1 s bounds the query."""
    port = free_port()
    proc = _started(run_kdns(["-conf", str(_corefile(tmp_path, f".:{port}"))], port, env=_LIMITS))
    message = _framed(SERVICE, 7)[1:]  # the rest, after the first byte already sent
    drips = _drip_clients(port, 60)  # more than connections=50: the stalest make room
    try:
        assert _ask("127.0.0.1", port, True).rcode() == dns.rcode.NOERROR
        deadline = time.monotonic() + 6
        for offset in range(len(message)):  # bounded: one byte a round, 0.2 s apart
            open_drips = [sock for sock in drips if not _closed_by_peer(sock)]
            if not open_drips or time.monotonic() > deadline:
                break
            for sock in open_drips:
                with contextlib.suppress(OSError):  # closed meanwhile: fine
                    sock.send(message[offset : offset + 1])
            time.sleep(0.2)
        still_open = sum(1 for sock in drips if not _closed_by_peer(sock))
        assert still_open == 0, f"{still_open} drip-feeding clients still hold a slot"
        assert _ask("127.0.0.1", port, True).rcode() == dns.rcode.NOERROR
    finally:
        for sock in drips:
            sock.close()
    proc.alive()


def test_full_house_of_slow_clients_makes_room_for_a_new_one(
    tmp_path: Path, run_kdns: type[KdnsCommand]
) -> None:
    """At the default limit (1000) kdns used to reset every newcomer; now the stalest go."""
    port = free_port()
    proc = _started(run_kdns(["-conf", str(_corefile(tmp_path, f".:{port}"))], port))
    slow = _drip_clients(port, 1000)
    try:
        for _ in range(3):
            assert _ask("127.0.0.1", port, True).rcode() == dns.rcode.NOERROR
        wait_until(lambda: sum(1 for sock in slow if _closed_by_peer(sock)) >= 3)
    finally:
        for sock in slow:
            sock.close()
    proc.alive()


def test_long_pipeline_is_answered_whole_across_turns(
    tmp_path: Path, run_kdns: type[KdnsCommand]
) -> None:
    """kdns answers a pipelining client in batches; every query still gets its answer."""
    port = free_port()
    proc = _started(run_kdns(["-conf", str(_corefile(tmp_path, f".:{port}"))], port))
    count = 1000
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"".join(_framed(SERVICE, i) for i in range(count)))
        stream = sock.makefile("rb")
        idents = set()
        for _ in range(count):
            (size,) = struct.unpack("!H", stream.read(2))
            idents.add(dns.message.from_wire(stream.read(size)).id)
    assert idents == set(range(count))
    proc.alive()
