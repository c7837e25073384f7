"""``{$NAME}`` and ``{%NAME%}`` substitution inside a token, as CoreDNS does it.

Substitution happens per token after lexing, so a variable can never add tokens, braces
or lines. The Windows form is expanded first; an unset variable becomes ``""``; a value
that itself holds a reference is expanded again; ``{$}`` stops substitution for the rest
of the token. ``{env.NAME}`` (Caddy 2) is *not* syntax here and stays literal, or configs
would mean different things under kdns and CoreDNS.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# Go loops until no reference is left, so X={$X} hangs CoreDNS; kdns gives up instead.
_MAX_ROUNDS = 10_000


def replace_env_vars(text: str, env: Mapping[str, str] | None = None) -> str:
    """The token text with environment references replaced."""
    if "{" not in text:
        return text
    environ = os.environ if env is None else env
    text = _replace(text, "{%", "%}", environ)
    return _replace(text, "{$", "}", environ)


def _replace(text: str, start: str, end: str, env: Mapping[str, str]) -> str:
    index = text.find(start)
    rounds = 0
    while index != -1 and rounds < _MAX_ROUNDS:
        rounds += 1
        end_index = text.find(end, index)
        if end_index == -1:
            break
        if end_index <= index + len(start):
            return text
        ref = text[index : end_index + len(end)]
        text = text.replace(ref, env.get(ref[len(start) : -len(end)], ""))
        index = text.find(start)
    return text
