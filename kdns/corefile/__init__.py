"""The Corefile: CoreDNS's configuration language, read exactly as CoreDNS reads it.

``load(path)`` returns server blocks with typed plugin configs or raises
``CorefileError`` whose text is CoreDNS's message for the same input.
"""

from __future__ import annotations

from kdns.corefile.config import Block, Config
from kdns.corefile.errors import CorefileError
from kdns.corefile.loader import load, load_default, load_text
from kdns.corefile.validate import validate, validate_text

__all__ = [
    "Block",
    "Config",
    "CorefileError",
    "load",
    "load_default",
    "load_text",
    "validate",
    "validate_text",
]
