"""Server keys, zone normalisation and the duplicate/overlap checks (1.5, 1.6)."""

from __future__ import annotations

import pytest

from kdns.corefile import CorefileError, keys
from kdns.plugins.loader import load_text


def zone_addrs(key: str, port: int = 53) -> list[str]:
    return [str(z) for z in keys.inspect_key(key, port)]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (".", ["dns://.:53"]),
        ("Example.ORG", ["dns://example.org.:53"]),
        ("example.org.:053", ["dns://example.org.:53"]),
        ("dns://example.org:1053", ["dns://example.org.:1053"]),
        ("tls://.", ["tls://.:853"]),
        ("quic://.", ["quic://.:853"]),
        ("grpc://.", ["grpc://.:443"]),
        ("https://.", ["https://.:443"]),
        ("https3://.", ["https3://.:443"]),
        ("tls://.:5353", ["tls://.:5353"]),
        ("}", ["dns://}.:53"]),
        ("10.0.0.0/8", ["dns://10.in-addr.arpa.:53"]),
        ("10.0.0.0/8:5353", ["dns://10.in-addr.arpa.:5353"]),
        ("10.0.0.0/24", ["dns://0.0.10.in-addr.arpa.:53"]),
        ("172.16.0.0/12", [f"dns://{n}.172.in-addr.arpa.:53" for n in range(16, 32)]),
        ("fd00::/8", ["dns://d.f.ip6.arpa.:53"]),
        ("10.0.0.1", ["dns://10.0.0.1.:53"]),  # a bare address is a name, not a CIDR
    ],
)
def test_inspect_key(key: str, expected: list[str]) -> None:
    assert zone_addrs(key) == expected


def test_dns_port_default_does_not_override_explicit_port() -> None:
    assert zone_addrs(".", 1053) == ["dns://.:1053"]
    assert zone_addrs(".:53", 1053) == ["dns://.:53"]
    assert zone_addrs("tls://.", 1053) == ["tls://.:853"]


def test_non_boundary_prefixes_expand() -> None:
    assert len(zone_addrs("10.0.0.0/17")) == 128
    slash27 = zone_addrs("10.0.0.0/27")
    assert len(slash27) == 32 and slash27[0] == "dns://0.0.0.10.in-addr.arpa.:53"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (".:53{", "zone is not a valid domain name: .:53{"),
        ("..a", "zone is not a valid domain name: ..a"),
        ("a..b", "zone is not a valid domain name: a..b"),
        ("x:", 'expecting data after last colon: "x:"'),
        ("a" * 64 + ".org", "zone is not a valid domain name: " + "a" * 64 + ".org"),
        (("a" * 60 + ".") * 4 + "abcdefghijklmnop", "specified zone is too long: 260 > 255"),
        ("0::/8", "invalid CIDR 0::/8"),
    ],
)
def test_invalid_keys(key: str, message: str) -> None:
    with pytest.raises(CorefileError) as info:
        keys.inspect_key(key, 53)
    assert str(info.value) == message
    with pytest.raises(CorefileError) as info:
        load_text(f"{key} {{\n whoami\n}}\n", "Corefile")
    assert str(info.value) == f"error inspecting server blocks: {message}"


def test_origins_and_normalize() -> None:
    assert keys.origins([], ["dns://example.org.:53", "dns://10.in-addr.arpa.:53"]) == [
        "example.org.",
        "10.in-addr.arpa.",
    ]
    assert keys.origins(["Cluster.Local", "10.0.0.0/24", "bad..name"], []) == [
        "cluster.local.",
        "0.0.10.in-addr.arpa.",
    ]
    assert keys.is_reverse("10.in-addr.arpa.") and not keys.is_reverse("in-addr.arpa.")


# -- duplicates and overlaps (after all plugins were set up, so no file:line) ----------


def load_error(text: str) -> str:
    with pytest.raises(CorefileError) as info:
        load_text(text, "Corefile")
    return str(info.value)


def test_duplicate_zone_same_port() -> None:
    assert load_error(".:53 {\n whoami\n}\n. {\n whoami\n}\n") == (
        "cannot serve dns://.:53 - it is already defined"
    )


def test_duplicate_key_inside_one_block() -> None:
    assert load_error("a.org a.org {\n whoami\n}\n") == (
        "cannot serve dns://a.org.:53 - it is already defined"
    )


def test_same_zone_other_port_or_transport_is_fine() -> None:
    config = load_text(".:53 {\n whoami\n}\n.:1053 {\n whoami\n}\ntls://. {\n whoami\n}\n")
    assert len(config.blocks) == 3


def test_bound_after_unbound_overlaps() -> None:
    assert load_error(
        "example.org {\n whoami\n}\nexample.org {\n bind 127.0.0.1\n whoami\n}\n"
    ) == (
        "cannot serve dns://example.org.:53 on 127.0.0.1 - zone overlap listener capacity "
        "with dns://example.org.:53"
    )


def test_unbound_after_bound_overlaps() -> None:
    assert load_error(
        "example.org {\n bind 127.0.0.1\n whoami\n}\nexample.org {\n whoami\n}\n"
    ) == (
        "cannot serve dns://example.org.:53 - zone overlap listener capacity "
        "with dns://example.org.:53 on 127.0.0.1"
    )


def test_same_zone_on_different_bind_addresses_is_fine() -> None:
    config = load_text(
        "a.org {\n bind 127.0.0.1\n whoami\n}\na.org {\n bind 127.0.0.2\n whoami\n}\n"
    )
    assert [b.listen_hosts for b in config.blocks] == [("127.0.0.1",), ("127.0.0.2",)]


def test_same_bound_address_twice_is_a_duplicate() -> None:
    assert load_error("a.org {\n bind ::1\n}\na.org {\n bind ::1\n}\n") == (
        "cannot serve dns://a.org.:53 on ::1 - it is already defined"
    )


def test_tls_and_dns_on_one_port_warns() -> None:
    config = load_text(".:53 {\n whoami\n}\ntls://.:53 {\n whoami\n}\n")
    assert any("SO_REUSEPORT" in w for w in config.warnings)
