"""kdns against a live (emulated) API server, as a process, through its command line.

The informer package has its own scenario tests in-process; these check the wiring a
user meets: ``kdns serve --kubeconfig`` and a Corefile ``kubernetes`` block with
``kubeconfig``, readiness that waits for the first sync, watch events reaching answers
on real sockets, and the persisted snapshot served when the API is down at start.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.support import apiemu
from tests.support.process import ROOT, KdnsCommand, free_port, http_get, wait_until


def sorted_records(proc: KdnsCommand, name: str) -> list[str]:
    return sorted(proc.records(name))


@pytest.fixture
def emulator() -> Iterator[apiemu.EmulatorThread]:
    with apiemu.EmulatorThread(bookmark_interval=0.5) as emu:
        emu.put(apiemu.builders.service("web", cluster_ip="10.96.0.20"))
        emu.put(apiemu.builders.endpoint_slice("web", addresses=["10.244.0.5"]))
        yield emu


def test_serve_kubeconfig_follows_watch_events(
    emulator: apiemu.EmulatorThread, tmp_path: Path
) -> None:
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    port, ready = free_port(), free_port()
    proc = KdnsCommand(
        [
            "serve",
            "--kubeconfig",
            str(kubeconfig),
            "--listen",
            f"127.0.0.1:{port}",
            "--ready-addr",
            f"127.0.0.1:{ready}",
        ],
        port,
    )
    try:
        wait_until(lambda: proc.rcode("web.default.svc.cluster.local") == 0, timeout=20)
        assert sorted_records(proc, "web.default.svc.cluster.local") == ["10.96.0.20"]
        wait_until(lambda: http_get(f"http://127.0.0.1:{ready}/ready")[0] == 200, timeout=10)
        emulator.put(apiemu.builders.service("api", cluster_ip="10.96.0.30"))
        wait_until(lambda: proc.rcode("api.default.svc.cluster.local") == 0, timeout=5)
        assert sorted_records(proc, "api.default.svc.cluster.local") == ["10.96.0.30"]
        emulator.delete("v1", "Service", "api", "default")
        wait_until(
            lambda: proc.rcode("api.default.svc.cluster.local") == dns.rcode.NXDOMAIN, timeout=5
        )
        # A dropped watch and a compacted history: the re-list still converges.
        emulator.put(apiemu.builders.service("late", cluster_ip="10.96.0.40"))
        emulator.cut_watches(apiemu.Cut.MID_LINE)
        emulator.compact()
        wait_until(lambda: proc.rcode("late.default.svc.cluster.local") == 0, timeout=10)
    finally:
        proc.stop()


def test_serve_pods_verified_watches_pods(emulator: apiemu.EmulatorThread, tmp_path: Path) -> None:
    """``kdns serve --kubeconfig … --pods verified`` answers a pod's name from its watched
    Pod (it built no Pod informer, so every pod name was NXDOMAIN)."""
    emulator.put(apiemu.builders.pod("client", ip="10.244.0.9"))
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    port = free_port()
    args = ["serve", "--kubeconfig", str(kubeconfig), "--listen", f"127.0.0.1:{port}"]
    proc = KdnsCommand([*args, "--pods", "verified"], port)
    try:
        wait_until(lambda: proc.rcode("web.default.svc.cluster.local") == 0, timeout=20)
        wait_until(lambda: proc.rcode("10-244-0-9.default.pod.cluster.local") == 0, timeout=5)
        assert sorted_records(proc, "10-244-0-9.default.pod.cluster.local") == ["10.244.0.9"]
        assert proc.rcode("10-244-0-8.default.pod.cluster.local") == dns.rcode.NXDOMAIN
    finally:
        proc.stop()


def test_corefile_kubeconfig_and_snapshot_when_api_is_down(
    emulator: apiemu.EmulatorThread, tmp_path: Path
) -> None:
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    snapshot = tmp_path / "snapshot.json"
    port = free_port()
    corefile = tmp_path / "Corefile"
    corefile.write_text(
        f""".:{port} {{
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        snapshot {snapshot}
        startup_timeout 1s
        fallthrough in-addr.arpa ip6.arpa
    }}
}}
"""
    )
    first = KdnsCommand(["-conf", str(corefile)], port)
    try:
        wait_until(lambda: first.rcode("web.default.svc.cluster.local") == 0, timeout=20)
        wait_until(snapshot.exists, timeout=20)
    finally:
        first.stop()
    emulator.go_down()
    second = KdnsCommand(["-conf", str(corefile)], port)
    try:
        wait_until(lambda: second.rcode("web.default.svc.cluster.local") == 0, timeout=20)
        assert sorted_records(second, "web.default.svc.cluster.local") == ["10.96.0.20"]
        emulator.come_up()
        emulator.put(apiemu.builders.service("fresh", cluster_ip="10.96.0.50"))
        wait_until(lambda: second.rcode("fresh.default.svc.cluster.local") == 0, timeout=20)
    finally:
        second.stop()


def test_reload_with_an_api_source_and_webhooks(
    emulator: apiemu.EmulatorThread, tmp_path: Path
) -> None:
    """A reload rebuilds informers and webhooks (and their metrics) beside the old ones."""
    from kdns.envinject import certs

    tls = tmp_path / "tls"
    certs.write(certs.generate("kdns-webhook", "kube-system"), tls)
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    port, hook, metrics_port = free_port(), free_port(), free_port()
    corefile = tmp_path / "Corefile"

    def write(ttl: int) -> None:
        corefile.write_text(
            f""".:{port} {{
    kubernetes cluster.local {{
        kubeconfig {kubeconfig}
        ttl {ttl}
    }}
    envinject 127.0.0.1:{hook} {{
        tls {tls / "tls.crt"} {tls / "tls.key"}
    }}
    prometheus 127.0.0.1:{metrics_port}
    reload 2s 1s
}}
"""
        )

    write(5)
    proc = KdnsCommand(["-conf", str(corefile)], port)
    try:
        wait_until(lambda: proc.rcode("web.default.svc.cluster.local") == 0, timeout=20)
        write(17)
        wait_until(
            lambda: proc.query("web.default.svc.cluster.local").answer[0].ttl == 17, timeout=15
        )
        status, text = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert status == 200
        assert "coredns_reload_failed_total 0.0" in text
        assert "kdns_envinject_requests_total" in text or "kdns_envinject_requests" in text
        assert not any("Restart failed" in line for line in proc.lines), proc.log
    finally:
        proc.stop()


def test_probes_metrics_and_names_stay_up_through_reloads_with_webhooks(
    emulator: apiemu.EmulatorThread, tmp_path: Path
) -> None:
    """A reload rebuilds the webhooks, never the health, ready and metrics listeners,
    and the new configuration answers only once its API source has synced.

    kdns restarted every HTTP listener on each reload of a Corefile with a webhook, so a
    kubelet probe or a scrape landing in the gap failed; and it swapped in the new
    generation before its first list, so cluster names answered SERVFAIL for a moment.
    """
    import threading

    from kdns.envinject import certs

    tls = tmp_path / "tls"
    certs.write(certs.generate("kdns-webhook", "kube-system"), tls)
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    port, hook, metrics_port, health = free_port(), free_port(), free_port(), free_port()
    corefile = tmp_path / "Corefile"

    def write(ttl: int) -> None:
        corefile.write_text(
            f""".:{port} {{
    kubernetes cluster.local {{
        kubeconfig {kubeconfig}
        ttl {ttl}
    }}
    envinject 127.0.0.1:{hook} {{
        tls {tls / "tls.crt"} {tls / "tls.key"}
    }}
    health 127.0.0.1:{health}
    prometheus 127.0.0.1:{metrics_port}
    reload 2s 1s
}}
"""
        )

    write(5)
    proc = KdnsCommand(["-conf", str(corefile)], port)
    failures: list[str] = []
    stop = threading.Event()

    def poll() -> None:
        for _ in range(5000):  # bounded: about 0.01 s a round, stopped by the test
            if stop.is_set():
                return
            for url in (
                f"http://127.0.0.1:{metrics_port}/metrics",
                f"http://127.0.0.1:{health}/health",
            ):
                status, _ = http_get(url)
                if status != 200:
                    failures.append(f"{url}: {status}")
            rcode = proc.rcode("web.default.svc.cluster.local")
            if rcode != 0:
                failures.append(f"web.default.svc.cluster.local: rcode {rcode}")
            stop.wait(0.01)

    try:
        wait_until(lambda: proc.rcode("web.default.svc.cluster.local") == 0, timeout=20)
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        for ttl in (17, 23):
            write(ttl)
            wait_until(
                lambda ttl=ttl: proc.query("web.default.svc.cluster.local").answer[0].ttl == ttl,
                timeout=15,
            )
        stop.set()
        poller.join(10)
        assert not failures, failures[:5]
    finally:
        stop.set()
        proc.stop()


def test_explain_reads_a_cluster_through_its_kubeconfig(
    emulator: apiemu.EmulatorThread, tmp_path: Path
) -> None:
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kdns",
            "explain",
            "web.default.svc.cluster.local",
            "--kubeconfig",
            str(kubeconfig),
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "10.96.0.20" in result.stdout
    assert json.loads(result.stdout)
