"""The cluster inventory (``/debug/kdns/snapshot``, ``/debug/kdns/ipam``) is opt-in, on loopback.

The snapshot holds every Service, selector, label, endpoint pod name and node name. On
the health port (``:8080``, reachable from every pod) it gave any unauthenticated client
what DNS alone never reveals. It is now served only with the ``debug_endpoints``
directive (or ``kdns serve --debug-addr``), on its own listener, by default on
localhost; ``kdns explain --server`` reads it there, through ``kubectl port-forward``
in a cluster.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import pytest

from kdns import explain
from kdns.corefile.errors import CorefileError
from kdns.plugins.loader import load_text
from kdns.server import planner as plan
from kdns.server.lifecycle import IPAM_STATUS_PATH
from kdns.server.plan import ListenAddress
from tests.support.process import EXAMPLES, ROOT, KdnsCommand, free_port, http_get, wait_until

WEB = "web.default.svc.cluster.local"


def _start(tmp_path: Path, extra: str) -> tuple[KdnsCommand, int]:
    dns_port, health = free_port(), free_port()
    corefile = tmp_path / "Corefile"
    corefile.write_text(
        f""".:{dns_port} {{
    health 127.0.0.1:{health}
    kubernetes cluster.local {{
        manifests {EXAMPLES}
    }}
{extra}}}
"""
    )
    proc = KdnsCommand(["-conf", str(corefile)], dns_port)
    wait_until(lambda: proc.rcode(WEB) == dns.rcode.NOERROR, timeout=20)
    wait_until(lambda: http_get(f"http://127.0.0.1:{health}/health")[0] == 200, timeout=10)
    return proc, health


@pytest.fixture
def stopper() -> Iterator[list[KdnsCommand]]:
    procs: list[KdnsCommand] = []
    yield procs
    for proc in procs:
        proc.stop(graceful=False)


def test_default_config_serves_no_inventory(tmp_path: Path, stopper: list[KdnsCommand]) -> None:
    proc, health = _start(tmp_path, "")
    stopper.append(proc)
    for path in (explain.SNAPSHOT_PATH, IPAM_STATUS_PATH):
        status, body = http_get(f"http://127.0.0.1:{health}{path}")
        assert status == 404, (path, body[:200])
        assert "default" not in body


def test_debug_endpoints_serve_explain_on_loopback(
    tmp_path: Path, stopper: list[KdnsCommand]
) -> None:
    debug = free_port()
    proc, health = _start(tmp_path, f"    debug_endpoints 127.0.0.1:{debug}\n")
    stopper.append(proc)
    url = f"http://127.0.0.1:{debug}"
    wait_until(lambda: http_get(url + explain.SNAPSHOT_PATH)[0] == 200, timeout=10)
    _, body = http_get(url + explain.SNAPSHOT_PATH)
    assert any(s["name"] == "web" for s in json.loads(body)["services"])
    # The route exists there (no clusterip here, so its own 404 text), not on /health's port.
    assert http_get(url + IPAM_STATUS_PATH) == (404, "no clusterip allocator configured\n")
    assert http_get(f"http://127.0.0.1:{health}{explain.SNAPSHOT_PATH}")[0] == 404
    assert http_get(f"http://127.0.0.1:{health}/health") == (200, "OK")
    # Bound to 127.0.0.1 itself: another loopback address of the same host gets nothing.
    assert http_get(f"http://127.0.0.2:{debug}{explain.SNAPSHOT_PATH}")[0] == 0
    assert "not loopback" not in proc.log

    done = subprocess.run(
        [sys.executable, "-m", "kdns", "explain", WEB, "--server", url],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "web" in done.stdout


def test_explain_against_a_health_port_says_how_to_enable(
    tmp_path: Path, stopper: list[KdnsCommand]
) -> None:
    proc, health = _start(tmp_path, "")
    stopper.append(proc)
    done = subprocess.run(
        [sys.executable, "-m", "kdns", "explain", WEB, "--server", f"127.0.0.1:{health}"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert "debug_endpoints" in done.stderr


def _debug_address(text: str) -> ListenAddress | None:
    return plan.from_corefile(load_text(text, "Corefile")).debug


def test_default_address_is_loopback() -> None:
    addr = _debug_address(".:1053 {\n    whoami\n    debug_endpoints\n}\n")
    assert addr == ListenAddress("127.0.0.1", 6053)
    assert _debug_address(".:1053 {\n    whoami\n}\n") is None


def test_an_explicit_wildcard_is_allowed_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        addr = _debug_address(".:1053 {\n    whoami\n    debug_endpoints :6060\n}\n")
    assert addr == ListenAddress("", 6060)
    assert "not loopback" in caplog.text


@pytest.mark.parametrize(
    "line", ["debug_endpoints localhost", "debug_endpoints a:1 b:2", "debug_endpoints :x"]
)
def test_bad_arguments_are_refused(line: str) -> None:
    with pytest.raises(CorefileError, match="plugin/debug_endpoints"):
        load_text(f".:1053 {{\n    whoami\n    {line}\n}}\n", "Corefile")


def test_the_page_example_loads() -> None:
    page = (ROOT / "Corefile.compat" / "debug_endpoints.md").read_text()
    body = page.split("~~~ corefile\n", 1)[1].split("~~~", 1)[0]
    config = load_text(body, "Corefile")
    assert "debug_endpoints" in config.blocks[0].names()
