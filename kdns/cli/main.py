"""The ``kdns`` command line.

Two dialects share one entry point. CoreDNS's single-dash flags (``-conf``,
``-dns.port``, ``-version``, ``-plugins``, ``-quiet``) keep a CoreDNS Deployment's
``args`` working unchanged; kdns's own subcommands (``serve``, ``validate``) cover what
CoreDNS has no command for.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from kdns import __version__
from kdns.cluster import resolver
from kdns.dns import names
from kdns.plugins.debug_endpoints.setup import DEFAULT_URL as DEBUG_URL
from kdns.server import lifecycle as app
from kdns.server import limits
from kdns.server import planner as plan
from kdns.server.plan import ListenAddress

DEFAULT_LISTEN = "127.0.0.1:1053"
# kubeadm's IPv4 default and kind's IPv6 one, so dual-stack manifests work out of the box.
DEFAULT_SERVICE_CIDRS = ("10.96.0.0/12", "fd00:10:96::/112")

USAGE = """usage: kdns -conf PATH [-dns.port N] [-quiet] [-pidfile PATH]
       kdns serve --manifests DIR [--listen ADDR:PORT] [--zone ZONE] [...]
       kdns explain NAME [--type T] [--from-namespace NS]
                    (--manifests DIR | --kubeconfig PATH | --server [URL])
       kdns ipam status (--manifests DIR | --server [URL]) [--service-cidr CIDR]...
                        [--ipam-store PATH] [--json]
       kdns envinject certs --service NAME --namespace NS --out DIR
       kdns validate PATH
       kdns -version | -plugins
"""


def _setup_logging(quiet: bool = False) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="[%(levelname)s] %(message)s",
        stream=sys.stderr,
    )


# -- kdns serve ----------------------------------------------------------------------


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
    _setup_logging(args.quiet)
    limits.raise_nofile()
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
    the_plan = plan.from_serve(
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
    app.run(the_plan)
    return 0


# -- CoreDNS's flags -----------------------------------------------------------------


def _coredns_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kdns", add_help=False)
    parser.add_argument("-conf", default=None)
    parser.add_argument("-dns.port", "-p", dest="port", type=int, default=53)
    parser.add_argument("-quiet", action="store_true")
    parser.add_argument("-pidfile", default="")
    parser.add_argument("-plugins", action="store_true")
    parser.add_argument("-version", action="store_true")
    return parser


def coredns(argv: Sequence[str]) -> int:
    from kdns.corefile import directives
    from kdns.corefile.errors import CorefileError
    from kdns.plugins import loader

    args = _coredns_parser().parse_args(argv)
    if args.version:
        sys.stdout.write(f"kdns-{__version__}\n{sys.platform}, python {sys.version.split()[0]}\n")
        return 0
    if args.plugins:
        sys.stdout.write(
            "Server types:\n  dns\n\nCaddyfile loaders:\n  flag\n  default\n\nOther plugins:\n"
        )
        for name in sorted(directives.IMPLEMENTED):
            sys.stdout.write(f"  dns.{name}\n")
        return 0
    _setup_logging(args.quiet)
    limits.raise_nofile()
    try:
        if args.conf == "stdin":
            config = loader.load_text(sys.stdin.read(), "stdin", dns_port=args.port)
        elif args.conf is None and not os.path.exists("Corefile"):
            config = loader.load_default(args.port)
        else:
            config = loader.load(args.conf or "Corefile", dns_port=args.port)
        # config.warnings were logged as the Corefile was read (on reload too).
        the_plan = plan.from_corefile(config, args.port)
    except CorefileError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    if args.pidfile:
        with open(args.pidfile, "w", encoding="ascii") as f:
            f.write(f"{os.getpid()}\n")
    for line in plan.describe(the_plan):
        logging.getLogger("kdns").info("%s", line)
    app.run(the_plan)
    return 0


def validate(argv: Sequence[str]) -> int:
    from kdns.plugins.validate import validate as corefile_validate

    if len(argv) != 1:
        sys.stderr.write("usage: kdns validate PATH\n")
        return 2
    lines = corefile_validate(argv[0])
    for line in lines:
        sys.stdout.write(line + "\n")
    failed = any(not (ln.startswith("hint:") or ln.startswith("[WARNING]")) for ln in lines)
    if not failed:
        sys.stdout.write(f"{argv[0]}: OK\n")
    return 1 if failed else 0


def ipam(argv: Sequence[str]) -> int:
    """``kdns ipam status``: range use of the allocator over a manifests folder."""
    parser = argparse.ArgumentParser(prog="kdns ipam")
    parser.add_argument("command", choices=("status",))
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--manifests", metavar="DIR")
    where.add_argument(
        "--server",
        metavar="URL",
        nargs="?",
        const=DEBUG_URL,
        help=f"a running kdns's debug_endpoints address (default {DEBUG_URL})",
    )
    parser.add_argument("--service-cidr", action="append", metavar="CIDR")
    parser.add_argument("--ipam-store", metavar="PATH")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.server:
        import urllib.error
        import urllib.request

        from kdns.server.lifecycle import IPAM_STATUS_PATH

        base = args.server if "://" in args.server else "http://" + args.server
        url = base.rstrip("/") + IPAM_STATUS_PATH + ("?format=json" if args.json else "")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                sys.stdout.write(resp.read().decode())
        except (urllib.error.URLError, OSError) as exc:
            sys.stderr.write(f"kdns ipam: {url}: {exc}\n")
            return 1
        return 0
    from kdns.cluster import manifests, store
    from kdns.ipam import config, hook
    from kdns.ipam import status as ipam_status

    cfg = config.parse_clusterip(list(args.service_cidr or DEFAULT_SERVICE_CIDRS), [])
    if args.ipam_store:
        cfg = config.ClusterIPConfig(
            cidrs=cfg.cidrs, reservations=cfg.reservations, store=args.ipam_store
        )
    allocator = hook.LocalAllocator(cfg)
    manifests.ManifestsSource(args.manifests, store.Store(), allocator).load()
    result = allocator.last
    if result is None or result.pool is None:
        sys.stderr.write("kdns ipam: nothing to report\n")
        return 1
    report = ipam_status.pool_status(result.pool)
    text = ipam_status.render_json(report) if args.json else ipam_status.render_text(report)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def envinject(argv: Sequence[str]) -> int:
    """``kdns envinject certs``: a self-signed CA and serving pair, and the caBundle to paste."""
    parser = argparse.ArgumentParser(prog="kdns envinject")
    parser.add_argument("command", choices=("certs",))
    parser.add_argument("--service", default="kdns-envinject")
    parser.add_argument("--namespace", default="kube-system")
    parser.add_argument("--zone", default="cluster.local")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--out", required=True, metavar="DIR")
    args = parser.parse_args(argv)
    from kdns.envinject import certs

    issued = certs.generate(args.service, args.namespace, zone=args.zone, days=args.days)
    cert, key, ca = certs.write(issued, args.out)
    sys.stderr.write(f"wrote {cert}, {key} and {ca}\n")
    sys.stderr.write("caBundle for the MutatingWebhookConfiguration:\n")
    sys.stdout.write(issued.ca_bundle + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        sys.exit(0)
    if args and args[0] == "--version":
        args[0] = "-version"
    if args and args[0] == "serve":
        sys.exit(serve(args[1:]))
    if args and args[0] == "validate":
        sys.exit(validate(args[1:]))
    if args and args[0] == "explain":
        from kdns.cli import explain as explain_cli

        sys.exit(explain_cli.main(args[1:]))
    if args and args[0] == "ipam":
        sys.exit(ipam(args[1:]))
    if args and args[0] == "envinject":
        sys.exit(envinject(args[1:]))
    if args and not args[0].startswith("-"):
        sys.stderr.write(f"kdns: unknown command {args[0]!r}\n{USAGE}")
        sys.exit(2)
    sys.exit(coredns(args))
