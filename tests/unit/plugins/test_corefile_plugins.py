"""Directive option parsing: defaults, options and CoreDNS's error texts."""

# Error tables keep one (input, CoreDNS message) case per line, however long the message.
# ruff: noqa: E501

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import pytest

from kdns.corefile import Block, CorefileError, directives
from kdns.corefile.dispenser import Dispenser
from kdns.corefile.lexer import tokenize
from kdns.corefile.setup import RawDirective
from kdns.plugins.bind import setup as bind_plugin
from kdns.plugins.bind.setup import BindConfig
from kdns.plugins.cache.setup import CacheConfig
from kdns.plugins.errors.setup import Consolidate, ErrorsConfig
from kdns.plugins.forward.setup import ForwardConfig, Upstream
from kdns.plugins.health.setup import HealthConfig
from kdns.plugins.hosts.setup import HostsConfig
from kdns.plugins.kubernetes.setup import KubernetesConfig
from kdns.plugins.loadbalance.setup import LoadbalanceConfig
from kdns.plugins.loader import load_text
from kdns.plugins.log.setup import COMBINED_FORMAT, COMMON_FORMAT, LogConfig
from kdns.plugins.loop.setup import LoopConfig
from kdns.plugins.manifests.setup import ManifestsConfig
from kdns.plugins.prometheus.setup import PrometheusConfig
from kdns.plugins.ready.setup import ReadyConfig
from kdns.plugins.reload.setup import ReloadConfig
from kdns.plugins.template.setup import TemplateConfig

T = TypeVar("T")
F = "Corefile"


def block(body: str, keys: str = ".") -> Block:
    return load_text(f"{keys} {{\n{body}\n}}\n", F).blocks[0]


def one(body: str, kind: type[T], keys: str = ".") -> T:
    found = block(body, keys).get(kind)
    assert found is not None
    return found


def fails(body: str, keys: str = ".") -> str:
    with pytest.raises(CorefileError) as info:
        load_text(f"{keys} {{\n{body}\n}}\n", F)
    return str(info.value)


# -- kubernetes ---------------------------------------------------------------------------


def test_kubernetes_defaults_take_block_keys() -> None:
    k = one("kubernetes", KubernetesConfig, keys="cluster.local:53 10.0.0.0/24")
    assert k.zones == ("cluster.local.", "0.0.10.in-addr.arpa.")
    assert (k.pods, k.ttl, k.fallthrough, k.startup_timeout) == ("disabled", 5, (), 5.0)
    assert k.endpoint is None and k.namespaces == ()


def test_kubernetes_all_options(tmp_path: Path) -> None:
    main = str(tmp_path / "Corefile")
    k = (
        load_text(
            ". {\n kubernetes cluster.local {\n"
            "  endpoint https://10.0.0.1:6443 https://10.0.0.2:6443\n"
            "  tls cert.pem key.pem ca.pem\n"
            "  kubeconfig /kube/config ctx\n"
            "  namespaces default kube-system\n"
            "  labels app=a, tier in (web)\n"
            "  endpoint_pod_names\n  noendpoints\n  ignore empty_service\n"
            "  ttl 0\n  pods verified\n  startup_timeout 1m30s\n  fallthrough\n"
            "  manifests ./manifests\n"
            " }\n}\n",
            main,
        )
        .blocks[0]
        .get(KubernetesConfig)
    )
    assert k is not None
    assert k.endpoint == "https://10.0.0.1:6443"
    assert k.tls == ("cert.pem", "key.pem", "ca.pem")
    assert (k.kubeconfig, k.context) == ("/kube/config", "ctx")
    assert k.namespaces == ("default", "kube-system")
    assert k.labels == "app=a, tier in (web)"
    assert k.endpoint_pod_names and k.noendpoints and k.ignore_empty_service
    assert (k.ttl, k.pods, k.startup_timeout, k.fallthrough) == (0, "verified", 90.0, (".",))
    assert k.manifests == str(tmp_path / "manifests")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("kubernetes . {\n upstream\n}", f"plugin/kubernetes: {F}:3 - Error during parsing: unknown property 'upstream'"),
        ("kubernetes . {\n resyncperiod 10s\n}", f"plugin/kubernetes: {F}:3 - Error during parsing: unknown property 'resyncperiod'"),
        ("kubernetes . {\n pods secure\n}", "plugin/kubernetes: wrong value for pods: secure,  must be one of: disabled, verified, insecure"),
        ("kubernetes . {\n pods\n}", f"plugin/kubernetes: {F}:3 - Error during parsing: Wrong argument count or unexpected line ending after 'pods'"),
        ("kubernetes . {\n ttl 3601\n}", f"plugin/kubernetes: {F}:3 - Error during parsing: ttl must be in range [0, 3600]: 3601"),
        ("kubernetes . {\n ttl x\n}", 'plugin/kubernetes: strconv.Atoi: parsing "x": invalid syntax'),
        ("kubernetes . {\n ignore x\n}", "plugin/kubernetes: unable to parse ignore value: 'x'"),
        ("kubernetes 10.0.0.0/8 fd00::/8", "plugin/kubernetes: non-reverse zone name must be used"),
        ("kubernetes . {\n namespaces a\n namespace_labels x=y\n}", f"plugin/kubernetes: {F}:5 - Error during parsing: namespaces and namespace_labels cannot both be set"),
        ("kubernetes\nkubernetes", "plugin/kubernetes: this plugin can only be used once per Server Block"),
        ("kubernetes . {\n kubeconfig a b c\n}", f"plugin/kubernetes: {F}:3 - Error during parsing: Wrong argument count or unexpected line ending after 'c'"),
    ],
)  # fmt: skip
def test_kubernetes_errors(body: str, message: str) -> None:
    assert fails(body) == message


def test_kubernetes_multiple_endpoints_warn() -> None:
    config = load_text(". {\n kubernetes {\n  endpoint http://a http://b\n }\n}\n", F)
    assert any("only the first specified endpoint 'http://a'" in w for w in config.warnings)


def test_kubernetes_bare_ignore_is_accepted() -> None:
    assert not one("kubernetes . {\n ignore\n}", KubernetesConfig).ignore_empty_service


# -- forward ------------------------------------------------------------------------------


def test_forward_addresses_and_options() -> None:
    f = one(
        "forward example.org 1.1.1.1 8.8.8.8:5353 [::1]:53 tls://9.9.9.9%dns.quad9.net "
        "dns://2001:db8::1 {\n"
        " except a.example.org B.example.org\n force_tcp\n prefer_udp\n max_fails 0\n"
        " expire 30s\n health_check 1s no_rec domain Probe.Example\n policy sequential\n"
        " max_concurrent 1000\n tls_servername dns.example\n}",
        ForwardConfig,
    )
    assert f.from_zone == "example.org."
    assert [str(u) for u in f.to] == [
        "1.1.1.1:53", "8.8.8.8:5353", "[::1]:53", "tls://9.9.9.9:853", "[2001:db8::1]:53",
    ]  # fmt: skip
    assert f.to[3] == Upstream("tls", "9.9.9.9", 853, "dns.quad9.net")
    assert f.except_zones == ("a.example.org.", "b.example.org.")
    assert f.force_tcp and f.prefer_udp and f.max_fails == 0 and f.expire == 30.0
    assert (f.health_check, f.health_check_recursion, f.health_check_domain) == (
        1.0,
        False,
        "probe.example.",
    )
    assert (f.policy, f.max_concurrent, f.tls_servername) == ("sequential", 1000, "dns.example")


def test_forward_defaults() -> None:
    f = one("forward . 10.0.0.1", ForwardConfig)
    assert (f.max_fails, f.expire, f.health_check, f.policy, f.max_concurrent) == (
        2,
        10.0,
        0.5,
        "random",
        0,
    )


def test_forward_stanzas_are_chained_in_file_order() -> None:
    b = block("forward . 10.0.0.1\nwhoami\nforward example.org 10.0.0.2")
    assert [f.from_zone for f in b.all(ForwardConfig)] == [".", "example.org."]


def test_forward_reads_resolv_conf_and_warns_on_loopback(tmp_path: Path) -> None:
    rc = tmp_path / "resolv.conf"
    rc.write_text("# systemd\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch x.local\n")
    config = load_text(f". {{\n forward . {rc}\n}}\n", F)
    f = config.blocks[0].get(ForwardConfig)
    assert f is not None and [str(u) for u in f.to] == ["127.0.0.53:53", "10.0.0.2:53"]
    assert f.to[0].resolv_conf == str(rc)
    (warning,) = [w for w in config.warnings if "loopback" in w]
    assert warning.startswith(f"plugin/forward: {rc} lists loopback nameserver(s) 127.0.0.53")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("forward .", f"plugin/forward: {F}:2 - Error during parsing: Wrong argument count or unexpected line ending after '.'"),
        ("forward", f"plugin/forward: {F}:2 - Error during parsing: Wrong argument count or unexpected line ending after 'forward'"),
        ("forward . 1.1.1.1 {\n policy fastest\n}", f"plugin/forward: {F}:3 - Error during parsing: unknown policy 'fastest'"),
        ("forward . 1.1.1.1 {\n bogus\n}", f"plugin/forward: {F}:3 - Error during parsing: unknown property 'bogus'"),
        ("forward . 1.1.1.1 {\n max_fails -1\n}", 'plugin/forward: strconv.ParseUint: parsing "-1": invalid syntax'),
        ("forward . 1.1.1.1 {\n expire 1d\n}", 'plugin/forward: time: unknown unit "d" in duration "1d"'),
        ("forward . 1.1.1.1 {\n expire -1s\n}", "plugin/forward: expire can't be negative: -1s"),
        ("forward . 1.1.1.1 {\n max_concurrent -1\n}", "plugin/forward: max_concurrent can't be negative: -1"),
        ("forward . 1.1.1.1 {\n health_check 1s bogus\n}", "plugin/forward: health_check: unknown option bogus"),
        ("forward . /nonexistent/resolv.conf", 'plugin/forward: not an IP address or file: "/nonexistent/resolv.conf"'),
        ("forward . grpc://1.1.1.1", "plugin/forward: 'grpc' is not supported as a destination protocol in forward: grpc://1.1.1.1"),
        ("forward . " + " ".join(f"10.0.0.{i}" for i in range(16)), "plugin/forward: more than 15 TOs configured: 16"),
    ],
)  # fmt: skip
def test_forward_errors(body: str, message: str) -> None:
    assert fails(body) == message


# -- cache --------------------------------------------------------------------------------


def test_cache_defaults_and_forms() -> None:
    c = one("cache", CacheConfig, keys="example.org")
    assert c.zones == ("example.org.",)
    assert (c.success_capacity, c.success_ttl, c.success_min_ttl) == (10000, 3600, 5)
    assert (c.denial_capacity, c.denial_ttl, c.denial_min_ttl) == (10000, 1800, 5)
    c = one("cache 30 a.org b.org", CacheConfig)
    assert c.zones == ("a.org.", "b.org.") and c.success_ttl == c.denial_ttl == 30
    assert one("cache 3600s", CacheConfig).zones == ("3600s.",)


def test_cache_block_options() -> None:
    c = one(
        "cache {\n success 9984 30 2\n denial 5000 5\n prefetch 10 1m 20%\n"
        " serve_stale 2h verify\n servfail 0s\n disable success cluster.local\n"
        " disable denial\n keepttl\n}",
        CacheConfig,
    )
    assert (c.success_capacity, c.success_ttl, c.success_min_ttl) == (9984, 30, 2)
    assert (c.denial_capacity, c.denial_ttl) == (5000, 5)
    assert (c.prefetch, c.prefetch_duration, c.prefetch_percentage) == (10, 60.0, 20)
    assert (c.serve_stale, c.serve_stale_verify, c.servfail_ttl) == (7200.0, True, 0.0)
    assert c.disable_success == ("cluster.local.",) and c.disable_denial == (".",)
    assert c.keepttl


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("cache 0", "plugin/cache: cache TTL can not be zero or negative: 0"),
        ("cache -5", "plugin/cache: cache TTL can not be zero or negative: -5"),
        ("cache {\n success 10 0\n}", "plugin/cache: cache TTL can not be zero or negative: 0"),
        ("cache {\n denial 10 5 -1\n}", "plugin/cache: cache min TTL can not be negative: -1"),
        ("cache {\n success x\n}", 'plugin/cache: strconv.Atoi: parsing "x": invalid syntax'),
        ("cache {\n prefetch 1 1m 5%\n}", "plugin/cache: percentage should fall in range [10, 90]: 5"),
        ("cache {\n prefetch 1 1m 50\n}", "plugin/cache: last character of percentage should be `%`, but is: '0'"),
        ("cache {\n bogus\n}", f"plugin/cache: {F}:3 - Error during parsing: Wrong argument count or unexpected line ending after 'bogus'"),
        ("cache {\n disable both\n}", 'plugin/cache: cache type for disable must be "success" or "denial"'),
        ("cache {\n servfail 6m\n}", "plugin/cache: caching SERVFAIL responses over 5 minutes is not permitted"),
        ("cache\ncache 30", "plugin/cache: this plugin can only be used once per Server Block"),
    ],
)  # fmt: skip
def test_cache_errors(body: str, message: str) -> None:
    assert fails(body) == message


# -- health, ready, prometheus, reload ---------------------------------------------------------


def test_listener_defaults() -> None:
    b = block("health\nready\nprometheus")
    assert b.get(HealthConfig) == HealthConfig(":8080", 0.0)
    assert b.get(ReadyConfig) == ReadyConfig(":8181")
    assert b.get(PrometheusConfig) == PrometheusConfig("localhost:9153")


def test_listener_addresses() -> None:
    b = block("health 127.0.0.1:8081 {\n lameduck 5s\n}\nready :8182\nprometheus [::]:9253")
    assert b.get(HealthConfig) == HealthConfig("127.0.0.1:8081", 5.0)
    assert b.get(ReadyConfig) == ReadyConfig(":8182")
    assert b.get(PrometheusConfig) == PrometheusConfig("[::]:9253")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("health localhost", "plugin/health: address localhost: missing port in address"),
        ("health :1 :2", f"plugin/health: {F}:2 - Error during parsing: Wrong argument count or unexpected line ending after ':2'"),
        ("health {\n lameduck x\n}", "plugin/health: unable to parse lameduck duration value: 'x' : time: invalid duration \"x\""),
        ("health {\n bogus\n}", f"plugin/health: {F}:3 - Error during parsing: Wrong argument count or unexpected line ending after 'bogus'"),
        ("ready a:b:c", "plugin/ready: address a:b:c: too many colons in address"),
        ("ready\nready", "plugin/ready: this plugin can only be used once per Server Block"),
        ("prometheus :9153\nprometheus :9154", "plugin/prometheus: this plugin can only be used once per Server Block"),
        ("reload 1s", "plugin/reload: interval value must be greater or equal to 2s"),
        ("reload 10s 500ms", "plugin/reload: jitter value must be greater or equal to 1s"),
        ("reload 1 2 3", f"plugin/reload: {F}:2 - Error during parsing: Wrong argument count or unexpected line ending after '3'"),
        ("reload x", 'plugin/reload: time: invalid duration "x"'),
    ],
)  # fmt: skip
def test_listener_and_reload_errors(body: str, message: str) -> None:
    assert fails(body) == message


def test_reload() -> None:
    assert one("reload", ReloadConfig) == ReloadConfig(30.0, 15.0)
    assert one("reload 10s", ReloadConfig) == ReloadConfig(10.0, 5.0)  # jitter <= interval/2
    assert one("reload 1m 0", ReloadConfig) == ReloadConfig(60.0, 0.0)
    assert one("reload 2s\nreload 1s", ReloadConfig).interval == 2.0  # only the first line


# -- log, errors ----------------------------------------------------------------------------


def test_log_forms() -> None:
    rules = one(
        "log\nlog example.org\nlog a.org b.org {combined}\nlog c.org {\n class denial error\n}",
        LogConfig,
    ).rules
    assert [r.names for r in rules] == [
        (".",),
        ("example.org.",),
        ("a.org.", "b.org."),
        ("c.org.",),
    ]
    assert [r.format for r in rules][1:3] == [COMMON_FORMAT, COMBINED_FORMAT]
    assert rules[0].classes == frozenset({"all"})
    assert rules[3].classes == frozenset({"denial", "error"})


def test_log_errors() -> None:
    assert fails("log {\n class\n}") == (
        f"plugin/log: {F}:3 - Error during parsing: "
        "Wrong argument count or unexpected line ending after 'class'"
    )
    assert fails("log {\n class nope\n}") == "plugin/log: invalid Class: nope"


def test_errors_plugin() -> None:
    e = one(
        'errors stdout {\n stacktrace\n consolidate 5m ".* i/o timeout$" warning show_first\n}',
        ErrorsConfig,
    )
    assert e.stacktrace
    assert e.consolidate == (Consolidate(300.0, ".* i/o timeout$", "warning", True),)
    assert fails("errors {\n bogus\n}") == (
        f"plugin/errors: {F}:3 - Syntax error: Unexpected token 'bogus', "
        "expecting 'Unknown field bogus'"
    )
    assert fails("errors file.log") == (
        f"plugin/errors: {F}:2 - Error during parsing: invalid log file: file.log"
    )


# -- hosts, template --------------------------------------------------------------------------


def test_hosts_inline_before_fallthrough() -> None:
    h = one(
        "hosts /etc/hosts example.org {\n 10.0.0.1 a.example.org\n ttl 60\n reload 0s\n"
        " no_reverse\n fallthrough\n}",
        HostsConfig,
    )
    assert (h.path, h.zones, h.inline) == (
        "/etc/hosts",
        ("example.org.",),
        ("10.0.0.1 a.example.org",),
    )
    assert (h.ttl, h.reload, h.no_reverse, h.fallthrough) == (60, 0.0, True, (".",))
    assert fails("hosts {\n fallthrough\n 10.0.0.1 a\n}") == (
        f"plugin/hosts: {F}:4 - Error during parsing: unknown property '10.0.0.1'"
    )
    assert fails("hosts {\n ttl 0\n}") == (
        f"plugin/hosts: {F}:3 - Error during parsing: ttl provided is invalid"
    )


def test_hosts_missing_file_is_a_warning() -> None:
    config = load_text(". {\n hosts /nonexistent/NodeHosts\n}\n", F)
    assert "plugin/hosts: File does not exist: /nonexistent/NodeHosts" in config.warnings


def test_template() -> None:
    t = one(
        'template IN A example.org {\n match "^(?P<x>.*)\\.example\\.org\\.$"\n'
        ' answer "{{ .Name }} 60 IN A 10.0.0.1"\n additional "x. 60 IN A 1.2.3.4"\n'
        " fallthrough\n}\ntemplate ANY AAAA {\n rcode NXDOMAIN\n}",
        TemplateConfig,
    ).templates
    assert t[0].zones == ("example.org.",) and t[0].answer == ("{{ .Name }} 60 IN A 10.0.0.1",)
    assert t[1].match == (".*",) and t[1].rcode == "NXDOMAIN" and t[1].zones == (".",)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("template XX A", f"plugin/template: {F}:2 - Error during parsing: invalid query class XX"),
        ("template IN NOPE", f"plugin/template: {F}:2 - Error during parsing: invalid RR class NOPE"),
        ("template IN A {\n rcode NOPE\n}", f"plugin/template: {F}:3 - Error during parsing: unknown rcode NOPE"),
        ("template IN A {\n match \"(\"\n}", f"plugin/template: {F}:3 - Error during parsing: could not parse regex: (, missing ), unterminated subpattern at position 0"),
        ("template IN A", f"plugin/template: {F}:2 - Error during parsing: no answer section for template found"),
    ],
)  # fmt: skip
def test_template_errors(body: str, message: str) -> None:
    assert fails(body) == message


# -- bind, loop, loadbalance, whoami, manifests ------------------------------------------------


def test_bind_merges_lines_and_excepts() -> None:
    tokens = tokenize("bind 10.0.0.1 eth9 {\n except 10.0.0.2\n}\nbind 10.0.0.1 ::1\n")
    lookup = {"eth9": ["10.0.0.2", "10.0.0.3", "fe80::1%eth9"]}.get
    b = bind_plugin.parse_with(Dispenser(F, tokens), lookup)
    assert b.hosts == ("10.0.0.1", "10.0.0.3", "fe80::1%eth9", "::1")
    assert b.addresses == ("10.0.0.1", "eth9", "10.0.0.1", "::1")


def test_bind_loopback_interface() -> None:
    b = one("bind lo", BindConfig)
    assert "127.0.0.1" in b.hosts


def test_bind_errors() -> None:
    assert fails("bind nope0") == 'plugin/bind: not a valid IP address or interface name: "nope0"'
    assert fails("bind") == "plugin/bind: at least one address or interface name is expected"
    assert fails("bind 127.0.0.1 {\n only x\n}") == 'plugin/bind: invalid option "only"'


def test_loop_and_whoami() -> None:
    assert one("loop", LoopConfig, keys="Example.org:1053 b.org") == LoopConfig("example.org.")
    assert fails("loop x") == (
        f"plugin/loop: {F}:2 - Error during parsing: "
        "Wrong argument count or unexpected line ending after 'x'"
    )
    assert fails("loop\nloop") == "plugin/loop: this plugin can only be used once per Server Block"
    assert fails("whoami x").startswith("plugin/whoami: Corefile:2")


def test_loadbalance() -> None:
    assert one("loadbalance", LoadbalanceConfig) == LoadbalanceConfig()
    assert one("loadbalance round_robin", LoadbalanceConfig) == LoadbalanceConfig()
    w = one("loadbalance weighted /w.txt {\n reload 10s\n}", LoadbalanceConfig)
    assert (w.policy, w.weight_file, w.reload) == ("weighted", "/w.txt", 10.0)
    assert fails("loadbalance fastest") == "plugin/loadbalance: unknown policy: fastest"
    assert fails("loadbalance weighted") == (
        f"plugin/loadbalance: {F}:2 - Error during parsing: missing weight file argument"
    )


def test_manifests_directive_is_relative_to_the_corefile(tmp_path: Path) -> None:
    main = str(tmp_path / "Corefile")
    config = load_text("cluster.local {\n manifests k8s\n kubernetes\n}\n", main)
    assert config.blocks[0].get(ManifestsConfig) == ManifestsConfig(str(tmp_path / "k8s"))
    assert config.blocks[0].names() == ("kubernetes", "manifests")


def test_envinject_tokens_are_kept_for_their_parser() -> None:
    raw = one("envinject :8443 {\n tls cert.pem key.pem\n path /inject\n}", RawDirective)
    assert raw.stanzas == (((":8443",), (("tls", "cert.pem", "key.pem"), ("path", "/inject"))),)


# -- registry -----------------------------------------------------------------------------


def test_order_has_every_coredns_plugin_and_kdns_own() -> None:
    assert len(directives.ORDER) == len(directives.KNOWN) == 60 + 4
    assert directives.ORDER[:3] == ("root", "metadata", "geoip")
    assert directives.ORDER.index("kubernetes") + 1 == directives.ORDER.index("manifests")
    assert directives.IMPLEMENTED <= directives.KNOWN


def test_known_but_unsupported_directive() -> None:
    message = fails("k8s_external example.org")
    assert message.startswith(
        "plugin/k8s_external: directive 'k8s_external' is not supported by kdns"
    )
    assert "kubernetes" in message and "forward" in message


def test_setup_runs_in_plugin_cfg_order_not_file_order() -> None:
    # forward's error comes first in the file, but kubernetes sets up first.
    message = fails("forward . 1.1.1.1 {\n bogus\n}\nkubernetes . {\n pods x\n}")
    assert message.startswith("plugin/kubernetes: wrong value for pods: x")
    # ... and across blocks: every block's cache before any block's forward
    with pytest.raises(CorefileError, match=r"^plugin/cache"):
        load_text("a.org {\n forward . x\n}\nb.org {\n cache 0\n}\n", F)
