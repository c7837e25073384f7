"""Corefile text to a served configuration, in CoreDNS's order of checks.

1. parse (syntax, unknown directives, imports), 2. inspect keys (``error inspecting
server blocks: ...``), 3. set up each directive in plugin.cfg order for every block
(``plugin/<name>: ...``; the first failure in that order wins, not the first in the
file), 4. the zone/listener duplicate checks, which therefore carry no file:line.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping

from kdns.corefile import directives, keys, lexer, parser
from kdns.corefile.config import Block, Config
from kdns.corefile.dispenser import Dispenser
from kdns.corefile.errors import CorefileError
from kdns.plugins import registry as plugins
from kdns.plugins.bind.setup import BindConfig

log = logging.getLogger("kdns.corefile")

DEFAULT_FILENAME = "Corefile"


def default_text(dns_port: int = 53) -> str:
    """CoreDNS's built-in Corefile, used when there is no server block at all."""
    return f".:{dns_port} {{\nwhoami\nlog\n}}\n"


def load(path: str, dns_port: int = 53, env: Mapping[str, str] | None = None) -> Config:
    """Read, check and set up the Corefile at ``path`` (as given to ``-conf``)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        reason = "no such file or directory" if isinstance(e, FileNotFoundError) else e.strerror
        raise CorefileError(f"loading Caddyfile via flag: open {path}: {reason}") from None
    return load_text(lexer.decode(data), path, dns_port, env)


def load_default(dns_port: int = 53) -> Config:
    """The configuration CoreDNS runs with no ``-conf`` and no ``./Corefile``."""
    return load_text(default_text(dns_port), DEFAULT_FILENAME, dns_port)


def load_text(
    text: str,
    filename: str = "stdin",
    dns_port: int = 53,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Check and set up Corefile text; ``filename`` anchors imports and error messages."""
    warnings: list[str] = []
    blocks = parser.parse(text, filename, directives.KNOWN, env, warnings)
    builtin = False
    if not blocks:
        _warn(
            warnings,
            f"{filename} has no server blocks: serving CoreDNS's built-in default "
            f".:{dns_port} {{ whoami log }}",
        )
        filename, builtin = DEFAULT_FILENAME, True
        blocks = parser.parse(default_text(dns_port), filename, directives.KNOWN)
    digest = fingerprint(blocks)
    addrs = [_inspect(block, dns_port) for block in blocks]
    _warn_oddities(blocks, addrs, warnings)
    configs = _setup(blocks, addrs, filename, dns_port, warnings)
    built = tuple(
        Block(keys=tuple(za), plugins=tuple(cfg), listen_hosts=_listen_hosts(cfg))
        for za, cfg in zip(addrs, configs, strict=True)
    )
    _check_overlaps(built, warnings)
    return Config(filename, built, tuple(warnings), digest, builtin)


def _warn(warnings: list[str], message: str) -> None:
    log.warning(message)
    warnings.append(message)


def _inspect(block: parser.ServerBlock, dns_port: int) -> list[keys.ZoneAddr]:
    out: list[keys.ZoneAddr] = []
    for key in block.keys:
        try:
            out.extend(keys.inspect_key(key, dns_port))
        except CorefileError as e:
            raise CorefileError(f"error inspecting server blocks: {e}") from None
    return out


def _setup(
    blocks: list[parser.ServerBlock],
    addrs: list[list[keys.ZoneAddr]],
    filename: str,
    dns_port: int,
    warnings: list[str],
) -> list[list[tuple[str, object]]]:
    configs: list[list[tuple[str, object]]] = [[] for _ in blocks]
    for name in directives.ORDER:
        for i, block in enumerate(blocks):
            tokens = block.tokens(name)
            if not tokens:
                continue
            parse = plugins.PARSERS.get(name)
            if parse is None:
                raise CorefileError(directives.unsupported_message(name))
            ctx = plugins.SetupContext(
                keys=tuple(str(za) for za in addrs[i]),
                corefile=filename,
                dns_port=dns_port,
                warnings=warnings,
            )
            try:
                results = parse(Dispenser(filename, tokens), ctx)
            except CorefileError as e:
                raise CorefileError(f"plugin/{name}: {e}") from None
            configs[i].extend((name, result) for result in results)
    return configs


def _listen_hosts(configs: list[tuple[str, object]]) -> tuple[str, ...]:
    for _, cfg in configs:
        if isinstance(cfg, BindConfig):
            return cfg.hosts
    return ("",)


def _check_overlaps(blocks: tuple[Block, ...], warnings: list[str]) -> None:
    """CoreDNS's zoneOverlap: same zone twice, or bound and unbound on one port."""
    registered: set[tuple[str, str, str, str]] = set()
    unbound: dict[tuple[str, str, str], str] = {}
    for block in blocks:
        for za in block.keys:
            for host in block.listen_hosts:
                key = (za.transport, za.zone, za.port, host)
                name = str(za) + (f" on {host}" if host else "")
                if key in registered:
                    raise CorefileError(f"cannot serve {name} - it is already defined")
                plain = (za.transport, za.zone, za.port)
                if plain in unbound:
                    if host == "":
                        raise CorefileError(
                            f"cannot serve {name} - zone overlap listener capacity with "
                            f"{unbound[plain]}"
                        )
                    if (*plain, "") in registered:
                        raise CorefileError(
                            f"cannot serve {name} - zone overlap listener capacity with {za}"
                        )
                registered.add(key)
                unbound[plain] = name
    ports: dict[str, set[str]] = {}
    for block in blocks:
        for za in block.keys:
            if za.transport != keys.UNIX:
                ports.setdefault(za.port, set()).add(za.transport)
    for port, transports in sorted(ports.items()):
        tcp = transports & {keys.DNS, keys.TLS, keys.GRPC, keys.HTTPS}
        if len(tcp) > 1:
            _warn(
                warnings,
                f"{', '.join(sorted(tcp))} all listen on TCP port {port}: with SO_REUSEPORT "
                "the kernel splits connections between them",
            )


def _warn_oddities(
    blocks: list[parser.ServerBlock], addrs: list[list[keys.ZoneAddr]], warnings: list[str]
) -> None:
    """Inputs CoreDNS accepts silently but that are almost always mistakes."""
    for block, zas in zip(blocks, addrs, strict=True):
        if any(za.zone == "}." for za in zas):
            _warn(warnings, "a stray '}' became a server block for zone '}.' (answers REFUSED)")
        if not block.directives:
            zones = ", ".join(str(za) for za in zas)
            _warn(warnings, f"server block {zones} has no plugins: every query is REFUSED")
        encrypted = [str(za) for za in zas if za.transport in (keys.TLS, keys.HTTPS)]
        if encrypted and not any(name == "tls" for name, _ in block.directives):
            _warn(
                warnings,
                f"server block {', '.join(encrypted)} has no tls directive: served "
                "unencrypted (DNS over TCP, plain HTTP), as CoreDNS does",
            )
        for name, tokens in block.directives:
            for tok in tokens:
                if "{env." in tok.text:
                    _warn(
                        warnings,
                        f"{name}: '{tok.text}' is Caddy 2 syntax, kept literally; "
                        "CoreDNS substitutes only {$NAME} and {%NAME%}",
                    )


def fingerprint(blocks: list[parser.ServerBlock]) -> str:
    """SHA-512 of the parsed blocks serialised like CoreDNS's reload plugin does (JSON)."""
    data = [
        {
            "Keys": list(b.keys),
            "Tokens": {
                name: [{"File": t.file, "Line": t.line, "Text": t.text} for t in tokens]
                for name, tokens in sorted(b.directives)
            },
        }
        for b in blocks
    ]
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(ch, esc)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return hashlib.sha512(text.encode("utf-8")).hexdigest()
