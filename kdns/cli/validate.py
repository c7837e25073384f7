"""``kdns validate``: a Corefile checked as kdns would load it, with CoreDNS's messages."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def validate(argv: Sequence[str]) -> int:
    from kdns.plugins.validate import validate as corefile_validate

    if len(argv) != 1:
        sys.stderr.write("usage: kdns validate PATH\n")
        return 2
    lines = corefile_validate(argv[0])
    for line in lines:
        sys.stdout.write(line + "\n")
    failed = any(not (ln.startswith("hint:") or ln.startswith("[WARNING]")) for ln in lines)
    if not failed:
        sys.stdout.write(f"{argv[0]}: OK\n")
    return 1 if failed else 0
