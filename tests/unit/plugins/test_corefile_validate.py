"""``kdns validate``: CoreDNS's message first, then migration hints and warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdns.corefile import goparse
from kdns.corefile.errors import CorefileError
from kdns.plugins.validate import validate, validate_text

EXAMPLES = Path(__file__).resolve().parents[3] / "Corefile.compat" / "examples"


def test_clean_file_has_no_lines(tmp_path: Path) -> None:
    path = tmp_path / "Corefile"
    path.write_text(". {\n whoami\n}\n")
    assert validate(str(path)) == []


def test_proxy_hint() -> None:
    lines = validate(str(EXAMPLES / "bad-legacy-proxy.Corefile"))
    assert lines[0].endswith("Unknown directive 'proxy'")
    assert lines[1].startswith("hint: `proxy` was removed in CoreDNS 1.5.0: use `forward`")


def test_upstream_and_resyncperiod_hints_all_reported() -> None:
    lines = validate_text(
        ". {\n kubernetes cluster.local {\n  upstream\n  resyncperiod 30s\n }\n}\n", "Corefile"
    )
    assert lines[0] == (
        "plugin/kubernetes: Corefile:3 - Error during parsing: unknown property 'upstream'"
    )
    assert any("`upstream` was removed in CoreDNS 1.7.0" in line for line in lines[1:])
    assert any("`resyncperiod` was removed in CoreDNS 1.7.0" in line for line in lines[1:])


def test_unknown_directive_lists_supported_and_case_hint() -> None:
    (_, hint) = validate_text(". {\n forwad . 1.1.1.1\n}\n")
    assert hint.startswith("hint: kdns supports: ") and "forward" in hint
    (_, hint) = validate_text(". {\n Forward . 1.1.1.1\n}\n")
    assert hint == "hint: directive names are case-sensitive: write `forward`"


def test_once_per_block_hint() -> None:
    lines = validate(str(EXAMPLES / "bad-plugin-twice.Corefile"))
    assert lines[0] == "plugin/hosts: this plugin can only be used once per Server Block"
    assert lines[1].startswith("hint: merge the two stanzas")


def test_warnings_are_prefixed() -> None:
    lines = validate(str(EXAMPLES / "good-stray-close-brace.Corefile"))
    assert lines and all(line.startswith("[WARNING] ") for line in lines)


def test_empty_file_warns_about_builtin_default() -> None:
    (line,) = validate_text("", "Corefile")
    assert "built-in default .:53 { whoami log }" in line


# -- Go parsing helpers used by the option parsers -------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("5s", 5.0), ("1m30s", 90.0), ("1.5h", 5400.0), ("500ms", 0.5),
     ("-2s", -2.0), ("1h2m3s4ms", 3723.004), (".5s", 0.5), ("3us", 3e-6)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float) -> None:
    assert goparse.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", 'time: invalid duration ""'), ("5", 'time: missing unit in duration "5"'),
     ("1d", 'time: unknown unit "d" in duration "1d"'), ("x", 'time: invalid duration "x"'),
     (".s", 'time: invalid duration ".s"')],
)  # fmt: skip
def test_parse_duration_errors(text: str, message: str) -> None:
    with pytest.raises(CorefileError) as info:
        goparse.parse_duration(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(2.0, "2s"), (0.5, "500ms"), (90.0, "1m30s"), (3600.0, "1h0m0s"), (-1.0, "-1s"),
     (1.5, "1.5s"), (0.0, "0s")],
)  # fmt: skip
def test_format_duration(seconds: float, text: str) -> None:
    assert goparse.format_duration(seconds) == text


def test_atoi_and_split_host_port() -> None:
    assert goparse.atoi("+053") == 53
    with pytest.raises(CorefileError, match=r'^strconv.Atoi: parsing "1.5": invalid syntax$'):
        goparse.atoi("1.5")
    assert goparse.split_host_port(":9153") == ("", "9153")
    assert goparse.split_host_port("[::1]:53") == ("::1", "53")
    with pytest.raises(CorefileError, match=r"^address \[::1\]: missing port in address$"):
        goparse.split_host_port("[::1]")
