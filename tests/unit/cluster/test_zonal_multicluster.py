"""``zonal`` and ``multicluster`` below the answers: the name grammar, what the shrinker
keeps, how the store groups ServiceImports, what the table drops on a change, the setup.

The answers themselves are in ``tests/integration/test_zonal_multicluster.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kdns.cluster import objects, resolver, shrink, store, table
from kdns.cluster.kube import informer
from kdns.corefile.errors import CorefileError
from kdns.dns import names, wire
from kdns.plugins.loader import load_text
from kdns.plugins.validate import validate
from kdns.server import planner
from tests.support.apiemu import builders

ZONE = "cluster.local."
MC = "clusterset.local."


# -- the name grammar ------------------------------------------------------------------


def test_zone_scoped_names_parse_only_with_zonal() -> None:
    qname = "us-west-2a.pin._zone.hdls.ns.svc." + ZONE
    assert resolver.parse_name(qname, ZONE).reason == resolver.TOO_MANY_LABELS
    name = resolver.parse_name(qname, ZONE, zonal=True)
    assert (name.kind, name.namespace, name.service) == ("zonal", "ns", "hdls")
    assert (name.topology_zone, name.prefer) == ("us-west-2a", False)
    # A topology value with dots spans labels; prefer is the other directive.
    name = resolver.parse_name("eu.west.1.prefer._zone.hdls.ns.svc." + ZONE, ZONE, zonal=True)
    assert (name.topology_zone, name.prefer) == ("eu.west.1", True)


@pytest.mark.parametrize(
    "qname",
    [
        "a.florp._zone.hdls.ns.svc.",  # unknown directive
        "a.pin.zone.hdls.ns.svc.",  # no anchor
        "a.pin._zone.hdls.ns.pod.",  # pods have none
    ],
)
def test_other_long_names_stay_too_long(qname: str) -> None:
    name = resolver.parse_name(qname + ZONE, ZONE, zonal=True)
    assert name.reason == resolver.TOO_MANY_LABELS


def test_multicluster_reads_host_and_cluster_and_no_zonal() -> None:
    name = resolver.parse_name("db-0.east.db.ns.svc." + MC, MC, multicluster=True)
    assert (name.kind, name.endpoint, name.cluster, name.service) == (
        "endpoint", "db-0", "east", "db",
    )  # fmt: skip
    srv = resolver.parse_name("_pg._tcp.db.ns.svc." + MC, MC, multicluster=True)
    assert (srv.kind, srv.port, srv.protocol) == ("srv", "pg", "tcp")
    zonal = resolver.parse_name("a.pin._zone.db.ns.svc." + MC, MC, zonal=True, multicluster=True)
    assert zonal.kind == "invalid"
    # Outside a multicluster zone the same shape is a port and a protocol, as before.
    assert resolver.parse_name("db-0.east.db.ns.svc." + ZONE, ZONE).kind == "srv"


# -- the shrinker ------------------------------------------------------------------------


def _zoned() -> dict[str, Any]:
    obj = builders.endpoint_slice("hdls", "ns", ["10.0.0.1"])
    obj["endpoints"][0]["zone"] = "US-West-2a"
    return obj


def test_zone_is_kept_only_when_asked() -> None:
    kept = shrink.endpoint_slice_keeping(frozenset({shrink.ZONES}))(_zoned())
    assert kept.endpoints[0].zone == "us-west-2a"
    dropped = shrink.endpoint_slice_keeping(frozenset())(_zoned())
    assert dropped.endpoints[0].zone == ""
    assert kept != dropped  # a zone-only change is a change (it alters zonal answers)


def test_imported_slice_and_service_import() -> None:
    eps = shrink.endpoint_slice(builders.imported_slice("db", "east", "ns", ["10.1.0.1"]))
    assert (eps.service, eps.imported, eps.cluster) == ("", "db", "east")
    imp = shrink.service_import(builders.service_import("web", "ns", ips=["10.100.0.1"]))
    assert (imp.type, imp.ips, imp.headless) == ("ClusterSetIP", ("10.100.0.1",), False)
    bad = builders.service_import("web", "ns", ips=["nope"])
    with pytest.raises(shrink.Invalid, match=r"spec\.ips\[0\]"):
        shrink.service_import(bad)
    with pytest.raises(shrink.Invalid, match=r"spec\.type"):
        shrink.service_import(builders.service_import("web", "ns", type_="Mesh"))


# -- the store and the table ----------------------------------------------------------------


def _world() -> tuple[store.Store, table.Table]:
    st = store.Store()
    st.put_namespace(objects.Namespace("ns"))
    hdls = shrink.service(builders.service("hdls", "ns", cluster_ip="None"))
    st.put_service(hdls)
    st.put_slice(shrink.endpoint_slice(_zoned()))
    st.put_import(shrink.service_import(builders.service_import("web", "ns", ips=["10.100.0.1"])))
    st.put_slice(shrink.endpoint_slice(builders.imported_slice("web", "east", "ns")))
    st.mark_synced()
    settings = resolver.Settings(zones=(ZONE, MC), zonal=True, multicluster=(MC,))
    tbl = table.Table(st, resolver.Resolver(st, settings))
    tbl.rebuild()
    return st, tbl


def test_imported_slices_are_not_a_local_services_slices() -> None:
    st, _ = _world()
    assert st.slices_of("ns", "") == () and st.slices_of("ns", "web") == ()
    assert [s.cluster for s in st.imported_slices_of("ns", "web")] == ["east"]
    assert st.services_with_endpoint_ip("10.245.0.10") == []


def test_table_compiles_no_multicluster_name_and_drops_on_import_change() -> None:
    st, tbl = _world()
    web = names.to_wire("web.ns.svc." + MC)
    assert web not in tbl.packed  # answered on first use, not compiled
    first = tbl.lookup(web, wire.A)
    assert first is not None and first.rcode == wire.NOERROR
    assert tbl.lookup(web, wire.A) is first  # cached
    st.put_import(shrink.service_import(builders.service_import("web", "ns", ips=["10.100.0.2"])))
    second = tbl.lookup(web, wire.A)
    assert second is not None and second is not first
    assert bytes((10, 100, 0, 2)) in second.body
    st.delete_import("ns", "web")
    third = tbl.lookup(web, wire.A)
    assert third is not None and third.rcode == wire.NXDOMAIN


def test_zone_change_reaches_a_cached_zonal_answer() -> None:
    st, tbl = _world()
    name = names.to_wire("us-west-2c.pin._zone.hdls.ns.svc." + ZONE)
    before = tbl.lookup(name, wire.A)
    assert before is not None and before.rcode == wire.NOERROR
    assert bytes((10, 0, 0, 1)) not in before.body  # NODATA
    moved = _zoned()
    moved["endpoints"][0]["zone"] = "us-west-2c"
    st.put_slice(shrink.endpoint_slice(moved))
    after = tbl.lookup(name, wire.A)
    assert after is not None and bytes((10, 0, 0, 1)) in after.body


def test_relist_of_imports_deletes_what_is_gone() -> None:
    st, _ = _world()
    other = objects.ServiceImport("ns", "other", "Headless", (), ())
    assert st.replace(imports=[other]) == 2  # one put, one delete
    assert list(st.imports) == [("ns", "other")]


# -- setup, validate, the informer --------------------------------------------------------


def _plan(tmp_path: Path, options: str) -> planner.Plan:
    text = f".:53 {{\n kubernetes cluster.local clusterset.local {{\n{options}\n }}\n}}\n"
    return planner.from_corefile(load_text(text, str(tmp_path / "Corefile")), dns_port=0)


def test_setup_reaches_the_resolver_and_the_informer(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "  zonal\n  multicluster clusterset.local")
    kube = plan.servers[0].blocks[0].kube
    assert kube is not None
    assert kube.settings.zonal and kube.settings.multicluster == (MC,)
    assert kube.informer is not None and kube.informer.imports
    plain = _plan(tmp_path, "  pods insecure").servers[0].blocks[0].kube
    assert plain is not None and not plain.settings.zonal
    assert plain.informer is not None and not plain.informer.imports


def test_informer_watches_service_imports_only_with_multicluster() -> None:
    assert informer.SERVICE_IMPORTS.path == "/apis/multicluster.x-k8s.io/v1alpha1/serviceimports"


def test_zonal_with_noendpoints_fails_as_coredns(tmp_path: Path) -> None:
    with pytest.raises(CorefileError, match="zonal cannot be used with noendpoints"):
        _plan(tmp_path, "  zonal\n  noendpoints")


def test_kdns_validate_accepts_them(tmp_path: Path) -> None:
    path = tmp_path / "Corefile"
    path.write_text(
        ".:53 {\n kubernetes cluster.local clusterset.local in-addr.arpa ip6.arpa {\n"
        "  pods insecure\n  zonal\n  multicluster clusterset.local\n"
        "  fallthrough in-addr.arpa ip6.arpa\n }\n forward . /etc/resolv.conf\n cache 30\n}\n"
    )
    assert validate(str(path)) == []
    done = subprocess.run(
        [sys.executable, "-m", "kdns", "validate", str(path)], capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
