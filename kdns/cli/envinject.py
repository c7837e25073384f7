"""``kdns envinject``: the webhook's certificates, written and printed."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


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
