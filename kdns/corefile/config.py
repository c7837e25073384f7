"""The loaded Corefile: server blocks with their zones, listen hosts and typed plugin configs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from kdns.corefile import keys

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Block:
    """One server block after setup.

    ``plugins`` holds (directive, config) in chain order (plugin.cfg), not file order; a
    directive may appear several times (``forward`` stanzas are chained in file order).
    ``listen_hosts`` is ``("",)`` (every address) unless ``bind`` narrowed it.
    """

    keys: tuple[keys.ZoneAddr, ...]
    plugins: tuple[tuple[str, object], ...]
    listen_hosts: tuple[str, ...] = ("",)

    @property
    def zones(self) -> tuple[str, ...]:
        return tuple(k.zone for k in self.keys)

    def names(self) -> tuple[str, ...]:
        """Directive names present, in chain order, each once."""
        return tuple(dict.fromkeys(name for name, _ in self.plugins))

    def has(self, name: str) -> bool:
        return any(n == name for n, _ in self.plugins)

    def all(self, kind: type[T]) -> tuple[T, ...]:
        """Every config of that type, in chain order (several for ``forward``)."""
        return tuple(c for _, c in self.plugins if isinstance(c, kind))

    def get(self, kind: type[T]) -> T | None:
        """The config of that type, or None when the block lacks the directive."""
        found = self.all(kind)
        return found[0] if found else None


@dataclass(frozen=True, slots=True)
class Config:
    """A Corefile ready to serve.

    ``sha512`` is the reload plugin's fingerprint: whitespace edits do not change it,
    edits in imported files do. ``builtin_default`` marks CoreDNS's fallback
    ``.:<port> { whoami log }`` used when the file has no server block.
    """

    path: str
    blocks: tuple[Block, ...]
    warnings: tuple[str, ...] = ()
    sha512: str = ""
    builtin_default: bool = False
