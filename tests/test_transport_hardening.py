"""The DNS transports under real clients and hostile ones (issue 12, items 1, 6, 7, 13).

Every test runs the real ``kdns`` process. Listeners without ``bind`` must answer UDP
and TCP over IPv4 and IPv6 (a cluster's ``.:53``); a client that drips bytes or never
reads must not hold a TCP slot or memory; the query log prints what CoreDNS prints.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.conftest import EXAMPLES, KdnsCommand, free_port, wait_until

SERVICE = "kubernetes.default.svc.cluster.local."
needs_dig = pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed")


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


HOSTS = ["127.0.0.1", "::1"] if _has_ipv6_loopback() else ["127.0.0.1"]


def _corefile(tmp_path: Path, header: str, body: str = "") -> Path:
    corefile = tmp_path / "Corefile"
    corefile.write_text(
        f"{header} {{\n    kubernetes cluster.local {{\n        manifests {EXAMPLES}\n    }}\n"
        f"{body}}}\n"
    )
    return corefile


def _started(proc: KdnsCommand) -> KdnsCommand:
    """Wait until kdns answers over UDP on 127.0.0.1 (its listeners are all open then)."""
    wait_until(lambda: proc.rcode(SERVICE) == dns.rcode.NOERROR, timeout=20)
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


def _ask(host: str, port: int, tcp: bool) -> dns.message.Message:
    query = dns.message.make_query(SERVICE, "A")
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
