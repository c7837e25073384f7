"""``kdns serve``: a folder of manifests (or an API server) served with no Corefile."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from kdns.cli.common import setup_logging
from kdns.cluster import resolver
from kdns.dns import names
from kdns.server import lifecycle as app
from kdns.server import limits, planner
from kdns.server.plan import ListenAddress, Plan

DEFAULT_LISTEN = "127.0.0.1:1053"


# kubeadm's IPv4 default and kind's IPv6 one, so dual-stack manifests work out of the box.
DEFAULT_SERVICE_CIDRS = ("10.96.0.0/12", "fd00:10:96::/112")


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kdns serve",
        description="Serve cluster DNS from a folder of Kubernetes manifests (no API server).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifests", metavar="DIR", help="a folder of YAML/JSON")
    source.add_argument("--kubeconfig", metavar="PATH", help="list+watch the cluster it names")
    source.add_argument("--endpoint", metavar="URL", help="list+watch this API server URL")
    source.add_argument("--in-cluster", action="store_true", help="use the service account")
    parser.add_argument("--context", metavar="NAME", help="kubeconfig context")
    parser.add_argument("--snapshot", metavar="PATH", help="persist the last good state here")
    parser.add_argument(
        "--listen",
        action="append",
        metavar="ADDR:PORT",
        help=f"DNS listen address, repeatable (default {DEFAULT_LISTEN})",
    )
    parser.add_argument("--zone", action="append", metavar="ZONE", help="cluster domain(s)")
    parser.add_argument("--ttl", type=int, default=5, help="TTL of answers (default 5)")
    parser.add_argument("--pods", choices=("disabled", "insecure", "verified"), default="insecure")
    parser.add_argument("--endpoint-pod-names", action="store_true")
    parser.add_argument("--health-addr", metavar="ADDR:PORT", help="serve /health here")
    parser.add_argument("--ready-addr", metavar="ADDR:PORT", help="serve /ready here")
    parser.add_argument(
        "--debug-addr",
        metavar="ADDR:PORT",
        help="serve /debug/kdns/* (explain, ipam) here; off by default, keep it on loopback",
    )
    parser.add_argument("--lameduck", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument(
        "--service-cidr",
        action="append",
        metavar="CIDR",
        help=f"clusterIP range, one per family (default {' and '.join(DEFAULT_SERVICE_CIDRS)})",
    )
    parser.add_argument(
        "--ipam-store", metavar="PATH", help="SQLite file keeping allocations across restarts"
    )
    parser.add_argument(
        "--no-allocate", action="store_true", help="leave Services without clusterIP unallocated"
    )
    parser.add_argument("--quiet", action="store_true")
    return parser


def serve(argv: Sequence[str]) -> int:
    args = _serve_parser().parse_args(argv)
    setup_logging(args.quiet)
    limits.raise_nofile()
    the_plan = plan_of(args)
    if isinstance(the_plan, int):
        return the_plan
    app.run(the_plan)
    return 0


def plan(argv: Sequence[str]) -> Plan | int:
    """The :class:`Plan` ``kdns serve ARGV`` runs (tests build it in process), or an exit code."""
    return plan_of(_serve_parser().parse_args(argv))


def plan_of(args: argparse.Namespace) -> Plan | int:
    """The Plan of parsed ``serve`` flags, or the exit code of an error already reported."""
    if args.manifests is not None and not os.path.isdir(args.manifests):
        sys.stderr.write(f"kdns serve: manifests folder {args.manifests!r} does not exist\n")
        return 1
    api = None
    if args.manifests is None:
        from kdns.cluster.kube.config import ConnectionOptions

        api = ConnectionOptions(
            endpoint=args.endpoint,
            kubeconfig=args.kubeconfig,
            context=args.context,
            in_cluster=args.in_cluster,
        )
    zones = tuple(names.fqdn(z) for z in (args.zone or ["cluster.local"]))
    settings = resolver.Settings(
        zones=(*zones, "in-addr.arpa.", "ip6.arpa."),
        ttl=args.ttl,
        pods=args.pods,
        endpoint_pod_names=args.endpoint_pod_names,
    )
    ipam = None
    if not args.no_allocate:
        from kdns.ipam.config import ClusterIPConfig, parse_clusterip

        try:
            ipam = parse_clusterip(list(args.service_cidr or DEFAULT_SERVICE_CIDRS), [])
        except ValueError as exc:
            sys.stderr.write(f"kdns serve: {exc}\n")
            return 2
        if args.ipam_store:
            ipam = ClusterIPConfig(
                cidrs=ipam.cidrs, reservations=ipam.reservations, store=args.ipam_store
            )
    the_plan = planner.from_serve(
        manifests=args.manifests,
        listen=[ListenAddress.parse(a) for a in (args.listen or [DEFAULT_LISTEN])],
        settings=settings,
        health=ListenAddress.parse(args.health_addr) if args.health_addr else None,
        ready=ListenAddress.parse(args.ready_addr) if args.ready_addr else None,
        lameduck=args.lameduck,
        ipam=ipam if args.manifests is not None else None,
        api=api,
        snapshot=args.snapshot,
    )
    if args.debug_addr:
        the_plan.debug = ListenAddress.parse(args.debug_addr)
    return the_plan
