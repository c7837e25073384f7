"""The ``whoami`` plugin: tells a client the address, port and transport it came from.

As CoreDNS's ``plugin/whoami``: NOERROR, authoritative, an empty answer section, and
in the additional section the client's A (IPv4, IPv4-mapped IPv6 included, as Go's
``To4`` sees it) or AAAA record owned by the query name, then
``_udp.<qname>``/``_tcp.<qname>`` SRV ``0 0 <port> .``. Every TTL is 0: the answer is
about this one exchange and must not be cached. It is CoreDNS's built-in default
(``.:53 { whoami log }``) and a quick way to see which source address NAT left a pod.
"""

from __future__ import annotations

import ipaddress

from kdns.dns import wire


def whoami_answer(qname: str, remote_ip: str, remote_port: int, proto: str) -> wire.Answer:
    """The reply to any query for lower-case absolute ``qname``; ``proto`` is udp or tcp."""
    ip = ipaddress.ip_address(remote_ip.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    address = wire.RR(qname, wire.A if ip.version == 4 else wire.AAAA, 0, ip.packed)
    srv_owner = f"_{proto}.{qname}" if qname != "." else f"_{proto}."
    srv = wire.RR(srv_owner, wire.SRV, 0, wire.rdata_srv(0, 0, remote_port, "."))
    return wire.build(qname, wire.NOERROR, additional=(address, srv))
