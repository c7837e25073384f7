"""The embedded source: a watched folder of manifests changes answers without a restart.

Adding, editing and deleting files shows up in answers within a second; a file that
stops parsing or an object that is not valid for DNS is reported (file and document
index) and skipped, while the rest, and the last good version of the file, keep
serving; ``kind: List``, multi-document YAML and JSON all load; and queries sent while
all this happens are all answered. The watcher polls, so these tests poll its effect
with ``wait_until`` (there is no event to await across the process boundary).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import dns.exception
import dns.rcode
import pytest

from tests.support.process import KdnsProcess, rrset_texts, wait_until

WEB = "web.default.svc.cluster.local"
WEB_A = [f"{WEB}. 5 IN A 10.96.0.20"]


def _service(name: str, ip: str, namespace: str = "default") -> str:
    return f"""apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {namespace}
spec:
  clusterIP: {ip}
  ports:
    - name: http
      port: 80
"""


def _a(server: KdnsProcess, name: str) -> list[str]:
    return rrset_texts(server.query(name, "A"))


def _rcode(server: KdnsProcess, name: str) -> int:
    return server.query(name, "A").rcode()


@pytest.fixture
def server(kdns_factory: type[KdnsProcess], manifests_dir: Path) -> KdnsProcess:
    proc = kdns_factory(manifests_dir)
    assert _a(proc, WEB) == WEB_A
    return proc


def test_add_edit_delete_within_a_second(server: KdnsProcess, manifests_dir: Path) -> None:
    """The issue: changes reach answers within a second, no restart."""
    name = "fresh.default.svc.cluster.local"
    path = manifests_dir / "60-fresh.yaml"
    assert _rcode(server, name) == dns.rcode.NXDOMAIN
    started = time.monotonic()
    path.write_text(_service("fresh", "10.96.7.7"))
    wait_until(lambda: _a(server, name) == [f"{name}. 5 IN A 10.96.7.7"], timeout=1.0)
    assert time.monotonic() - started < 1.0

    path.write_text(_service("fresh", "10.96.7.8"))
    wait_until(lambda: _a(server, name) == [f"{name}. 5 IN A 10.96.7.8"], timeout=1.0)
    # The reverse side follows the edit too: the old PTR is gone, the new one is there.
    assert server.query("7.7.96.10.in-addr.arpa", "PTR").rcode() == dns.rcode.NXDOMAIN
    assert rrset_texts(server.query("8.7.96.10.in-addr.arpa", "PTR")) == [
        f"8.7.96.10.in-addr.arpa. 5 IN PTR {name}."
    ]

    path.unlink()
    wait_until(lambda: _rcode(server, name) == dns.rcode.NXDOMAIN, timeout=1.0)
    assert _a(server, WEB) == WEB_A


def test_broken_yaml_is_reported_and_last_good_version_serves(
    server: KdnsProcess, manifests_dir: Path
) -> None:
    """A half-written file keeps its last good content; the log names the file."""
    path = manifests_dir / "10-default.yaml"
    good = path.read_text()
    path.write_text(good + "\n---\nkind: Service\nmetadata: {name: [unclosed\n")
    server.wait_for_log(r"10-default\.yaml.*(cannot parse|document)", timeout=3)
    assert _a(server, WEB) == WEB_A
    assert _a(server, "kubernetes.default.svc.cluster.local") == [
        "kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1"
    ]
    # Fixing the file brings in its new content.
    path.write_text(good + "---\n" + _service("repaired", "10.96.7.9"))
    wait_until(
        lambda: (
            _a(server, "repaired.default.svc.cluster.local")
            == ["repaired.default.svc.cluster.local. 5 IN A 10.96.7.9"]
        ),
        timeout=2.0,
    )


def test_invalid_object_reported_with_document_index(
    server: KdnsProcess, manifests_dir: Path
) -> None:
    """A bad IP skips that object only; the log says which file and document."""
    path = manifests_dir / "70-mixed.yaml"
    path.write_text(
        _service("good-one", "10.96.8.1")
        + "---\n"
        + _service("bad-ip", "10.96.300.1")
        + "---\n"
        + _service("good-two", "10.96.8.2")
    )
    line = server.wait_for_log(r"70-mixed\.yaml.*document 1", timeout=3)
    assert "bad-ip" in line or "10.96.300.1" in line, line
    wait_until(
        lambda: (
            _a(server, "good-two.default.svc.cluster.local")
            == ["good-two.default.svc.cluster.local. 5 IN A 10.96.8.2"]
        ),
        timeout=2.0,
    )
    assert _a(server, "good-one.default.svc.cluster.local") == [
        "good-one.default.svc.cluster.local. 5 IN A 10.96.8.1"
    ]
    assert _rcode(server, "bad-ip.default.svc.cluster.local") == dns.rcode.NXDOMAIN
    assert _a(server, WEB) == WEB_A


def test_list_multidoc_and_json(server: KdnsProcess, manifests_dir: Path) -> None:
    """``kind: List``, several documents in one file, and JSON files are all read."""
    items = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": f"listed-{i}", "namespace": "shop"},
            "spec": {"clusterIP": f"10.96.9.{i}", "ports": [{"name": "http", "port": 80}]},
        }
        for i in (1, 2)
    ]
    (manifests_dir / "80-list.yaml").write_text(
        json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )
    (manifests_dir / "81-single.json").write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "from-json", "namespace": "data"},
                "spec": {"clusterIP": "10.96.9.3", "ports": [{"name": "http", "port": 80}]},
            }
        )
    )
    (manifests_dir / "sub").mkdir()
    (manifests_dir / "sub" / "82-multi.yml").write_text(
        _service("multi-a", "10.96.9.4") + "---\n" + _service("multi-b", "10.96.9.5", "shop")
    )
    expected = {
        "listed-1.shop.svc.cluster.local": "10.96.9.1",
        "listed-2.shop.svc.cluster.local": "10.96.9.2",
        "from-json.data.svc.cluster.local": "10.96.9.3",
        "multi-a.default.svc.cluster.local": "10.96.9.4",
        "multi-b.shop.svc.cluster.local": "10.96.9.5",
    }
    wait_until(
        lambda: all(_a(server, n) == [f"{n}. 5 IN A {ip}"] for n, ip in expected.items()),
        timeout=2.0,
    )


def test_no_query_lost_during_edits(server: KdnsProcess, manifests_dir: Path) -> None:
    """Queries sent continuously while files change are all answered, and correctly."""
    stop = threading.Event()
    answered: list[int] = []
    failures: list[str] = []

    def ask() -> None:
        while not stop.is_set():
            for tcp in (False, True):
                try:
                    reply = server.query(WEB, "A", tcp=tcp)
                except (dns.exception.Timeout, OSError) as exc:
                    failures.append(repr(exc))
                    continue
                if rrset_texts(reply) != WEB_A:
                    failures.append(reply.to_text())
                answered.append(reply.rcode())

    worker = threading.Thread(target=ask, daemon=True)
    worker.start()
    try:
        for round_ in range(6):
            path = manifests_dir / f"9{round_}-churn.yaml"
            path.write_text(_service(f"churn-{round_}", f"10.96.10.{round_ + 1}"))
            name = f"churn-{round_}.default.svc.cluster.local"
            wait_until(lambda n=name: _rcode(server, n) == dns.rcode.NOERROR, timeout=2.0)
            (manifests_dir / "20-shop.yaml").touch()  # a no-op change, re-read
            if round_ % 2:
                path.unlink()
                wait_until(lambda n=name: _rcode(server, n) == dns.rcode.NXDOMAIN, timeout=2.0)
    finally:
        stop.set()
        worker.join(10)
    assert not failures, failures[:3]
    assert len(answered) > 20
