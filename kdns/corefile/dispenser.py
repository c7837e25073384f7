"""A cursor over one directive's tokens, for plugin option parsing.

The same primitives CoreDNS's plugins are written in (``NextArg``, ``RemainingArgs``,
``NextBlock``...), with the same line-sensitivity: two tokens are on one line when they
come from the same file and the first's line plus the newlines inside it equals the
second's line. Porting a plugin's parse function is then line for line, and its errors
carry the same file:line.
"""

from __future__ import annotations

from collections.abc import Sequence

from kdns.corefile.errors import CorefileError
from kdns.corefile.lexer import Token


class Dispenser:
    """Walks the tokens of every stanza of one directive in one server block."""

    def __init__(self, filename: str, tokens: Sequence[Token]) -> None:
        self.filename = filename
        self.tokens: Sequence[Token] = tuple(tokens)
        self.cursor = -1
        self.nesting = 0

    def next(self) -> bool:
        """Advance to the next token, wherever it is."""
        if self.cursor < len(self.tokens) - 1:
            self.cursor += 1
            return True
        return False

    def next_arg(self) -> bool:
        """Advance only if the next token is on the current token's line."""
        if self.cursor < 0:
            self.cursor += 1
            return True
        if self.cursor >= len(self.tokens) - 1:
            return False
        cur, nxt = self.tokens[self.cursor], self.tokens[self.cursor + 1]
        if cur.file == nxt.file and cur.line + cur.line_breaks() == nxt.line:
            self.cursor += 1
            return True
        return False

    def next_line(self) -> bool:
        """Advance only if the next token starts a new line."""
        if self.cursor < 0:
            self.cursor += 1
            return True
        if self.cursor >= len(self.tokens) - 1:
            return False
        cur, nxt = self.tokens[self.cursor], self.tokens[self.cursor + 1]
        if cur.file != nxt.file or cur.line + cur.line_breaks() < nxt.line:
            self.cursor += 1
            return True
        return False

    def next_block(self) -> bool:
        """Step through a ``{ ... }`` opened on the current line; False at its ``}``."""
        if self.nesting > 0:
            if not self.next():
                return False
            if self.val() == "{":
                self.cursor -= 1
            else:
                if self.val() == "}":
                    self.nesting -= 1
                    return False
                return True
        if not self.next_arg():
            return False
        if self.val() != "{":
            self.cursor -= 1
            return False
        if not self.next():
            return False
        if self.val() == "}":
            return False
        self.nesting += 1
        return True

    def val(self) -> str:
        if 0 <= self.cursor < len(self.tokens):
            return self.tokens[self.cursor].text
        return ""

    def line(self) -> int:
        if 0 <= self.cursor < len(self.tokens):
            return self.tokens[self.cursor].line
        return 0

    def file(self) -> str:
        if 0 <= self.cursor < len(self.tokens) and self.tokens[self.cursor].file:
            return self.tokens[self.cursor].file
        return self.filename

    def remaining_args(self) -> list[str]:
        """The rest of the line, stopping before a ``{``."""
        args: list[str] = []
        while self.next_arg():
            if self.val() == "{":
                self.cursor -= 1
                break
            args.append(self.val())
        return args

    def err(self, msg: str) -> CorefileError:
        """CoreDNS's ``c.Err``: ``<file>:<line> - Error during parsing: <msg>``."""
        return CorefileError(f"{self.file()}:{self.line()} - Error during parsing: {msg}")

    def arg_err(self) -> CorefileError:
        if self.val() == "{":
            return self.err("Unexpected token '{', expecting argument")
        return self.err(f"Wrong argument count or unexpected line ending after '{self.val()}'")

    def syntax_err(self, expected: str) -> CorefileError:
        return CorefileError(
            f"{self.file()}:{self.line()} - Syntax error: "
            f"Unexpected token '{self.val()}', expecting '{expected}'"
        )
