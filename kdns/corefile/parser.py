"""Server blocks from tokens: CoreDNS's Caddyfile parser, quirks included.

The parser only groups tokens: keys per block, and every directive's tokens (all of its
lines, nested braces included) per directive name. What a directive's options mean is the
plugin parsers' business. It walks one flat token list with a cursor and splices
``import`` results into it in place, like Caddy, because several accepted-but-odd inputs
(a brace-less last block, a stray top-level ``}``, a missing final ``}`` after a nested
block) only fall out of exactly that algorithm.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace

from kdns.corefile import env as envsubst
from kdns.corefile import lexer
from kdns.corefile.dispenser import Dispenser

log = logging.getLogger("kdns.corefile")

MAX_SNIPPET_EXPANSIONS = 10_000
MAX_FILE_EXPANSIONS = 100_000


@dataclass(frozen=True, slots=True)
class ServerBlock:
    """One block as written: its key tokens and its tokens grouped per directive name.

    ``directives`` keeps first-appearance order; two ``forward`` lines are one entry whose
    tokens hold both stanzas, as CoreDNS hands them to the plugin's setup.
    """

    keys: tuple[str, ...]
    directives: tuple[tuple[str, tuple[lexer.Token, ...]], ...]

    def tokens(self, name: str) -> tuple[lexer.Token, ...]:
        for directive, tokens in self.directives:
            if directive == name:
                return tokens
        return ()


@dataclass(slots=True)
class _Block:
    keys: list[str] = field(default_factory=list)
    tokens: dict[str, list[lexer.Token]] = field(default_factory=dict)


class _Parser(Dispenser):
    """Caddy's parser is written over its dispenser; so is this one, token list and all."""

    def __init__(
        self,
        filename: str,
        tokens: list[lexer.Token],
        valid: Collection[str],
        env: Mapping[str, str] | None,
        warnings: list[str],
    ) -> None:
        super().__init__(filename, ())
        self.tokens: list[lexer.Token] = tokens
        self.valid = valid
        self.env = env
        self.warnings = warnings
        self.block = _Block()
        self.eof = False
        self.snippets: dict[str, list[lexer.Token]] = {}
        self.snippet_expansions = 0
        self.file_expansions = 0

    # -- the dispenser primitives Caddy's parser is written in --------------------------

    def is_new_line(self) -> bool:
        if self.cursor < 1:
            return True
        if self.cursor > len(self.tokens) - 1:
            return False
        prev, cur = self.tokens[self.cursor - 1], self.tokens[self.cursor]
        return prev.file != cur.file or prev.line + prev.line_breaks() < cur.line

    def subst(self, text: str) -> str:
        return envsubst.replace_env_vars(text, self.env)

    # -- grammar -----------------------------------------------------------------------

    def parse_all(self) -> list[ServerBlock]:
        blocks: list[ServerBlock] = []
        while self.next():
            self.block = _Block()
            self.begin()
            if self.block.keys:
                blocks.append(
                    ServerBlock(
                        keys=tuple(self.block.keys),
                        directives=tuple((k, tuple(v)) for k, v in self.block.tokens.items()),
                    )
                )
        return blocks

    def begin(self) -> None:
        if not self.tokens:
            return
        self.addresses()
        if self.eof:
            return  # a file holding only a key line
        name = self.snippet_name()
        if name is not None:
            if name in self.snippets:
                raise self.err(f"redeclaration of previously declared snippet {name}")
            body = self.snippet_tokens()
            for i in range(len(body) - 1):
                tok = body[i]
                at_line_start = (
                    i == 0 or body[i - 1].file != tok.file or body[i - 1].line != tok.line
                )
                if tok.text == "import" and at_line_start and self.subst(body[i + 1].text) == name:
                    raise self.err(
                        f"maximum snippet import depth ({MAX_SNIPPET_EXPANSIONS}) exceeded"
                    )
            self.snippets[name] = body
            self.block.keys = []
            return
        self.block_contents()

    def addresses(self) -> None:
        expecting_another = False
        while True:
            tkn = self.subst(self.val())
            if tkn == "import" and self.is_new_line():
                self.do_import()
                continue
            if tkn == "{":
                if expecting_another:
                    raise self.err(
                        f"Expected another address but had '{tkn}' - check for extra comma"
                    )
                break
            if tkn != "":
                if tkn.endswith(","):
                    tkn = tkn[:-1]
                    expecting_another = True
                else:
                    expecting_another = False
                self.block.keys.append(tkn)
            has_next = self.next()
            if expecting_another and not has_next:
                raise self.err("Unexpected EOF")
            if not has_next:
                self.eof = True
                break
            if not expecting_another and self.is_new_line():
                break

    def block_contents(self) -> None:
        braced = self.val() == "{"
        if not braced:
            self.cursor -= 1  # a brace-less block: its directives run to EOF or a '}'
        self.directives()
        if braced and self.val() != "}":
            raise self.syntax_err("}")

    def directives(self) -> None:
        while self.next():
            if self.val() == "}":
                break
            if self.val() == "import":
                self.do_import()
                self.cursor -= 1
                continue
            self.directive()

    def directive(self) -> None:
        name = self.subst(self.val())
        if name not in self.valid:
            raise self.err(f"Unknown directive '{name}'")
        collected = self.block.tokens.setdefault(name, [])
        collected.append(self.tokens[self.cursor])
        nesting = 0
        while self.next():
            text = self.val()
            if text == "{":
                nesting += 1
            elif self.is_new_line() and nesting == 0:
                self.cursor -= 1
                break
            elif text == "}" and nesting > 0:
                nesting -= 1
            elif text == "}":
                raise self.err("Unexpected '}' because no matching opening brace")
            elif text == "import" and self.is_new_line():
                self.do_import()
                self.cursor -= 1
                continue
            tok = self.tokens[self.cursor]
            tok = replace(tok, text=self.subst(tok.text))
            self.tokens[self.cursor] = tok
            collected.append(tok)
        if nesting > 0:
            raise self.err("Unexpected EOF")

    def snippet_name(self) -> str | None:
        keys = self.block.keys
        if len(keys) == 1 and keys[0].startswith("(") and keys[0].endswith(")"):
            return keys[0][1:].removesuffix(")")
        return None

    def snippet_tokens(self) -> list[lexer.Token]:
        if self.val() != "{":
            raise self.syntax_err("{")
        count = 1
        body: list[lexer.Token] = []
        while self.next():
            if self.val() == "}":
                count -= 1
                if count == 0:
                    break
            if self.val() == "{":
                count += 1
            body.append(self.tokens[self.cursor])
        if count != 0:
            raise self.syntax_err("}")
        return body

    # -- import ------------------------------------------------------------------------

    def do_import(self) -> None:
        """Replace ``import PATTERN`` with the snippet's or the files' tokens, in place.

        Afterwards the cursor sits on the first imported token (or what followed).
        """
        if not self.next_arg():
            raise self.arg_err()
        pattern = self.subst(self.val())
        if pattern == "":
            raise self.err("Import requires a non-empty filepath")
        if self.next_arg():
            raise self.err("Import takes only one argument (glob pattern or file)")
        before = self.tokens[: self.cursor - 1]
        after = self.tokens[self.cursor + 1 :]
        if pattern in self.snippets:
            if self.snippet_expansions >= MAX_SNIPPET_EXPANSIONS:
                raise self.err(f"maximum snippet import depth ({MAX_SNIPPET_EXPANSIONS}) exceeded")
            self.snippet_expansions += 1
            imported = list(self.snippets[pattern])
        else:
            if self.file_expansions >= MAX_FILE_EXPANSIONS:
                raise self.err(f"maximum file import depth ({MAX_FILE_EXPANSIONS}) exceeded")
            self.file_expansions += 1
            imported = self.import_files(pattern)
        self.tokens = before + imported + after
        self.cursor -= 1

    def import_files(self, pattern: str) -> list[lexer.Token]:
        base = os.path.dirname(os.path.abspath(self.file()))
        glob_pattern = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
        glob_pattern = os.path.normpath(glob_pattern)
        if (
            glob_pattern.count("*") > 1
            or glob_pattern.count("?") > 1
            or ("[" in glob_pattern and "]" in glob_pattern)
        ):
            raise self.err(
                f"Glob pattern may only contain one wildcard (*), but has others: {glob_pattern}"
            )
        # Go's filepath.Glob lets '*' match dot-files (ConfigMap volumes' '..data').
        matches = sorted(glob.glob(glob_pattern, include_hidden=True))
        if not matches:
            if any(c in glob_pattern for c in "*?[]"):
                message = f"No files matching import glob pattern: {pattern}"
                log.warning(message)
                self.warnings.append(message)
            else:
                raise self.err(f"File to import not found: {pattern}")
        imported: list[lexer.Token] = []
        for path in matches:
            imported.extend(self.import_one(path))
        return imported

    def import_one(self, path: str) -> list[lexer.Token]:
        if os.path.isdir(path):
            raise self.err(f"Could not import {path}: is a directory")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise self.err(f"Could not import {path}: {_go_os_error('open', path, e)}") from e
        return lexer.tokenize(lexer.decode(data), os.path.abspath(path))


def _go_os_error(op: str, path: str, e: OSError) -> str:
    """Go's *PathError text: ``open /x: permission denied``."""
    reason = (e.strerror or str(e)).lower()
    return f"{op} {path}: {reason}"


def parse(
    text: str,
    filename: str,
    valid_directives: Collection[str],
    env: Mapping[str, str] | None = None,
    warnings: list[str] | None = None,
) -> list[ServerBlock]:
    """Group a Corefile's tokens into server blocks, expanding imports and snippets.

    ``filename`` is the path as given on the command line (errors quote it verbatim);
    imports resolve against its directory. Glob imports that match nothing are appended
    to ``warnings`` rather than failing, as CoreDNS only logs them.
    """
    parser = _Parser(
        filename,
        lexer.tokenize(text),
        valid_directives,
        env,
        warnings if warnings is not None else [],
    )
    return parser.parse_all()
