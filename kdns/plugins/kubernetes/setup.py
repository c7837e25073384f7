"""``kubernetes [ZONES...] { ... }``: the cluster zone and how to reach the API.

CoreDNS's option set and errors, so Corefiles from every distribution load unchanged,
plus kdns's ``manifests DIR`` (a folder of YAML instead of an API server). Options
removed upstream (``upstream``, ``resyncperiod`` in 1.7.0, ``transfer`` in 1.8.0) fail as
``unknown property`` exactly like current CoreDNS; ``kdns validate`` adds the hint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from kdns.corefile import goparse, keys
from kdns.corefile.dispenser import Dispenser
from kdns.corefile.errors import CorefileError
from kdns.corefile.setup import SetupContext, fall_zones, once, where

PODS_DISABLED, PODS_INSECURE, PODS_VERIFIED = "disabled", "insecure", "verified"

_NO_RATE_LIMIT = (
    "kdns sends no burst of API requests to limit (one list and one watch per resource, "
    "a re-list only after 410 Gone or a reconnect)"
)
NOT_ACTED_ON = {
    "apiserver_qps": _NO_RATE_LIMIT,
    "apiserver_burst": _NO_RATE_LIMIT,
    "apiserver_max_inflight": _NO_RATE_LIMIT,
    "ignore": "a bare ignore does nothing (as in CoreDNS); write `ignore empty_service`",
}
API_ONLY = ("endpoint", "tls", "kubeconfig", "labels", "namespace_labels", "snapshot")
"""Options about the API server, meaningless when ``manifests DIR`` is the source."""


@dataclass(frozen=True, slots=True)
class KubernetesConfig:
    NAME: ClassVar[str] = "kubernetes"

    zones: tuple[str, ...]
    primary_zone: str
    endpoint: str | None = None  # only the first of several, as CoreDNS
    tls: tuple[str, str, str] | None = None  # cert, key, CA for ``endpoint``
    kubeconfig: str | None = None
    context: str | None = None
    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    labels: str | None = None
    namespace_labels: str | None = None
    endpoint_pod_names: bool = False
    ttl: int = 5
    noendpoints: bool = False
    ignore_empty_service: bool = False
    fallthrough: tuple[str, ...] = ()  # empty: never fall through
    pods: str = PODS_DISABLED
    startup_timeout: float = 5.0
    multicluster: tuple[str, ...] = ()
    apiserver_qps: float | None = None
    apiserver_burst: int | None = None
    apiserver_max_inflight: int | None = None
    zonal: bool = False
    manifests: str | None = None  # kdns: a folder of Kubernetes YAML as the source
    snapshot: str | None = None  # kdns: where the last good state is persisted


def parse(d: Dispenser, ctx: SetupContext) -> list[KubernetesConfig]:
    config: KubernetesConfig | None = None
    for _ in once(d):
        config = _stanza(d, ctx)
    assert config is not None
    return [config]


def _stanza(d: Dispenser, ctx: SetupContext) -> KubernetesConfig:
    zones = tuple(keys.origins(d.remaining_args(), ctx.keys))
    primary = next((z for z in zones if not keys.is_reverse(z)), None)
    if primary is None:
        raise CorefileError("non-reverse zone name must be used")
    opts: dict[str, object] = {}
    namespaces: list[str] = []
    seen: dict[str, str] = {}  # option -> where it was written, for warnings
    while d.next_block():
        option = d.val()
        seen.setdefault(option, where(d))
        if option == "endpoint_pod_names":
            if d.remaining_args():
                raise d.arg_err()
            opts["endpoint_pod_names"] = True
        elif option == "pods":
            args = d.remaining_args()
            if len(args) != 1:
                raise d.arg_err()
            if args[0] not in (PODS_DISABLED, PODS_INSECURE, PODS_VERIFIED):
                raise CorefileError(
                    f"wrong value for pods: {args[0]},  "
                    "must be one of: disabled, verified, insecure"
                )
            opts["pods"] = args[0]
        elif option == "namespaces":
            args = d.remaining_args()
            if not args:
                raise d.arg_err()
            namespaces.extend(a for a in args if a not in namespaces)
        elif option == "endpoint":
            args = d.remaining_args()
            if not args:
                raise d.arg_err()
            if len(args) > 1:
                ctx.warn(
                    "kubernetes",
                    "Multiple endpoints have been deprecated, only the first specified "
                    f"endpoint '{args[0]}' is used",
                )
            opts["endpoint"] = args[0]
        elif option == "tls":
            args = d.remaining_args()
            if len(args) != 3:
                raise d.arg_err()
            opts["tls"] = (args[0], args[1], args[2])
        elif option in ("labels", "namespace_labels"):
            args = d.remaining_args()
            if not args:
                raise d.arg_err()
            opts[option] = " ".join(args)
        elif option == "fallthrough":
            opts["fallthrough"] = fall_zones(d.remaining_args())
        elif option == "ttl":
            args = d.remaining_args()
            if not args:
                raise d.arg_err()
            ttl = goparse.atoi(args[0])
            if not 0 <= ttl <= 3600:
                raise d.err(f"ttl must be in range [0, 3600]: {ttl}")
            opts["ttl"] = ttl
        elif option == "noendpoints":
            if d.remaining_args():
                raise d.arg_err()
            opts["noendpoints"] = True
        elif option == "ignore":
            args = d.remaining_args()
            if not args:  # accepted and does nothing, as in CoreDNS
                ctx.not_acted_on("kubernetes", seen[option], option, NOT_ACTED_ON[option])
            else:
                if args[0] != "empty_service":
                    raise CorefileError(f"unable to parse ignore value: '{args[0]}'")
                opts["ignore_empty_service"] = True
        elif option == "kubeconfig":
            args = d.remaining_args()
            if len(args) not in (1, 2):
                raise d.arg_err()
            opts["kubeconfig"] = args[0]
            opts["context"] = args[1] if len(args) == 2 else None
        elif option == "startup_timeout":
            if not d.next_arg():
                raise d.arg_err()
            opts["startup_timeout"] = goparse.parse_duration(d.val())
        elif option == "multicluster":
            opts["multicluster"] = tuple(keys.origins(d.remaining_args(), ()))
        elif option == "apiserver_qps":
            opts["apiserver_qps"] = _non_negative(d)
        elif option in ("apiserver_burst", "apiserver_max_inflight"):
            opts[option] = int(_non_negative(d))
        elif option == "zonal":
            if d.remaining_args():
                raise d.arg_err()
            opts["zonal"] = True
        elif option == "manifests":
            args = d.remaining_args()
            if len(args) != 1:
                raise d.arg_err()
            opts["manifests"] = _relative_to(d, args[0])
        elif option == "snapshot":
            args = d.remaining_args()
            if len(args) != 1:
                raise d.arg_err()
            opts["snapshot"] = _relative_to(d, args[0])
        else:
            raise d.err(f"unknown property '{option}'")
    if namespaces and "namespace_labels" in opts:
        raise d.err("namespaces and namespace_labels cannot both be set")
    if opts.get("zonal") and opts.get("noendpoints"):
        raise d.err("zonal cannot be used with noendpoints")
    _warn_not_acted_on(ctx, opts, seen)
    return KubernetesConfig(
        zones=zones,
        primary_zone=primary,
        namespaces=tuple(namespaces),
        **opts,  # type: ignore[arg-type]
    )


def _warn_not_acted_on(ctx: SetupContext, opts: dict[str, object], seen: dict[str, str]) -> None:
    """Accepted options whose value would never reach the connection or the answers."""
    for option in ("apiserver_qps", "apiserver_burst", "apiserver_max_inflight"):
        if option in seen:
            ctx.not_acted_on("kubernetes", seen[option], option, NOT_ACTED_ON[option])
    if opts.get("manifests"):
        for option in API_ONLY:
            if option in seen:
                why = "the source is the manifests folder, not an API server"
                ctx.not_acted_on("kubernetes", seen[option], option, why)
        return
    if "tls" not in seen:
        return
    why = ""
    if opts.get("kubeconfig"):
        why = "with kubeconfig, its own client certificate and CA are used (as in CoreDNS)"
    elif not opts.get("endpoint"):
        why = "without endpoint, kdns connects in-cluster with its service account (as CoreDNS)"
    elif not str(opts["endpoint"]).startswith("https://"):
        why = f"endpoint {opts['endpoint']} is not https"
    if why:
        ctx.not_acted_on("kubernetes", seen["tls"], "tls", why)


def _non_negative(d: Dispenser) -> float:
    """One number >= 0 (client-side API rate limits)."""
    option = d.val()
    args = d.remaining_args()
    if len(args) != 1:
        raise d.arg_err()
    try:
        value = float(args[0])
    except ValueError:
        raise d.err(f"invalid {option} value: {args[0]}") from None
    if value < 0:
        raise d.err(f"{option} cannot be negative: {args[0]}")
    return value


def _relative_to(d: Dispenser, path: str) -> str:
    """A relative directory is taken from the Corefile's folder, like ``import``."""
    if os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(d.file())), path))
