"""What every kdns command shares: logging set-up, text or JSON, and the output flag."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys
from typing import Any

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
OUTPUTS = ("text", "json")


class JSONFormatter(logging.Formatter):
    """One JSON object per line, what Loki's ``| json`` and Elastic's ingest read.

    ``time`` (RFC 3339, UTC, milliseconds), ``level`` (lower case), ``logger``,
    ``msg``; a traceback as ``error``; a query line of the ``log`` plugin adds its
    fields (``remote``, ``port``, ``id``, ``type``, ``class``, ``name``, ``proto``,
    ``size``, ``do``, ``bufsize``, ``rcode``, ``rflags``, ``rsize``, ``duration``).
    """

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        line: dict[str, Any] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        as_dict = getattr(fields, "as_dict", None)
        if as_dict is not None:
            for key, value in as_dict().items():
                line.setdefault(key, value)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, separators=(",", ":"), default=str)


def setup_logging(quiet: bool = False, fmt: str | None = None, debug: bool = False) -> None:
    """The root handler on stderr: CoreDNS's ``[INFO] msg`` lines, or JSON.

    ``fmt`` defaults to ``$KDNS_LOG_FORMAT`` (text); ``debug`` or ``KDNS_LOG_LEVEL=debug``
    turns on kdns's debug lines (the Corefile's ``debug`` directive does it too).
    """
    fmt = (fmt or os.environ.get("KDNS_LOG_FORMAT") or "text").lower()
    if fmt not in FORMATS:
        sys.stderr.write(f"kdns: unknown log format {fmt!r} (text or json); using text\n")
        fmt = "text"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JSONFormatter() if fmt == "json" else logging.Formatter("[%(levelname)s] %(message)s")
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    level = os.environ.get("KDNS_LOG_LEVEL", "").lower()
    if debug or level == "debug":
        logging.getLogger("kdns").setLevel(logging.DEBUG)
    elif level in LEVELS:
        logging.getLogger("kdns").setLevel(level.upper())


def add_log_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default=None,
        help="text ([INFO] lines, as CoreDNS) or json (one object per line); "
        "default $KDNS_LOG_FORMAT or text",
    )


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """``-o text|json``, and ``--json`` kept as a deprecated spelling of ``-o json``."""
    parser.add_argument("-o", "--output", choices=OUTPUTS, default="text", help="output format")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)


def output_of(args: argparse.Namespace, prog: str) -> str:
    if getattr(args, "json", False):
        sys.stderr.write(f"{prog}: --json is deprecated, use -o json\n")
        return "json"
    return str(args.output)
