"""The ``envinject`` Corefile directive: where the webhook listens and with which pair.

Documented in ``Corefile.compat/envinject.md``; its examples are this parser's tests.
TLS is required, not defaulted: the API server calls webhooks over HTTPS only, and a
plain-HTTP listener would look configured while every call failed.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PORT = 8443
DEFAULT_PATH = "/inject"


@dataclass(frozen=True, slots=True)
class EnvInjectConfig:
    host: str  # "" listens on every address, as ":8443" does in CoreDNS
    port: int
    cert_file: str
    key_file: str
    path: str = DEFAULT_PATH

    @property
    def listen(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_listen(text: str) -> tuple[str, int]:
    """``:8443``, ``8443``, ``127.0.0.1:8443``, ``[::1]:8443`` or a bare host."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"envinject: bad listen address {text!r}")
        port_text = rest[1:]
    elif text.count(":") > 1:
        raise ValueError(f"envinject: IPv6 listen address must be bracketed: {text!r}")
    elif ":" in text:
        host, _, port_text = text.partition(":")
    elif text.isdigit():
        host, port_text = "", text
    else:
        host, port_text = text, ""
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"envinject: bad port in listen address {text!r}")
    return host, int(port_text)


def parse_envinject(args: list[str], block: list[list[str]]) -> EnvInjectConfig:
    """``envinject [ADDRESS] { tls CERT KEY; path PATH }`` from lexed tokens.

    ``args`` are the tokens after the directive name, ``block`` one list of tokens per
    line of its block. Every mistake is a ValueError naming the directive and option,
    so a bad Corefile fails at start-up with a message rather than at the first call.
    """
    if len(args) > 1:
        raise ValueError(f"envinject: at most one listen address, got {args}")
    host, port = parse_listen(args[0]) if args else ("", DEFAULT_PORT)
    tls: tuple[str, str] | None = None
    path = DEFAULT_PATH
    seen: set[str] = set()
    for line in block:
        if not line:
            continue
        option, values = line[0], line[1:]
        if option in seen:
            raise ValueError(f"envinject: {option} given twice")
        seen.add(option)
        if option == "tls":
            if len(values) != 2:
                raise ValueError("envinject: tls takes exactly two arguments: CERT KEY")
            tls = (values[0], values[1])
        elif option == "path":
            if len(values) != 1 or not values[0].startswith("/"):
                raise ValueError("envinject: path takes one argument starting with '/'")
            path = values[0]
        else:
            raise ValueError(f"envinject: unknown option {option!r} (known: tls, path)")
    if tls is None:
        raise ValueError(
            "envinject: tls CERT KEY is required; the API server calls webhooks over HTTPS only"
        )
    return EnvInjectConfig(host=host, port=port, cert_file=tls[0], key_file=tls[1], path=path)
