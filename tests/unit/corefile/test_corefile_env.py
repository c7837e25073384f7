"""Environment substitution (corefile-compat.md 1.3)."""

from __future__ import annotations

import pytest

from kdns.corefile import env
from kdns.plugins.forward.setup import ForwardConfig
from kdns.plugins.loader import load_text

ENV = {"A": "alpha", "B": "beta", "NESTED": "{$A}-x", "EMPTY": "", "PORT": "1053"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{$A}", "alpha"),
        ("{%A%}", "alpha"),
        ("x{$A}y{$B}z", "xalphaybetaz"),
        ("{$A}{$A}", "alphaalpha"),
        ("{$UNSET}", ""),
        ("{$NESTED}", "alpha-x"),
        ("{$}{$A}", "{$}{$A}"),  # {$} stops substitution for the rest of the token
        ("{$A}{$}{$B}", "alpha{$}{$B}"),
        ("{env.A}", "{env.A}"),  # Caddy 2 syntax stays literal
        ("{{$x}}", "{}"),  # Go templates written {{$x}} are mangled, as in CoreDNS
        ("{{ $x }}", "{{ $x }}"),
        ("{$A", "{$A"),
        ("{%A%}{$B}", "alphabeta"),
    ],
)
def test_replace(text: str, expected: str) -> None:
    assert env.replace_env_vars(text, ENV) == expected


def test_substitution_in_keys_directives_and_args() -> None:
    config = load_text(
        ".:{$PORT} {\n  {$DIR} . {$UPSTREAM}\n}\n",
        "Corefile",
        env={"PORT": "1053", "DIR": "forward", "UPSTREAM": "10.0.0.1"},
    )
    (block,) = config.blocks
    assert block.keys[0].port == "1053"
    forward = block.get(ForwardConfig)
    assert forward is not None and str(forward.to[0]) == "10.0.0.1:53"


def test_variable_cannot_inject_tokens() -> None:
    config = load_text("{$K} {\n whoami\n}\n", "Corefile", env={"K": "a.org b.org"})
    # one key token holding a space: a single (odd) zone, not two keys
    assert config.blocks[0].zones == ("a.org b.org.",)


def test_empty_key_is_skipped_and_empty_file_gets_default() -> None:
    config = load_text("{$NOPE} {\n whoami\n}\n", "Corefile", env={})
    assert config.builtin_default
    assert config.blocks[0].names() == ("log", "whoami")


def test_empty_to_argument_is_an_error() -> None:
    with pytest.raises(Exception, match=r'^plugin/forward: invalid address: ""$'):
        load_text(". {\n forward . {$UPSTREAM}\n}\n", "Corefile", env={})
