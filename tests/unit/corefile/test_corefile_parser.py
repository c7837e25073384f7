"""Block structure, imports and snippets (corefile-compat.md 1.2, 1.4, 1.8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdns.corefile import CorefileError, directives, parser
from kdns.plugins.loader import load_text


def parse(text: str, filename: str = "Corefile") -> list[parser.ServerBlock]:
    return parser.parse(text, filename, directives.KNOWN)


def error(text: str, filename: str = "Corefile") -> str:
    with pytest.raises(CorefileError) as info:
        load_text(text, filename)
    return str(info.value)


def texts(block: parser.ServerBlock, name: str) -> list[str]:
    return [t.text for t in block.tokens(name)]


# -- keys -------------------------------------------------------------------------------


def test_several_keys_and_comma_continuation() -> None:
    (block,) = parse("a.org b.org,\nc.org, d.org {\n whoami\n}\n")
    assert block.keys == ("a.org", "b.org", "c.org", "d.org")


def test_comma_inside_a_token_is_not_split() -> None:
    (block,) = parse("a.com,b.com {\n whoami\n}\n")
    assert block.keys == ("a.com,b.com",)


def test_empty_quoted_key_is_skipped() -> None:
    (block,) = parse('"" a.org {\n whoami\n}\n')
    assert block.keys == ("a.org",)


def test_brace_on_next_line() -> None:
    (block,) = parse(".:53\n{\n whoami\n}\n")
    assert block.keys == (".:53",) and texts(block, "whoami") == ["whoami"]


def test_quoted_keys_and_directive_names() -> None:
    (block,) = parse('".:53" {\n "whoami"\n}\n')
    assert block.keys == (".:53",) and texts(block, "whoami") == ["whoami"]


def test_trailing_comma_before_brace() -> None:
    assert error("example.org, {\n whoami\n}\n") == (
        "Corefile:1 - Error during parsing: Expected another address but had '{' "
        "- check for extra comma"
    )


def test_trailing_comma_at_eof() -> None:
    assert error("example.org,") == "Corefile:1 - Error during parsing: Unexpected EOF"


# -- directives ---------------------------------------------------------------------------


def test_directives_grouped_per_name() -> None:
    (block,) = parse(
        ". {\n forward a.org 1.1.1.1\n log\n forward . 8.8.8.8 {\n  force_tcp\n }\n}\n"
    )
    assert [name for name, _ in block.directives] == ["forward", "log"]
    assert texts(block, "forward") == [
        "forward", "a.org", "1.1.1.1", "forward", ".", "8.8.8.8", "{", "force_tcp", "}",
    ]  # fmt: skip


def test_nesting_is_unlimited_at_parse_level() -> None:
    (block,) = parse(". {\n template ANY ANY {\n  a { b { c } }\n }\n}\n")
    assert texts(block, "template")[-8:] == ["a", "{", "b", "{", "c", "}", "}", "}"]


def test_open_brace_on_next_line_belongs_to_the_directive() -> None:
    (block,) = parse(". {\n log\n {\n  class error\n }\n}\n")
    assert texts(block, "log") == ["log", "{", "class", "error", "}"]


def test_quoted_newlines_count_for_same_line() -> None:
    (block,) = parse('. {\n log "x\ny" z\n}\n')
    assert texts(block, "log") == ["log", "x\ny", "z"]
    assert (
        error(". {\n log x\ny z\n}\n") == "Corefile:3 - Error during parsing: Unknown directive 'y'"
    )


# -- odd but accepted ----------------------------------------------------------------------


def test_braceless_block_runs_to_eof() -> None:
    (block,) = parse(".:53\nwhoami\nlog\n")
    assert [n for n, _ in block.directives] == ["whoami", "log"]


def test_keyless_block_is_dropped() -> None:
    blocks = parse("{\n whoami\n}\n. {\n log\n}\n")
    assert [b.keys for b in blocks] == [(".",)]


def test_stray_close_brace_becomes_a_zone() -> None:
    config = load_text(". {\n whoami\n}\n}\n", "Corefile")
    assert [b.zones for b in config.blocks] == [(".",), ("}.",)]
    assert config.blocks[1].plugins == ()
    assert any("stray '}'" in w for w in config.warnings)


def test_missing_final_brace_after_nested_block_is_accepted() -> None:
    config = load_text(". {\n whoami\n health {\n  lameduck 5s\n }\n", "Corefile")
    assert config.blocks[0].names() == ("health", "whoami")


def test_missing_final_brace_otherwise_is_an_error() -> None:
    assert "expecting '}'" in error(". {\n health {\n  lameduck 5s\n }\n whoami\n")


@pytest.mark.parametrize("text", ["", "# nothing\n", "(snip) {\n log\n}\n", "{\n log\n}\n"])
def test_no_server_blocks_gives_builtin_default(text: str) -> None:
    config = load_text(text, "Corefile", dns_port=1053)
    assert config.builtin_default
    (block,) = config.blocks
    assert [str(k) for k in block.keys] == ["dns://.:1053"]
    assert block.names() == ("log", "whoami")  # chain order, not file order
    assert config.warnings


def test_key_line_only_is_a_block_without_plugins() -> None:
    config = load_text("example.org", "Corefile")
    assert config.blocks[0].zones == ("example.org.",) and config.blocks[0].plugins == ()


# -- snippets -----------------------------------------------------------------------------


def test_snippet_is_replayed_with_its_own_lines() -> None:
    (block,) = parse("(common) {\n errors\n log\n}\n. {\n import common\n whoami\n}\n")
    assert [n for n, _ in block.directives] == ["errors", "log", "whoami"]
    assert [t.line for t in block.tokens("log")] == [3]


def test_snippet_redeclared() -> None:
    assert error("(a) {\n log\n}\n(a) {\n log\n}\n") == (
        "Corefile:4 - Error during parsing: redeclaration of previously declared snippet a"
    )


def test_snippet_must_be_defined_before_use() -> None:
    assert error(". {\n import later\n}\n(later) {\n log\n}\n") == (
        "Corefile:2 - Error during parsing: File to import not found: later"
    )


def test_snippet_importing_itself() -> None:
    assert error("(loop) {\n import loop\n}\n") == (
        "Corefile:3 - Error during parsing: maximum snippet import depth (10000) exceeded"
    )


def test_snippet_needs_braces() -> None:
    assert error("(s)\nlog\n") == "Corefile:2 - Syntax error: Unexpected token 'log', expecting '{'"


def test_import_takes_one_argument() -> None:
    assert error("(s) {\n log\n}\n. {\n import s x\n}\n") == (
        "Corefile:5 - Error during parsing: Import takes only one argument (glob pattern or file)"
    )
    assert error(". {\n import\n}\n") == (
        "Corefile:2 - Error during parsing: "
        "Wrong argument count or unexpected line ending after 'import'"
    )


def test_import_as_plain_argument_is_just_a_word() -> None:
    (block,) = parse(". {\n log import\n}\n")
    assert texts(block, "log") == ["log", "import"]


def test_snippet_inside_nested_block() -> None:
    (block,) = parse("(opts) {\n force_tcp\n}\n. {\n forward . 1.1.1.1 {\n  import opts\n }\n}\n")
    assert texts(block, "forward")[-3:] == ["{", "force_tcp", "}"]


# -- file imports -------------------------------------------------------------------------


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_import_relative_to_the_importing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir("/")
    write(tmp_path / "custom" / "a.override", "log\n")
    write(tmp_path / "custom" / "stub.server", "corp.example:53 {\n import ../inner/x.conf\n}\n")
    write(tmp_path / "inner" / "x.conf", "whoami\n")
    main = write(
        tmp_path / "Corefile", ". {\n import custom/*.override\n}\nimport custom/*.server\n"
    )
    blocks = parser.parse(Path(main).read_text(), main, directives.KNOWN)
    assert [b.keys for b in blocks] == [(".",), ("corp.example:53",)]
    assert [n for n, _ in blocks[0].directives] == ["log"]
    whoami = blocks[1].tokens("whoami")[0]
    assert whoami.file == str(tmp_path / "inner" / "x.conf") and whoami.line == 1


def test_glob_without_match_is_a_warning(tmp_path: Path) -> None:
    main = write(tmp_path / "Corefile", ". {\n whoami\n import custom/*.override\n}\n")
    config = load_text(Path(main).read_text(), main)
    assert config.warnings == ("No files matching import glob pattern: custom/*.override",)


def test_glob_matches_in_sorted_order_including_dotfiles(tmp_path: Path) -> None:
    write(tmp_path / "c" / "b.conf", "log\n")
    write(tmp_path / "c" / "a.conf", "whoami\n")
    write(tmp_path / "c" / ".hidden.conf", "errors\n")
    main = write(tmp_path / "Corefile", ". {\n import c/*.conf\n}\n")
    (block,) = parse(Path(main).read_text(), main)
    assert [n for n, _ in block.directives] == ["errors", "whoami", "log"]


def test_glob_matching_a_directory_fails(tmp_path: Path) -> None:
    (tmp_path / "custom" / "..data").mkdir(parents=True)
    main = write(tmp_path / "Corefile", ". {\n whoami\n}\nimport custom/*\n")
    assert error(Path(main).read_text(), main) == (
        f"{main}:4 - Error during parsing: Could not import "
        f"{tmp_path / 'custom' / '..data'}: is a directory"
    )


def test_glob_with_two_wildcards(tmp_path: Path) -> None:
    main = str(tmp_path / "Corefile")
    assert error(". {\n import */*.conf\n}\n", main) == (
        f"{main}:2 - Error during parsing: Glob pattern may only contain one wildcard (*), "
        f"but has others: {tmp_path}/*/*.conf"
    )


def test_missing_plain_import(tmp_path: Path) -> None:
    main = str(tmp_path / "Corefile")
    assert error(". {\n import nope.conf\n}\n", main) == (
        f"{main}:2 - Error during parsing: File to import not found: nope.conf"
    )


def test_error_inside_imported_file_names_that_file(tmp_path: Path) -> None:
    inc = write(tmp_path / "inc.conf", "\n\nforwad . 1.1.1.1\n")
    main = write(tmp_path / "Corefile", ". {\n import inc.conf\n}\n")
    assert error(Path(main).read_text(), main) == (
        f"{inc}:3 - Error during parsing: Unknown directive 'forwad'"
    )


def test_import_pattern_env_substitution(tmp_path: Path) -> None:
    write(tmp_path / "x.conf", "whoami\n")
    main = str(tmp_path / "Corefile")
    config = load_text(". {\n import {$INC}\n}\n", main, env={"INC": "x.conf"})
    assert config.blocks[0].names() == ("whoami",)


def test_imported_lines_do_not_join_main_lines(tmp_path: Path) -> None:
    # Tokens from different files are never on one line: the imported key 'example.org'
    # ends its key line, so the main file's '{' below starts its block as usual, while a
    # following main-file word would be read as a directive.
    write(tmp_path / "key.conf", "example.org\n")
    main = str(tmp_path / "Corefile")
    config = load_text("import key.conf\n{\n whoami\n}\n", main)
    assert config.blocks[0].zones == ("example.org.",)
    assert error("import key.conf\n. {\n}\n", main) == (
        f"{main}:2 - Error during parsing: Unknown directive '.'"
    )


# Errors of one shape: the text, and CoreDNS's message for it.
PARSE_ERRORS = [
    pytest.param(
        ". {\n Log\n}\n",
        "Corefile:2 - Error during parsing: Unknown directive 'Log'",
        id="unknown_and_wrong_case_directive",
    ),
    pytest.param(
        '. {\n"foo\n}\n',
        "Corefile:2 - Error during parsing: Unknown directive 'foo\n}\n'",
        id="unterminated_quote_surfaces_as_unknown_directive",
    ),
    pytest.param(
        ". { whoami }",
        "Corefile:1 - Error during parsing: Unexpected '}' because no matching opening brace",
        id="close_on_same_line",
    ),
    pytest.param(
        ". {\n whoami\n log\n",
        "Corefile:3 - Syntax error: Unexpected token 'log', expecting '}'",
        id="unclosed_block",
    ),
    pytest.param(
        ". {\n forward . 1.1.1.1 {\n  max_fails 3\n",
        "Corefile:3 - Error during parsing: Unexpected EOF",
        id="nested_eof",
    ),
    pytest.param(
        ".:53\nwhoami\nexample.org {\n whoami\n}\n",
        "Corefile:3 - Error during parsing: Unknown directive 'example.org'",
        id="braceless_block_then_key_is_unknown_directive",
    ),
    pytest.param(
        "{\n nope\n}\n",
        "Corefile:2 - Error during parsing: Unknown directive 'nope'",
        id="keyless_block_still_checks_directives",
    ),
]


@pytest.mark.parametrize(("text", "message"), PARSE_ERRORS)
def test_parse_error(text: str, message: str) -> None:
    assert error(text) == message
