"""deploy/: what `kubectl kustomize` renders is valid Kubernetes and keeps kdns's invariants.

Every rendered object validates against the Kubernetes JSON schemas (kubernetes-validate,
strict: unknown fields fail) of the oldest and newest minor versions kdns supports. Then
the cross-object facts no schema can see: probes on the ports and paths the Corefile's
``health``/``ready`` open, the Corefile loading with kdns's own loader, RBAC equal to the
API calls kdns makes (derived from the informer and the Corefile, not restated), the
security context, the kube-dns Service, and the webhooks wired to the listener the
Corefile configures.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kdns.cluster.kube import informer
from kdns.corefile import goparse
from kdns.corefile.config import Config
from kdns.corefile.setup import RawDirective
from kdns.envinject import config as envinject_config
from kdns.ipam import config as ipam_config
from kdns.plugins import loader
from kdns.plugins.forward.setup import ForwardConfig
from kdns.plugins.health.setup import HealthConfig
from kdns.plugins.kubernetes.setup import KubernetesConfig
from kdns.plugins.prometheus.setup import PrometheusConfig
from kdns.plugins.ready.setup import ReadyConfig

Doc = dict[str, Any]

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
EXAMPLES = ROOT / "Corefile.compat" / "examples"
KUBECTL = "/usr/bin/kubectl"

TARGETS = (
    "base",
    "overlays/envinject",
    "overlays/clusterip",
    "overlays/nodelocal",
    "overlays/autoscaler",
)
# The oldest Kubernetes deploy/ supports (README, "Replacing CoreDNS"): the first minor in
# which every field it sets is on by default (FIELDS_SINCE), and every API kdns calls is
# served. kubernetes-validate has schemas from 1.25 on; its oldest is checked too, to show
# why the minimum is not lower.
OLDEST_KUBERNETES = "1.27"
# The clusterip overlay reads networking.k8s.io/v1 IPAddress objects, GA (v1) in 1.33.
OLDEST_BY_TARGET = {"overlays/clusterip": "1.33"}
NEWEST_KUBERNETES = kubernetes_validate.utils.major_minor(kubernetes_validate.latest_version())
# Fields deploy/ sets that older API servers accept but ignore (alpha, off by default):
# the minor in which each went beta, on by default. The PodDisruptionBudget's
# unhealthyPodEvictionPolicy (KEP-3017) and the spread constraints' matchLabelKeys
# (KEP-3243) are both beta since 1.27.
FIELDS_SINCE = {"unhealthyPodEvictionPolicy": "1.27", "matchLabelKeys": "1.27"}
# CRDs have no schema in kubernetes-validate; their objects get the structural checks of
# test_webhook_certificate instead.
CRD_GROUPS = frozenset({"cert-manager.io"})

NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "coredns"
CONF_DIR = "/etc/coredns"
CONF_PATH = "/etc/coredns/Corefile"
KUBE_DNS_IP = "10.96.0.10"
# kubelet sets this for the kube-dns-upstream Service; the node-local Corefile reads it.
NODELOCAL_ENV = {"KUBE_DNS_UPSTREAM_SERVICE_HOST": "10.96.0.11"}
WORKLOADS = ("Deployment", "DaemonSet")


# -- rendering and lookup ------------------------------------------------------------------


@functools.cache
def render(target: str) -> tuple[Doc, ...]:
    out = subprocess.run(
        [KUBECTL, "kustomize", str(DEPLOY / target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, f"kubectl kustomize deploy/{target}: {out.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def of_kind(docs: tuple[Doc, ...], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: tuple[Doc, ...], kind: str, name: str) -> Doc:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def pod_spec(workload: Doc) -> Doc:
    spec: Doc = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: Doc) -> Iterator[Doc]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def dns_workloads(docs: tuple[Doc, ...]) -> list[Doc]:
    """Workloads running kdns with a Corefile: `-conf /etc/coredns/Corefile`."""
    return [w for kind in WORKLOADS for w in of_kind(docs, kind) if kdns_container(w)]


def kdns_container(workload: Doc) -> Doc | None:
    for c in pod_spec(workload)["containers"]:
        if c.get("args") == ["-conf", CONF_PATH]:
            found: Doc = c
            return found
    return None


def corefile_text(docs: tuple[Doc, ...], workload: Doc) -> str:
    """The Corefile the workload mounts at /etc/coredns (key Corefile of its ConfigMap)."""
    container = kdns_container(workload)
    assert container is not None
    mount = [m for m in container["volumeMounts"] if m["mountPath"] == CONF_DIR]
    assert len(mount) == 1, "the Corefile's folder is mounted once"
    assert mount[0].get("readOnly") is True
    volume = [v for v in pod_spec(workload)["volumes"] if v["name"] == mount[0]["name"]]
    assert len(volume) == 1
    cm_ref = volume[0]["configMap"]
    items = cm_ref.get("items")
    if items is not None:
        assert {"key": "Corefile", "path": "Corefile"} in items
    cm = one(docs, "ConfigMap", cm_ref["name"])
    text: str = cm["data"]["Corefile"]
    return text


def load_corefile(text: str) -> Config:
    return loader.load_text(text, CONF_PATH, env=NODELOCAL_ENV)


def plugins(config: Config, kind: type[Any]) -> list[Any]:
    return [p for block in config.blocks for p in block.all(kind)]


def raw(config: Config, name: str) -> list[tuple[list[str], list[list[str]]]]:
    """Stanzas of a kdns directive whose parser lives outside the Corefile package."""
    out = []
    for directive in plugins(config, RawDirective):
        if directive.name == name:
            for args, lines in directive.stanzas:
                out.append((list(args), [list(line) for line in lines]))
    return out


def port_of(addr: str) -> tuple[str, int]:
    host, port = goparse.split_host_port(addr)
    return host, int(port)


def container_port(container: Doc, port: int | str, protocol: str = "TCP") -> int:
    """A probe's or Service's port, by number or by the container port's name."""
    for p in container.get("ports", []):
        if (p.get("name") == port or p["containerPort"] == port) and p.get(
            "protocol", "TCP"
        ) == protocol:
            number: int = p["containerPort"]
            return number
    raise AssertionError(f"container {container['name']} declares no {protocol} port {port}")


def matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against labels."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


# -- schemas -------------------------------------------------------------------------------


def minor(version: str) -> tuple[int, int]:
    major, _, rest = version.partition(".")
    return int(major), int(rest)


def oldest(target: str) -> str:
    return OLDEST_BY_TARGET.get(target, OLDEST_KUBERNETES)


def schema_errors(target: str, version: str) -> list[str]:
    errors = []
    for doc in render(target):
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if group_of(doc["apiVersion"]) in CRD_GROUPS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            errors.append(f"{name}: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(f"{name}: {e.message}")
    return errors


@pytest.mark.parametrize("newest", [False, True])
@pytest.mark.parametrize("target", TARGETS)
def test_manifests_validate_against_kubernetes_schemas(target: str, newest: bool) -> None:
    version = NEWEST_KUBERNETES if newest else oldest(target)
    errors = schema_errors(target, version)
    assert not errors, f"deploy/{target} against Kubernetes {version}:\n" + "\n".join(errors)


def field_names(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from field_names(v)
    elif isinstance(value, list):
        for item in value:
            yield from field_names(item)


@pytest.mark.parametrize("target", TARGETS)
def test_minimum_kubernetes_is_where_every_field_is_on(target: str) -> None:
    """A schema accepts an alpha field that the API server then drops: check by version."""
    used = {f for doc in render(target) for f in field_names(doc)}
    for field, since in FIELDS_SINCE.items():
        if field in used:
            assert minor(oldest(target)) >= minor(since), (field, since)
    assert minor(oldest(target)) >= minor(OLDEST_KUBERNETES)


def test_the_oldest_schemas_refuse_deploy() -> None:
    """kubernetes-validate's oldest schemas (1.25) lack unhealthyPodEvictionPolicy: the
    schema test does find version skew, and 1.25 is not supported."""
    known = kubernetes_validate.utils.all_versions()
    oldest_known = min((kubernetes_validate.utils.major_minor(v) for v in known), key=minor)
    assert minor(oldest_known) < minor(OLDEST_KUBERNETES)
    errors = schema_errors("base", oldest_known)
    assert errors and all("unhealthyPodEvictionPolicy" in e for e in errors), errors


def test_readme_states_the_minimum_kubernetes() -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"Kubernetes {OLDEST_KUBERNETES} or newer" in readme
    for target, version in OLDEST_BY_TARGET.items():
        assert f"`deploy/{target}` needs {version}" in readme


def test_schema_check_catches_a_misspelt_field() -> None:
    """Strict schemas: an unknown field fails, so the test above is not vacuous."""
    doc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": 53, "protocl": "UDP"}]},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, OLDEST_KUBERNETES, strict=True)


def test_deploy_folder_renders_the_base() -> None:
    assert render(".") == render("base")


# Lease objects only: the allocator's election and claims (components/clusterip).
LEASE_NAMESPACE = ipam_config.DEFAULT_LEASE_NAMESPACE
CLUSTER_SCOPED = ("ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration", "Namespace")


def test_everything_lives_in_kube_system() -> None:
    """Except the allocator's Leases: not beside the control plane's election Leases."""
    for target in TARGETS:
        for doc in render(target):
            namespace = doc["metadata"].get("namespace")
            if doc["kind"] in CLUSTER_SCOPED:
                assert namespace is None
            elif doc["metadata"]["name"] == "kdns:clusterip-leader":
                assert namespace == LEASE_NAMESPACE, doc
            else:
                assert namespace == NAMESPACE, f"{target}: {doc['kind']}/{doc['metadata']['name']}"


# -- the Corefile --------------------------------------------------------------------------


def test_base_corefile_is_kubeadms() -> None:
    """The ConfigMap carries kubeadm's default Corefile unchanged (Corefile.compat example)."""
    docs = render("base")
    cm = one(docs, "ConfigMap", "coredns")
    assert cm["data"]["Corefile"] == (EXAMPLES / "kubeadm.Corefile").read_text()


def test_nodelocal_corefile_is_node_caches() -> None:
    """NodeLocal DNSCache's Corefile, its upstream read from kubelet's service variable."""
    docs = render("overlays/nodelocal")
    text = one(docs, "ConfigMap", "node-local-dns")["data"]["Corefile"]
    upstream = (EXAMPLES / "nodelocaldns.Corefile").read_text()
    assert text == upstream.replace("10.96.0.11", "{$KUBE_DNS_UPSTREAM_SERVICE_HOST}")


@pytest.mark.parametrize("target", TARGETS)
def test_corefiles_load_with_kdns(target: str) -> None:
    docs = render(target)
    workloads = dns_workloads(docs)
    assert workloads
    for workload in workloads:
        config = load_corefile(corefile_text(docs, workload))
        assert not config.builtin_default
        assert not config.warnings, config.warnings
        for args, lines in raw(config, "envinject"):
            envinject_config.parse_envinject(args, lines)
        for args, lines in raw(config, "clusterip"):
            ipam_config.parse_clusterip(args, lines)


@pytest.mark.parametrize(
    ("target", "added"),
    [("overlays/envinject", {"envinject"}), ("overlays/clusterip", {"envinject", "clusterip"})],
)
def test_overlay_corefiles_only_add_kdns_directives(target: str, added: set[str]) -> None:
    base = load_corefile(one(render("base"), "ConfigMap", "coredns")["data"]["Corefile"])
    overlay = load_corefile(one(render(target), "ConfigMap", "coredns")["data"]["Corefile"])
    assert [b.keys for b in overlay.blocks] == [b.keys for b in base.blocks]
    for ours, theirs in zip(overlay.blocks, base.blocks, strict=True):
        assert {name for name, _ in ours.plugins} - {name for name, _ in theirs.plugins} == added
        assert [p for p in ours.plugins if p[0] not in added] == list(theirs.plugins)


# -- probes, ports, lifecycle --------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_probes_match_the_corefile(target: str) -> None:
    docs = render(target)
    for workload in dns_workloads(docs):
        config = load_corefile(corefile_text(docs, workload))
        container = kdns_container(workload)
        assert container is not None
        health = plugins(config, HealthConfig)
        ready = plugins(config, ReadyConfig)

        assert health, "liveness needs the Corefile's health plugin"
        host, port = port_of(health[-1].addr)
        probe = container["livenessProbe"]["httpGet"]
        assert probe["path"] == "/health"
        assert probe.get("scheme", "HTTP") == "HTTP"
        assert container_port(container, probe["port"]) == port
        # A health listener bound to one address (node-local's link-local) is probed there.
        assert probe.get("host", "") == host

        if ready:
            host, port = port_of(ready[0].addr)
            probe = container["readinessProbe"]["httpGet"]
            assert probe["path"] == "/ready"
            assert container_port(container, probe["port"]) == port
            assert probe.get("host", "") == host
        else:
            assert "readinessProbe" not in container, "no ready plugin: /ready would 404"


@pytest.mark.parametrize("target", TARGETS)
def test_declared_ports_match_the_corefile(target: str) -> None:
    docs = render(target)
    for workload in dns_workloads(docs):
        config = load_corefile(corefile_text(docs, workload))
        container = kdns_container(workload)
        assert container is not None
        for block in config.blocks:
            for key in block.keys:
                assert container_port(container, int(key.port), "UDP") == int(key.port)
                assert container_port(container, int(key.port), "TCP") == int(key.port)
        for prometheus in plugins(config, PrometheusConfig):
            _, port = port_of(prometheus.addr)
            assert container_port(container, port) == port


@pytest.mark.parametrize("target", TARGETS)
def test_termination_grace_outlasts_the_lameduck(target: str) -> None:
    """SIGTERM, then lameduck answering, then draining: all before the SIGKILL."""
    docs = render(target)
    for workload in dns_workloads(docs):
        config = load_corefile(corefile_text(docs, workload))
        lameduck = max((h.lameduck for h in plugins(config, HealthConfig)), default=0.0)
        grace = pod_spec(workload).get("terminationGracePeriodSeconds", 30)
        assert grace >= lameduck + 10, (grace, lameduck)


# -- RBAC ----------------------------------------------------------------------------------

Grant = tuple[str, str, str]  # (scope: "cluster" or a namespace, apiGroup, resource)


def resource_of(path: str) -> tuple[str, str]:
    """An informer's list path to (apiGroup, resource)."""
    m = re.fullmatch(r"/api/v1/([a-z]+)|/apis/([^/]+)/[^/]+/([a-z]+)", path)
    assert m, path
    return ("", m[1]) if m[1] else (m[2], m[3])


def expected_grants(config: Config) -> dict[Grant, set[str]]:
    """What kdns calls for this Corefile: the informer's kinds, the allocator's extras."""
    kinds = [informer.NAMESPACES, informer.SERVICES, informer.SLICES]
    if any(k.pods == "verified" for k in plugins(config, KubernetesConfig)):
        kinds.append(informer.PODS)
    if any(k.multicluster for k in plugins(config, KubernetesConfig)):
        kinds.append(informer.SERVICE_IMPORTS)
    grants: dict[Grant, set[str]] = {}
    for kind in kinds:
        grants[("cluster", *resource_of(kind.path))] = {"list", "watch"}
    if raw(config, "clusterip"):
        grants[("cluster", "", "services")] |= {"get"}
        # IPAddress objects are only read (see Corefile.compat/clusterip.md, cluster mode);
        # Leases elect the allocating replica and claim each address it picks.
        grants[("cluster", "networking.k8s.io", "ipaddresses")] = {"get"}
        ((args, lines),) = raw(config, "clusterip")
        leases = ipam_config.parse_clusterip(args, lines).lease_namespace
        grants[(leases, "coordination.k8s.io", "leases")] = {
            "get", "list", "create", "update", "delete",
        }  # fmt: skip
    return grants


def granted(docs: tuple[Doc, ...], namespace: str, account: str) -> dict[Grant, set[str]]:
    grants: dict[Grant, set[str]] = {}
    for binding in of_kind(docs, "ClusterRoleBinding") + of_kind(docs, "RoleBinding"):
        subjects = binding.get("subjects", [])
        if not any(
            s["kind"] == "ServiceAccount" and s["name"] == account and s["namespace"] == namespace
            for s in subjects
        ):
            continue
        ref = binding["roleRef"]
        role = one(docs, ref["kind"], ref["name"])
        scope = (
            "cluster"
            if binding["kind"] == "ClusterRoleBinding"
            else binding["metadata"]["namespace"]
        )
        for rule in role["rules"]:
            assert "resourceNames" not in rule and "nonResourceURLs" not in rule, rule
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    assert "*" not in (group, resource, *rule["verbs"]), rule
                    grants.setdefault((scope, group, resource), set()).update(rule["verbs"])
    return grants


@pytest.mark.parametrize("target", TARGETS)
def test_rbac_grants_exactly_what_kdns_calls(target: str) -> None:
    docs = render(target)
    (deployment,) = [w for w in dns_workloads(docs) if w["kind"] == "Deployment"]
    assert pod_spec(deployment)["serviceAccountName"] == SERVICE_ACCOUNT
    config = load_corefile(corefile_text(docs, deployment))
    assert granted(docs, NAMESPACE, SERVICE_ACCOUNT) == expected_grants(config)


def test_rbac_expectation_follows_pods_verified() -> None:
    text = (EXAMPLES / "kubeadm.Corefile").read_text().replace("pods insecure", "pods verified")
    assert ("cluster", "", "pods") in expected_grants(load_corefile(text))
    assert ("cluster", "", "pods") not in expected_grants(
        load_corefile(text.replace("verified", "insecure"))
    )


def test_rbac_expectation_follows_multicluster() -> None:
    """ServiceImports are listed and watched only when a zone is multicluster."""
    text = (EXAMPLES / "kubeadm.Corefile").read_text()
    grant = ("cluster", "multicluster.x-k8s.io", "serviceimports")
    assert grant not in expected_grants(load_corefile(text))
    text = text.replace("cluster.local in-addr.arpa", "cluster.local clusterset.local in-addr.arpa")
    text = text.replace("pods insecure", "pods insecure\n       multicluster clusterset.local")
    assert expected_grants(load_corefile(text))[grant] == {"list", "watch"}


@pytest.mark.parametrize("target", TARGETS)
def test_every_role_is_bound_to_kdns(target: str) -> None:
    docs = render(target)
    bound = {
        (b["roleRef"]["kind"], b["roleRef"]["name"])
        for b in of_kind(docs, "ClusterRoleBinding") + of_kind(docs, "RoleBinding")
        for s in b["subjects"]
        if s == {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}
    }
    roles = {
        (d["kind"], d["metadata"]["name"])
        for d in of_kind(docs, "ClusterRole") + of_kind(docs, "Role")
        if not d["metadata"]["name"].startswith(AUTOSCALER_ROLES)
    }
    assert roles == bound


def test_node_cache_has_no_api_access() -> None:
    docs = render("overlays/nodelocal")
    daemonset = one(docs, "DaemonSet", "node-local-dns")
    account = pod_spec(daemonset)["serviceAccountName"]
    assert account != SERVICE_ACCOUNT
    assert pod_spec(daemonset)["automountServiceAccountToken"] is False
    assert one(docs, "ServiceAccount", account)["automountServiceAccountToken"] is False
    assert granted(docs, NAMESPACE, account) == {}
    config = load_corefile(corefile_text(docs, daemonset))
    assert not plugins(config, KubernetesConfig)


# -- security --------------------------------------------------------------------------------

# Containers allowed more than NET_BIND_SERVICE, and why.
EXTRA_CAPABILITIES = {
    # NodeLocal DNSCache: a dummy interface and NOTRACK rules on the host, once per start.
    ("node-local-dns", "setup-interface"): {"NET_ADMIN", "NET_RAW"},
    # cluster-proportional-autoscaler only talks to the API server.
    ("dns-autoscaler", "autoscaler"): set(),
}
ROOT_CONTAINERS = {("node-local-dns", "setup-interface")}  # iptables needs uid 0


@pytest.mark.parametrize("target", TARGETS)
def test_security_context(target: str) -> None:
    for workload in [w for kind in WORKLOADS for w in of_kind(render(target), kind)]:
        spec = pod_spec(workload)
        pod_sc = spec.get("securityContext", {})
        name = workload["metadata"]["name"]
        for c in containers(workload):
            sc = c["securityContext"]
            where = f"{target} {name}/{c['name']}"
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile"))
            assert seccomp == {"type": "RuntimeDefault"}, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc.get("privileged", False) is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            allowed = EXTRA_CAPABILITIES.get((name, c["name"]), {"NET_BIND_SERVICE"})
            assert set(sc["capabilities"].get("add", [])) == allowed, where
            if (name, c["name"]) in ROOT_CONTAINERS:
                assert c in spec.get("initContainers", []), f"{where}: root only briefly"
                continue
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            assert sc.get("runAsUser", pod_sc.get("runAsUser", 0)) != 0, where
        assert spec.get("hostNetwork", False) == (workload["kind"] == "DaemonSet")
        assert spec.get("hostPID", False) is False and spec.get("hostIPC", False) is False


# -- the Deployment, its budget and the kube-dns Service ------------------------------------


def test_deployment_replaces_kubeadms_coredns() -> None:
    docs = render("base")
    deployment = one(docs, "Deployment", "coredns")
    spec = deployment["spec"]
    pod = pod_spec(deployment)
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"] == {"matchLabels": {"k8s-app": "kube-dns"}}  # kubeadm's, immutable
    assert spec["replicas"] == 2
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["dnsPolicy"] == "Default"
    assert {"key": "CriticalAddonsOnly", "operator": "Exists"} in pod["tolerations"]
    assert {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    spread = pod.get("topologySpreadConstraints", [])
    assert any(
        t["topologyKey"] == "kubernetes.io/hostname" and matches(t["labelSelector"], labels)
        for t in spread
    )
    (container,) = pod["containers"]
    assert container["name"] == "coredns"  # kubeadm's: an apply over it replaces, not adds
    assert container["args"] == ["-conf", CONF_PATH]
    assert not container["image"].endswith(":latest") and ":" in container["image"]
    resources = container["resources"]
    assert resources["limits"] == {"memory": "170Mi"}  # no CPU limit: no CFS throttling of DNS
    assert resources["requests"]["cpu"] == "100m"
    pdb = one(docs, "PodDisruptionBudget", "coredns")
    assert matches(pdb["spec"]["selector"], labels)
    assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable") == 1


@pytest.mark.parametrize("target", TARGETS)
def test_kube_dns_service(target: str) -> None:
    docs = render(target)
    service = one(docs, "Service", "kube-dns")
    deployment = one(docs, "Deployment", "coredns")
    container = kdns_container(deployment)
    assert container is not None
    assert service["metadata"]["labels"] == {
        "k8s-app": "kube-dns",
        "kubernetes.io/cluster-service": "true",
        "kubernetes.io/name": "CoreDNS",
        "app.kubernetes.io/part-of": "kdns",
    }
    assert service["spec"]["clusterIP"] == KUBE_DNS_IP
    assert matches(
        {"matchLabels": service["spec"]["selector"]},
        deployment["spec"]["template"]["metadata"]["labels"],
    )
    ports = {(p["name"], p["port"], p["protocol"]) for p in service["spec"]["ports"]}
    assert ports == {("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")}
    for p in service["spec"]["ports"]:
        assert container_port(container, p["targetPort"], p["protocol"]) == p["port"]


@pytest.mark.parametrize("target", TARGETS)
def test_network_policy(target: str) -> None:
    """DNS from anywhere, metrics from `monitoring` only, the webhook port when served."""
    docs = render(target)
    policy = one(docs, "NetworkPolicy", "coredns")
    deployment = one(docs, "Deployment", "coredns")
    assert matches(
        policy["spec"]["podSelector"], deployment["spec"]["template"]["metadata"]["labels"]
    )
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    open_ports: set[tuple[int, str]] = set()
    metrics_from: list[Any] = []
    for rule in policy["spec"]["ingress"]:
        ports = {(p["port"], p.get("protocol", "TCP")) for p in rule["ports"]}
        if "from" in rule:
            assert ports == {(9153, "TCP")}
            metrics_from.extend(rule["from"])
        else:
            open_ports |= ports
    assert metrics_from == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    config = load_corefile(corefile_text(docs, deployment))
    webhook = {
        (envinject_config.parse_envinject(a, b).port, "TCP") for a, b in raw(config, "envinject")
    }
    assert open_ports == {(53, "UDP"), (53, "TCP")} | webhook


# -- webhooks ------------------------------------------------------------------------------

WEBHOOK_OVERLAYS = [
    ("overlays/envinject", "kdns-envinject", "/inject"),
    ("overlays/clusterip", "kdns-clusterip", "/allocate"),
]


@pytest.mark.parametrize(("target", "name", "path"), WEBHOOK_OVERLAYS)
def test_webhook_reaches_the_corefiles_listener(target: str, name: str, path: str) -> None:
    docs = render(target)
    deployment = one(docs, "Deployment", "coredns")
    container = kdns_container(deployment)
    assert container is not None
    config = load_corefile(corefile_text(docs, deployment))
    ((args, lines),) = raw(config, "envinject")
    listener = envinject_config.parse_envinject(args, lines)
    paths = {"/inject": listener.path}
    for c_args, c_lines in raw(config, "clusterip"):
        paths["/allocate"] = ipam_config.parse_clusterip(c_args, c_lines).webhook

    (webhook,) = one(docs, "MutatingWebhookConfiguration", name)["webhooks"]
    ref = webhook["clientConfig"]["service"]
    assert ref["path"] == paths[path] == path
    service = one(docs, "Service", ref["name"])
    assert ref["namespace"] == service["metadata"]["namespace"]
    assert matches(
        {"matchLabels": service["spec"]["selector"]},
        deployment["spec"]["template"]["metadata"]["labels"],
    )
    (port,) = [p for p in service["spec"]["ports"] if p["port"] == ref.get("port", 443)]
    assert container_port(container, port["targetPort"]) == listener.port

    # The TLS pair the Corefile names comes from the Secret cert-manager writes.
    tls_dir = str(Path(listener.cert_file).parent)
    assert str(Path(listener.key_file).parent) == tls_dir
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == tls_dir]
    (volume,) = [v for v in pod_spec(deployment)["volumes"] if v["name"] == mount["name"]]
    annotation = one(docs, "MutatingWebhookConfiguration", name)["metadata"]["annotations"]
    ca_namespace, _, certificate_name = annotation["cert-manager.io/inject-ca-from"].partition("/")
    certificate = one(docs, "Certificate", certificate_name)
    assert certificate["metadata"]["namespace"] == ca_namespace
    assert certificate["spec"]["secretName"] == volume["secret"]["secretName"]
    assert f"{ref['name']}.{ref['namespace']}.svc" in certificate["spec"]["dnsNames"]
    issuer = certificate["spec"]["issuerRef"]
    one(docs, issuer.get("kind", "Issuer"), issuer["name"])


@pytest.mark.parametrize(("target", "name", "path"), WEBHOOK_OVERLAYS)
def test_webhook_cannot_lock_the_cluster(target: str, name: str, path: str) -> None:
    docs = render(target)
    (webhook,) = one(docs, "MutatingWebhookConfiguration", name)["webhooks"]
    assert webhook["failurePolicy"] == "Ignore"
    assert webhook["timeoutSeconds"] == 2
    assert webhook["admissionReviewVersions"] == ["v1"]
    assert webhook["sideEffects"] in ("None", "NoneOnDryRun")
    (rule,) = webhook["rules"]
    assert rule["operations"] == ["CREATE"]
    kube_system = {"kubernetes.io/metadata.name": NAMESPACE}
    assert not matches(webhook["namespaceSelector"], kube_system)


def test_envinject_webhook_is_opt_in() -> None:
    docs = render("overlays/envinject")
    (webhook,) = one(docs, "MutatingWebhookConfiguration", "kdns-envinject")["webhooks"]
    assert webhook["sideEffects"] == "None"
    assert webhook["reinvocationPolicy"] == "IfNeeded"
    assert webhook["rules"][0]["resources"] == ["pods"]
    selector = webhook["namespaceSelector"]
    assert not matches(selector, {"kubernetes.io/metadata.name": "default"})
    assert matches(
        selector,
        {"kubernetes.io/metadata.name": "default", "kdns.io/inject-service-env": "enabled"},
    )
    assert not matches(
        selector,
        {"kubernetes.io/metadata.name": NAMESPACE, "kdns.io/inject-service-env": "enabled"},
    )
    nodelocal = render("overlays/nodelocal")
    for workload in [w for kind in WORKLOADS for w in of_kind(docs + nodelocal, kind)]:
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert not matches(webhook["objectSelector"], labels), "kdns's own pods are never sent"


def test_clusterip_webhook_and_reservation() -> None:
    docs = render("overlays/clusterip")
    (webhook,) = one(docs, "MutatingWebhookConfiguration", "kdns-clusterip")["webhooks"]
    assert webhook["rules"][0]["resources"] == ["services"]
    config = load_corefile(one(docs, "ConfigMap", "coredns")["data"]["Corefile"])
    ((args, lines),) = raw(config, "clusterip")
    allocator = ipam_config.parse_clusterip(args, lines)
    assert KUBE_DNS_IP in {r.ip for r in allocator.reservations}
    assert any(
        ipaddress.ip_address(KUBE_DNS_IP) in ipaddress.ip_network(cidr) for cidr in allocator.cidrs
    )


# -- NodeLocal DNSCache --------------------------------------------------------------------


def test_nodelocal_daemonset() -> None:
    docs = render("overlays/nodelocal")
    daemonset = one(docs, "DaemonSet", "node-local-dns")
    pod = pod_spec(daemonset)
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "Default"
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod.get("enableServiceLinks", True) is True, "the upstream address is a service variable"
    config = load_corefile(corefile_text(docs, daemonset))

    # Listens on the link-local address and on kube-dns's, as node-cache does.
    hosts = {h for block in config.blocks for h in block.listen_hosts}
    assert hosts == {"169.254.20.10", KUBE_DNS_IP}
    assert ipaddress.ip_address("169.254.20.10").is_link_local
    assert one(docs, "Service", "kube-dns")["spec"]["clusterIP"] == KUBE_DNS_IP
    (init,) = pod["initContainers"]
    env = {e["name"]: e["value"] for e in init["env"]}
    assert set(env["LOCAL_IPS"].split()) == hosts, "the init container adds what bind uses"

    # Cluster zones go over TCP to kube-dns-upstream, which selects the kdns Deployment.
    upstream = one(docs, "Service", "kube-dns-upstream")
    deployment = one(docs, "Deployment", "coredns")
    assert matches(
        {"matchLabels": upstream["spec"]["selector"]},
        deployment["spec"]["template"]["metadata"]["labels"],
    )
    variable = upstream["metadata"]["name"].upper().replace("-", "_") + "_SERVICE_HOST"
    assert set(NODELOCAL_ENV) == {variable}
    for block in config.blocks:
        for forward in block.all(ForwardConfig):
            if block.keys[0].zone == ".":
                assert forward.to_args == ("/etc/resolv.conf",)
            else:
                assert [u.host for u in forward.to] == [NODELOCAL_ENV[variable]]
                assert forward.force_tcp


def test_clusterip_overlay_gives_the_allocator_its_pod_identity() -> None:
    """The elected allocator names its Lease holder after POD_NAME/POD_IP (server.lifecycle)."""
    docs = render("overlays/clusterip")
    (deployment,) = [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "coredns"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container.get("env", [])}
    assert env == {
        "POD_NAME": "metadata.name",
        "POD_NAMESPACE": "metadata.namespace",
        "POD_IP": "status.podIP",
    }


# -- images, settings and the autoscaler ----------------------------------------------------

IMAGES = DEPLOY / "components" / "images" / "kustomization.yaml"
SETTINGS = DEPLOY / "base" / "settings.yaml"
AUTOSCALER_ROLES = "kdns:dns-autoscaler"


def render_copy(root: Path, target: str) -> tuple[Doc, ...]:
    out = subprocess.run(
        [KUBECTL, "kustomize", str(root / target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def every_image(docs: tuple[Doc, ...]) -> dict[tuple[str, str], str]:
    return {
        (w["metadata"]["name"], c["name"]): c["image"]
        for kind in WORKLOADS
        for w in of_kind(docs, kind)
        for c in containers(w)
    }


def test_one_place_sets_every_image(tmp_path: Path) -> None:
    """Editing components/images reaches every container of every target."""
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    images = copy / "components" / "images" / "kustomization.yaml"
    config = yaml.safe_load(images.read_text())
    for entry in config["images"]:
        entry["newName"] = "registry.example/mirror/" + entry["name"]
        entry["newTag"] = "9.9.9"
    images.write_text(yaml.safe_dump(config))
    for target in (".", *TARGETS):
        found = every_image(render_copy(copy, target))
        assert found, target
        for where, image in found.items():
            assert image.startswith("registry.example/mirror/"), (target, where, image)
            assert image.endswith(":9.9.9"), (target, where, image)
    # And nowhere else: no kustomization outside components/images names an image.
    for path in DEPLOY.rglob("kustomization.yaml"):
        if path != IMAGES:
            assert "images" not in (yaml.safe_load(path.read_text()) or {}), path


def test_metrics_namespace_is_set_in_one_place(tmp_path: Path) -> None:
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    settings = copy / "base" / "settings.yaml"
    settings.write_text(
        settings.read_text().replace(
            "metricsNamespace: monitoring", "metricsNamespace: observability"
        )
    )
    assert yaml.safe_load(SETTINGS.read_text())["data"]["metricsNamespace"] == "monitoring"
    for target in TARGETS:
        docs = render_copy(copy, target)
        assert not [d for d in docs if d["metadata"]["name"] == "kdns-settings"], "local only"
        policy = one(docs, "NetworkPolicy", "coredns")
        metrics = [rule for rule in policy["spec"]["ingress"] if "from" in rule]
        assert metrics == [
            {
                "from": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": "observability"}
                        }
                    }
                ],
                "ports": [{"port": 9153, "protocol": "TCP"}],
            }
        ], target


def test_autoscaler_scales_the_kdns_deployment_linearly() -> None:
    """cluster-proportional-autoscaler as kubernetes' dns-horizontal-autoscaler addon."""
    docs = render("overlays/autoscaler")
    coredns = one(docs, "Deployment", "coredns")
    assert "replicas" not in coredns["spec"], "the autoscaler owns replicas"
    assert "replicas" in one(render("base"), "Deployment", "coredns")["spec"]
    deployment = one(docs, "Deployment", "dns-autoscaler")
    (container,) = pod_spec(deployment)["containers"]
    flags = dict(a.split("=", 1) for a in container["command"][1:])
    cm = one(docs, "ConfigMap", flags["--configmap"])
    linear = {"coresPerReplica": 256, "nodesPerReplica": 16, "preventSinglePointFailure": True}
    assert json.loads(cm["data"]["linear"]) == linear
    assert json.loads(flags["--default-params"]) == {"linear": linear}
    assert flags["--namespace"] == cm["metadata"]["namespace"] == NAMESPACE
    assert flags["--target"] == "Deployment/" + coredns["metadata"]["name"]
    account = pod_spec(deployment)["serviceAccountName"]
    grants = granted(docs, NAMESPACE, account)
    assert grants == {
        ("cluster", "", "nodes"): {"list", "watch"},
        (NAMESPACE, "apps", "deployments/scale"): {"get", "update"},
        (NAMESPACE, "", "configmaps"): {"get", "create"},
    }
    assert container["image"].startswith("registry.k8s.io/cpa/cluster-proportional-autoscaler:")
