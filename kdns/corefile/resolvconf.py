"""resolv.conf as ``forward . /etc/resolv.conf`` reads it, and the loop it can hide.

A node whose resolv.conf names systemd-resolved's stub (127.0.0.53) or any loopback
address makes ``forward`` send queries back to the pod itself; CoreDNS then dies in the
``loop`` plugin and the cluster sees CrashLoopBackOff. kdns says so when it loads the file.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ResolvConf:
    path: str
    nameservers: tuple[str, ...]
    search: tuple[str, ...] = ()
    ndots: int = 1


def parse(text: str, path: str = "") -> ResolvConf:
    """The nameserver/search/ndots lines of a resolv.conf (miekg/dns's reading)."""
    servers: list[str] = []
    search: list[str] = []
    ndots = 1
    for raw in text.splitlines():
        fields = raw.split()
        if not fields or fields[0].startswith(("#", ";")):
            continue
        key, values = fields[0], fields[1:]
        if key == "nameserver" and values:
            servers.append(values[0])
        elif key == "domain" and values:
            search = [values[0]]
        elif key == "search":
            search = list(values)
        elif key == "options":
            for opt in values:
                if opt.startswith("ndots:") and opt[6:].isdigit():
                    ndots = min(int(opt[6:]), 15)
    return ResolvConf(path, tuple(servers), tuple(search), ndots)


def read(path: str) -> ResolvConf:
    """Read and parse; OSError when the file cannot be opened."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return parse(f.read(), path)


def loopback_servers(conf: ResolvConf) -> list[str]:
    """Nameservers that would send forwarded queries back to this host."""
    found = []
    for server in conf.nameservers:
        try:
            if ipaddress.ip_address(server.split("%", 1)[0]).is_loopback:
                found.append(server)
        except ValueError:
            continue
    return found


def loop_warning(conf: ResolvConf) -> str | None:
    """The load-time warning for a resolv.conf that points at loopback, or None."""
    servers = loopback_servers(conf)
    if not servers:
        return None
    return (
        f"{conf.path} lists loopback nameserver(s) {', '.join(servers)}: forwarding there "
        "sends queries back to this host (systemd-resolved's stub is 127.0.0.53), which "
        "CoreDNS's loop plugin turns into CrashLoopBackOff; give the kubelet "
        "--resolv-conf=/run/systemd/resolve/resolv.conf or forward to real upstreams"
    )
