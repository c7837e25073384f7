"""Memory at 10,000 Services (issue 15): what many objects hold is kept once (label
strings and pairs, port tuples), and the store's address indexes are keyed by numbers.
Sharing must change no value: the objects compare equal to ones built from copies, and
every address finds the same services."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kdns.cluster import objects, shrink
from kdns.cluster.store import Store


def _service(name: str, ip: str, team: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": team},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip,
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "selector": {"app.kubernetes.io/name": name},
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
        },
    }


def _slice(name: str, ips: list[str]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{name}-x7k2p",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv6" if ":" in ips[0] else "IPv4",
        "endpoints": [{"addresses": [ip]} for ip in ips],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def test_services_share_what_they_hold_alike() -> None:
    one = shrink.service(_service("web", "10.96.0.1", "team-1"))
    two = shrink.service(copy.deepcopy(_service("api", "10.96.0.2", "team-1")))
    assert one.ports is two.ports
    assert one.ip_families is two.ip_families
    assert one.type is two.type and one.ip_family_policy is two.ip_family_policy
    team = ("app.kubernetes.io/part-of", "team-1")
    assert next(p for p in one.labels if p == team) is next(p for p in two.labels if p == team)
    # the selector's pair is the labels' pair, and its value the service's name
    assert one.selector is not None
    assert one.selector[0] in one.labels
    assert one.selector[0][1] is one.name
    slice_ = shrink.endpoint_slice(_slice("web", ["10.0.0.1"]))
    assert slice_.service is one.name
    assert slice_.ports is shrink.endpoint_slice(_slice("api", ["10.0.0.2"])).ports


def test_shared_values_equal_what_was_read() -> None:
    raw = _service("web", "10.96.0.1", "team-1")
    svc = shrink.service(raw)
    assert svc.labels == tuple(sorted(raw["metadata"]["labels"].items()))
    assert svc.selector == (("app.kubernetes.io/name", "web"),)
    assert svc.ports == (objects.ServicePort("http", 80, "TCP", 8080),)
    assert svc.ip_families == ("IPv4",) and svc.ip_family_policy == "SingleStack"


def test_the_shared_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shrink, "SHARED_MAX", 8)
    for i in range(50):
        value = ("key", f"value-{i}")
        assert shrink.share(value) == value
        assert len(shrink._SHARED) <= 8
    shrink._SHARED.clear()


@pytest.mark.parametrize(
    "ips",
    [
        ["10.0.0.1", "10.0.0.2", "192.168.1.255"],
        ["fd00::1", "::10.0.0.1", "2001:db8::ff"],
        ["fe80::1%eth0", "fe80::2"],
    ],
)
def test_address_numbers_are_the_addresses_numbers(ips: list[str]) -> None:
    family = "IPv6" if ":" in ips[0] else "IPv4"
    eps = objects.EndpointSlice(
        "default", "s", "web", family, [objects.Endpoint((ip,), True, "", "") for ip in ips], ()
    )
    assert eps.address_numbers() == [objects.address_number(ip) for ip in ips]


def test_an_ipv4_address_is_not_its_ipv4_compatible_ipv6_address() -> None:
    assert objects.address_number("10.0.0.1") != objects.address_number("::10.0.0.1")
    store = Store()
    store.put_slice(shrink.endpoint_slice(_slice("v4", ["10.0.0.1"])))
    store.put_slice(shrink.endpoint_slice(_slice("v6", ["::10.0.0.1"])))
    store.put_service(shrink.service(_service("v4", "10.96.0.1", "t")))
    assert store.services_with_endpoint_ip("10.0.0.1") == [("default", "v4")]
    assert store.services_with_endpoint_ip("::10.0.0.1") == [("default", "v6")]
    assert store.services_with_endpoint_ip("::a00:1") == [("default", "v6")]
    assert store.services_with_ip("10.96.0.1") == [("default", "v4")]
    assert store.services_with_ip("::10.96.0.1") == []
    store.delete_slice("default", "v4-x7k2p")
    assert store.services_with_endpoint_ip("10.0.0.1") == []
    assert store.services_with_endpoint_ip("::10.0.0.1") == [("default", "v6")]
