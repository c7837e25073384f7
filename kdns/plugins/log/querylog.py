"""The ``log`` plugin: one CoreDNS-format line per query, for the rules that want it.

Three pieces, each as CoreDNS has it:

- rule choice (plugin/log/log.go): the *first* rule with a name that contains the
  query name decides; later rules are not consulted even if their class would match;
- the response class (plugin/pkg/response/typify.go + classify.go), read from the
  response bytes: *success* (answers, referrals, bare NOERROR), *denial* (NXDOMAIN
  or NODATA with a SOA in authority, or an A/AAAA answer without an address
  record), *error* (SERVFAIL, REFUSED, NXDOMAIN without SOA, no response at all…);
- the line (plugin/pkg/replacer): ``{name}``-style placeholders, unknown ones kept as
  literal text, missing values as ``-``, IPv6 addresses in brackets, ``{duration}`` as
  Go's ``strconv.FormatFloat(secs, 'f', -1, 64)`` plus ``s`` (``0.00007631s``).

Lines go to the ``kdns.log`` logger at INFO; kdns's log format supplies the
``[INFO] `` prefix CoreDNS prints.
"""

from __future__ import annotations

import functools
import logging
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from kdns.dns import names, rdatatype, wire
from kdns.dns import rcode as rcodes
from kdns.plugins.log.setup import LogConfig, LogRule

logger = logging.getLogger("kdns.log")

EMPTY = "-"
SUCCESS, DENIAL, ERROR = "success", "denial", "error"
_CLASS_NAMES = {1: "IN", 2: "CS", 3: "CH", 4: "HS", 254: "NONE", 255: "ANY"}
_FLAGS = ((0x8000, "qr"), (0x0400, "aa"), (0x0200, "tc"), (0x0100, "rd"), (0x0080, "ra"),
          (0x0040, "z"), (0x0020, "ad"), (0x0010, "cd"))  # fmt: skip
_LABELS = frozenset(
    {
        "{type}", "{name}", "{class}", "{proto}", "{size}", "{remote}", "{port}", "{local}",
        "{>id}", "{>opcode}", "{>do}", "{>bufsize}", "{rcode}", "{rsize}", "{duration}",
        "{>rflags}",
    }
)  # fmt: skip


@dataclass(slots=True)
class QueryLogFields:
    """Everything a log line can show about one exchange.

    Response fields are None when no response was written (``-`` in the line).
    ``qname`` is the lower-case text name; ``bufsize`` is CoreDNS's normalised size:
    65535 over TCP, else the EDNS size but at least 512.
    """

    remote: str
    port: int
    local: str
    proto: str
    qid: int
    opcode: int
    qname: str
    qtype: int
    qclass: int
    size: int
    do: bool
    bufsize: int
    rcode: int | None = None
    rflags: int | None = None
    rsize: int | None = None
    duration: float | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """The fields as a JSON log line carries them (``--log-format json``): the
        ``{common}`` placeholders by their CoreDNS names, typed, None for what is missing."""
        return {
            "remote": self.remote,
            "port": self.port,
            "id": self.qid,
            "type": type_name(self.qtype),
            "class": _CLASS_NAMES.get(self.qclass, f"CLASS{self.qclass}"),
            "name": self.qname,
            "proto": self.proto,
            "size": self.size,
            "do": self.do,
            "bufsize": self.bufsize,
            "rcode": None if self.rcode is None else rcodes.to_text(self.rcode),
            "rflags": None if self.rflags is None else rflags(self.rflags),
            "rsize": self.rsize,
            "duration": self.duration,
        }


def fields_from_wire(
    query: bytes,
    response: bytes | None,
    remote: tuple[str, int],
    local: str,
    proto: str,
    duration: float | None,
) -> QueryLogFields | None:
    """Fields for a query and the response sent (None: none sent); None if the query is junk."""
    msg = _Message.read(query)
    if msg is None or msg.qname is None:
        return None
    bufsize = 65535 if proto == "tcp" else max(512, msg.udp_size)
    fields = QueryLogFields(
        remote=remote[0],
        port=remote[1],
        local=local,
        proto=proto,
        qid=msg.ident,
        opcode=(msg.flags >> 11) & 0xF,
        qname=msg.qname,
        qtype=msg.qtype,
        qclass=msg.qclass,
        size=len(query),
        do=msg.do,
        bufsize=bufsize,
        duration=duration,
    )
    if response is not None and len(response) >= 12:
        flags = int.from_bytes(response[2:4], "big")
        reply = _Message.read(response)
        fields.rcode = reply.rcode if reply is not None else flags & 0xF
        fields.rflags = flags
        fields.rsize = len(response)
    return fields


# -- the line ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)  # formats come from the Corefile: a handful at most
def _parse_format(fmt: str) -> tuple[tuple[int, str], ...]:
    """replacer.go parseFormat: find each ``}``, backtrack to the last ``{`` before it."""
    literal, label, meta = 0, 1, 2
    nodes: list[tuple[int, str]] = []
    s = fmt
    while True:
        j = s.find("}")
        if j < 0:
            break
        i = s.rfind("{", 0, j)
        if i < 0:
            nodes.append((literal, s[: j + 1]))
            s = s[j + 1 :]
            continue
        val = s[i : j + 1]
        if val in _LABELS:
            kind = label
        elif val.startswith("{/"):
            val, kind = val[2:-1], meta
        else:
            val, kind = s[: j + 1], literal
        if i and kind != literal:
            nodes.append((literal, s[:i]))
        nodes.append((kind, val))
        s = s[j + 1 :]
    if s:
        nodes.append((literal, s))
    return tuple(nodes)


def format_line(fmt: str, fields: QueryLogFields) -> str:
    """The log line for ``fields`` in format ``fmt`` (``{common}`` already expanded)."""
    out: list[str] = []
    for kind, value in _parse_format(fmt):
        if kind == 0:
            out.append(value)
        elif kind == 1:
            out.append(_value(value, fields))
        else:
            out.append(fields.metadata.get(value, EMPTY))
    return "".join(out)


def _value(label: str, f: QueryLogFields) -> str:
    if label == "{type}":
        return type_name(f.qtype)
    if label == "{name}":
        return f.qname
    if label == "{class}":
        return _CLASS_NAMES.get(f.qclass, f"CLASS{f.qclass}")
    if label == "{proto}":
        return f.proto
    if label == "{size}":
        return str(f.size)
    if label == "{remote}":
        return _bracket(f.remote)
    if label == "{port}":
        return str(f.port)
    if label == "{local}":
        return _bracket(f.local)
    if label == "{>id}":
        return str(f.qid)
    if label == "{>opcode}":
        return str(f.opcode)
    if label == "{>do}":
        return "true" if f.do else "false"
    if label == "{>bufsize}":
        return str(f.bufsize)
    if label == "{rcode}":
        return EMPTY if f.rcode is None else rcodes.to_text(f.rcode)
    if label == "{rsize}":
        return EMPTY if f.rsize is None else str(f.rsize)
    if label == "{duration}":
        return EMPTY if f.duration is None else go_seconds(f.duration)
    if label == "{>rflags}":
        return EMPTY if f.rflags is None else rflags(f.rflags)
    return EMPTY


type_name = rdatatype.to_text


def _bracket(addr: str) -> str:
    return f"[{addr}]" if ":" in addr else addr


def rflags(flags: int) -> str:
    """The set header flags, ``qr,aa,rd`` (replacer.go appendFlags)."""
    return ",".join(name for bit, name in _FLAGS if flags & bit)


def go_seconds(seconds: float) -> str:
    """CoreDNS's ``FormatFloat(d.Seconds(), 'f', -1, 64) + "s"``: shortest, never 1e-05.

    A Go Duration is whole nanoseconds and Seconds() divides them as two floats, so the
    shortest text has at most nine decimals; a perf_counter difference would print 19.
    """
    whole, nanos = divmod(round(seconds * 1e9), 1_000_000_000)
    text = format(Decimal(repr(float(whole) + nanos / 1e9)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text + "s"


# -- rules and classes ---------------------------------------------------------------------


def select_rule(rules: Sequence[LogRule], qname: str) -> LogRule | None:
    """The rule that decides for ``qname``: the first with a name containing it."""
    for rule in rules:
        if any(names.is_subdomain(qname, scope) for scope in rule.names):
            return rule
    return None


def should_log(rule: LogRule, qname: str, response_class: str) -> bool:
    """Whether ``rule`` logs a query for ``qname`` whose response has that class."""
    if not any(names.is_subdomain(qname, scope) for scope in rule.names):
        return False
    return "all" in rule.classes or response_class in rule.classes


def classify(response: bytes | None) -> str:
    """success, denial or error for a response as sent (None: nothing was sent)."""
    msg = _Message.read(response) if response is not None else None
    if msg is None:
        return ERROR
    opcode = (msg.flags >> 11) & 0xF
    if opcode in (4, 5) or msg.qtype in (wire.AXFR, wire.IXFR):
        return ERROR  # NOTIFY, UPDATE, transfers: Meta/Update, which Classify calls errors
    rcode = msg.rcode
    if msg.answers and rcode == wire.NOERROR:
        if msg.qtype in (wire.A, wire.AAAA) and msg.qtype not in msg.answers:
            return DENIAL  # e.g. only a CNAME for an A query: NoData
        return SUCCESS
    soa = wire.SOA in msg.authority
    if soa and rcode in (wire.NOERROR, wire.NXDOMAIN):
        return DENIAL
    if rcode == wire.NOERROR:
        return SUCCESS  # delegation, or a bare NOERROR
    return ERROR


@dataclass(slots=True)
class _Message:
    """The few facts of a DNS message that logging needs, read without dnslib."""

    ident: int
    flags: int
    qname: str | None
    qtype: int
    qclass: int
    answers: list[int]
    authority: list[int]
    udp_size: int
    do: bool
    rcode: int

    @classmethod
    def read(cls, data: bytes) -> _Message | None:
        try:
            return cls._read(data)
        except (IndexError, struct.error, ValueError):
            return None

    @classmethod
    def _read(cls, data: bytes) -> _Message | None:
        if len(data) < 12:
            return None
        ident, flags, qd, an, ns, ar = wire.HEADER.unpack_from(data)
        pos = 12
        qname, qtype, qclass = None, 0, 0
        for i in range(qd):
            start = pos
            pos = _skip_name(data, pos)
            if i == 0:
                qtype, qclass = struct.unpack_from("!HH", data, pos)
                qname = _name_text(data, start)
            pos += 4
        sections: list[list[int]] = [[], [], []]
        udp_size, do, ext = 0, False, 0
        for index, count in enumerate((an, ns, ar)):
            for _ in range(count):
                pos = _skip_name(data, pos)
                rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", data, pos)
                pos += 10 + rdlen
                if pos > len(data):
                    raise ValueError("truncated record")
                sections[index].append(rtype)
                if rtype == wire.OPT:
                    udp_size, ext, do = rclass, ttl >> 24, bool(ttl & 0x8000)
        return cls(
            ident,
            flags,
            qname,
            qtype,
            qclass,
            sections[0],
            sections[1],
            udp_size,
            do,
            (ext << 4) | (flags & 0xF),
        )


_skip_name = names.skip_name


def _name_text(data: bytes, pos: int) -> str:
    """The question name (pointers followed), lower-case text."""
    return names.wire_to_text(names.read_name(data, pos))


# -- the plugin ----------------------------------------------------------------------------


class QueryLog:
    """The ``log`` rules of one server block.

    Call :meth:`rule_for` before answering (None: this query is never logged, so skip
    timing and field collection), then :meth:`write` with the response sent.
    """

    def __init__(self, config: LogConfig) -> None:
        self.rules = config.rules

    def rule_for(self, qname: str) -> LogRule | None:
        return select_rule(self.rules, qname)

    def write(self, rule: LogRule, fields: QueryLogFields, response: bytes | None) -> bool:
        """Log the line if the rule's classes want this response; True when written."""
        if "all" not in rule.classes and classify(response) not in rule.classes:
            return False
        # The fields ride along for the JSON log format; the text format ignores them.
        logger.info("%s", format_line(rule.format, fields), extra={"fields": fields})
        return True
