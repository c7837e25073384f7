"""What every directive parser gets and shares: the block's context, once-per-block, fallthrough."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from kdns.corefile import goparse, keys
from kdns.corefile.config import Block
from kdns.corefile.directives import ERR_ONCE
from kdns.corefile.dispenser import Dispenser
from kdns.corefile.errors import CorefileError

T = TypeVar("T")

log = logging.getLogger("kdns.corefile")


@dataclass(frozen=True, slots=True)
class SetupContext:
    """The server block a directive is set up for.

    ``keys`` are the block's normalised keys (``dns://example.org.:53``), the default
    zones of most plugins. ``warnings`` collects what CoreDNS would only log, so
    ``kdns validate`` can show it.
    """

    keys: tuple[str, ...]
    corefile: str
    dns_port: int = 53
    warnings: list[str] = field(default_factory=list)

    def warn(self, plugin: str, message: str) -> None:
        text = f"plugin/{plugin}: {message}"
        log.warning(text)
        self.warnings.append(text)

    def not_acted_on(self, plugin: str, where: str, option: str, why: str) -> None:
        """An option kdns accepts (so CoreDNS Corefiles load) but does not act on.

        The README promises nothing is ignored silently: such an option is warned about
        at start and by ``kdns validate``, located like CoreDNS's parse errors so the
        operator finds the line; ``where`` is :func:`where` of the option's token.
        """
        self.warn(plugin, f"{where} - {option} is not acted on by kdns: {why}")


def where(d: Dispenser) -> str:
    """``<file>:<line>`` of the current token, as CoreDNS's parse errors locate it."""
    return f"{d.file()}:{d.line()}"


def once(d: Dispenser) -> Iterator[None]:
    """Iterate a directive's stanzas, failing on the second like CoreDNS's ErrOnce.

    The check sits where each plugin's own loop has it, so an error in the first stanza
    still wins over the "only once" error.
    """
    seen = False
    while d.next():
        if seen:
            raise CorefileError(ERR_ONCE)
        seen = True
        yield


def stanzas(d: Dispenser) -> Iterator[None]:
    """Iterate a repeatable directive's stanzas (each starts at the directive name)."""
    while d.next():
        yield


def fall_zones(args: Sequence[str]) -> tuple[str, ...]:
    """``fallthrough [ZONES...]``: all zones (``.``) when none are given."""
    if not args:
        return (".",)
    zones: list[str] = []
    for arg in args:
        zones.extend(keys.normalize_exact(arg))
    return tuple(zones)


def no_args(d: Dispenser) -> None:
    """The rest of the line must be empty (``loop``, ``whoami``, flag options)."""
    if d.next_arg():
        raise d.arg_err()


def one_arg(d: Dispenser) -> str:
    if not d.next_arg():
        raise d.arg_err()
    return d.val()


ParseFunc = Callable[[Dispenser, SetupContext], Sequence[object]]
"""A directive's parser: all its stanzas in one block -> its config(s) for that block."""


def listen_address(d: Dispenser, default: str) -> str:
    args = d.remaining_args()
    if len(args) > 1:
        raise d.arg_err()
    if not args:
        return default
    goparse.split_host_port(args[0])
    return args[0]


@dataclass(frozen=True, slots=True)
class RawDirective:
    """Tokens of a directive parsed elsewhere: one (args, block lines) pair per stanza."""

    name: str
    stanzas: tuple[tuple[tuple[str, ...], tuple[tuple[str, ...], ...]], ...]


def raw(name: str) -> ParseFunc:
    """A parser that keeps ``name``'s tokens for a parser registered later."""

    def parse_raw(d: Dispenser, ctx: SetupContext) -> list[RawDirective]:
        return [RawDirective(name, tuple(_stanza_lines(d)))]

    return parse_raw


def _stanza_lines(
    d: Dispenser,
) -> list[tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]]:
    out = []
    for _ in stanzas(d):
        args = tuple(d.remaining_args())
        lines: list[tuple[str, ...]] = []
        while d.next_block():
            lines.append((d.val(), *d.remaining_args()))
        out.append((args, tuple(lines)))
    return out


def raw_config(
    block: Block, name: str, parse: Callable[[list[str], list[list[str]]], T]
) -> T | None:
    """Parse the raw tokens of kdns directive ``name`` in ``block`` (once per block), or None.

    ``parse`` raises ValueError; its text becomes ``plugin/<name>: ...``, as CoreDNS words a
    setup error.
    """
    for found in block.all(RawDirective):
        if found.name != name:
            continue
        if len(found.stanzas) > 1:
            raise CorefileError(
                f"plugin/{name}: this plugin can only be used once per Server Block"
            )
        args, lines = found.stanzas[0]
        try:
            return parse(list(args), [list(line) for line in lines])
        except ValueError as exc:
            message = str(exc)
            prefix = f"{name}: "
            if message.startswith(prefix):
                message = message[len(prefix) :]
            raise CorefileError(f"plugin/{name}: {message}") from None
    return None
