"""``errors [stdout] { stacktrace; consolidate DURATION REGEXP [LEVEL] [show_first] }``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from kdns.corefile import goparse
from kdns.corefile.dispenser import Dispenser
from kdns.corefile.errors import CorefileError
from kdns.corefile.setup import SetupContext, once, where

LEVELS = ("warning", "error", "info", "debug")
STACKTRACE_WHY = "an internal error is always logged with its traceback (at most every 10s)"
CONSOLIDATE_WHY = (
    "every upstream failure is logged on its own line (at most one a second), none is consolidated"
)


@dataclass(frozen=True, slots=True)
class Consolidate:
    """Errors matching ``pattern`` are logged once per ``period`` with a count."""

    period: float
    pattern: str
    level: str = "error"
    show_first: bool = False


@dataclass(frozen=True, slots=True)
class ErrorsConfig:
    NAME: ClassVar[str] = "errors"

    stacktrace: bool = False
    consolidate: tuple[Consolidate, ...] = ()


def parse(d: Dispenser, ctx: SetupContext) -> list[ErrorsConfig]:
    config = ErrorsConfig()
    for _ in once(d):
        args = d.remaining_args()
        if len(args) > 1:
            raise d.arg_err()
        if args and args[0] != "stdout":
            raise d.err(f"invalid log file: {args[0]}")
        stacktrace = False
        rules: list[Consolidate] = []
        while d.next_block():
            if d.val() == "stacktrace":
                ctx.not_acted_on("errors", where(d), "stacktrace", STACKTRACE_WHY)
                stacktrace = True
            elif d.val() == "consolidate":
                at = where(d)
                rules.append(_consolidate(d))
                ctx.not_acted_on("errors", at, "consolidate", CONSOLIDATE_WHY)
            else:
                # Sic: CoreDNS's wording for an unknown option.
                raise d.syntax_err("Unknown field " + d.val())
        config = ErrorsConfig(stacktrace, tuple(rules))
    return [config]


def _consolidate(d: Dispenser) -> Consolidate:
    args = d.remaining_args()
    if not 2 <= len(args) <= 4:
        raise d.arg_err()
    try:
        period = goparse.parse_duration(args[0])
    except CorefileError as e:
        raise d.err(str(e)) from None
    try:
        re.compile(args[1])
    except re.error as e:
        raise d.err(f"error parsing regexp: {e}") from None
    level, show_first = "", False
    for word in args[2:]:
        if word == "show_first":
            show_first = True
        elif word in LEVELS:
            if level:
                raise d.err("multiple log levels specified in consolidate")
            level = word
        else:
            raise d.err(f"unknown log level argument in consolidate: {word}")
    return Consolidate(period, args[1], level or "error", show_first)
