"""The loop and loadbalance plugins in a running kdns.

``loop`` must stop a forwarding loop at start (the systemd-resolved crash loop CoreDNS
users know), and ``loadbalance`` must spread clients over the addresses of a headless
service instead of sending every first connection to the same pod.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.process import EXAMPLES, ROOT, KdnsCommand, free_port, wait_until


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
    proc = KdnsCommand(["-conf", str(corefile)], port)
    try:
        wait_until(lambda: proc.rcode("db.data.svc.cluster.local") == 0, timeout=20)
        firsts = set()
        for _ in range(32):
            records = proc.records("db.data.svc.cluster.local")
            assert sorted(records) == ["10.244.1.30", "10.244.2.31"]
            firsts.add(records[0])
        assert firsts == {"10.244.1.30", "10.244.2.31"}
    finally:
        proc.stop()
