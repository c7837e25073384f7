"""The ``kdns`` command line.

Two dialects share one entry point. CoreDNS's single-dash flags (``-conf``,
``-dns.port``, ``-version``, ``-plugins``, ``-quiet``) keep a CoreDNS Deployment's
``args`` working unchanged; kdns's own subcommands (``serve``, ``validate``) cover what
CoreDNS has no command for.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from kdns.cli.coredns import coredns
from kdns.cli.serve import serve
from kdns.cli.validate import validate

USAGE = """usage: kdns -conf PATH [-dns.port N] [-quiet] [-pidfile PATH]
       kdns serve (--manifests DIR | --kubeconfig PATH | --endpoint URL | --in-cluster)
                  [--listen ADDR:PORT] [--zone ZONE] [--upstream ADDR | --no-forward]
                  [--metrics-addr ADDR:PORT] [--log-format text|json] [...]
       kdns explain NAME [--type T] [--from-namespace NS] [-o text|json]
                    (--manifests DIR | --kubeconfig PATH | --server [URL])
       kdns ipam status (--manifests DIR | --server [URL]) [-o text|json] [...]
       kdns envinject certs --out DIR [--service NAME] [--namespace NS]
       kdns validate PATH
       kdns -version | -plugins

Each command's own flags: kdns COMMAND [SUBCOMMAND] --help.
Logs: KDNS_LOG_FORMAT=json for one JSON object per line, KDNS_LOG_LEVEL=debug.
"""


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
        from kdns.cli.ipam import ipam  # imported here: serving never needs it

        sys.exit(ipam(args[1:]))
    if args and args[0] == "envinject":
        from kdns.cli.envinject import envinject  # cryptography: ~16 MiB RSS serving never needs

        sys.exit(envinject(args[1:]))
    if args and not args[0].startswith("-"):
        sys.stderr.write(f"kdns: unknown command {args[0]!r}\n{USAGE}")
        sys.exit(2)
    sys.exit(coredns(args))
