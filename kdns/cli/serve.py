"""``kdns serve``: a folder of manifests or a cluster's API server, served with no Corefile.

Like CoreDNS's default Corefile (``forward . /etc/resolv.conf``), names outside the
cluster zones are forwarded to the host's resolv.conf nameservers, so a laptop whose
resolver points at kdns keeps resolving the internet; ``--upstream`` chooses others,
``--no-forward`` answers REFUSED instead. A nameserver that is kdns's own listen
address (a loop) is skipped.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from collections.abc import Sequence

from kdns.cli.common import add_log_flags, setup_logging
from kdns.cluster import resolver
from kdns.corefile import keys, resolvconf
from kdns.dns import names
from kdns.query import chain
from kdns.server import lifecycle as app
from kdns.server import limits, planner
from kdns.server.plan import BlockSpec, ListenAddress, Plan, ServerSpec

log = logging.getLogger("kdns")

DEFAULT_LISTEN = "127.0.0.1:1053"
DEFAULT_RESOLV_CONF = "/etc/resolv.conf"


# kubeadm's IPv4 default and kind's IPv6 one, so dual-stack manifests work out of the box.
DEFAULT_SERVICE_CIDRS = ("10.96.0.0/12", "fd00:10:96::/112")


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kdns serve",
        description=(
            "Serve cluster DNS with no Corefile, from a folder of Kubernetes manifests or "
            "from a cluster's API server (--kubeconfig, --endpoint, --in-cluster). Names "
            "outside the cluster zones are forwarded to the nameservers of "
            f"{DEFAULT_RESOLV_CONF}, as CoreDNS's default Corefile does."
        ),
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
    parser.add_argument(
        "--pods",
        choices=("disabled", "insecure", "verified"),
        default="insecure",
        help="pod A records, as the kubernetes plugin's pods option (default insecure)",
    )
    parser.add_argument(
        "--endpoint-pod-names", action="store_true", help="name endpoints by their pod's name"
    )
    forward = parser.add_mutually_exclusive_group()
    forward.add_argument(
        "--upstream",
        metavar="ADDR[,ADDR]",
        action="append",
        help="forward names outside the cluster zones here (default: the nameservers of "
        "--resolv-conf)",
    )
    forward.add_argument(
        "--no-forward",
        action="store_true",
        help="answer REFUSED for names outside the cluster zones instead of forwarding",
    )
    parser.add_argument(
        "--resolv-conf",
        metavar="PATH",
        default=os.environ.get("KDNS_RESOLV_CONF") or DEFAULT_RESOLV_CONF,
        help="where the default upstreams come from (default $KDNS_RESOLV_CONF or "
        f"{DEFAULT_RESOLV_CONF})",
    )
    parser.add_argument("--health-addr", metavar="ADDR:PORT", help="serve /health here")
    parser.add_argument("--ready-addr", metavar="ADDR:PORT", help="serve /ready here")
    parser.add_argument(
        "--metrics-addr",
        metavar="ADDR:PORT",
        help="serve /metrics (CoreDNS's names, as the prometheus plugin) here",
    )
    parser.add_argument(
        "--debug-addr",
        metavar="ADDR:PORT",
        help="serve /debug/kdns/* (explain, ipam) here; off by default, keep it on loopback",
    )
    parser.add_argument(
        "--lameduck",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="on SIGTERM, keep answering this long with /ready failing (default 0)",
    )
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
    parser.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    parser.add_argument(
        "--debug", action="store_true", help="debug logging (the Corefile's debug directive)"
    )
    add_log_flags(parser)
    return parser


def serve(argv: Sequence[str]) -> int:
    args = _serve_parser().parse_args(argv)
    setup_logging(args.quiet, args.log_format, args.debug)
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
    if args.metrics_addr:
        the_plan.prometheus = [ListenAddress.parse(args.metrics_addr, 9153)]
    if not args.no_forward:
        try:
            upstreams = _upstreams(args)
        except ValueError as exc:
            sys.stderr.write(f"kdns serve: {exc}\n")
            return 2
        if upstreams:
            _add_forwarding(the_plan, upstreams)
    return the_plan


def _upstreams(args: argparse.Namespace) -> list[tuple[str, int]]:
    """Where names outside the cluster zones go: ``--upstream``, else resolv.conf's."""
    if args.upstream:
        found = []
        for text in ",".join(args.upstream).split(","):
            if not text.strip():
                continue
            addr = ListenAddress.parse(text.strip(), 53)
            try:
                ipaddress.ip_address(addr.host)
            except ValueError:
                raise ValueError(f"--upstream {text!r}: not an IP address[:port]") from None
            found.append((addr.host, addr.port))
        return found
    try:
        conf = resolvconf.read(args.resolv_conf)
    except OSError as exc:
        log.warning("not forwarding: cannot read %s (%s); use --upstream", args.resolv_conf, exc)
        return []
    listen = [ListenAddress.parse(a) for a in (args.listen or [DEFAULT_LISTEN])]
    found = []
    for server in conf.nameservers:
        host = server.split("%", 1)[0]
        if _is_self(host, 53, listen):
            log.warning("not forwarding to %s:53 from %s: it is kdns itself", host, conf.path)
            continue
        found.append((host, 53))
    if not found:
        log.warning("not forwarding: %s names no nameserver to use; use --upstream", conf.path)
    return found


def _is_self(host: str, port: int, listen: Sequence[ListenAddress]) -> bool:
    """Whether ``host:port`` reaches one of kdns's own DNS listeners (a forwarding loop)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    for addr in listen:
        if addr.port != port:
            continue
        if addr.host in ("", "0.0.0.0", "::"):
            if ip.is_loopback or ip.is_unspecified:
                return True
            continue
        try:
            if ipaddress.ip_address(addr.host) == ip:
                return True
        except ValueError:
            continue
    return False


def _add_forwarding(the_plan: Plan, upstreams: Sequence[tuple[str, int]]) -> None:
    """A ``.`` block beside the cluster zones' one on every listener: ``forward . ADDR...``."""
    from kdns.plugins.forward import build as forward_build
    from kdns.plugins.forward import setup as forward_setup

    to = tuple(forward_setup.Upstream(keys.DNS, host, port) for host, port in upstreams)
    config = forward_setup.ForwardConfig(
        from_zone=".",
        to=to,
        to_args=tuple(str(u) for u in to),
    )
    upstream = forward_build.upstream([config])

    def build(block: chain.Block) -> None:
        block.upstream = upstream

    servers: list[ServerSpec] = the_plan.servers
    for spec in servers:
        spec.blocks.append(BlockSpec(zones=(".",), build=build, plugins=("forward",)))
    the_plan.tasks.append(planner.upstream_lifetime(upstream))
    log.info("forwarding names outside the cluster zones to %s", ", ".join(map(str, to)))
