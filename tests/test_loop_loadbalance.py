"""The loop and loadbalance plugins in a running kdns.

``loop`` must stop a forwarding loop at start (the systemd-resolved crash loop CoreDNS
users know), and ``loadbalance`` must spread clients over the addresses of a headless
service instead of sending every first connection to the same pod.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dns.message
import dns.query

from tests.conftest import EXAMPLES, ROOT, free_port, wait_until


def test_forwarding_to_itself_is_detected_and_kdns_exits(tmp_path: Path) -> None:
    port = free_port()
    corefile = tmp_path / "Corefile"
    corefile.write_text(f".:{port} {{\n    forward . 127.0.0.1:{port}\n    loop\n}}\n")
    result = subprocess.run(
        [sys.executable, "-m", "kdns", "-conf", str(corefile)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert "Loop (127.0.0.1:" in result.stderr
    assert "detected for zone" in result.stderr
    assert 'Query: "HINFO ' in result.stderr


def test_loadbalance_rotates_headless_addresses(tmp_path: Path) -> None:
    port = free_port()
    corefile = tmp_path / "Corefile"
    corefile.write_text(
        f""".:{port} {{
    kubernetes cluster.local {{
        manifests {EXAMPLES}
    }}
    loadbalance
}}
"""
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "kdns", "-conf", str(corefile)],
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:

        def first_addresses() -> set[str]:
            firsts = set()
            for _ in range(32):
                q = dns.message.make_query("db.data.svc.cluster.local", "A")
                reply = dns.query.udp(q, "127.0.0.1", port=port, timeout=2)
                records = [rr.to_text() for rrset in reply.answer for rr in rrset]
                assert sorted(records) == ["10.244.1.30", "10.244.2.31"]
                firsts.add(records[0])
            return firsts

        def up() -> bool:
            try:
                q = dns.message.make_query("db.data.svc.cluster.local", "A")
                dns.query.udp(q, "127.0.0.1", port=port, timeout=0.5)
                return True
            except Exception:
                return False

        wait_until(up, timeout=20)
        assert first_addresses() == {"10.244.1.30", "10.244.2.31"}
    finally:
        proc.terminate()
        proc.wait(10)
