"""``forward FROM TO... { ... }``: where non-cluster names go.

Several ``forward`` lines in one block are a chain in Corefile order (CoreDNS >= 1.9.4),
so this parser returns one config per stanza. A resolv.conf given as TO is read here,
at load and on every reload, like CoreDNS; a loopback nameserver in it is reported as a
warning now rather than a crash loop later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kdns.corefile import goparse, keys, resolvconf
from kdns.corefile.dispenser import Dispenser
from kdns.corefile.errors import CorefileError
from kdns.corefile.setup import SetupContext, no_args, one_arg, stanzas, where

MAX_UPSTREAMS = 15
POLICIES = ("random", "round_robin", "sequential")
_DEFAULT_PORTS = {keys.DNS: 53, keys.TLS: 853, keys.HTTPS: 443}
TLS_WITHOUT_TLS_UPSTREAM = (
    "no TO is tls:// or https://, and only those upstreams use it (as in CoreDNS)"
)
DOH_PATH = "/dns-query"  # RFC 8484's example path, CoreDNS's default
DOH_METHODS = ("GET", "POST")
DOH_WITHOUT_HTTPS_UPSTREAM = "no TO is https://, and only DoH upstreams use it"


@dataclass(frozen=True, slots=True)
class Upstream:
    """One upstream server; ``resolv_conf`` names the file it came from, if any."""

    transport: str
    host: str
    port: int
    server_name: str = ""
    resolv_conf: str = ""
    path: str = ""  # https:// only: the DoH path, /dns-query unless the TO names one

    def __str__(self) -> str:
        addr = goparse.join_host_port(self.host, self.port)
        return addr if self.transport == keys.DNS else f"{self.transport}://{addr}{self.path}"


@dataclass(frozen=True, slots=True)
class ForwardConfig:
    NAME: ClassVar[str] = "forward"

    from_zone: str
    to: tuple[Upstream, ...]
    to_args: tuple[str, ...]  # as written: resolv.conf paths are re-read on reload
    except_zones: tuple[str, ...] = ()
    force_tcp: bool = False
    prefer_udp: bool = False
    max_fails: int = 2
    expire: float = 10.0
    health_check: float = 0.5
    health_check_recursion: bool = True
    health_check_domain: str = "."
    policy: str = "random"
    max_concurrent: int = 0  # 0: unlimited
    tls: tuple[str, ...] = ()  # [CERT KEY] [CA]
    tls_servername: str = ""
    next_rcodes: tuple[str, ...] = ()
    failfast_all_unhealthy_upstreams: bool = False
    doh_method: str = "POST"  # https:// upstreams: RFC 8484 POST, or GET with ?dns=


def parse(d: Dispenser, ctx: SetupContext) -> list[ForwardConfig]:
    configs = [_stanza(d, ctx) for _ in stanzas(d)]
    for config in configs:
        if len(config.to) > MAX_UPSTREAMS:
            raise CorefileError(f"more than {MAX_UPSTREAMS} TOs configured: {len(config.to)}")
    return configs


def _stanza(d: Dispenser, ctx: SetupContext) -> ForwardConfig:
    if not d.next_arg():
        raise d.arg_err()
    written_from = d.val()
    zones = keys.normalize_exact(written_from)
    if not zones:
        raise CorefileError(f"unable to normalize '{written_from}'")
    if len(zones) > 1:
        ctx.warn(
            "forward",
            f"Unsupported CIDR notation: '{written_from}' expands to multiple zones. "
            f"Using only '{zones[0]}'.",
        )
    to_args = d.remaining_args()
    if not to_args:
        raise d.arg_err()
    upstreams = upstreams_from(to_args, ctx)
    opts: dict[str, object] = {}
    except_zones: list[str] = []
    tls_at: dict[str, str] = {}  # tls options -> where written
    while d.next_block():
        option = d.val()
        if option == "except":
            names = d.remaining_args()
            if not names:
                raise d.arg_err()
            for name in names:
                except_zones.extend(keys.normalize_exact(name))
        elif option == "max_fails":
            opts["max_fails"] = goparse.parse_uint(one_arg(d), 32)
        elif option == "health_check":
            _health_check(d, opts)
        elif option in ("force_tcp", "prefer_udp", "failfast_all_unhealthy_upstreams"):
            no_args(d)
            opts[option] = True
        elif option == "tls":
            tls_at.setdefault(option, where(d))
            args = d.remaining_args()
            if len(args) > 3:
                raise d.arg_err()
            opts["tls"] = tuple(args)
        elif option == "tls_servername":
            tls_at.setdefault(option, where(d))
            opts["tls_servername"] = one_arg(d)
        elif option == "expire":
            expire = goparse.parse_duration(one_arg(d))
            if expire < 0:
                raise CorefileError(f"expire can't be negative: {goparse.format_duration(expire)}")
            opts["expire"] = expire
        elif option == "policy":
            policy = one_arg(d)
            if policy not in POLICIES:
                raise d.err(f"unknown policy '{policy}'")
            opts["policy"] = policy
        elif option == "max_concurrent":
            n = goparse.atoi(one_arg(d))
            if n < 0:
                raise CorefileError(f"max_concurrent can't be negative: {n}")
            opts["max_concurrent"] = n
        elif option == "doh_method":
            tls_at.setdefault(option, where(d))
            method = one_arg(d).upper()
            if method not in DOH_METHODS:
                raise d.err(f"unknown doh_method '{d.val()}': GET or POST")
            opts["doh_method"] = method
        elif option == "next":
            rcodes = d.remaining_args()
            if not rcodes:
                raise d.arg_err()
            opts["next_rcodes"] = tuple(r.upper() for r in rcodes)
        else:
            raise d.err(f"unknown property '{option}'")
    transports = {u.transport for u in upstreams}
    for option, at in tls_at.items():
        if option == "doh_method" and keys.HTTPS not in transports:
            ctx.not_acted_on("forward", at, option, DOH_WITHOUT_HTTPS_UPSTREAM)
        elif option != "doh_method" and not transports & {keys.TLS, keys.HTTPS}:
            ctx.not_acted_on("forward", at, option, TLS_WITHOUT_TLS_UPSTREAM)
    return ForwardConfig(
        from_zone=zones[0],
        to=tuple(upstreams),
        to_args=tuple(to_args),
        except_zones=tuple(except_zones),
        **opts,  # type: ignore[arg-type]
    )


def _health_check(d: Dispenser, opts: dict[str, object]) -> None:
    interval = goparse.parse_duration(one_arg(d))
    if interval < 0:
        raise CorefileError(f"health_check can't be negative: {round(interval * 1e9)}")
    opts["health_check"] = interval
    opts["health_check_domain"] = "."
    while d.next_arg():
        word = d.val()
        if word == "no_rec":
            opts["health_check_recursion"] = False
        elif word == "domain":
            domain = one_arg(d)
            if not keys.is_domain_name(domain):
                raise CorefileError(f"health_check: invalid domain name {domain}")
            opts["health_check_domain"] = keys.fqdn(domain).lower()
        else:
            raise CorefileError(f"health_check: unknown option {word}")


def upstreams_from(args: list[str], ctx: SetupContext) -> list[Upstream]:
    """TO arguments to upstreams, reading resolv.conf files (parse.HostPortOrFile)."""
    found: list[Upstream] = []
    for written in args:
        transport, host = keys.split_transport(written)
        if host == "":
            raise CorefileError(f"invalid address: {goparse.quote(written)}")
        if transport not in _DEFAULT_PORTS:
            raise CorefileError(
                f"'{transport}' is not supported as a destination protocol in forward: {written}"
            )
        server_name = path = ""
        if transport == keys.HTTPS:
            host, slash, rest = host.partition("/")
            path = slash + rest if slash else DOH_PATH
        if transport == keys.TLS and "%" in host and not host.startswith("["):
            host, _, rest = host.partition("%")
            server_name, _, port_text = rest.partition(":")
            host = f"{host}:{port_text}" if port_text else host
        try:
            addr, port_text = goparse.split_host_port(host)
        except CorefileError:
            addr, port_text = host, ""
        if goparse.parse_ip(addr.split("%", 1)[0]) is None:
            found.extend(_from_file(host, ctx))
            continue
        port = int(port_text) if port_text.isdigit() else _DEFAULT_PORTS[transport]
        found.append(Upstream(transport, addr, port, server_name, path=path))
    if not found:
        raise CorefileError("no valid upstream addresses found")
    return found


def _from_file(path: str, ctx: SetupContext) -> list[Upstream]:
    try:
        conf = resolvconf.read(path)
    except OSError:
        raise CorefileError(f"not an IP address or file: {goparse.quote(path)}") from None
    warning = resolvconf.loop_warning(conf)
    if warning:
        ctx.warn("forward", warning)
    if not conf.nameservers:
        ctx.warn("forward", f"no nameservers found in {path}, skipped")
    return [
        Upstream(keys.DNS, server.split("%", 1)[0], 53, resolv_conf=path)
        for server in conf.nameservers
    ]
