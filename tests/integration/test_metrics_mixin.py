"""What dashboards and log pipelines read, from a running kdns.

coredns-mixin (github.com/povilasv/coredns-mixin: dashboards/coredns.libsonnet,
alerts/coredns.libsonnet, alerts/forward.libsonnet) queries the names in :data:`MIXIN`;
each must be in kdns's /metrics, or be listed in :data:`NOT_APPLICABLE` with the reason
(Corefile.compat/prometheus.md says the same). The text passes ``promtool check metrics``.
The same process logs JSON lines (KDNS_LOG_FORMAT=json) with the log plugin's fields, at
DEBUG because of the ``debug`` directive, and exports the GC metrics ``runtime_metrics``
asks for.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kdns.envinject import certs
from tests.support.process import ROOT, KdnsCommand, free_port, http_get, wait_until
from tests.support.upstreams import Dnsmasq, needs_dnsmasq

pytestmark = [pytest.mark.timeout(90), needs_dnsmasq]

EXAMPLES = ROOT / "examples" / "cluster"

MIXIN = (
    # dashboards/coredns.libsonnet
    "coredns_panics_total",
    "coredns_dns_responses_total",
    "coredns_forward_responses_total",
    "coredns_dns_request_duration_seconds_bucket",
    "coredns_forward_request_duration_seconds_bucket",
    "coredns_dns_requests_total",
    "coredns_forward_requests_total",
    "coredns_kubernetes_dns_programming_duration_seconds_bucket",
    "coredns_plugin_enabled",
    "coredns_dns_request_size_bytes_bucket",
    "coredns_dns_response_size_bytes_bucket",
    "coredns_cache_hits_total",
    "coredns_cache_misses_total",
    "coredns_cache_entries",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "go_goroutines",
    "coredns_build_info",
    "up",
    # alerts/coredns.libsonnet, alerts/forward.libsonnet
    "coredns_forward_healthcheck_failures_total",
    "coredns_forward_healthcheck_broken_total",
)
NOT_APPLICABLE = {
    "up": "written by Prometheus itself for every target",
    "go_goroutines": "a Go runtime gauge; kdns runs one asyncio loop (python_info instead)",
}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    tmp = tmp_path_factory.mktemp("mixin")
    upstream = Dnsmasq({"www.example.org": "192.0.2.53"})
    ports = {name: free_port() for name in ("dns", "metrics", "webhook")}
    issued = certs.generate("kdns-webhook", "kube-system", ip_addresses=["127.0.0.1"])
    cert, key, _ = certs.write(issued, tmp / "tls")
    corefile = tmp / "Corefile"
    corefile.write_text(
        f""".:{ports["dns"]} {{
    debug
    errors
    log
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        manifests {EXAMPLES}
    }}
    envinject 127.0.0.1:{ports["webhook"]} {{
        tls {cert} {key}
    }}
    prometheus 127.0.0.1:{ports["metrics"]} {{
        runtime_metrics
    }}
    cache 30
    forward . 127.0.0.1:{upstream.port}
}}
"""
    )
    proc = KdnsCommand(["-conf", str(corefile)], ports["dns"], env={"KDNS_LOG_FORMAT": "json"})
    try:
        wait_until(lambda: proc.rcode("web.default.svc.cluster.local") == 0, timeout=20)
        for name in ("www.example.org", "www.example.org", "nope.default.svc.cluster.local"):
            proc.query(name)
        status, text = http_get(f"http://127.0.0.1:{ports['metrics']}/metrics")
        assert status == 200
        yield {"proc": proc, "text": text, "cert": str(cert)}
    finally:
        proc.stop()
        upstream.stop()


def exported(text: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    for line in text.splitlines():  # families with no sample yet (a label set never seen)
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
            names.update([name, *(name + s for s in suffixes.get(kind, ()))])
    return names


def test_every_mixin_metric_is_exported_or_documented(running: dict[str, object]) -> None:
    names = exported(str(running["text"]))
    missing = [m for m in MIXIN if m not in names and m not in NOT_APPLICABLE]
    assert not missing
    documented = (ROOT / "Corefile.compat" / "prometheus.md").read_text()
    for name in NOT_APPLICABLE:
        assert f"`{name}`" in documented


def test_promtool_accepts_the_metrics(running: dict[str, object]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian: prometheus)")
    check = subprocess.run(
        [promtool, "check", "metrics"], input=running["text"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_kdns_metrics_are_set(running: dict[str, object]) -> None:
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(str(running["text"]))
        for s in f.samples
    }
    values = {name: v for (name, _), v in samples.items()}
    assert values["kdns_compiled_names"] > 0  # never set before
    assert values["process_resident_memory_bytes"] > 1 << 20
    assert "python_gc_collections_total" in values  # runtime_metrics
    expiry = samples[
        (
            "kdns_tls_certificate_expiry_timestamp_seconds",
            (("listener", "envinject"), ("path", str(running["cert"]))),
        )
    ]
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(Path(str(running["cert"])).read_bytes())
    assert expiry == cert.not_valid_after_utc.timestamp()


def test_json_logs_with_query_fields_at_debug(running: dict[str, object]) -> None:
    proc = running["proc"]
    assert isinstance(proc, KdnsCommand)
    wait_until(lambda: "www.example.org" in proc.log, timeout=5)
    lines = [json.loads(line) for line in proc.log.splitlines() if line.strip()]
    assert all({"time", "level", "logger", "msg"} <= line.keys() for line in lines)
    assert any(line["level"] == "debug" for line in lines)  # the debug directive
    query = next(line for line in lines if line.get("name") == "www.example.org.")
    assert query["logger"] == "kdns.log" and query["type"] == "A" and query["rcode"] == "NOERROR"
    assert query["proto"] == "udp" and isinstance(query["duration"], float)
    assert query["msg"].startswith("127.0.0.1:")  # the CoreDNS line, unchanged
