"""``kdns explain`` against a manifests folder: the facts of each explanation, not its wording.

The fixture (``tests/fixtures/explain``) holds one object per troubleshooting case:
a ClusterIP service with a ready and a not-ready pod (default/web), a selector no pod
matches with two almost-matching pods (default/frontend), a service whose only pod is
not ready (default/batch), a named targetPort the pod lacks (default/metrics), headless
services with and without publishNotReadyAddresses (data/db, data/db-all), a hand-made
EndpointSlice (shop/api) and an ExternalName (shop/payments).
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdns import explain
from kdns.cli import explain as explain_cli
from kdns.cluster import manifests, resolver
from kdns.cluster.store import Store
from kdns.dns import wire

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "explain"
SETTINGS = resolver.Settings()


@pytest.fixture(scope="module")
def store() -> Store:
    s = Store()
    source = manifests.ManifestsSource(FIXTURE, s)
    source.load()
    assert source.problems == []
    return s


def run(
    store: Store,
    name: str,
    qtype: int = wire.A,
    from_namespace: str | None = None,
    ndots: int = 5,
) -> explain.Explanation:
    exp = explain.explain(store, SETTINGS, name, qtype, from_namespace=from_namespace, ndots=ndots)
    explain.render(exp)  # every case renders
    return exp


def finding(exp: explain.Explanation, code: str) -> explain.Finding:
    found = [f for f in exp.findings if f.code == code]
    assert found, f"no {code} in {exp.codes()}"
    return found[0]


# -- what the name resolves to and why ---------------------------------------------


def test_clusterip_with_ready_and_not_ready_endpoints(store: Store) -> None:
    exp = run(store, "web.default.svc.cluster.local")
    assert exp.resolves and exp.result.rcode == "NOERROR"
    assert [(r.type, r.data) for r in exp.result.answers] == [("A", "10.96.0.20")]
    svc = exp.service
    assert svc is not None
    assert (svc.namespace, svc.name, svc.type, svc.headless) == (
        "default",
        "web",
        "ClusterIP",
        False,
    )
    assert svc.cluster_ips == ("10.96.0.20",)
    assert [(p.name, p.port, p.protocol, p.target_port) for p in svc.ports] == [
        ("http", 80, "TCP", "http")
    ]
    assert (svc.ready_endpoints, svc.not_ready_endpoints) == (1, 1)
    [eps] = svc.slices
    assert {(e.pod, e.ready, e.in_dns) for e in eps.endpoints} == {
        ("web-1", True, False),
        ("web-2", False, False),
    }
    assert [p.port for p in eps.ports] == [8080]  # the named targetPort, resolved per pod
    assert exp.selector is not None and exp.selector.matching_ready == ("web-1",)
    assert not [f for f in exp.findings if f.problem]


def test_headless_returns_only_ready_endpoints(store: Store) -> None:
    exp = run(store, "db.data.svc.cluster.local")
    assert exp.resolves
    assert [r.data for r in exp.result.answers] == ["10.244.1.60"]
    assert exp.service is not None and exp.service.headless
    by_pod = {e.pod: e for s in exp.service.slices for e in s.endpoints}
    assert by_pod["db-0"].in_dns and by_pod["db-0"].dns_label == "db-0"
    assert not by_pod["db-1"].in_dns and not by_pod["db-1"].ready and by_pod["db-1"].reason
    assert finding(exp, explain.HEADLESS_READY_ONLY).problem is False


def test_headless_publish_not_ready_returns_all(store: Store) -> None:
    exp = run(store, "db-all.data.svc.cluster.local")
    assert sorted(r.data for r in exp.result.answers) == ["10.244.1.60", "10.244.2.61"]
    assert exp.service is not None and exp.service.publish_not_ready
    assert all(e.in_dns for s in exp.service.slices for e in s.endpoints)
    assert explain.PUBLISH_NOT_READY in exp.codes()
    assert explain.HEADLESS_READY_ONLY not in exp.codes()


def test_headless_endpoint_name_of_a_not_ready_pod(store: Store) -> None:
    exp = run(store, "db-1.db.data.svc.cluster.local")
    assert not exp.resolves and exp.result.rcode == "NXDOMAIN"
    assert exp.parts.kind == "endpoint" and exp.parts.endpoint == "db-1"
    assert explain.ENDPOINT_MISSING in exp.codes()


def test_hand_made_slice_without_selector(store: Store) -> None:
    exp = run(store, "api.shop.svc.cluster.local")
    assert exp.resolves and exp.selector is None
    assert exp.service is not None and exp.service.selector is None
    assert [s.name for s in exp.service.slices] == ["api-abc12"]
    assert (exp.service.ready_endpoints, exp.service.not_ready_endpoints) == (1, 1)


def test_external_name(store: Store) -> None:
    exp = run(store, "payments.shop.svc.cluster.local")
    assert exp.resolves
    assert [(r.type, r.data) for r in exp.result.answers] == [("CNAME", "payments.example.com.")]
    assert explain.EXTERNAL_NAME in exp.codes()


def test_ptr_of_a_cluster_ip(store: Store) -> None:
    exp = run(store, "10.96.0.20", wire.PTR)
    assert exp.subject == "20.0.96.10.in-addr.arpa."
    assert [r.data for r in exp.result.answers] == ["web.default.svc.cluster.local."]
    assert exp.service is not None and exp.service.name == "web"


def test_nodata_for_a_missing_family(store: Store) -> None:
    exp = run(store, "web.default.svc.cluster.local", wire.AAAA)
    assert not exp.resolves and exp.result.outcome == explain.NODATA
    assert explain.NO_DATA_OF_TYPE in exp.codes()


# -- no endpoints ------------------------------------------------------------------


def test_selector_matches_no_pods_and_near_misses(store: Store) -> None:
    exp = run(store, "frontend.default.svc.cluster.local")
    assert exp.resolves  # a ClusterIP answers with its IP whatever is behind it
    sel = exp.selector
    assert sel is not None
    assert sel.selector == {"app": "frontend", "tier": "web"}
    assert sel.pods_known and sel.pods_in_namespace == 6
    assert sel.matching == () and sel.matching_ready == ()
    misses = {(m.pod, m.differs.key, m.differs.wanted, m.differs.actual) for m in sel.near_misses}
    assert misses == {
        ("frontend-api", "tier", "web", "api"),
        ("frontend-typo", "app", "frontend", "frontnd"),
    }
    assert sel.matching_elsewhere == ("shop/frontend-elsewhere",)
    codes = exp.codes()
    for code in (
        explain.NO_ENDPOINTS,
        explain.SELECTOR_MATCHES_NO_PODS,
        explain.LABEL_DIFFERS,
        explain.MATCHES_IN_OTHER_NAMESPACE,
    ):
        assert code in codes
    assert codes.count(explain.LABEL_DIFFERS) == 2


def test_only_not_ready_pods(store: Store) -> None:
    exp = run(store, "batch.default.svc.cluster.local")
    assert exp.selector is not None
    assert exp.selector.matching == ("batch-1",) and exp.selector.matching_ready == ()
    assert exp.selector.near_misses == ()  # app=web is another app, not a typo of app=batch
    assert exp.service is not None
    assert (exp.service.ready_endpoints, exp.service.not_ready_endpoints) == (0, 1)
    assert finding(exp, explain.NO_READY_ENDPOINTS).problem


def test_named_target_port_missing_on_the_pod(store: Store) -> None:
    exp = run(store, "metrics.default.svc.cluster.local")
    assert exp.selector is not None
    [missing] = exp.selector.missing_named_ports
    assert (missing.service_port, missing.target_port, missing.pods) == (
        "prom",
        "prom",
        ("metrics-1",),
    )
    assert explain.NAMED_PORT_MISSING in exp.codes()


# -- NXDOMAIN ----------------------------------------------------------------------


def test_missing_namespace(store: Store) -> None:
    exp = run(store, "web.prod.svc.cluster.local")
    assert not exp.resolves and exp.result.rcode == "NXDOMAIN"
    assert exp.namespace_exists is False
    assert explain.NAMESPACE_MISSING in exp.codes()
    assert exp.same_name_in == ("default",)
    assert exp.suggestions == ("web.default.svc.cluster.local.",)


def test_typoed_service_name(store: Store) -> None:
    exp = run(store, "wbe.default.svc.cluster.local")
    assert exp.namespace_exists is True
    assert explain.SERVICE_MISSING in exp.codes()
    assert exp.similar_services == ("web",)
    assert "web.default.svc.cluster.local." in exp.suggestions


def test_same_name_in_other_namespace(store: Store) -> None:
    exp = run(store, "web.shop.svc.cluster.local")
    assert exp.same_name_in == ("default",)
    assert explain.SAME_NAME_ELSEWHERE in exp.codes()


def test_wrong_zone(store: Store) -> None:
    exp = run(store, "web.default.svc.cluster.locl")
    assert exp.result.outcome == explain.FORWARDED and exp.parts.kind == "outside"
    assert explain.WRONG_ZONE in exp.codes()
    assert exp.suggestions == ("web.default.svc.cluster.local.",)


def test_too_many_labels(store: Store) -> None:
    exp = run(store, "x.a.b.web.default.svc.cluster.local")
    assert exp.result.rcode == "NXDOMAIN"
    assert exp.parts.problem == explain.TOO_MANY_LABELS
    assert explain.TOO_MANY_LABELS in exp.codes()


def test_svc_written_as_pod_and_pod_as_svc(store: Store) -> None:
    exp = run(store, "web.default.pod.cluster.local")
    assert exp.result.rcode == "NXDOMAIN"
    assert explain.SVC_POD_MIXUP in exp.codes()
    assert exp.suggestions == ("web.default.svc.cluster.local.",)
    exp = run(store, "10-244-1-10.default.svc.cluster.local")
    assert explain.SVC_POD_MIXUP in exp.codes()
    assert exp.suggestions == ("10-244-1-10.default.pod.cluster.local.",)


def test_bad_type_label(store: Store) -> None:
    exp = run(store, "web.default.svcs.cluster.local")
    assert explain.BAD_TYPE_LABEL in exp.codes()
    assert exp.suggestions == ("web.default.svc.cluster.local.",)


def test_short_name_without_a_namespace(store: Store) -> None:
    exp = run(store, "web.default")
    assert exp.result.outcome == explain.FORWARDED
    assert explain.NEEDS_SEARCH_PATH in exp.codes()
    assert exp.suggestions == ("web.default.svc.cluster.local.",)


# -- from a pod's point of view ----------------------------------------------------


def test_search_path_short_name_answers_first(store: Store) -> None:
    exp = run(store, "web", from_namespace="default")
    sp = exp.search
    assert sp is not None
    assert sp.search == ("default.svc.cluster.local", "svc.cluster.local", "cluster.local")
    assert [q.qname for q in sp.queries] == ["web.default.svc.cluster.local."]
    assert (sp.winner, sp.wasted) == (0, 0)
    assert exp.resolves and exp.service is not None and exp.service.name == "web"


def test_search_path_short_name_from_another_namespace(store: Store) -> None:
    exp = run(store, "web", from_namespace="shop")
    sp = exp.search
    assert sp is not None
    assert [(q.qname, q.outcome) for q in sp.queries] == [
        ("web.shop.svc.cluster.local.", explain.NXDOMAIN),
        ("web.svc.cluster.local.", explain.NXDOMAIN),
        ("web.cluster.local.", explain.NXDOMAIN),
        ("web.", explain.FORWARDED),
    ]
    assert not exp.resolves
    assert exp.subject == "web.shop.svc.cluster.local."
    assert exp.same_name_in == ("default",)


def test_search_path_external_name_amplification(store: Store) -> None:
    exp = run(store, "example.com", from_namespace="default", ndots=5)
    sp = exp.search
    assert sp is not None and sp.dots == 1
    assert [q.qname for q in sp.queries] == [
        "example.com.default.svc.cluster.local.",
        "example.com.svc.cluster.local.",
        "example.com.cluster.local.",
        "example.com.",
    ]
    assert [q.rcode for q in sp.queries] == ["NXDOMAIN", "NXDOMAIN", "NXDOMAIN", None]
    assert (sp.winner, sp.wasted) == (3, 3)
    assert exp.subject == "example.com."
    assert explain.NDOTS_AMPLIFICATION in exp.codes()
    assert explain.OUTSIDE_ZONE in exp.codes()
    assert explain.NAMESPACE_MISSING not in exp.codes()  # "com" is no namespace anyone meant


def test_search_path_absolute_name_goes_straight(store: Store) -> None:
    exp = run(store, "example.com.", from_namespace="default")
    assert exp.search is not None and exp.search.absolute
    assert [q.qname for q in exp.search.queries] == ["example.com."]
    assert explain.NDOTS_AMPLIFICATION not in exp.codes()


def test_search_path_fqdn_without_trailing_dot(store: Store) -> None:
    exp = run(store, "web.default.svc.cluster.local", from_namespace="shop")
    sp = exp.search
    assert sp is not None and sp.dots == 4
    assert len(sp.queries) == 4 and sp.winner == 3 and sp.wasted == 3
    assert exp.resolves and exp.result.qname == "web.default.svc.cluster.local."


def test_search_path_many_dots_asked_as_is_first(store: Store) -> None:
    exp = run(store, "web.default", from_namespace="shop", ndots=1)
    sp = exp.search
    assert sp is not None
    assert sp.queries[0].qname == "web.default." and sp.queries[0].outcome == explain.FORWARDED
    assert exp.resolves and exp.result.qname == "web.default.svc.cluster.local."


def test_search_path_names_the_missing_namespace(store: Store) -> None:
    exp = run(store, "wbe", from_namespace="default")
    assert exp.subject == "wbe.default.svc.cluster.local."
    assert exp.similar_services == ("web",)


def test_candidates_follow_glibc_order() -> None:
    search = ("a.svc.z", "svc.z", "z")
    assert explain.candidates("x", search, 5) == ["x.a.svc.z.", "x.svc.z.", "x.z.", "x."]
    assert explain.candidates("x.y", search, 1) == ["x.y.", "x.y.a.svc.z.", "x.y.svc.z.", "x.y.z."]
    assert explain.candidates("x.y.", search, 5) == ["x.y."]


# -- the command -------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = explain_cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json_parses(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(
        capsys, "frontend", "--from-namespace", "default", "--manifests", str(FIXTURE), "-o", "json"
    )
    assert code == 0
    data = json.loads(out)
    assert data["resolves"] is True
    assert data["search"]["queries"][0]["rcode"] == "NOERROR"
    assert data["service"]["cluster_ips"] == ["10.96.0.30"]
    assert {m["differs"]["key"] for m in data["selector"]["near_misses"]} == {"app", "tier"}
    assert explain.SELECTOR_MATCHES_NO_PODS in [f["code"] for f in data["findings"]]


def test_cli_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    src = ("--manifests", str(FIXTURE))
    assert cli(capsys, "web.default.svc.cluster.local", *src)[0] == 0
    assert cli(capsys, "wbe.default.svc.cluster.local", *src)[0] == 1
    assert cli(capsys, "web", "--type", "BOGUS", *src)[0] == 2
    assert cli(capsys, "web.default.svc.cluster.local")[0] == 2  # no source
    assert cli(capsys, "web", "--manifests", str(FIXTURE / "nope"))[0] == 2
    assert cli(capsys, "a..b", *src)[0] == 2


def test_cli_zone_and_type(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(
        capsys,
        "_http._tcp.web.default.svc.k8s.test",
        "--type",
        "SRV",
        "--zone",
        "k8s.test",
        "--manifests",
        str(FIXTURE),
        "-o",
        "json",
    )
    assert code == 0
    data = json.loads(out)
    assert data["result"]["answers"][0]["data"] == "0 100 80 web.default.svc.k8s.test."


@pytest.fixture
def snapshot_server(store: Store) -> Iterator[str]:
    body = json.dumps(explain.snapshot(store, SETTINGS)).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path == explain.SNAPSHOT_PATH
            self.send_response(200 if ok else 404)
            self.end_headers()
            if ok:
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_snapshot_round_trip(store: Store) -> None:
    copy, settings = explain.from_snapshot(
        json.loads(json.dumps(explain.snapshot(store, SETTINGS)))
    )
    assert settings == SETTINGS
    assert (copy.services, copy.slices, copy.pods, copy.namespaces) == (
        store.services,
        store.slices,
        store.pods,
        store.namespaces,
    )
    for name in ("frontend", "db.data", "wbe"):
        a = explain.explain(store, SETTINGS, name, from_namespace="default")
        b = explain.explain(copy, settings, name, from_namespace="default")
        assert explain.to_dict(a) == explain.to_dict(b)


def test_cli_server(capsys: pytest.CaptureFixture[str], snapshot_server: str) -> None:
    code, out, _ = cli(
        capsys, "db.data.svc.cluster.local", "--server", snapshot_server, "-o", "json"
    )
    assert code == 0
    assert json.loads(out)["service"]["headless"] is True
    code, _, err = cli(capsys, "web", "--server", snapshot_server + "/missing")
    assert code == 2 and explain.SNAPSHOT_PATH in err
