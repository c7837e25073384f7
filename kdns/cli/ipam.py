"""``kdns ipam``: the ClusterIP allocator's state, from a manifests folder or a running kdns."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kdns.cli.common import add_output_flags, output_of
from kdns.cli.serve import DEFAULT_SERVICE_CIDRS
from kdns.plugins.debug_endpoints.setup import DEFAULT_URL as DEBUG_URL


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kdns ipam", description="The ClusterIP allocator's tools.")
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = commands.add_parser(
        "status",
        prog="kdns ipam status",
        help="range use of the allocator",
        description=(
            "Range use of the ClusterIP allocator: of a manifests folder (allocated as "
            "kdns serve would), or of a running kdns through its debug_endpoints."
        ),
    )
    where = s.add_mutually_exclusive_group(required=True)
    where.add_argument("--manifests", metavar="DIR", help="a folder of Kubernetes YAML")
    where.add_argument(
        "--server",
        metavar="URL",
        nargs="?",
        const=DEBUG_URL,
        help=f"a running kdns's debug_endpoints address (default {DEBUG_URL})",
    )
    s.add_argument(
        "--service-cidr",
        action="append",
        metavar="CIDR",
        help=f"with --manifests: the range(s) (default {' and '.join(DEFAULT_SERVICE_CIDRS)})",
    )
    s.add_argument(
        "--ipam-store", metavar="PATH", help="with --manifests: the allocations' SQLite file"
    )
    add_output_flags(s)
    return p


def ipam(argv: Sequence[str]) -> int:
    """``kdns ipam status``: range use of the allocator over a manifests folder."""
    args = parser().parse_args(argv)
    as_json = output_of(args, "kdns ipam status") == "json"
    if args.server:
        import urllib.error
        import urllib.request

        from kdns.server.lifecycle import IPAM_STATUS_PATH

        base = args.server if "://" in args.server else "http://" + args.server
        url = base.rstrip("/") + IPAM_STATUS_PATH + ("?format=json" if as_json else "")
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
    text = ipam_status.render_json(report) if as_json else ipam_status.render_text(report)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
