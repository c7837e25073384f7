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

    args = parser().parse_args(argv)
    lines = corefile_validate(args.path)
    if not any(not (ln.startswith("hint:") or ln.startswith("[WARNING]")) for ln in lines):
        lines += _plan_errors(args.path)
    for line in lines:
        sys.stdout.write(line + "\n")
    failed = any(not (ln.startswith("hint:") or ln.startswith("[WARNING]")) for ln in lines)
    if not failed:
        sys.stdout.write(f"{args.path}: OK\n")
    return 1 if failed else 0


def _plan_errors(path: str) -> list[str]:
    """What the server refuses when it plans the loaded Corefile (the checks one plugin
    makes of another, e.g. ``autopath @kubernetes`` without ``pods verified``): ``kdns
    -conf`` exits with these, so a file that passes here must not fail there."""
    from kdns.corefile.errors import CorefileError
    from kdns.plugins import loader
    from kdns.server import planner

    try:
        planner.from_corefile(loader.load(path))
    except CorefileError as exc:
        return [str(exc)]
    return []
