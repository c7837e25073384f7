"""The envinject directive: the examples of Corefile.compat/envinject.md parse, and
every mistake is a ValueError that names what is wrong."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kdns.envinject.config import EnvInjectConfig, parse_envinject

DOC = Path(__file__).resolve().parents[3] / "Corefile.compat" / "envinject.md"


def lex_directive(text: str) -> tuple[list[str], list[list[str]]]:
    """A minimal stand-in for the Corefile lexer: ``envinject ARGS { LINES }``."""
    lines = [line.split("#", 1)[0].split() for line in text.strip().splitlines()]
    lines = [line for line in lines if line]
    head = lines[0]
    assert head[0] == "envinject"
    if head[-1] != "{":
        return head[1:], []
    assert lines[-1] == ["}"]
    return head[1:-1], lines[1:-1]


def doc_examples() -> list[str]:
    return re.findall(r"~~~ corefile\n(.*?)~~~", DOC.read_text(), re.S)


def test_doc_has_examples() -> None:
    assert len(doc_examples()) == 2


def test_doc_examples_parse() -> None:
    first, second = (parse_envinject(*lex_directive(e)) for e in doc_examples())
    assert first == EnvInjectConfig("", 8443, "/etc/kdns/tls/tls.crt", "/etc/kdns/tls/tls.key")
    assert first.listen == ":8443"
    assert second == EnvInjectConfig(
        "10.0.0.10", 9443, "/etc/kdns/tls/tls.crt", "/etc/kdns/tls/tls.key", "/mutate/pods"
    )


@pytest.mark.parametrize(
    "address,host,port",
    [
        (":8443", "", 8443),
        ("9443", "", 9443),
        ("127.0.0.1:1", "127.0.0.1", 1),
        ("[::1]:8443", "::1", 8443),
        ("[::]", "::", 8443),
        ("localhost", "localhost", 8443),
    ],
)
def test_listen_addresses(address: str, host: str, port: int) -> None:
    config = parse_envinject([address], [["tls", "c", "k"]])
    assert (config.host, config.port) == (host, port)


def test_ipv6_listen_is_printed_bracketed() -> None:
    assert parse_envinject(["[::1]:8443"], [["tls", "c", "k"]]).listen == "[::1]:8443"


@pytest.mark.parametrize(
    "args,block,message",
    [
        ([], [], "tls CERT KEY is required"),
        ([":1", ":2"], [["tls", "c", "k"]], "at most one listen address"),
        ([":0"], [["tls", "c", "k"]], "bad port"),
        ([":65536"], [["tls", "c", "k"]], "bad port"),
        ([":http"], [["tls", "c", "k"]], "bad port"),
        (["::1"], [["tls", "c", "k"]], "must be bracketed"),
        (["[::1"], [["tls", "c", "k"]], "bad listen address"),
        ([], [["tls", "c"]], "exactly two arguments"),
        ([], [["tls", "c", "k"], ["tls", "c", "k"]], "given twice"),
        ([], [["tls", "c", "k"], ["path", "inject"]], "starting with '/'"),
        ([], [["tls", "c", "k"], ["path"]], "path takes one argument"),
        ([], [["tls", "c", "k"], ["cert", "c"]], "unknown option 'cert'"),
    ],
)
def test_mistakes(args: list[str], block: list[list[str]], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        parse_envinject(args, block)
    assert str(err.value).startswith("envinject: ")
