"""The resource types the emulator serves, as one table.

Discovery documents, URL routing, field-selector validation and delete replies all
derive from this table, so adding a resource is one line and the places that describe
it cannot drift apart the way hand-written discovery JSON would.
"""

from __future__ import annotations

from dataclasses import dataclass, field

VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True, slots=True)
class Resource:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    extra_field_labels: frozenset[str] = field(default_factory=frozenset)
    returns_deleted_object: bool = False
    """True where the real registry answers DELETE with the object, not a Status."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def qualified(self) -> str:
        """The name error messages use: ``services`` or ``endpointslices.discovery.k8s.io``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def field_labels(self) -> frozenset[str]:
        return frozenset({"metadata.name", "metadata.namespace"}) | self.extra_field_labels


RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "namespaces", "namespace", "Namespace", False, ("ns",),
             frozenset({"status.phase"})),
    Resource("", "v1", "services", "service", "Service", True, ("svc",),
             returns_deleted_object=True),
    Resource("", "v1", "endpoints", "endpoints", "Endpoints", True, ("ep",)),
    Resource("", "v1", "pods", "pod", "Pod", True, ("po",),
             frozenset({"spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                        "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
                        "status.podIP", "status.nominatedNodeName"}),
             returns_deleted_object=True),
    Resource("discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice",
             True),
    Resource("coordination.k8s.io", "v1", "leases", "lease", "Lease", True),
    # Multi-Cluster Services API (a CRD in a real cluster): kdns's `multicluster` reads it.
    Resource("multicluster.x-k8s.io", "v1alpha1", "serviceimports", "serviceimport",
             "ServiceImport", True, ("svcim",)),
    Resource("networking.k8s.io", "v1", "ipaddresses", "ipaddress", "IPAddress", False,
             ("ip",)),
    # What deploy/ writes (tests/test_migration.py): stored and served, never acted on.
    Resource("", "v1", "configmaps", "configmap", "ConfigMap", True, ("cm",)),
    Resource("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", True, ("sa",)),
    Resource("apps", "v1", "deployments", "deployment", "Deployment", True, ("deploy",)),
    Resource("apps", "v1", "daemonsets", "daemonset", "DaemonSet", True, ("ds",)),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "clusterrole", "ClusterRole",
             False),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "clusterrolebinding",
             "ClusterRoleBinding", False),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "role", "Role", True),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "rolebinding", "RoleBinding",
             True),
    Resource("networking.k8s.io", "v1", "networkpolicies", "networkpolicy", "NetworkPolicy",
             True, ("netpol",)),
    Resource("policy", "v1", "poddisruptionbudgets", "poddisruptionbudget",
             "PodDisruptionBudget", True, ("pdb",)),
    Resource("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
             "mutatingwebhookconfiguration", "MutatingWebhookConfiguration", False),
    Resource("cert-manager.io", "v1", "issuers", "issuer", "Issuer", True),
    Resource("cert-manager.io", "v1", "certificates", "certificate", "Certificate", True,
             ("cert",)),
)  # fmt: skip


def by_path(group: str, version: str, plural: str) -> Resource | None:
    for resource in RESOURCES:
        if (resource.group, resource.version, resource.plural) == (group, version, plural):
            return resource
    return None


def by_kind(api_version: str, kind: str) -> Resource | None:
    for resource in RESOURCES:
        if (resource.api_version, resource.kind) == (api_version, kind):
            return resource
    return None


def groups() -> dict[str, list[str]]:
    """Named API groups (not the core group) and their versions, in table order."""
    found: dict[str, list[str]] = {}
    for resource in RESOURCES:
        if resource.group and resource.version not in found.setdefault(resource.group, []):
            found[resource.group].append(resource.version)
    return found


def named(plural: str, group: str = "") -> Resource:
    """A resource the emulator is known to serve; a KeyError is a bug in the caller."""
    for resource in RESOURCES:
        if (resource.group, resource.plural) == (group, plural):
            return resource
    raise KeyError(f"{plural}.{group}")
