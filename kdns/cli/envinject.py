"""``kdns envinject certs``: the webhook's certificates, and the commands that install them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kdns.envinject import certs


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kdns envinject",
        description="The envinject (and clusterip) webhook's tools.",
    )
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    c = commands.add_parser(
        "certs",
        prog="kdns envinject certs",
        help="a self-signed CA and serving pair for the webhook",
        description=(
            "Write a self-signed CA and a serving certificate for the webhook Service "
            "(tls.crt, tls.key, ca.crt in DIR), then print the kubectl commands that store "
            "the pair in the Secret deploy/ mounts and patch the caBundle of the webhook "
            "configurations. With cert-manager, use deploy/'s certificate component instead."
        ),
    )
    c.add_argument(
        "--service",
        default=certs.DEFAULT_SERVICE,
        help=f"the webhook Service's name (default {certs.DEFAULT_SERVICE}, as in deploy/)",
    )
    c.add_argument(
        "--namespace",
        default=certs.DEFAULT_NAMESPACE,
        help=f"its namespace (default {certs.DEFAULT_NAMESPACE})",
    )
    c.add_argument(
        "--secret",
        default=certs.DEFAULT_SECRET,
        help=f"the TLS Secret the Deployment mounts (default {certs.DEFAULT_SECRET})",
    )
    c.add_argument("--zone", default="cluster.local", help="cluster domain (default cluster.local)")
    c.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    c.add_argument("--out", required=True, metavar="DIR", help="where to write the files")
    return p


def envinject(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    issued = certs.generate(args.service, args.namespace, zone=args.zone, days=args.days)
    cert, key, ca = certs.write(issued, args.out)
    sys.stderr.write(f"wrote {cert}, {key} and {ca}\n")
    sys.stderr.write("install them (the Secret, then the caBundle of each webhook):\n")
    commands = certs.kubectl_commands(
        issued, cert, key, namespace=args.namespace, secret=args.secret
    )
    sys.stdout.write("\n".join(commands) + "\n")
    return 0
