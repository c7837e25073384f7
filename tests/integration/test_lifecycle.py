"""kdns run from a Corefile as a process: probes, metrics, SIGTERM with lameduck, reload.

These drive the real command (``python -m kdns -conf FILE``) over real sockets, the way
kubelet, Prometheus and an operator editing the ConfigMap meet it.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.support.process import EXAMPLES, KdnsCommand, free_port, http_get, wait_until


@pytest.fixture
def corefile_env(tmp_path: Path) -> Iterator[dict[str, object]]:
    cluster = tmp_path / "cluster"
    shutil.copytree(EXAMPLES, cluster)
    ports = {name: free_port() for name in ("dns", "health", "ready", "metrics")}
    corefile = tmp_path / "Corefile"
    corefile.write_text(
        f""".:{ports["dns"]} {{
    errors
    health 127.0.0.1:{ports["health"]} {{
        lameduck 2s
    }}
    ready 127.0.0.1:{ports["ready"]}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
        manifests {cluster}
    }}
    prometheus 127.0.0.1:{ports["metrics"]}
    reload 2s 1s
    loadbalance
}}
"""
    )
    processes: list[KdnsCommand] = []

    def start() -> KdnsCommand:
        proc = KdnsCommand(["-conf", str(corefile)], ports["dns"])
        processes.append(proc)
        wait_until(lambda: proc.rcode("web.default.svc.cluster.local") == 0, timeout=20)
        return proc

    yield {"start": start, "ports": ports, "corefile": corefile, "cluster": cluster}
    for proc in processes:
        proc.stop(graceful=False)


def test_probes_and_metrics(corefile_env: dict[str, object]) -> None:
    proc = corefile_env["start"]()  # type: ignore[operator]
    ports: dict[str, int] = corefile_env["ports"]  # type: ignore[assignment]
    assert http_get(f"http://127.0.0.1:{ports['health']}/health") == (200, "OK")
    assert http_get(f"http://127.0.0.1:{ports['ready']}/ready") == (200, "OK")
    proc.query("web.default.svc.cluster.local")
    proc.query("nope.default.svc.cluster.local")
    status, text = http_get(f"http://127.0.0.1:{ports['metrics']}/metrics")
    assert status == 200
    assert 'coredns_dns_requests_total{family="1",proto="udp",server="dns://:' in text
    assert 'rcode="NXDOMAIN"' in text
    assert "coredns_build_info{" in text
    assert 'coredns_plugin_enabled{name="kubernetes"' in text
    if shutil.which("promtool"):
        check = subprocess.run(
            ["promtool", "check", "metrics"], input=text, capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr


def test_sigterm_lameduck_keeps_answering(corefile_env: dict[str, object]) -> None:
    proc = corefile_env["start"]()  # type: ignore[operator]
    ports: dict[str, int] = corefile_env["ports"]  # type: ignore[assignment]
    started = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: http_get(f"http://127.0.0.1:{ports['ready']}/ready")[0] == 503, timeout=1.5)
    answered = 0
    while time.monotonic() - started < 1.5:  # well inside the 2 s lameduck
        reply = proc.query("web.default.svc.cluster.local")
        assert reply.rcode() == dns.rcode.NOERROR
        assert http_get(f"http://127.0.0.1:{ports['health']}/health")[0] == 200
        answered += 1
    assert answered > 10
    assert proc.proc.wait(10) == 0
    assert time.monotonic() - started >= 2.0


def test_reload_follows_the_corefile_and_keeps_serving(corefile_env: dict[str, object]) -> None:
    proc = corefile_env["start"]()  # type: ignore[operator]
    corefile: Path = corefile_env["corefile"]  # type: ignore[assignment]
    assert proc.query("web.default.svc.cluster.local").answer[0].ttl == 30
    lost = 0
    sent = 0
    stop = threading.Event()

    def hammer() -> None:
        nonlocal lost, sent
        while not stop.is_set() and sent < 20000:
            sent += 1
            try:
                proc.query("web.default.svc.cluster.local", timeout=1)
            except Exception:
                lost += 1

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        corefile.write_text(corefile.read_text().replace("ttl 30", "ttl 11"))
        wait_until(
            lambda: proc.query("web.default.svc.cluster.local").answer[0].ttl == 11, timeout=10
        )
        # A broken edit keeps the old configuration serving and counts a failed reload.
        corefile.write_text(
            corefile.read_text().replace("loadbalance", "loadbalance\n    forwad .")
        )
        wait_until(lambda: any("parse failed" in line for line in proc.lines), timeout=10)
    finally:
        stop.set()
        worker.join(10)
    assert proc.query("web.default.svc.cluster.local").answer[0].ttl == 11
    assert sent > 50
    assert lost == 0
