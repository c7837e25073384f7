"""Data never stops kdns: malformed API objects are logged, counted and skipped, and a
bad update keeps the last good version of the object (issue 12, items 3 and 4).

These run the real ``kdns`` process against the API emulator, which serves what no
real store would hold (a ``metadata`` that is a string, a ``spec`` that is a list)
at the end of its lists and as watch events.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.rcode
import pytest

from tests.support import apiemu
from tests.support.apiemu import builders
from tests.support.process import KdnsCommand, free_port, http_get, wait_until

pytestmark = pytest.mark.timeout(60)

WEB = "web.default.svc.cluster.local"

# Every shape a hostile or buggy object can take at the top: not an object, metadata
# of each wrong JSON type, and well-named objects whose body has the wrong types.
BROKEN_TOPS: list[Any] = [
    "a string item",
    7,
    None,
    [],
    {"metadata": "oops"},
    {"metadata": ["a", "b"]},
    {"metadata": None},
    {"metadata": 5},
]


def _named(name: str, **body: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "resourceVersion": "9"}, **body}


BROKEN_SERVICES = [
    *BROKEN_TOPS,
    _named("spec-string", spec="x"),
    _named("spec-list", spec=[1, 2]),
    _named("ports-int", spec={"clusterIP": "10.96.0.99", "ports": 5}),
    _named("ports-map", spec={"clusterIP": "10.96.0.99", "ports": {"a": 1}}),
    _named(
        "nodeport-text",
        spec={"clusterIP": "10.96.0.99", "ports": [{"port": 80, "nodePort": "abc"}]},
    ),
    _named("ips-map", spec={"clusterIPs": {"a": "b"}}),
    {"metadata": {"name": "labels-list", "namespace": "default", "labels": ["x"]}},
]
BROKEN_SLICES = [
    *BROKEN_TOPS,
    _named("eps-map", addressType="IPv4", endpoints={"a": 1}),
    _named(
        "eps-conditions",
        addressType="IPv4",
        endpoints=[{"addresses": ["10.1.1.1"], "conditions": ["ready"]}],
    ),
    _named(
        "eps-target",
        addressType="IPv4",
        endpoints=[{"addresses": ["10.1.1.1"], "targetRef": "pod"}],
    ),
    _named("eps-addresses", addressType="IPv4", endpoints=[{"addresses": 3}]),
    _named("eps-ports", addressType="IPv4", endpoints=[], ports="80"),
    {
        "metadata": {
            "name": "web-x",
            "namespace": "default",
            "annotations": ["x"],
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": "IPv4",
        "endpoints": [],
    },
]
BROKEN_NAMESPACES = [*BROKEN_TOPS, {"metadata": {"name": "ns-x", "labels": "x"}}]
BROKEN_PODS = [
    *BROKEN_TOPS,
    _named("status-list", status=["x"]),
    _named("spec-int", spec=4),
    _named("containers-int", spec={"containers": 3}),
    _named("ports-str", spec={"containers": [{"ports": "80"}]}),
    _named("podips-str", status={"podIPs": "10.0.0.1"}),
]
BROKEN = {
    ("services", ""): BROKEN_SERVICES,
    ("endpointslices", "discovery.k8s.io"): BROKEN_SLICES,
    ("namespaces", ""): BROKEN_NAMESPACES,
    ("pods", ""): BROKEN_PODS,
}


@pytest.fixture
def emulator() -> Iterator[apiemu.EmulatorThread]:
    with apiemu.EmulatorThread(bookmark_interval=0.5) as emu:
        emu.put(builders.service("web", cluster_ip="10.96.0.20"))
        emu.put(builders.endpoint_slice("web", addresses=["10.244.0.5"]))
        yield emu


def _kdns(emu: apiemu.EmulatorThread, tmp_path: Path) -> tuple[KdnsCommand, int]:
    port, metrics = free_port(), free_port()
    corefile = tmp_path / "Corefile"
    corefile.write_text(
        f""".:{port} {{
    kubernetes cluster.local {{
        endpoint {emu.url}
        pods verified
    }}
    prometheus 127.0.0.1:{metrics}
}}
"""
    )
    return KdnsCommand(["-conf", str(corefile)], port), metrics


def _skipped(metrics_port: int, resource: str) -> float:
    _, text = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
    pattern = rf'^kdns_informer_invalid_objects_total{{resource="{resource}"}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _resolves(proc: KdnsCommand, name: str, address: str) -> bool:
    return proc.rcode(name) == dns.rcode.NOERROR and proc.records(name) == [address]


def test_malformed_objects_in_a_list_and_a_watch_are_skipped(
    emulator: apiemu.EmulatorThread, tmp_path: Path
) -> None:
    for (plural, group), items in BROKEN.items():
        for item in items:
            emulator.add_raw_item(plural, item, group)
    proc, metrics = _kdns(emulator, tmp_path)
    try:
        wait_until(lambda: _resolves(proc, WEB, "10.96.0.20"), timeout=20)
        for plural, _ in BROKEN:
            assert _skipped(metrics, plural) >= len(BROKEN_TOPS), plural
        emulator.wait_for_watchers(4, timeout=10)
        sent = 0
        for (plural, group), items in BROKEN.items():
            for event in ("ADDED", "MODIFIED", "DELETED"):
                for item in items:
                    sent += emulator.send_raw_event(plural, event, item, group)
        assert sent >= 3 * sum(len(items) for items in BROKEN.values())
        # Events on one stream are applied in order: once this answers, all of the
        # above went through the informers.
        emulator.put(builders.service("after", cluster_ip="10.96.0.21"))
        wait_until(lambda: _resolves(proc, "after.default.svc.cluster.local", "10.96.0.21"))
        proc.alive()
        assert _resolves(proc, WEB, "10.96.0.20")
        assert proc.records(WEB, "SRV") == ["0 100 80 web.default.svc.cluster.local."]
        assert _skipped(metrics, "services") >= 3 * len(BROKEN_SERVICES)
        assert "root task" not in proc.log and "Traceback" not in proc.log, proc.log
        assert re.search(r"services default/ports-int: skipped: spec\.ports", proc.log), proc.log
    finally:
        proc.stop()


def test_a_bad_update_keeps_the_last_good_version(
    emulator: apiemu.EmulatorThread, tmp_path: Path
) -> None:
    proc, _ = _kdns(emulator, tmp_path)
    try:
        wait_until(lambda: _resolves(proc, WEB, "10.96.0.20"), timeout=20)
        emulator.wait_for_watchers(4, timeout=10)
        broken = builders.service("web", cluster_ip="10.96.0.20")
        broken["spec"]["ports"] = "http"
        emulator.put(broken)
        emulator.put(builders.service("marker", cluster_ip="10.96.0.22"))
        wait_until(lambda: _resolves(proc, "marker.default.svc.cluster.local", "10.96.0.22"))
        assert _resolves(proc, WEB, "10.96.0.20")
        assert "keeping its last good version" in proc.log, proc.log
        # A re-list (history compacted while the watch was cut) keeps it too.
        emulator.compact()
        emulator.cut_watches(apiemu.Cut.RESET)
        emulator.put(builders.service("marker2", cluster_ip="10.96.0.23"))
        wait_until(lambda: _resolves(proc, "marker2.default.svc.cluster.local", "10.96.0.23"))
        assert _resolves(proc, WEB, "10.96.0.20")
        # A good update is applied, and a delete still deletes.
        emulator.put(builders.service("web", cluster_ip="10.96.0.30"))
        wait_until(lambda: _resolves(proc, WEB, "10.96.0.30"))
        emulator.put(broken)
        emulator.delete("v1", "Service", "web", "default")
        wait_until(lambda: proc.rcode(WEB) == dns.rcode.NXDOMAIN)
    finally:
        proc.stop()
