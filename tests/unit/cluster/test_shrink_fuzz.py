"""The shrink boundary, fuzzed: for any JSON value, every shrinker kdns uses either returns
its object or raises :class:`kdns.cluster.shrink.Invalid`, the one class its callers catch.

Two generators: arbitrary JSON, and objects shaped like the real kinds whose every
field may, at random, be replaced by arbitrary JSON of the wrong type. The second is
what finds crashes deep inside (a ``conditions`` that is a list, a ``nodePort`` that is
text), where arbitrary JSON alone rarely reaches.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdns.cluster import shrink

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "None", "web", "10.96.0.1", "fd00::1", "80", "TCP", "Pod", "IPv4"]),
    st.text(max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the right shape, sometimes anything at all."""
    return st.one_of(strategy, strategy, strategy, json_values)


def obj(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A JSON object with any subset of these fields, each possibly of the wrong type."""
    return maybe(st.fixed_dictionaries({}, optional={k: maybe(v) for k, v in fields.items()}))


def listof(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return maybe(st.lists(strategy, max_size=3))


names = st.sampled_from(["web", "db-0", "a.b", "UPPER", "", "-x", "x" * 70])
ips = st.sampled_from(["10.96.0.20", "fd00::20", "None", "", "300.1.1.1", "10.0.0.1 "])
ports = st.one_of(st.integers(min_value=-1, max_value=70000), st.sampled_from(["80", "http"]))
protocols = st.sampled_from(["TCP", "UDP", "SCTP", "ICMP", ""])
string_map = st.dictionaries(st.text(max_size=6), maybe(st.text(max_size=6)), max_size=3)
metadata = obj(
    name=names,
    namespace=names,
    labels=string_map,
    annotations=string_map,
    resourceVersion=st.text(max_size=4),
    deletionTimestamp=st.text(max_size=4),
)
target_ref = obj(kind=st.sampled_from(["Pod", "Node"]), name=names)

services = obj(
    metadata=metadata,
    spec=obj(
        type=st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer", "ExternalName", "X"]),
        clusterIP=ips,
        clusterIPs=listof(ips),
        externalName=names,
        ports=listof(
            obj(name=names, port=ports, targetPort=ports, protocol=protocols, nodePort=ports)
        ),
        selector=string_map,
        publishNotReadyAddresses=st.booleans(),
        ipFamilies=listof(st.sampled_from(["IPv4", "IPv6"])),
        ipFamilyPolicy=st.text(max_size=4),
    ),
)
endpoint_ports = listof(obj(name=names, port=ports, protocol=protocols))
slices = obj(
    metadata=metadata,
    addressType=st.sampled_from(["IPv4", "IPv6", "FQDN", "x"]),
    endpoints=listof(
        obj(
            addresses=listof(ips),
            conditions=obj(ready=st.booleans(), serving=st.booleans()),
            hostname=names,
            targetRef=target_ref,
            nodeName=names,
        )
    ),
    ports=endpoint_ports,
)
address = obj(ip=ips, hostname=names, targetRef=target_ref, nodeName=names)
endpoints = obj(
    metadata=metadata,
    subsets=listof(
        obj(addresses=listof(address), notReadyAddresses=listof(address), ports=endpoint_ports)
    ),
)
namespaces = obj(metadata=metadata, spec=json_values, status=json_values)
pods = obj(
    metadata=metadata,
    spec=obj(
        hostname=names,
        subdomain=names,
        nodeName=names,
        containers=listof(
            obj(ports=listof(obj(name=names, containerPort=ports, protocol=protocols)))
        ),
    ),
    status=obj(
        podIP=ips,
        podIPs=listof(obj(ip=ips)),
        phase=st.text(max_size=4),
        conditions=listof(
            obj(type=st.sampled_from(["Ready", "x"]), status=st.sampled_from(["True", "False"]))
        ),
    ),
)


def shrinks_or_is_invalid(fn: Callable[[Any], Any], raw: Any) -> None:
    with contextlib.suppress(shrink.Invalid):
        fn(raw)


@FUZZ
@given(st.one_of(services, json_values))
def test_service(raw: Any) -> None:
    shrinks_or_is_invalid(shrink.service, raw)


@FUZZ
@given(st.one_of(slices, json_values))
def test_endpoint_slice(raw: Any) -> None:
    shrinks_or_is_invalid(shrink.endpoint_slice, raw)


@FUZZ
@given(st.one_of(endpoints, json_values))
def test_endpoints(raw: Any) -> None:
    shrinks_or_is_invalid(shrink.endpoints_to_slices, raw)


@FUZZ
@given(st.one_of(namespaces, json_values))
def test_namespace(raw: Any) -> None:
    shrinks_or_is_invalid(shrink.namespace, raw)


@FUZZ
@given(st.one_of(pods, json_values))
def test_pod(raw: Any) -> None:
    shrinks_or_is_invalid(shrink.pod, raw)


def test_a_valid_object_still_shrinks() -> None:
    """The fuzzing above proves nothing if everything were Invalid."""
    svc = shrink.service(
        {
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.20", "ports": [{"port": 80}]},
        }
    )
    assert svc.cluster_ips == ("10.96.0.20",) and svc.ports[0].port == 80


octets = st.one_of(st.integers(0, 300).map(str), st.sampled_from(["00", "01", "010", "٣", " 1"]))


@FUZZ
@given(st.one_of(st.lists(octets, min_size=3, max_size=5).map(".".join), st.text(max_size=16)))
def test_an_address_reads_as_ipaddress_reads_it(text: str) -> None:
    """The dotted-quad fast path of ``_ip`` agrees with ``ipaddress`` on every text."""
    try:
        want: tuple[str, ...] = ("ok", str(ipaddress.ip_address(text)))
    except ValueError:
        want = ("invalid",)
    try:
        got: tuple[str, ...] = ("ok", shrink._ip(text, "f"))
    except shrink.Invalid:
        got = ("invalid",)
    assert got == want
