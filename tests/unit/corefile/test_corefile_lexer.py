"""Lexer rules of corefile-compat.md 1.1, one table row per [verified] behaviour."""

from __future__ import annotations

import pytest

from kdns.corefile import lexer


def texts(source: str) -> list[str]:
    return [t.text for t in lexer.tokenize(source)]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # 1. a leading BOM is dropped (only the first one)
        ("\ufeffwhoami", ["whoami"]),
        ("a \ufeffb", ["a", "\ufeffb"]),
        # 2. any Go white space separates; \r vanishes, even inside a word
        ("a\tb\u00a0c\u2003d\ve", ["a", "b", "c", "d", "e"]),
        (".:53 {\r\n  whoami\r\n}\r\n", [".:53", "{", "whoami", "}"]),
        ("who\rami", ["whoami"]),
        ("a\x1cb", ["a\x1cb"]),  # Python calls U+001C space, Go does not
        # 3. '#' starts a comment, even mid-word; literal inside quotes
        ("whoami#x", ["whoami"]),
        ("whoami # log\nlog", ["whoami", "log"]),
        ('"a#b" c', ["a#b", "c"]),
        ("whoami#x y", ["whoami", "y"]),  # Go's comment flag is per word
        # 4. quotes
        ('"a b"', ["a b"]),
        ('"a\nb"', ["a\nb"]),
        ('"say \\"hi\\""', ['say "hi"']),
        ('"\\.cloudapp\\."', ["\\.cloudapp\\."]),
        ('"a\\\\b"', ["a\\\\b"]),
        ('c"d', ['c"d']),
        ('"a"b', ["a", "b"]),
        ('""', [""]),
        ('"" x', ["", "x"]),
        # 5. an unterminated quote swallows the rest
        ('log "foo\n}\n', ["log", "foo\n}\n"]),
        ('log "', ["log"]),
        # 6. braces only stand alone
        (".:53{", [".:53{"]),
        ("}}", ["}}"]),
        ("{ }", ["{", "}"]),
        ("{$X}", ["{$X}"]),
    ],
)
def test_tokens(source: str, expected: list[str]) -> None:
    assert texts(source) == expected


def test_lines_are_the_first_characters() -> None:
    tokens = lexer.tokenize('a\n\n  "b\nc" d\n# x\ne')
    assert [(t.text, t.line) for t in tokens] == [("a", 1), ("b\nc", 3), ("d", 4), ("e", 6)]
    assert tokens[1].line_breaks() == 1


def test_file_is_recorded() -> None:
    assert lexer.tokenize("a", "/x/y")[0].file == "/x/y"
    assert lexer.tokenize("a")[0].file == ""


def test_invalid_utf8_becomes_replacement_character() -> None:
    assert texts(lexer.decode(b"a\xffb")) == ["a\ufffdb"]


def test_empty_and_comment_only() -> None:
    assert texts("") == []
    assert texts("# only\n   # comments\n") == []
