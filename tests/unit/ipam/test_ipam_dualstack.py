"""A Service's clusterIPs: policies, families, refusals and all-or-nothing pairs."""

from __future__ import annotations

import random

import pytest

from kdns.cluster import objects
from kdns.ipam import admission, allocator, dualstack, errors, iprange

V4 = "10.0.0.0/24"
V6 = "fd00::/120"


def pool(*cidrs: str, reserved: tuple[str, ...] = ()) -> dualstack.Pool:
    source = random.Random(3)
    allocs = []
    for cidr in cidrs:
        rng = iprange.Range.parse(cidr)
        mine = [r for r in reserved if iprange.family_of(r) == rng.family]
        allocs.append(allocator.Allocator(rng, reserved=mine, random_source=source))
    return dualstack.Pool(allocs)


def req(name: str = "web", **kw: object) -> dualstack.Request:
    return dualstack.Request(namespace="default", name=name, **kw)  # type: ignore[arg-type]


def in_dynamic_band(p: dualstack.Pool, address: str) -> bool:
    owner = p.owner_of(address)
    assert owner is not None
    value = owner.range.to_int(address)
    return value is not None and value >= owner.range.dynamic_first


# policy, families, pool cidrs, expected families
FAMILY_CASES = [
    ("", (), (V4,), ("IPv4",)),
    ("", (), (V6,), ("IPv6",)),
    ("", (), (V4, V6), ("IPv4",)),
    ("", (), (V6, V4), ("IPv6",)),
    ("SingleStack", ("IPv6",), (V4, V6), ("IPv6",)),
    ("PreferDualStack", (), (V4,), ("IPv4",)),
    ("PreferDualStack", (), (V4, V6), ("IPv4", "IPv6")),
    ("PreferDualStack", (), (V6, V4), ("IPv6", "IPv4")),
    ("PreferDualStack", ("IPv6",), (V4, V6), ("IPv6", "IPv4")),
    ("RequireDualStack", (), (V4, V6), ("IPv4", "IPv6")),
    ("RequireDualStack", ("IPv6", "IPv4"), (V4, V6), ("IPv6", "IPv4")),
]


@pytest.mark.parametrize(("policy", "families", "cidrs", "expected"), FAMILY_CASES)
def test_families_and_order(
    policy: str, families: tuple[str, ...], cidrs: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    p = pool(*cidrs)
    got = dualstack.allocate(p, req(ip_family_policy=policy, ip_families=families))
    assert got.ip_families == expected
    assert tuple(iprange.family_of(a) for a in got.cluster_ips) == expected
    assert got.ip_family_policy == (policy or "SingleStack")
    assert all(in_dynamic_band(p, a) for a in got.cluster_ips)


def test_requested_pair_is_kept_in_order() -> None:
    p = pool(V4, V6)
    got = dualstack.allocate(
        p, req(cluster_ips=("fd00::5", "10.0.0.5"), ip_family_policy="RequireDualStack")
    )
    assert got.cluster_ips == ("fd00::5", "10.0.0.5")
    assert got.ip_families == ("IPv6", "IPv4")
    assert got.cluster_ip == "fd00::5"


def test_requested_primary_and_dynamic_secondary() -> None:
    p = pool(V4, V6)
    got = dualstack.allocate(p, req(cluster_ips=("10.0.0.9",), ip_family_policy="PreferDualStack"))
    assert got.cluster_ips[0] == "10.0.0.9"
    assert iprange.family_of(got.cluster_ips[1]) == "IPv6"


def invalid(p: dualstack.Pool, request: dualstack.Request) -> str:
    with pytest.raises(errors.InvalidService) as caught:
        dualstack.allocate(p, request)
    assert caught.value.code == 422
    return str(caught.value)


@pytest.mark.parametrize(
    ("cidrs", "request_", "message"),
    [
        (
            (V4,),
            req(ip_family_policy="RequireDualStack"),
            'Service "web" is invalid: spec.ipFamilyPolicy: Invalid value: "RequireDualStack": '
            "this cluster is not configured for dual-stack services",
        ),
        (
            (V4,),
            req(ip_families=("IPv6",)),
            'Service "web" is invalid: spec.ipFamilies[0]: Invalid value: "IPv6": '
            "not configured on this cluster",
        ),
        (
            (V4,),
            req(cluster_ips=("fd00::1",)),
            'Service "web" is invalid: spec.clusterIPs[0]: Invalid value: []string{"fd00::1"}: '
            "IPv6 is not configured on this cluster",
        ),
        (
            (V4, V6),
            req(cluster_ips=("10.0.0.5", "fd00::5")),
            'Service "web" is invalid: spec.ipFamilyPolicy: Invalid value: "SingleStack": '
            "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are "
            "specified",
        ),
        (
            (V4, V6),
            req(ip_family_policy="SingleStack", ip_families=("IPv4", "IPv6")),
            'Service "web" is invalid: spec.ipFamilyPolicy: Invalid value: "SingleStack": '
            "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are "
            "specified",
        ),
        (
            (V4, V6),
            req(cluster_ips=("10.0.0.5", "10.0.0.6"), ip_family_policy="PreferDualStack"),
            'Service "web" is invalid: spec.clusterIPs: Invalid value: '
            '[]string{"10.0.0.5", "10.0.0.6"}: may specify no more than one IP for each IP family',
        ),
        (
            (V4, V6),
            req(cluster_ips=("10.0.0.5",), ip_families=("IPv6",)),
            'Service "web" is invalid: spec.clusterIPs[0]: Invalid value: "10.0.0.5": '
            "expected an IPv6 value as indicated by `ipFamilies[0]`",
        ),
        (
            (V4,),
            req(cluster_ips=("10.0.0.300",)),
            'Service "web" is invalid: spec.clusterIPs[0]: Invalid value: "10.0.0.300": '
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ),
        (
            (V4,),
            req(ip_family_policy="DualStackPlease"),
            'Service "web" is invalid: spec.ipFamilyPolicy: Unsupported value: "DualStackPlease": '
            'supported values: "PreferDualStack", "RequireDualStack", "SingleStack"',
        ),
        (
            (V4, V6),
            req(ip_families=("IPv4", "IPv4"), ip_family_policy="PreferDualStack"),
            'Service "web" is invalid: spec.ipFamilies[1]: Duplicate value: "IPv4"',
        ),
        (
            (V4,),
            req(cluster_ips=("10.0.1.1",)),
            'Service "web" is invalid: spec.clusterIPs: Invalid value: []string{"10.0.1.1"}: '
            "failed to allocate IP 10.0.1.1: the provided IP (10.0.1.1) is not in the valid "
            "range. The range of valid IPs is 10.0.0.0/24",
        ),
        (
            (V4,),
            req(cluster_ips=("10.0.0.0",)),
            'Service "web" is invalid: spec.clusterIPs: Invalid value: []string{"10.0.0.0"}: '
            "failed to allocate IP 10.0.0.0: the provided IP (10.0.0.0) is not in the valid "
            "range. The range of valid IPs is 10.0.0.0/24",
        ),
    ],
)
def test_refusals_with_api_server_wording(
    cidrs: tuple[str, ...], request_: dualstack.Request, message: str
) -> None:
    p = pool(*cidrs)
    assert invalid(p, request_) == message
    assert all(a.used == 0 for a in p.allocators)


def test_already_allocated_wording() -> None:
    p = pool(V4)
    dualstack.allocate(p, req("a", cluster_ips=("10.0.0.7",)))
    assert invalid(p, req("b", cluster_ips=("10.0.0.7",))) == (
        'Service "b" is invalid: spec.clusterIPs: Invalid value: []string{"10.0.0.7"}: '
        "failed to allocate IP 10.0.0.7: provided IP is already allocated"
    )


def test_pair_failing_half_way_leaves_nothing_allocated() -> None:
    p = pool(V4, V6)
    dualstack.allocate(p, req("taken", cluster_ips=("fd00::5",), ip_families=("IPv6",)))
    before = [a.snapshot() for a in p.allocators]
    message = invalid(
        p, req(cluster_ips=("10.0.0.5", "fd00::5"), ip_family_policy="RequireDualStack")
    )
    assert "failed to allocate IP fd00::5: provided IP is already allocated" in message
    assert '[]string{"10.0.0.5", "fd00::5"}' in message
    assert [a.snapshot() for a in p.allocators] == before


def test_dynamic_secondary_failing_releases_primary() -> None:
    p = pool("10.0.0.0/24", "fd00::/127")  # one usable IPv6 address
    dualstack.allocate(p, req("first", ip_family_policy="RequireDualStack"))
    with pytest.raises(errors.InternalError) as caught:
        dualstack.allocate(p, req("second", ip_family_policy="RequireDualStack"))
    assert str(caught.value) == (
        "Internal error occurred: failed to allocate a serviceIP: range is full"
    )
    assert caught.value.code == 500
    assert p.by_family["IPv4"].used == 1


def test_headless_and_external_name_get_no_addresses() -> None:
    p = pool(V4, V6)
    headless = dualstack.allocate(p, req(cluster_ips=("None",)))
    assert headless.cluster_ips == ("None",) and headless.ip_families == ("IPv4",)
    selectorless = dualstack.allocate(p, req(cluster_ips=("None",), has_selector=False))
    assert selectorless.ip_family_policy == "RequireDualStack"
    assert selectorless.ip_families == ("IPv4", "IPv6")
    external = dualstack.allocate(p, req(type="ExternalName"))
    assert external == dualstack.Assignment((), (), "")
    assert all(a.used == 0 for a in p.allocators)


def test_headless_selectorless_single_stack_cluster_may_list_both_families() -> None:
    got = dualstack.allocate(pool(V4), req(cluster_ips=("None",), has_selector=False))
    assert got.ip_families == ("IPv4", "IPv6")


def test_kubernetes_service_gets_network_plus_one() -> None:
    p = pool("10.96.0.0/12", "fd00:10:96::/112")
    got = dualstack.allocate(
        p,
        dualstack.Request(
            namespace="default", name="kubernetes", ip_family_policy="PreferDualStack"
        ),
    )
    assert got.cluster_ips == ("10.96.0.1", "fd00:10:96::1")
    other = dualstack.allocate(p, dualstack.Request(namespace="other", name="kubernetes"))
    assert other.cluster_ip != "10.96.0.1"


def test_kubernetes_service_falls_back_when_network_plus_one_is_taken() -> None:
    p = pool(V4)
    dualstack.allocate(p, req("squatter", cluster_ips=("10.0.0.1",)))
    got = dualstack.allocate(p, dualstack.Request(namespace="default", name="kubernetes"))
    assert got.cluster_ip != "10.0.0.1"


def test_reserved_only_when_asked_for_by_name() -> None:
    p = pool("10.0.0.0/29", reserved=("10.0.0.3",))
    dynamic = {dualstack.allocate(p, req(f"s{i}")).cluster_ip for i in range(5)}
    assert "10.0.0.3" not in dynamic
    with pytest.raises(errors.InternalError):
        dualstack.allocate(p, req("late"))
    assert dualstack.allocate(p, req("dns", cluster_ips=("10.0.0.3",))).cluster_ip == "10.0.0.3"


def test_preferring_uses_free_preferred_and_falls_back() -> None:
    p = pool(V4, V6)
    got = dualstack.allocate_preferring(
        p, req(ip_family_policy="PreferDualStack"), ["fd00::9", "10.0.0.9"]
    )
    assert got.cluster_ips == ("10.0.0.9", "fd00::9")
    again = dualstack.allocate_preferring(p, req("b"), ["10.0.0.9"])
    assert again.cluster_ip != "10.0.0.9"
    outside = dualstack.allocate_preferring(p, req("c"), ["192.168.0.1", "junk"])
    assert outside.cluster_ip.startswith("10.0.0.")


def test_from_service_object() -> None:
    service = objects.Service(
        namespace="ns",
        name="db",
        type="ClusterIP",
        cluster_ips=(),
        external_name="",
        ports=(),
        selector=(("app", "db"),),
        publish_not_ready=False,
        ip_families=("IPv6",),
        ip_family_policy="PreferDualStack",
    )
    got = dualstack.allocate(pool(V4, V6), dualstack.Request.from_service(service))
    assert got.ip_families == ("IPv6", "IPv4")


def test_admission_seam_fills_only_unset_fields() -> None:
    p = pool(V4, V6)
    review_object = {
        "metadata": {"namespace": "default", "name": "web"},
        "spec": {"selector": {"app": "web"}, "ipFamilyPolicy": "PreferDualStack"},
    }
    fields = admission.fields_to_set(p, review_object)
    assert fields is not None
    assert fields["clusterIP"] == fields["clusterIPs"][0]
    assert fields["ipFamilies"] == ["IPv4", "IPv6"]
    assert fields["ipFamilyPolicy"] == "PreferDualStack"
    for spec in ({"clusterIP": "None"}, {"type": "ExternalName"}, {"clusterIP": "10.0.0.5"}):
        assert admission.fields_to_set(p, {"metadata": {"name": "x"}, "spec": spec}) is None


def test_admission_request_checks_clusterip_against_clusterips() -> None:
    request = admission.request_of(
        {"metadata": {"name": "x"}, "spec": {"clusterIP": "10.0.0.5", "clusterIPs": ["10.0.0.6"]}}
    )
    assert invalid(pool(V4), request) == (
        'Service "x" is invalid: spec.clusterIPs: Invalid value: []string{"10.0.0.6"}: '
        "first value must match `clusterIP`"
    )


def test_pool_shape() -> None:
    with pytest.raises(ValueError, match="different IP families"):
        pool(V4, "10.1.0.0/24")
    with pytest.raises(ValueError, match="one or two"):
        dualstack.Pool([])
