"""Rewrite a query before the rest of the chain, and the response back to what was asked.

The rules act in order on one working copy of the question (name, type, class) and of
the EDNS0 options; a rule that matches ends the walk unless it says ``continue``. Only
when something changed is a new query built (the client's header and OPT, the new
question), handed to the next plugins, and their response reverted: the question is
the client's again, owner names (and, with ``answer value``, names inside records) are
mapped back, TTL and rcode rules applied, the OPT record matches what the client sent.
All of this is the slow path; a block with ``rewrite`` never answers from the fast path.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import struct
from dataclasses import dataclass, field

import dnslib

from kdns.dns import names, wire
from kdns.plugins.rewrite.setup import Answer, Match, RewriteConfig, Rule
from kdns.query.chain import Next
from kdns.query.handler import Query

_GROUP = re.compile(r"\{(\d+)\}")
_OPT = 41
_NSID = 3
_SUBNET = 8


@dataclass(slots=True)
class _Work:
    """The question and options as the rules leave them, and what to do to the response."""

    name: str
    qtype: int
    qclass: int
    options: list[tuple[int, bytes]] | None = None  # None: not read from the query yet
    request_changed: bool = False
    names: list[tuple[Answer, Rule, str, str]] = field(default_factory=list)
    # (answer rewrite, its name rule, name before the rule, name after it)
    ttl: list[tuple[int, int]] = field(default_factory=list)
    rcode: list[tuple[int, int]] = field(default_factory=list)


def _matches(match: Match, name: str) -> re.Match[str] | bool:
    kind, value = match.kind, match.value
    if kind == "exact":
        return name == value
    if kind == "prefix":
        return name.startswith(value)
    if kind == "suffix":
        return name.endswith(value)
    if kind == "substring":
        return value in name
    assert match.pattern is not None
    found = match.pattern.search(name)
    return found if found is not None else False


def _expand(template: str, found: re.Match[str]) -> str:
    def group(m: re.Match[str]) -> str:
        index = int(m.group(1))
        return (found.group(index) or "") if index <= (found.re.groups) else m.group(0)

    return _GROUP.sub(group, template)


def _rename(rule: Rule, name: str) -> str | None:
    """The name after a name rule, or None when the rule does not match."""
    match = rule.match
    assert match is not None
    found = _matches(match, name)
    if not found:
        return None
    kind, value, to = match.kind, match.value, rule.to
    if kind == "exact":
        return to
    if kind == "prefix":
        return to + name[len(value) :]
    if kind == "suffix":
        return name[: len(name) - len(value)] + to
    if kind == "substring":
        return name.replace(value, to)
    assert isinstance(found, re.Match)
    return _expand(to, found).lower()


def _valid(name: str) -> bool:
    if not name.endswith(".") or len(name) > 254:
        return False
    labels = name[:-1].split(".") if name != "." else []
    return all(0 < len(label.encode()) <= 63 for label in labels)


class Rewrite:
    """A block's rewrite rules; ``serve`` is its place in the chain."""

    def __init__(self, config: RewriteConfig) -> None:
        self.rules = config.rules

    async def serve(self, q: Query, server: str, next_plugin: Next) -> tuple[bytes | None, str]:
        work = _Work(q.qname, q.qtype, q.qclass)
        touched = False
        for rule in self.rules:
            if not self._apply(rule, work, q):
                continue
            touched = True
            if not _valid(work.name):
                # CoreDNS: "invalid name after rewrite", the client gets SERVFAIL.
                return q.reply(wire.build(q.qname, wire.SERVFAIL, authoritative=False)), "rewrite"
            if rule.mode == "stop":
                break
        if not touched:
            return await next_plugin(q)
        inner = self._query(q, work) if work.request_changed else q
        response, plugin = await next_plugin(inner)
        if response is None:
            return None, plugin
        return self._revert(q, work, response), plugin

    # -- request -------------------------------------------------------------------

    def _apply(self, rule: Rule, work: _Work, q: Query) -> bool:
        kind = rule.field
        if kind == "name":
            renamed = _rename(rule, work.name)
            if renamed is None:
                return False
            for answer in rule.answers:
                work.names.append((answer, rule, work.name, renamed))
            work.request_changed |= renamed != work.name
            work.name = renamed
            return True
        if kind == "type" or kind == "class":
            current = work.qtype if kind == "type" else work.qclass
            if current != rule.from_int:
                return False
            if kind == "type":
                work.qtype = rule.to_int
            else:
                work.qclass = rule.to_int
            work.request_changed = True
            return True
        if kind == "ttl" or kind == "rcode":
            assert rule.match is not None
            if not _matches(rule.match, work.name):
                return False
            if kind == "ttl":
                work.ttl.append(rule.ttl)
            else:
                work.rcode.append((rule.from_int, rule.to_int))
            return True
        return self._edns0(rule, work, q)

    def _edns0(self, rule: Rule, work: _Work, q: Query) -> bool:
        what, action, code, data, v4, v6 = rule.edns0
        if work.options is None:
            work.options = list(_read_opt(q.raw)[2])
        options = work.options
        if what == "local":
            data = _variable(data, work, q)
        elif what == "subnet" and action != "unset":
            data = _subnet(q.remote[0], v4, v6)
        at = next((i for i, (c, _) in enumerate(options) if c == code), None)
        if action == "unset":
            if at is None:
                return False
            options[:] = [o for o in options if o[0] != code]
        elif at is not None and action in ("set", "replace"):
            options[at] = (code, data)
        elif at is None and action in ("set", "append"):
            options.append((code, data))
        else:
            return False
        work.request_changed = True
        return True

    def _query(self, q: Query, work: _Work) -> Query:
        """The query the next plugins see: the client's header, the rewritten question."""
        name = names.to_wire(work.name)
        question = name + struct.pack("!HH", work.qtype, work.qclass)
        present, head, options = _read_opt(q.raw)
        if work.options is not None:
            options = work.options
            present = present or bool(options)
        opt = b""
        if present:
            body = b"".join(struct.pack("!HH", c, len(d)) + d for c, d in options)
            opt = b"\x00" + struct.pack("!HHIH", _OPT, head[0], head[1], len(body)) + body
        counts = struct.pack("!HHHH", 1, 0, 0, 1 if opt else 0)
        return dataclasses.replace(
            q,
            raw=q.raw[:4] + counts + question + opt,
            qname=work.name,
            name=name.lower(),
            question=question,
            qtype=work.qtype,
            qclass=work.qclass,
        )

    # -- response ------------------------------------------------------------------

    def _revert(self, q: Query, work: _Work, response: bytes) -> bytes:
        try:
            msg = dnslib.DNSRecord.parse(response)
            asked = dnslib.DNSRecord.parse(q.raw).q
        except Exception:  # an upstream's garbage: the client gets SERVFAIL
            return q.reply(wire.build(q.qname, wire.SERVFAIL, authoritative=False))
        msg.questions = [asked]
        msg.header.id = int.from_bytes(q.raw[:2], "big")
        for old, new in work.rcode:
            if msg.header.rcode == old:
                msg.header.rcode = new
        extra = []
        for rr in msg.ar:
            if rr.rtype == _OPT:
                if q.opt:
                    extra.append(rr)
                continue
            extra.append(rr)
        msg.ar = extra
        for rr in (*msg.rr, *msg.auth, *msg.ar):
            if rr.rtype == _OPT:
                continue
            rr.rname = dnslib.DNSLabel(self._owner(work, names.fqdn(str(rr.rname)).lower()))
            self._values(work, rr)
            for low, high in work.ttl:
                rr.ttl = min(max(rr.ttl, low), high)
        msg.set_header_qa()
        out: bytes = msg.pack()
        if len(out) > q.limit:
            flags = bytes((out[2] | 0x02, out[3]))
            counts = struct.pack("!HHHH", 1, 0, 0, 1 if q.opt else 0)
            return out[:2] + flags + counts + q.question + q.opt
        return out

    @staticmethod
    def _owner(work: _Work, name: str) -> str:
        for answer, rule, before, after in reversed(work.names):  # last rewrite undone first
            if answer.kind == "auto":
                name = _auto(rule, before, after, name)
            elif answer.kind == "name":
                name = _regex_name(answer, name)
        return name

    @staticmethod
    def _values(work: _Work, rr: dnslib.RR) -> None:
        rdata = rr.rdata
        for attr in ("label", "mname", "rname", "target", "replacement"):
            value = getattr(rdata, attr, None)
            if not isinstance(value, dnslib.DNSLabel):
                continue
            text = names.fqdn(str(value)).lower()
            for answer, rule, before, after in reversed(work.names):
                if answer.kind == "value":
                    text = _regex_name(answer, text)
                elif answer.kind == "auto" and rr.rtype in (wire.CNAME, 39):  # CNAME, DNAME
                    text = _auto(rule, before, after, text)
            setattr(rdata, attr, dnslib.DNSLabel(text))


def _auto(rule: Rule, before: str, after: str, name: str) -> str:
    """``answer auto``: the rewritten question back to the asked one, by the rule's kind."""
    match = rule.match
    assert match is not None
    kind, value, to = match.kind, match.value, rule.to
    if kind == "suffix" and name.endswith(to):
        return name[: len(name) - len(to)] + value
    if kind == "prefix" and name.startswith(to):
        return value + name[len(to) :]
    if kind == "substring" and to and to in name:
        return name.replace(to, value)
    return before if name == after else name


def _regex_name(answer: Answer, name: str) -> str:
    assert answer.pattern is not None
    found = answer.pattern.search(name)
    if found is None:
        return name
    return _expand(answer.replacement, found).lower()


def _read_opt(raw: bytes) -> tuple[bool, tuple[int, int], list[tuple[int, bytes]]]:
    """The query's OPT record: present, (UDP size, extended flags), options."""
    try:
        record = dnslib.DNSRecord.parse(raw)
    except Exception:
        return False, (4096, 0), []
    for rr in record.ar:
        if rr.rtype == _OPT:
            options = [(int(o.code), bytes(o.data)) for o in rr.rdata]
            return True, (int(rr.rclass), int(rr.ttl)), options
    return False, (4096, 0), []


def _variable(data: bytes, work: _Work, q: Query) -> bytes:
    """CoreDNS's EDNS0 variables, encoded as its edns0.go encodes them."""
    if data == b"{qname}":
        return work.name.encode()
    if data == b"{qtype}":
        return struct.pack("!H", work.qtype)
    if data == b"{client_ip}":
        ip = ipaddress.ip_address(q.remote[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip.packed
    if data == b"{client_port}":
        return struct.pack("!H", q.remote[1])
    if data == b"{protocol}":
        return b"tcp" if q.tcp else b"udp"
    return data


def _subnet(client: str, v4: int, v6: int) -> bytes:
    """An EDNS Client Subnet option body (RFC 7871) for the client's address."""
    ip = ipaddress.ip_address(client)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    family, bits = (1, v4) if ip.version == 4 else (2, v6)
    network = ipaddress.ip_network(f"{ip}/{bits}", strict=False)
    address = network.network_address.packed[: (bits + 7) // 8]
    return struct.pack("!HBB", family, bits, 0) + address
