"""``kdns validate``: CoreDNS's verdict on a Corefile, plus what to do about it.

The first line is exactly what ``coredns -conf`` would print (so it can be searched
for), followed by migration hints for syntax CoreDNS removed over the years and the
warnings kdns raises for accepted-but-suspicious input.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping

from kdns.corefile import directives, parser
from kdns.corefile.config import Config
from kdns.corefile.errors import CorefileError
from kdns.plugins import loader

HINT = "hint: "
WARNING = "[WARNING] "

_REMOVED_K8S_OPTIONS = {
    "upstream": "removed in CoreDNS 1.7.0: CNAME targets of ExternalName services are "
    "always resolved through the server itself now; delete the line",
    "resyncperiod": "removed in CoreDNS 1.7.0: informers no longer resync periodically; "
    "delete the line",
    "transfer": "moved out of kubernetes in CoreDNS 1.8.0: use the separate `transfer` "
    "plugin (not supported by kdns)",
}
_UNKNOWN_DIRECTIVE = re.compile(r"Unknown directive '([^']*)'")
_UNKNOWN_PROPERTY = re.compile(r"^plugin/kubernetes: .* unknown property '([^']*)'")


def validate(
    path: str,
    dns_port: int = 53,
    env: Mapping[str, str] | None = None,
    check: Callable[[Config], object] | None = None,
) -> list[str]:
    """Problems with the Corefile at ``path``; empty when it loads without a warning.

    Lines starting with ``hint: `` or ``[WARNING] `` are advice; any other line is the
    error that makes CoreDNS (and kdns) refuse the file. ``check`` gets the loaded
    configuration and may refuse it too (``kdns validate`` plans it, as the server does).
    """
    try:
        config = loader.load(path, dns_port, env)
        if check is not None:
            check(config)
    except CorefileError as e:
        found = hints(str(e))
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            text = ""
        found.extend(h for h in _scan_removed(text, path) if h not in found)
        return [str(e), *(HINT + h for h in found)]
    return [WARNING + w for w in config.warnings]


def validate_text(text: str, filename: str = "stdin", dns_port: int = 53) -> list[str]:
    """``validate`` for Corefile text (``-conf stdin``)."""
    try:
        config = loader.load_text(text, filename, dns_port)
    except CorefileError as e:
        hints_found = hints(str(e))
        hints_found.extend(h for h in _scan_removed(text, filename) if h not in hints_found)
        return [str(e), *(HINT + h for h in hints_found)]
    return [WARNING + w for w in config.warnings]


def hints(message: str) -> list[str]:
    """Migration advice for a CoreDNS error message."""
    found: list[str] = []
    m = _UNKNOWN_DIRECTIVE.search(message)
    if m:
        name = m.group(1)
        if name == "proxy":
            found.append(
                "`proxy` was removed in CoreDNS 1.5.0: use `forward` with the same "
                "FROM and TO (e.g. `forward . /etc/resolv.conf`); `policy`, `max_fails` "
                "and `health_check` keep their meaning, `protocol` and `spray` are gone"
            )
        elif name.lower() in directives.KNOWN:
            found.append(f"directive names are case-sensitive: write `{name.lower()}`")
        else:
            found.append(f"kdns supports: {directives.supported_list()}")
    m = _UNKNOWN_PROPERTY.search(message)
    if m and m.group(1) in _REMOVED_K8S_OPTIONS:
        found.append(f"kubernetes option `{m.group(1)}` was {_REMOVED_K8S_OPTIONS[m.group(1)]}")
    if "can only be used once per Server Block" in message:
        found.append("merge the two stanzas into one (a tool may have injected a second copy)")
    return found


def _scan_removed(text: str, filename: str) -> list[str]:
    """Every removed kubernetes option in the file, not just the first CoreDNS stops at."""
    try:
        blocks = parser.parse(text, filename, directives.KNOWN)
    except CorefileError:
        return []
    found: list[str] = []
    for block in blocks:
        tokens = block.tokens("kubernetes")
        for prev, tok in itertools.pairwise(tokens):
            new_line = prev.file != tok.file or prev.line + prev.line_breaks() < tok.line
            if new_line and tok.text in _REMOVED_K8S_OPTIONS:
                found.append(f"kubernetes option `{tok.text}` was {_REMOVED_K8S_OPTIONS[tok.text]}")
    return found
