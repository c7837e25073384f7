"""``log [NAMES...] [FORMAT] { class ... }``: query logging rules, OR-ed across lines.

One argument is always a name (``log {combined}`` logs names under ``{combined}.``);
with two or more the last is the format when it contains ``{``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kdns.corefile import keys
from kdns.corefile.dispenser import Dispenser
from kdns.corefile.errors import CorefileError
from kdns.corefile.setup import SetupContext, stanzas

COMMON_FORMAT = (
    "{remote}:{port} - {>id} "
    '"{type} {class} {name} {proto} {size} {>do} {>bufsize}" '
    "{rcode} {>rflags} {rsize} {duration}"
)
COMBINED_FORMAT = COMMON_FORMAT + ' "{>opcode}"'
CLASSES = ("all", "success", "denial", "error")


@dataclass(frozen=True, slots=True)
class LogRule:
    names: tuple[str, ...]
    format: str = COMMON_FORMAT
    classes: frozenset[str] = frozenset({"all"})


@dataclass(frozen=True, slots=True)
class LogConfig:
    NAME: ClassVar[str] = "log"

    rules: tuple[LogRule, ...]


def parse(d: Dispenser, ctx: SetupContext) -> list[LogConfig]:
    rules: list[LogRule] = []
    for _ in stanzas(d):
        args = d.remaining_args()
        names, fmt = args, COMMON_FORMAT
        if len(args) > 1 and "{" in args[-1]:
            names = args[:-1]
            fmt = {"{common}": COMMON_FORMAT, "{combined}": COMBINED_FORMAT}.get(args[-1], args[-1])
        classes: set[str] = set()
        while d.next_block():
            if d.val() != "class":
                raise d.arg_err()
            words = d.remaining_args()
            if not words:
                raise d.arg_err()
            for word in words:
                if word not in CLASSES:
                    raise CorefileError(f"invalid Class: {word}")
                classes.add(word)
        rules.append(
            LogRule(
                names=tuple(keys.fqdn(n).lower() for n in names) or (".",),
                format=fmt,
                classes=frozenset(classes or {"all"}),
            )
        )
    return [LogConfig(tuple(rules))]
