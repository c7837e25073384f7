"""The clusterip directive: parsing, refusals, and the README's examples as inputs."""

from __future__ import annotations

import pathlib
import re

import pytest

from kdns.ipam import config

README = pathlib.Path(__file__).resolve().parents[3] / "Corefile.compat" / "clusterip.md"


def tokens(text: str) -> tuple[list[str], list[list[str]]]:
    """Just enough lexing for the README's examples: one directive, optional block."""
    lines = [line.split() for line in text.strip().splitlines() if line.strip()]
    head = lines[0]
    assert head[0] == "clusterip"
    if head[-1] != "{":
        return head[1:], []
    assert lines[-1] == ["}"]
    return head[1:-1], lines[1:-1]


def examples() -> list[str]:
    return re.findall(r"~~~ corefile\n(.*?)~~~", README.read_text(), re.S)


def test_readme_has_the_coredns_sections() -> None:
    text = README.read_text()
    for section in (
        "## Name",
        "## Description",
        "## Syntax",
        "## Examples",
        "## Metrics",
        "## Bugs",
    ):
        assert section in text


def test_readme_examples_parse() -> None:
    found = examples()
    assert len(found) == 3
    parsed = [config.parse_clusterip(*tokens(block)) for block in found]
    assert parsed[0] == config.ClusterIPConfig(
        cidrs=("10.96.0.0/12",),
        reservations=(config.Reservation("10.96.0.10", ("kube-system", "kube-dns")),),
    )
    assert parsed[1].cidrs == ("10.96.0.0/12", "fd00:10:96::/112")
    assert parsed[1].owned(("kube-system", "kube-dns")) == ("10.96.0.10", "fd00:10:96::a")
    assert parsed[1].store == "/var/lib/kdns/ipam.db"
    assert parsed[1].webhook == "/allocate"
    assert parsed[2] == config.ClusterIPConfig(cidrs=("fd00:10:96::/120",))


def test_defaults() -> None:
    cfg = config.parse_clusterip([], [])
    assert cfg.cidrs == ("10.96.0.0/12",) and cfg.store == "" and cfg.webhook == "/allocate"


def test_reserve_without_owner_and_repeated() -> None:
    cfg = config.parse_clusterip(
        ["10.0.0.0/24"], [["reserve", "10.0.0.10", "10.0.0.11"], ["reserve", "10.0.0.12"]]
    )
    assert [r.ip for r in cfg.reservations] == ["10.0.0.10", "10.0.0.11", "10.0.0.12"]
    assert all(r.owner is None for r in cfg.reservations)
    pool = cfg.pool()
    assert pool.by_family["IPv4"].reserved_free == 3


@pytest.mark.parametrize(
    ("args", "block", "message"),
    [
        (["10.0.0.0/24", "fd00::/112", "10.1.0.0/24"], [], "at most two service CIDRs"),
        (["10.0.0.0/24", "10.1.0.0/24"], [], "must be of different IP families"),
        (["fd00::/48"], [], "shortest allowed prefix length for service CIDR is 64, got 48"),
        (["10.0.0.0/32"], [], "no usable addresses"),
        (["pear"], [], "invalid service CIDR"),
        (["10.0.0.0/24"], [["reserve"]], "reserve needs at least one address"),
        (["10.0.0.0/24"], [["reserve", "10.0.0.0"]], "not a usable address of 10.0.0.0/24"),
        (["10.0.0.0/24"], [["reserve", "10.0.0.255"]], "not a usable address"),
        (["10.0.0.0/24"], [["reserve", "fd00::1"]], "not a usable address"),
        (["10.0.0.0/24"], [["reserve", "kube-system/kube-dns"]], "is not an IP address"),
        (
            ["10.0.0.0/24"],
            [["reserve", "10.0.0.9", "x/y", "10.0.0.8"]],
            "NAMESPACE/NAME comes last",
        ),
        (["10.0.0.0/24"], [["reserve", "10.0.0.9", "nope"]], "neither an IP address nor"),
        (["10.0.0.0/24"], [["reserve", "10.0.0.9", "10.0.0.8", "a/b"]], "at most one address per"),
        (["10.0.0.0/24"], [["reserve", "10.0.0.9"], ["reserve", "10.0.0.9"]], "reserved twice"),
        (
            ["10.0.0.0/24"],
            [["reserve", "10.0.0.9", "a/b"], ["reserve", "10.0.0.8", "a/b"]],
            "a/b owns two IPv4 addresses",
        ),
        (["10.0.0.0/24"], [["store"]], "store takes exactly one argument, got 0"),
        (["10.0.0.0/24"], [["store", "a", "b"]], "store takes exactly one argument, got 2"),
        (["10.0.0.0/24"], [["store", "a"], ["store", "b"]], "store given twice"),
        (["10.0.0.0/24"], [["webhook", "allocate"]], "must start with '/'"),
        (["10.0.0.0/24"], [["ttl", "5"]], "unknown property 'ttl'"),
    ],
)
def test_refusals(args: list[str], block: list[list[str]], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        config.parse_clusterip(args, block)
