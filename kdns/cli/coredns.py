"""``kdns -conf PATH`` and CoreDNS's other flags: a Corefile run exactly as CoreDNS runs it."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from kdns import __version__
from kdns.cli.common import setup_logging
from kdns.server import lifecycle as app
from kdns.server import limits
from kdns.server import planner as plan


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
    setup_logging(args.quiet)
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
