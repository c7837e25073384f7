"""kubelet's service variables, against expectations written by hand from kubelet's
rules (pkg/kubelet/envvars, getServiceEnvVarMap), never produced by the code under test."""

from __future__ import annotations

import base64
import json

import prometheus_client
import pytest

from kdns.cluster import objects, shrink, store
from kdns.envinject import envvars, webhook
from tests.support.envinject import KUBERNETES, KUBERNETES_ENV, FakeServices, env_lines, svc

REDIS = svc("shop", "redis-master", "10.0.0.11", ("", 6379, "TCP"))
REDIS_ENV = """
REDIS_MASTER_SERVICE_HOST=10.0.0.11
REDIS_MASTER_SERVICE_PORT=6379
REDIS_MASTER_PORT=tcp://10.0.0.11:6379
REDIS_MASTER_PORT_6379_TCP=tcp://10.0.0.11:6379
REDIS_MASTER_PORT_6379_TCP_PROTO=tcp
REDIS_MASTER_PORT_6379_TCP_PORT=6379
REDIS_MASTER_PORT_6379_TCP_ADDR=10.0.0.11
"""

CASES = {
    "single unnamed port": (REDIS, REDIS_ENV),
    "multi port, named": (
        svc("shop", "web", "10.0.0.20", ("http", 80, "TCP"), ("https", 443, "TCP")),
        """
        WEB_SERVICE_HOST=10.0.0.20
        WEB_SERVICE_PORT=80
        WEB_SERVICE_PORT_HTTP=80
        WEB_SERVICE_PORT_HTTPS=443
        WEB_PORT=tcp://10.0.0.20:80
        WEB_PORT_80_TCP=tcp://10.0.0.20:80
        WEB_PORT_80_TCP_PROTO=tcp
        WEB_PORT_80_TCP_PORT=80
        WEB_PORT_80_TCP_ADDR=10.0.0.20
        WEB_PORT_443_TCP=tcp://10.0.0.20:443
        WEB_PORT_443_TCP_PROTO=tcp
        WEB_PORT_443_TCP_PORT=443
        WEB_PORT_443_TCP_ADDR=10.0.0.20
        """,
    ),
    "UDP, SCTP, dashes in service and port names": (
        svc(
            "shop",
            "dns-cache",
            "10.0.0.53",
            ("dns-udp", 53, "UDP"),
            ("dns-tcp", 53, "TCP"),
            ("diameter", 3868, "SCTP"),
        ),
        """
        DNS_CACHE_SERVICE_HOST=10.0.0.53
        DNS_CACHE_SERVICE_PORT=53
        DNS_CACHE_SERVICE_PORT_DNS_UDP=53
        DNS_CACHE_SERVICE_PORT_DNS_TCP=53
        DNS_CACHE_SERVICE_PORT_DIAMETER=3868
        DNS_CACHE_PORT=udp://10.0.0.53:53
        DNS_CACHE_PORT_53_UDP=udp://10.0.0.53:53
        DNS_CACHE_PORT_53_UDP_PROTO=udp
        DNS_CACHE_PORT_53_UDP_PORT=53
        DNS_CACHE_PORT_53_UDP_ADDR=10.0.0.53
        DNS_CACHE_PORT_53_TCP=tcp://10.0.0.53:53
        DNS_CACHE_PORT_53_TCP_PROTO=tcp
        DNS_CACHE_PORT_53_TCP_PORT=53
        DNS_CACHE_PORT_53_TCP_ADDR=10.0.0.53
        DNS_CACHE_PORT_3868_SCTP=sctp://10.0.0.53:3868
        DNS_CACHE_PORT_3868_SCTP_PROTO=sctp
        DNS_CACHE_PORT_3868_SCTP_PORT=3868
        DNS_CACHE_PORT_3868_SCTP_ADDR=10.0.0.53
        """,
    ),
    "protocol unset reads as TCP": (
        svc("shop", "legacy", "10.0.0.12", ("", 8080, "")),
        """
        LEGACY_SERVICE_HOST=10.0.0.12
        LEGACY_SERVICE_PORT=8080
        LEGACY_PORT=tcp://10.0.0.12:8080
        LEGACY_PORT_8080_TCP=tcp://10.0.0.12:8080
        LEGACY_PORT_8080_TCP_PROTO=tcp
        LEGACY_PORT_8080_TCP_PORT=8080
        LEGACY_PORT_8080_TCP_ADDR=10.0.0.12
        """,
    ),
    "IPv6: brackets in URLs only": (
        svc("shop", "v6", "fd00::10", ("", 80, "TCP")),
        """
        V6_SERVICE_HOST=fd00::10
        V6_SERVICE_PORT=80
        V6_PORT=tcp://[fd00::10]:80
        V6_PORT_80_TCP=tcp://[fd00::10]:80
        V6_PORT_80_TCP_PROTO=tcp
        V6_PORT_80_TCP_PORT=80
        V6_PORT_80_TCP_ADDR=fd00::10
        """,
    ),
    "dual-stack, IPv4 primary: only spec.clusterIP": (
        svc("shop", "ds", ("10.0.0.30", "fd00::30"), ("", 80, "TCP")),
        """
        DS_SERVICE_HOST=10.0.0.30
        DS_SERVICE_PORT=80
        DS_PORT=tcp://10.0.0.30:80
        DS_PORT_80_TCP=tcp://10.0.0.30:80
        DS_PORT_80_TCP_PROTO=tcp
        DS_PORT_80_TCP_PORT=80
        DS_PORT_80_TCP_ADDR=10.0.0.30
        """,
    ),
    "dual-stack, IPv6 primary": (
        svc("shop", "ds6", ("fd00::31", "10.0.0.31"), ("", 80, "UDP")),
        """
        DS6_SERVICE_HOST=fd00::31
        DS6_SERVICE_PORT=80
        DS6_PORT=udp://[fd00::31]:80
        DS6_PORT_80_UDP=udp://[fd00::31]:80
        DS6_PORT_80_UDP_PROTO=udp
        DS6_PORT_80_UDP_PORT=80
        DS6_PORT_80_UDP_ADDR=fd00::31
        """,
    ),
    "headless gives nothing": (svc("shop", "db", "None", ("", 5432, "TCP")), ""),
    "ExternalName gives nothing": (
        svc("shop", "ext", "", ("", 443, "TCP"), type="ExternalName", external_name="x.io"),
        "",
    ),
    "cluster IP not yet allocated gives nothing": (svc("shop", "new", "", ("", 1, "TCP")), ""),
    "other namespaces give nothing": (svc("other", "redis", "10.0.1.1", ("", 6379, "TCP")), ""),
}


@pytest.mark.parametrize("service,expected", CASES.values(), ids=list(CASES))
def test_service_variables(service: objects.Service, expected: str) -> None:
    src = FakeServices(KUBERNETES, service)
    got = [(v.name, v.value) for v in envvars.for_pod(src, "shop", True)]
    # Services come in name order, so the kubernetes block may sit before or after the
    # service's: check each block in kubelet's order within a service.
    assert [p for p in got if p[0].startswith("KUBERNETES_")] == env_lines(KUBERNETES_ENV)
    assert [p for p in got if not p[0].startswith("KUBERNETES_")] == env_lines(expected)


def test_kubernetes_always_even_with_links_off() -> None:
    src = FakeServices(KUBERNETES, REDIS)
    got = [(v.name, v.value) for v in envvars.for_pod(src, "shop", False)]
    assert got == env_lines(KUBERNETES_ENV)


def test_links_on_adds_the_namespace_after_kubernetes_in_name_order() -> None:
    api = svc("shop", "api", "10.0.0.2", ("", 80, "TCP"))
    src = FakeServices(KUBERNETES, REDIS, api)
    got = [v.name for v in envvars.for_pod(src, "shop", True)]
    assert got[0] == "API_SERVICE_HOST"
    assert got[7] == "KUBERNETES_SERVICE_HOST"
    assert got[15] == "REDIS_MASTER_SERVICE_HOST"
    assert len(got) == 7 + 8 + 7


def test_own_kubernetes_service_replaces_the_master_one_when_links_are_on() -> None:
    own = svc("shop", "kubernetes", "10.0.0.99", ("", 8080, "TCP"))
    src = FakeServices(KUBERNETES, own)
    on = dict((v.name, v.value) for v in envvars.for_pod(src, "shop", True))
    assert on == dict(
        env_lines(
            """
            KUBERNETES_SERVICE_HOST=10.0.0.99
            KUBERNETES_SERVICE_PORT=8080
            KUBERNETES_PORT=tcp://10.0.0.99:8080
            KUBERNETES_PORT_8080_TCP=tcp://10.0.0.99:8080
            KUBERNETES_PORT_8080_TCP_PROTO=tcp
            KUBERNETES_PORT_8080_TCP_PORT=8080
            KUBERNETES_PORT_8080_TCP_ADDR=10.0.0.99
            """
        )
    )
    off = [(v.name, v.value) for v in envvars.for_pod(src, "shop", False)]
    assert off == env_lines(KUBERNETES_ENV)


def test_pod_in_default_namespace_sees_kubernetes_once() -> None:
    web = svc("default", "web", "10.0.0.5", ("", 80, "TCP"))
    src = FakeServices(KUBERNETES, web)
    names = [v.name for v in envvars.for_pod(src, "default", True)]
    assert names.count("KUBERNETES_SERVICE_HOST") == 1
    assert "WEB_SERVICE_HOST" in names
    assert [v.name for v in envvars.for_pod(src, "default", False)] == [
        n for n, _ in env_lines(KUBERNETES_ENV)
    ]


def test_no_kubernetes_service_no_kubernetes_variables() -> None:
    assert envvars.for_pod(FakeServices(REDIS), "shop", False) == []


def test_only_narrows_to_named_services_whatever_the_links() -> None:
    web = svc("shop", "web", "10.0.0.20", ("", 80, "TCP"))
    src = FakeServices(KUBERNETES, REDIS, web)
    for links in (True, False):
        got = [(v.name, v.value) for v in envvars.for_pod(src, "shop", links, {"redis-master"})]
        assert got == env_lines(KUBERNETES_ENV) + env_lines(REDIS_ENV)


def test_missing_lists_names_that_give_nothing() -> None:
    db = svc("shop", "db", "None", ("", 5432, "TCP"))
    src = FakeServices(KUBERNETES, REDIS, db)
    assert envvars.missing(src, "shop", ["db", "kubernetes", "nope", "redis-master"]) == [
        "db",
        "nope",
    ]


def test_same_variable_from_two_services_keeps_one_value() -> None:
    # "foo" writes FOO_SERVICE_PORT=80; "foo-service" writes FOO_SERVICE_PORT as its
    # docker-link URL. kubelet keeps one at random; kdns keeps the later service's.
    foo = svc("shop", "foo", "10.0.0.7", ("", 80, "TCP"))
    foo_service = svc("shop", "foo-service", "10.0.0.8", ("", 81, "TCP"))
    got = envvars.for_pod(FakeServices(foo, foo_service), "shop", True)
    names = [v.name for v in got]
    assert len(names) == len(set(names)) == 13
    assert dict((v.name, v.value) for v in got)["FOO_SERVICE_PORT"] == "tcp://10.0.0.8:81"


@pytest.mark.parametrize("written", ["FD00:96::A", "fd00:96:0:0::a", "FD00:0096::000A"])
def test_cluster_ip_is_copied_as_written_while_dns_reads_it_canonical(written: str) -> None:
    """kubelet copies spec.clusterIP verbatim (envvars.go); shrinking must not lose it."""
    raw = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": "shop", "name": "v6"},
        "spec": {"clusterIP": written, "clusterIPs": [written], "ports": [{"port": 80}]},
    }
    service = shrink.service(raw)
    assert service.cluster_ips == ("fd00:96::a",)  # what DNS answers and PTR index read
    expected = f"""
    V6_SERVICE_HOST={written}
    V6_SERVICE_PORT=80
    V6_PORT=tcp://[{written}]:80
    V6_PORT_80_TCP=tcp://[{written}]:80
    V6_PORT_80_TCP_PROTO=tcp
    V6_PORT_80_TCP_PORT=80
    V6_PORT_80_TCP_ADDR={written}
    """
    assert [(v.name, v.value) for v in envvars.from_service(service)] == env_lines(expected)


def test_webhook_patch_keeps_the_written_address_and_dns_the_canonical_one() -> None:
    """Through the real store the webhook reads: shrink -> store -> Injector -> JSONPatch."""
    cache = store.Store()
    raw = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": "shop", "name": "v6"},
        "spec": {"clusterIP": "FD00:96::A", "ports": [{"port": 80}]},
    }
    cache.put_service(shrink.service(raw))
    cache.mark_synced()
    pod = {"metadata": {"namespace": "shop"}, "spec": {"containers": [{"name": "a"}]}}
    request = {
        "uid": "u1",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "shop",
        "operation": "CREATE",
        "object": pod,
    }
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    injector = webhook.Injector(cache, prometheus_client.CollectorRegistry())
    reply = json.loads(injector.review(json.dumps(body).encode()).body)
    patch = json.loads(base64.b64decode(reply["response"]["patch"]))
    values = {e["name"]: e["value"] for op in patch for e in _env_entries(op["value"])}
    assert values["V6_SERVICE_HOST"] == "FD00:96::A"
    assert values["V6_PORT"] == "tcp://[FD00:96::A]:80"
    stored = cache.get_service("shop", "v6")
    assert stored is not None and stored.cluster_ips == ("fd00:96::a",)  # DNS: canonical


def _env_entries(value: object) -> list[dict[str, str]]:
    """A JSONPatch value: one env list, or one env entry appended with ``/-``."""
    if isinstance(value, list):
        return [e for e in value if isinstance(e, dict) and "name" in e]
    return [value] if isinstance(value, dict) and "name" in value else []
