"""``kubernetes { endpoint URL; tls CERT KEY CACERT }`` against an API server that
authenticates clients by certificate, through the real kdns process.

The emulator serves HTTPS with the cluster CA's serving pair and answers 401 to a
request without a client certificate (a certificate from another CA fails the
handshake), as kube-apiserver does with anonymous auth disabled.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.rcode
import pytest

from tests.support import apiemu
from tests.support.apiemu import pki
from tests.support.process import ROOT, KdnsCommand, free_port, http_get, wait_until

pytestmark = pytest.mark.timeout(60)

NAME = "web.default.svc.cluster.local"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[apiemu.EmulatorThread, pki.ClusterPKI]]:
    certs = pki.write_cluster_pki(tmp_path / "pki")
    with apiemu.EmulatorThread(
        bookmark_interval=0.5, ssl_context=certs.server_context(), require_client_cert=True
    ) as emu:
        emu.put(apiemu.builders.service("web", cluster_ip="10.96.0.20"))
        emu.put(apiemu.builders.endpoint_slice("web", addresses=["10.244.0.5"]))
        yield emu, certs


def _start(tmp_path: Path, url: str, tls_line: str) -> tuple[KdnsCommand, int]:
    port, ready = free_port(), free_port()
    corefile = tmp_path / "Corefile"
    corefile.write_text(
        f""".:{port} {{
    ready 127.0.0.1:{ready}
    kubernetes cluster.local {{
        endpoint {url}
        {tls_line}
        startup_timeout 1s
    }}
}}
"""
    )
    return KdnsCommand(["-conf", str(corefile)], port), ready


def _wait(proc: KdnsCommand, predicate: Callable[[], bool]) -> None:
    try:
        wait_until(predicate, timeout=20)
    except AssertionError:
        raise AssertionError(f"condition not met; kdns log:\n{proc.log}") from None


def test_tls_client_certificate_reaches_the_api_server(
    cluster: tuple[apiemu.EmulatorThread, pki.ClusterPKI], tmp_path: Path
) -> None:
    emu, certs = cluster
    user = certs.client("coredns")
    proc, ready = _start(tmp_path, emu.url, f"tls {user.cert} {user.key} {certs.ca}")
    try:
        _wait(proc, lambda: proc.rcode(NAME) == dns.rcode.NOERROR)
        assert proc.records(NAME) == ["10.96.0.20"]
        wait_until(lambda: http_get(f"http://127.0.0.1:{ready}/ready")[0] == 200, timeout=10)
        emu.put(apiemu.builders.service("api", cluster_ip="10.96.0.30"))
        wait_until(lambda: proc.rcode("api.default.svc.cluster.local") == 0, timeout=10)
    finally:
        proc.stop()
    watched = [r for r in emu.requests() if r.is_watch]
    assert watched, "kdns never watched through the authenticated connection"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no tls", "certificate verify failed"),
        ("foreign client cert", "may not trust the client certificate"),
    ],
)
def test_without_a_valid_client_certificate_kdns_is_not_ready_and_says_why(
    cluster: tuple[apiemu.EmulatorThread, pki.ClusterPKI],
    tmp_path: Path,
    case: str,
    expected: str,
) -> None:
    emu, certs = cluster
    if case == "no tls":
        line = ""
    else:
        other = pki.write_cluster_pki(tmp_path / "other-pki")
        stranger = other.client("stranger")
        line = f"tls {stranger.cert} {stranger.key} {certs.ca}"
    proc, ready = _start(tmp_path, emu.url, line)
    try:
        _wait(proc, lambda: expected in proc.log)
        assert http_get(f"http://127.0.0.1:{ready}/ready")[0] == 503
        assert proc.rcode(NAME) in (None, dns.rcode.SERVFAIL)
    finally:
        proc.stop()


def test_unreadable_tls_files_are_refused_at_start(tmp_path: Path) -> None:
    """A typo in a path must not become an endless handshake retry: kdns exits, naming it."""
    certs = pki.write_cluster_pki(tmp_path / "pki")
    user = certs.client("coredns")
    corefile = tmp_path / "Corefile"
    corefile.write_text(
        f""".:{free_port()} {{
    kubernetes cluster.local {{
        endpoint https://127.0.0.1:{free_port()}
        tls {user.cert} {tmp_path / "missing.key"} {certs.ca}
    }}
}}
"""
    )
    done = subprocess.run(
        [sys.executable, "-m", "kdns", "-conf", str(corefile)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert done.returncode != 0
    assert "missing.key" in done.stderr, done.stderr
