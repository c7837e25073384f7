"""The Corefile: CoreDNS's configuration language, read exactly as CoreDNS reads it.

The syntax only (lexer, parser, dispenser, the shared value grammars): each directive's
setup lives in its plugin folder, and :mod:`kdns.plugins.loader` turns a Corefile into
typed configs. Imports nothing from kdns outside this package but :mod:`kdns.errors`.
"""

from __future__ import annotations

from kdns.corefile.config import Block, Config
from kdns.corefile.errors import CorefileError

__all__ = ["Block", "Config", "CorefileError"]
