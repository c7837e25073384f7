"""``kdns validate``: a Corefile checked as kdns would load it, with CoreDNS's messages."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kdns validate",
        description=(
            "Check a Corefile as kdns loads it: CoreDNS's error for what fails, a warning "
            "for what kdns accepts but does not act on, a hint for legacy directives."
        ),
        epilog="exit status: 0 valid (warnings allowed), 1 invalid, 2 usage",
    )
    p.add_argument("path", metavar="PATH", help="the Corefile to check")
    return p


def validate(argv: Sequence[str]) -> int:
    from kdns.plugins.validate import validate as corefile_validate
    from kdns.server import planner

    args = parser().parse_args(argv)
    # Planned as kdns -conf plans it: the checks one plugin makes of another (autopath
    # @kubernetes without pods verified, say) refuse a file that loads, and the server
    # exits with them, so a file that passes here must not fail there.
    lines = corefile_validate(args.path, check=planner.from_corefile)
    for line in lines:
        sys.stdout.write(line + "\n")
    failed = any(not (ln.startswith("hint:") or ln.startswith("[WARNING]")) for ln in lines)
    if not failed:
        sys.stdout.write(f"{args.path}: OK\n")
    return 1 if failed else 0
