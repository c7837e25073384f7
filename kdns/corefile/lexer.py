"""Corefile tokens, cut exactly as CoreDNS's Caddy-v1 lexer cuts them.

Every quirk here is load-bearing for some deployed Corefile: ``#`` ends a word even in its
middle, ``\\r`` vanishes even inside a word, only ``\\"`` is an escape inside quotes (AKS's
template regex ``"\\.cloudapp\\."`` keeps its backslashes), ``{`` and ``}`` are only braces
when they stand alone, and an unterminated quote silently swallows the rest of the file.
Line numbers belong to a token's first character; the parser's "same line" decisions
count the newlines inside quoted tokens, so tokens carry their text verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass

# Go's unicode.IsSpace: Latin-1 spaces plus the Unicode White_Space property. Python's
# str.isspace() also counts U+001C..U+001F, which Go keeps inside words.
_GO_SPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_BOM = "\ufeff"


@dataclass(frozen=True, slots=True)
class Token:
    """One word of a Corefile and where it started.

    ``file`` is ``""`` for the main Corefile (errors then name the path given to ``-conf``)
    and the absolute path for imported files, as CoreDNS reports them.
    """

    file: str
    line: int
    text: str

    def line_breaks(self) -> int:
        """Newlines inside the token: a quoted token spanning lines pushes the next one down."""
        return self.text.count("\n")


def decode(data: bytes) -> str:
    """Bytes to text as Go's rune reader sees them: invalid UTF-8 becomes U+FFFD."""
    return data.decode("utf-8", errors="replace")


def tokenize(text: str, file: str = "") -> list[Token]:
    """All tokens of one file, in order. Never fails: CoreDNS's lexer has no errors."""
    if text.startswith(_BOM):
        text = text[1:]
    tokens: list[Token] = []
    line = 1
    i = 0
    n = len(text)
    while True:
        # Skip space and comments until a token starts.
        comment = False
        start_line = line
        word: list[str] = []
        quoted = False
        while i < n:
            ch = text[i]
            if ch in _GO_SPACE:
                i += 1
                if ch == "\n":
                    line += 1
                    comment = False
                continue
            if ch == "#":
                comment = True
            if comment:
                i += 1
                continue
            start_line = line
            if ch == '"':
                quoted = True
                i += 1
            break
        else:
            return tokens
        if quoted:
            escaped = False
            closed = False
            while i < n:
                ch = text[i]
                i += 1
                if not escaped:
                    if ch == "\\":
                        escaped = True
                        continue
                    if ch == '"':
                        closed = True
                        break
                if ch == "\n":
                    line += 1
                if escaped and ch != '"':
                    word.append("\\")
                word.append(ch)
                escaped = False
            if not closed and not word:
                # A lone '"' (or '"\') at EOF: Go's lexer returns no token at all.
                return tokens
            tokens.append(Token(file, start_line, "".join(word)))
            continue
        # A bare word: runs to white space; '#' ends it and comments out the rest of the
        # word, but the comment flag is per word, so later words on the line survive.
        while i < n:
            ch = text[i]
            if ch in _GO_SPACE:
                if ch == "\r":
                    i += 1
                    continue
                break
            if ch == "#":
                comment = True
            if not comment:
                word.append(ch)
            i += 1
        tokens.append(Token(file, start_line, "".join(word)))
