"""``kdns explain``: the argparse front end of :mod:`kdns.explain.diagnose`.

Kept apart from the logic so the logic stays pure (a Store in, an Explanation out) and
testable without processes; this module only gets the Store (a manifests folder, or a
running kdns's snapshot), picks the output and maps the verdict to an exit code:
0 the name resolves, 1 it does not, 2 the question could not be asked (usage, a
missing folder, an unreachable or too old server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any, NoReturn

from kdns import errors as kdns_errors
from kdns import explain
from kdns.cluster import manifests, resolver
from kdns.cluster.store import Store
from kdns.dns import names
from kdns.plugins.debug_endpoints.setup import DEFAULT_URL as DEBUG_URL

USAGE_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main`` returns its code to the caller."""

    def error(self, message: str) -> NoReturn:
        raise _Usage(f"{self.prog}: error: {message}")


class _Usage(kdns_errors.ConfigurationError):
    """The command line or its data source is unusable; the message says why."""


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="kdns explain",
        description="Explain why a cluster DNS name answers what it answers.",
        epilog="exit status: 0 the name resolves, 1 it does not, 2 usage or source error",
    )
    p.add_argument("name", metavar="NAME", help="a name, or an IP address for its PTR")
    p.add_argument("--type", "-t", default=None, help="record type (default A; PTR for an IP)")
    p.add_argument(
        "--from-namespace",
        "-n",
        metavar="NS",
        help="ask as a pod in NS would: its search path and ndots",
    )
    p.add_argument("--ndots", type=int, default=5, help="the pod's ndots option (default 5)")
    p.add_argument(
        "--zone", action="append", metavar="ZONE", help="cluster domain (default cluster.local)"
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifests", metavar="DIR", help="a folder of Kubernetes YAML")
    source.add_argument("--kubeconfig", metavar="PATH", help="list the cluster it names, once")
    p.add_argument("--context", metavar="NAME", help="the kubeconfig context to use")
    source.add_argument(
        "--server",
        metavar="URL",
        nargs="?",
        const=DEBUG_URL,
        help=(
            "a running kdns's debug_endpoints address, by default "
            f"{DEBUG_URL} (kubectl -n kube-system port-forward deploy/coredns 6053)"
        ),
    )
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    return p


def _settings(zones: Sequence[str] | None, base: resolver.Settings) -> resolver.Settings:
    if not zones:
        return base
    own = tuple(names.fqdn(z) for z in zones)
    reverse = tuple(z for z in base.zones if z.endswith("arpa."))
    return resolver.Settings(
        zones=(*own, *reverse),
        ttl=base.ttl,
        pods=base.pods,
        endpoint_pod_names=base.endpoint_pod_names,
        ignore_empty_service=base.ignore_empty_service,
        namespaces=base.namespaces,
        nameservers=base.nameservers,
        fallthrough=base.fallthrough,
    )


def _from_manifests(directory: str) -> tuple[Store, list[str]]:
    store = Store()
    source = manifests.ManifestsSource(directory, store)
    try:
        source.load()
    except FileNotFoundError as exc:
        raise _Usage(f"kdns explain: {exc}") from None
    return store, [str(p) for p in source.problems]


def _from_cluster(kubeconfig: str, context: str | None) -> Store:
    """One list of each kind, through the client and shrink functions the informers use."""
    from kdns.cluster.kube import client, config, informer

    async def load() -> Store:
        conn = config.load(config.ConnectionOptions(kubeconfig=kubeconfig, context=context))
        api = client.Client(conn)
        store = Store()
        try:
            wanted: dict[str, list[Any]] = {}
            for kind in (informer.NAMESPACES, informer.SERVICES, informer.SLICES, informer.PODS):
                listing = await api.list(kind.path, _lenient(kind.shrink))
                wanted[kind.field] = listing.items
        finally:
            await api.close()
        store.replace(**wanted)
        store.mark_synced()
        return store

    try:
        return asyncio.run(load())
    except Exception as exc:  # any failure to reach or read the cluster is the user's to fix
        raise _Usage(f"kdns explain: cannot list the cluster in {kubeconfig}: {exc}") from None


def _lenient(convert: Any) -> Any:
    """Skip objects DNS cannot serve, as the informers do, instead of failing the list."""
    from kdns.cluster import shrink

    def apply(raw: Any) -> Any:
        try:
            return convert(raw)
        except shrink.Invalid:
            return None

    return apply


def _from_server(url: str) -> tuple[Store, resolver.Settings]:
    full = url.rstrip("/") + explain.SNAPSHOT_PATH
    if not full.startswith(("http://", "https://")):
        full = "http://" + full
    try:
        with urllib.request.urlopen(full, timeout=10) as response:
            data: Any = json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise _Usage(
                f"kdns explain: {full}: not found; this kdns does not serve its cache: add"
                " `debug_endpoints` to its Corefile (kdns serve: --debug-addr), or use"
                " --manifests DIR or --kubeconfig PATH"
            ) from None
        raise _Usage(f"kdns explain: {full}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _Usage(f"kdns explain: cannot read {full}: {exc}") from None
    try:
        return explain.from_snapshot(data)
    except explain.ExplainError as exc:
        raise _Usage(f"kdns explain: {full}: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kdns explain``; returns the exit status instead of exiting."""
    try:
        args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        if args.ndots < 0 or args.ndots > 15:
            raise _Usage("kdns explain: --ndots must be 0..15 (resolv.conf caps it at 15)")
        problems: list[str] = []
        if args.manifests is not None:
            store, problems = _from_manifests(args.manifests)
            settings = _settings(args.zone, resolver.Settings())
        elif args.kubeconfig is not None:
            store = _from_cluster(args.kubeconfig, args.context)
            settings = _settings(args.zone, resolver.Settings())
        else:
            store, served = _from_server(args.server)
            settings = _settings(args.zone, served)
        qtype = explain.parse_type(args.type) if args.type else explain.default_type(args.name)
        result = explain.explain(
            store, settings, args.name, qtype, from_namespace=args.from_namespace, ndots=args.ndots
        )
    except _Usage as exc:
        sys.stderr.write(f"{exc}\n")
        return USAGE_ERROR
    except explain.ExplainError as exc:
        sys.stderr.write(f"kdns explain: {exc}\n")
        return USAGE_ERROR
    for problem in problems:
        sys.stderr.write(f"warning: {problem}\n")
    sys.stdout.write(explain.to_json(result) if args.output == "json" else explain.render(result))
    return 0 if result.resolves else 1


if __name__ == "__main__":
    sys.exit(main())
