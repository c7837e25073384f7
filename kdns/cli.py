"""The ``kdns`` command line.

Two dialects share one entry point. CoreDNS's single-dash flags (``-conf``,
``-dns.port``, ``-version``, ``-plugins``, ``-quiet``) keep a CoreDNS Deployment's
``args`` working unchanged; kdns's own subcommands (``serve``, ``validate``, ...)
cover what CoreDNS has no command for.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from kdns import __version__, app, names, resolver, server

DEFAULT_LISTEN = "127.0.0.1:1053"


def _setup_logging(quiet: bool = False) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="[%(levelname)s] %(message)s",
        stream=sys.stderr,
    )


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kdns serve",
        description="Serve cluster DNS from a folder of Kubernetes manifests (no API server).",
    )
    parser.add_argument("--manifests", required=True, metavar="DIR", help="folder of YAML/JSON")
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
    parser.add_argument("--lameduck", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--quiet", action="store_true")
    return parser


def serve(argv: Sequence[str]) -> int:
    args = _serve_parser().parse_args(argv)
    _setup_logging(args.quiet)
    zones = tuple(names.fqdn(z) for z in (args.zone or ["cluster.local"]))
    settings = resolver.Settings(
        zones=(*zones, "in-addr.arpa.", "ip6.arpa."),
        ttl=args.ttl,
        pods=args.pods,
        endpoint_pod_names=args.endpoint_pod_names,
    )
    options = app.Options(
        manifests=args.manifests,
        listen=[server.ListenAddress.parse(a) for a in (args.listen or [DEFAULT_LISTEN])],
        settings=settings,
        health=server.ListenAddress.parse(args.health_addr) if args.health_addr else None,
        ready=server.ListenAddress.parse(args.ready_addr) if args.ready_addr else None,
        lameduck=args.lameduck,
    )
    app.run(options)
    return 0


USAGE = """usage: kdns serve --manifests DIR [--listen ADDR:PORT] [--zone ZONE] [...]
       kdns -conf PATH [-dns.port N] [-quiet]
       kdns -version | -plugins
"""


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        sys.exit(0)
    if args[0] in ("-version", "--version"):
        sys.stdout.write(f"kdns-{__version__}\n")
        sys.exit(0)
    if args[0] == "serve":
        sys.exit(serve(args[1:]))
    sys.stderr.write(f"kdns: unknown command {args[0]!r}\n{USAGE}")
    sys.exit(2)
