"""Every Corefile in Corefile.compat/examples/: defaults load, bad-* fail with CoreDNS's text.

A bad fixture's first line is ``# expect: "<message>" (why)``, with ``<file>`` standing for
the path given to ``-conf``; the test passes the path both absolute and relative.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from kdns.corefile import CorefileError
from kdns.plugins.cache.setup import CacheConfig
from kdns.plugins.forward.setup import ForwardConfig
from kdns.plugins.health.setup import HealthConfig
from kdns.plugins.hosts.setup import HostsConfig
from kdns.plugins.kubernetes.setup import KubernetesConfig
from kdns.plugins.loader import load
from kdns.plugins.log.setup import LogConfig
from kdns.plugins.prometheus.setup import PrometheusConfig
from kdns.plugins.template.setup import TemplateConfig

EXAMPLES = Path(__file__).resolve().parents[3] / "Corefile.compat" / "examples"
BAD = sorted(p.name for p in EXAMPLES.glob("bad-*.Corefile"))
GOOD = sorted(p.name for p in EXAMPLES.glob("*.Corefile") if not p.name.startswith("bad-"))
EXPECT = re.compile(r'^# expect: "(.*)"(?: \(.*\))?$')

needs_resolv_conf = pytest.mark.skipif(
    not os.path.exists("/etc/resolv.conf"), reason="forward . /etc/resolv.conf reads it"
)


def expected(name: str) -> str:
    first = (EXAMPLES / name).read_text().splitlines()[0]
    m = EXPECT.match(first)
    assert m, f"{name}: first line must be '# expect: \"...\"'"
    return m.group(1)


def test_fixture_sets_are_complete() -> None:
    assert len(BAD) >= 15 and len(GOOD) >= 10


@needs_resolv_conf
@pytest.mark.parametrize("name", BAD)
def test_bad_fixture_absolute_path(name: str) -> None:
    path = str(EXAMPLES / name)
    with pytest.raises(CorefileError) as info:
        load(path)
    assert str(info.value) == expected(name).replace("<file>", path)


@needs_resolv_conf
@pytest.mark.parametrize("name", BAD)
def test_bad_fixture_relative_path(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(EXAMPLES)
    with pytest.raises(CorefileError) as info:
        load(name)
    assert str(info.value) == expected(name).replace("<file>", name)


@needs_resolv_conf
@pytest.mark.parametrize("name", GOOD)
def test_good_fixture_loads(name: str) -> None:
    config = load(str(EXAMPLES / name))
    assert config.blocks


def test_missing_file() -> None:
    with pytest.raises(CorefileError) as info:
        load("/nonexistent/Corefile")
    assert str(info.value) == (
        "loading Caddyfile via flag: open /nonexistent/Corefile: no such file or directory"
    )


@needs_resolv_conf
def test_kubeadm_default_in_detail() -> None:
    config = load(str(EXAMPLES / "kubeadm.Corefile"))
    (block,) = config.blocks
    assert [str(k) for k in block.keys] == ["dns://.:53"]
    assert block.names() == (
        "reload", "ready", "health", "prometheus", "errors", "loadbalance", "cache",
        "kubernetes", "loop", "forward",
    )  # fmt: skip
    k8s = block.get(KubernetesConfig)
    assert k8s is not None
    assert k8s.zones == ("cluster.local.", "in-addr.arpa.", "ip6.arpa.")
    assert k8s.primary_zone == "cluster.local."
    assert (k8s.pods, k8s.ttl, k8s.fallthrough) == ("insecure", 30, ("in-addr.arpa.", "ip6.arpa."))
    health = block.get(HealthConfig)
    assert health == HealthConfig(":8080", 5.0)
    assert block.get(PrometheusConfig) == PrometheusConfig(":9153")
    forward = block.get(ForwardConfig)
    assert forward is not None and forward.max_concurrent == 1000
    assert forward.to_args == ("/etc/resolv.conf",)
    cache = block.get(CacheConfig)
    assert cache is not None and cache.success_ttl == 30 and cache.denial_ttl == 30
    assert cache.disable_success == ("cluster.local.",) == cache.disable_denial


@needs_resolv_conf
def test_rke2_doubled_zone_and_spaces() -> None:
    (block,) = load(str(EXAMPLES / "rke2.Corefile")).blocks
    k8s = block.get(KubernetesConfig)
    assert k8s is not None and k8s.zones[:2] == ("cluster.local.", "cluster.local.")
    assert block.get(PrometheusConfig) == PrometheusConfig("0.0.0.0:9153")


@needs_resolv_conf
def test_aks_template_regex_keeps_backslashes() -> None:
    (block,) = load(str(EXAMPLES / "aks.Corefile")).blocks
    tmpl = block.get(TemplateConfig)
    assert tmpl is not None
    first, second = tmpl.templates
    assert first.match == (r"^(?:[^.]+\.){4,}internal\.cloudapp\.net\.$",)
    assert (first.rcode, first.fallthrough, first.zones) == (
        "NXDOMAIN",
        (".",),
        ("internal.cloudapp.net.",),
    )
    assert (second.rcode, second.fallthrough) == ("NXDOMAIN", ())


@needs_resolv_conf
def test_k3s_hosts_and_missing_imports_warn() -> None:
    config = load(str(EXAMPLES / "k3s.Corefile"))
    hosts = config.blocks[0].get(HostsConfig)
    assert hosts is not None
    assert (hosts.path, hosts.ttl, hosts.reload, hosts.fallthrough) == (
        "/etc/coredns/NodeHosts",
        60,
        15.0,
        (".",),
    )
    assert k3s_kubernetes_ttl(config.blocks[0]) == 5


def k3s_kubernetes_ttl(block: object) -> int:
    k8s = block.get(KubernetesConfig)  # type: ignore[attr-defined]
    assert isinstance(k8s, KubernetesConfig)
    return k8s.ttl


@needs_resolv_conf
def test_minikube_inline_hosts_and_log() -> None:
    (block,) = load(str(EXAMPLES / "minikube.Corefile")).blocks
    hosts = block.get(HostsConfig)
    assert hosts is not None and hosts.inline == ("192.168.49.1 host.minikube.internal",)
    assert hosts.path == "/etc/hosts"
    log = block.get(LogConfig)
    assert log is not None and log.rules[0].names == (".",)


@needs_resolv_conf
def test_nodelocaldns_blocks_share_port_with_bind() -> None:
    config = load(str(EXAMPLES / "nodelocaldns.Corefile"))
    assert [b.zones for b in config.blocks] == [
        ("cluster.local.",),
        ("in-addr.arpa.",),
        ("ip6.arpa.",),
        (".",),
    ]
    for block in config.blocks:
        assert block.listen_hosts == ("169.254.20.10", "10.96.0.10")
    cache = config.blocks[0].get(CacheConfig)
    assert cache is not None
    assert (cache.success_capacity, cache.success_ttl, cache.denial_ttl) == (9984, 30, 5)
    forward = config.blocks[0].get(ForwardConfig)
    assert forward is not None and forward.force_tcp and str(forward.to[0]) == "10.96.0.11:53"


def test_microk8s_log_class() -> None:
    if not os.path.exists("/etc/resolv.conf"):
        pytest.skip("needs /etc/resolv.conf")
    (block,) = load(str(EXAMPLES / "microk8s.Corefile")).blocks
    log = block.get(LogConfig)
    assert log is not None and log.rules[0].classes == frozenset({"error"})


def test_accepted_oddities() -> None:
    stray = load(str(EXAMPLES / "good-stray-close-brace.Corefile"))
    assert [b.zones for b in stray.blocks] == [(".",), ("}.",)]
    assert load(str(EXAMPLES / "good-missing-final-brace.Corefile")).blocks[0].has("health")
    assert load(str(EXAMPLES / "good-empty.Corefile")).builtin_default
    literal = load(str(EXAMPLES / "good-caddy2-env-literal.Corefile"))
    assert literal.blocks[0].zones == ("{env.zone}.",)
    cache = load(str(EXAMPLES / "good-cache-ttl-with-unit.Corefile")).blocks[0].get(CacheConfig)
    assert cache is not None and cache.zones == ("3600s.",) and cache.success_ttl == 3600
    log = load(str(EXAMPLES / "good-log-single-arg.Corefile")).blocks[0].get(LogConfig)
    assert log is not None and log.rules[0].names == ("{combined}.",)
    quoted = load(str(EXAMPLES / "good-brace-next-line-quoted.Corefile"))
    assert [b.zones for b in quoted.blocks] == [(".",), ("example.org.", "example.net.")]
    assert load(str(EXAMPLES / "good-bom-crlf.Corefile")).blocks[0].has("errors")
    rev = load(str(EXAMPLES / "good-reverse-cidr-key.Corefile")).blocks[0]
    assert len(rev.keys) == 129 and str(rev.keys[0]) == "dns://0.0.10.in-addr.arpa.:1053"
    assert str(rev.keys[-1]) == "dns://example.org.:53"
