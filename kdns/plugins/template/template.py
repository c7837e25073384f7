"""The ``template`` plugin: answers rendered from Go text/template RR strings.

Matching follows CoreDNS's ``plugin/template``: the plugin only looks at names inside
the union of its templates' zones; templates are tried in Corefile order; one applies
when its zone, class and type match (``ANY`` on either side matches) and one of its
regexes (Go RE2, searched unanchored, first match wins) matches the lower-case name.
A template whose zone, class or type does not match is skipped; one whose regexes do
not match passes to the next template only if its ``fallthrough`` covers the name,
otherwise the query ends in SERVFAIL (the README's promise; CoreDNS's code returns an
NXDOMAIN code it never writes, which leaves the client waiting). After the last
template the query goes to the next plugin.

Rendering covers the Go template subset Corefiles use: ``.Name .Zone .Class .Type
.Remote .Regex .Match .Group .Group.NAME .Question.Name/Qtype/Qclass``, ``index X N``,
``parseInt S BASE BITS``,
``.Meta "label"`` (always empty: there is no metadata plugin), comments and ``{{-``/
``-}}`` trimming. Anything else is rejected when the template is built, so a Corefile
never fails query by query for a feature kdns lacks. Rendered text is parsed as a
zone-file RR with dnslib after normalising what miekg/dns accepts and dnslib does not
(class before TTL, lower-case mnemonics, parentheses, TTL units, missing TTL = 3600).

Record-less templates (AKS's ``rcode NXDOMAIN`` ones) answer a prebuilt constant.
Rendered answers are kept in a small bounded cache unless a template reads ``.Remote``.
"""

from __future__ import annotations

import logging
import re
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import dnslib
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from kdns import errors as kdns_errors
from kdns.dns import names, wire
from kdns.dns import rcode as rcodes
from kdns.plugins.template.setup import Template, TemplateConfig

log = logging.getLogger(__name__)

SERVFAIL = wire.build(".", wire.SERVFAIL, authoritative=False)
_CACHE_MAX = 1024
_NO_VALUE = "<no value>"  # what Go prints for a missing map key
_CLASSES = {"IN": 1, "CS": 2, "CH": 3, "HS": 4, "NONE": 254, "ANY": 255}
_CLASS_NAMES = {v: k for k, v in _CLASSES.items()}
_RCODE_VALUES = rcodes.FROM_TEXT
_ROOT_FIELDS = (
    "Name", "Zone", "Class", "Type", "Remote", "Regex", "Match", "Group", "Question", "Meta",
)  # fmt: skip


class TemplateError(kdns_errors.ConfigurationError, ValueError):
    """A template uses Go template syntax kdns does not render."""


class _ExecError(kdns_errors.KdnsError):
    """Executing a template failed (CoreDNS: template_failures_total, SERVFAIL)."""


class _RRError(kdns_errors.KdnsError):
    """The rendered text is not a resource record (CoreDNS: rr_failures_total, SERVFAIL)."""


# -- the Go text/template subset -----------------------------------------------------------


@dataclass(slots=True)
class _Data:
    """What a template sees; CoreDNS's templateData minus Message/Question."""

    name: str
    zone: str
    cls: str
    typ: str
    remote: str
    regex: str
    match: list[str]
    group: dict[str, str]
    question: dict[str, str]


Value = str | int | list[str] | dict[str, str]
_Eval = Callable[[_Data], Value]

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<raw>`[^`]*`)
    | (?P<num>-?[0-9]+)
    | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<other>\S+)
    )""",
    re.VERBOSE,
)


def _root(data: _Data, name: str) -> Value:
    if name == "Name":
        return data.name
    if name == "Zone":
        return data.zone
    if name == "Class":
        return data.cls
    if name == "Type":
        return data.typ
    if name == "Remote":
        return data.remote
    if name == "Regex":
        return data.regex
    if name == "Match":
        return data.match
    if name == "Question":
        return data.question  # .Question.Name/.Qtype/.Qclass, printed as Go prints them
    return data.group


def _field(chain: tuple[str, ...], source: str) -> _Eval:
    if chain[0] not in _ROOT_FIELDS or chain[0] == "Meta":
        raise TemplateError(f"unsupported field .{chain[0]} in template {source!r}")

    def get(data: _Data) -> Value:
        value: Value = _root(data, chain[0])
        for key in chain[1:]:
            if not isinstance(value, dict):
                raise _ExecError(f"can't evaluate field {key}")
            value = value.get(key, _NO_VALUE)
        return value

    return get


def _literal(value: Value) -> _Eval:
    return lambda data: value


def _unquote(token: str) -> str:
    if token.startswith("`"):
        return token[1:-1]
    try:
        out = token[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError:
        raise TemplateError(f"bad string literal {token}") from None
    return out


def _term(kind: str, token: str, source: str) -> _Eval:
    if kind == "field":
        if token == ".":
            raise TemplateError(f"unsupported '.' in template {source!r}")
        return _field(tuple(token[1:].split(".")), source)
    if kind in ("str", "raw"):
        return _literal(_unquote(token))
    if kind == "num":
        return _literal(int(token))
    raise TemplateError(f"unsupported {token!r} in template {source!r}")


def _index(args: list[_Eval]) -> _Eval:
    def run(data: _Data) -> Value:
        value = args[0](data)
        for arg in args[1:]:
            key = arg(data)
            if isinstance(value, list):
                if not isinstance(key, int) or not 0 <= key < len(value):
                    raise _ExecError(f"error calling index: index out of range: {key}")
                value = value[key]
            elif isinstance(value, dict):
                if not isinstance(key, str):
                    raise _ExecError("error calling index: value has type int; should be string")
                value = value.get(key, "")  # index yields the zero value for a missing key
            else:
                raise _ExecError(f"error calling index: can't index item of type {type(value)}")
        return value

    return run


def parse_uint(text: str, base: int, bits: int) -> int:
    """Go's strconv.ParseUint: no sign, base 0 reads 0x/0o/0b/0 prefixes and underscores."""
    if not 0 <= bits <= 64 or base == 1 or not 0 <= base <= 36:
        raise ValueError(f"invalid base {base} or bit size {bits}")
    bits = bits or 64
    digits = text
    if not digits or digits[0] in "+- \t\n":
        raise ValueError(f'parsing "{text}": invalid syntax')
    if base == 0:
        low = digits.lower()
        if low.startswith(("0x", "0o", "0b")):
            base = {"x": 16, "o": 8, "b": 2}[low[1]]
            digits = digits[2:]
        elif len(digits) > 1 and digits[0] == "0":
            base, digits = 8, digits[1:]
        else:
            base = 10
        if digits.startswith("_") or digits.endswith("_") or "__" in digits:
            raise ValueError(f'parsing "{text}": invalid syntax')
    elif "_" in digits:
        raise ValueError(f'parsing "{text}": invalid syntax')
    try:
        value = int(digits, base)
    except ValueError:
        raise ValueError(f'parsing "{text}": invalid syntax') from None
    if value >= 1 << bits:
        raise ValueError(f'parsing "{text}": value out of range')
    return value


def _parse_int(args: list[_Eval]) -> _Eval:
    def run(data: _Data) -> Value:
        text, base, bits = (a(data) for a in args)
        if not isinstance(text, str) or not isinstance(base, int) or not isinstance(bits, int):
            raise _ExecError("error calling parseInt: wrong argument type")
        try:
            return parse_uint(text, base, bits)
        except ValueError as e:
            raise _ExecError(f"error calling parseInt: {e}") from None

    return run


def _action(body: str, source: str) -> _Eval | None:
    """Compile one ``{{ ... }}`` body; None for a comment."""
    stripped = body.strip()
    if stripped.startswith("/*") and stripped.endswith("*/"):
        return None
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(body):
        m = _TOKEN.match(body, pos)
        if m is None or m.end() == pos:
            break
        kind = m.lastgroup
        assert kind is not None
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    if not tokens:
        raise TemplateError(f"missing value for command in template {source!r}")
    (kind, head), rest = tokens[0], tokens[1:]
    if kind == "ident" and head == "index" and len(rest) >= 2:
        return _index([_term(k, t, source) for k, t in rest])
    if kind == "ident" and head == "parseInt" and len(rest) == 3:
        return _parse_int([_term(k, t, source) for k, t in rest])
    if kind == "field" and head == ".Meta" and len(rest) == 1 and rest[0][0] in ("str", "raw"):
        return _literal("")  # no metadata plugin: every label is unset
    if rest:
        raise TemplateError(f"unsupported action {{{{{body}}}}} in template {source!r}")
    return _term(kind, head, source)


@dataclass(frozen=True, slots=True)
class GoTemplate:
    """A compiled template: literal text and actions, in order."""

    source: str
    parts: tuple[str | _Eval, ...]
    uses_remote: bool

    @classmethod
    def compile(cls, source: str) -> GoTemplate:
        parts: list[str | _Eval] = []
        text = source
        pos = 0
        pending = ""
        while True:
            start = text.find("{{", pos)
            if start < 0:
                pending += text[pos:]
                break
            literal = text[pos:start]
            inner = start + 2
            if text.startswith("- ", inner) or text.startswith("-\t", inner):
                literal = literal.rstrip()
                inner += 1
            pending += literal
            end = _closing(text, inner, source)
            body = text[inner:end]
            pos = end + 2
            if body.endswith(" -") or body.endswith("\t-"):
                body = body[:-1]
                while pos < len(text) and text[pos].isspace():
                    pos += 1
            action = _action(body, source)
            if action is not None:
                if pending:
                    parts.append(pending)
                    pending = ""
                parts.append(action)
        if pending:
            parts.append(pending)
        return cls(source, tuple(parts), bool(re.search(r"\.Remote\b", source)))

    def render(self, data: _Data) -> str:
        out: list[str] = []
        for part in self.parts:
            out.append(part if isinstance(part, str) else _show(part(data)))
        return "".join(out)


def _closing(text: str, pos: int, source: str) -> int:
    """Index of the ``}}`` closing an action, skipping quoted strings."""
    quote = ""
    i = pos
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 1
            elif c == quote:
                quote = ""
        elif c in '"`':
            quote = c
        elif text.startswith("}}", i):
            return i
        i += 1
    raise TemplateError(f"unclosed action in template {source!r}")


def _show(value: Value) -> str:
    """fmt's %v for the values a template can produce."""
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + " ".join(value) + "]"
    return "map[" + " ".join(f"{k}:{v}" for k, v in sorted(value.items())) + "]"


# -- RR text -> wire -----------------------------------------------------------------------


class _FlatBuffer(dnslib.DNSBuffer):  # type: ignore[misc]
    """Names in rdata uncompressed: the bytes are spliced into another message."""

    def encode_name(self, name: object) -> None:
        self.encode_name_nocompress(name)


_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TTL_TOKEN = re.compile(r"(?:[0-9]+[smhdwSMHDW])+")
_HEADER_TOKEN = re.compile(r"\S+")


def _ttl(token: str) -> int | None:
    if token.isdigit():
        return int(token) & 0xFFFFFFFF
    if _TTL_TOKEN.fullmatch(token):
        return sum(int(n) * _TTL_UNITS[u.lower()] for n, u in re.findall(r"([0-9]+)(\w)", token))
    return None


def _is_class(token: str) -> bool:
    return token in _CLASSES or (token.startswith("CLASS") and token[5:].isdigit())


def _strip_parens(text: str) -> str:
    """Drop zone-file grouping parentheses outside quoted strings (one line only here)."""
    out: list[str] = []
    quoted = False
    escaped = False
    for c in text:
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c in "()" and not quoted:
            c = " "
        out.append(c)
    return "".join(out)


def parse_rr(text: str) -> wire.RR:
    """The first RR in zone-file ``text``, as miekg/dns's NewRR reads it (origin ``.``)."""
    text = _strip_parens(text.split("\n", 1)[0])
    tokens = list(_HEADER_TOKEN.finditer(text))
    if len(tokens) < 2:
        raise _RRError(f"not a resource record: {text!r}")
    owner = tokens[0].group()
    ttl: int | None = None
    rtype = ""
    rdata_at = len(text)
    for tok in tokens[1:4]:
        word = tok.group()
        upper = word.upper()
        if ttl is None and _ttl(word) is not None:
            ttl = _ttl(word)
        elif _is_class(upper):
            continue
        else:
            rtype = upper
            rdata_at = tok.end()
            break
    if not rtype or not (rtype in dnslib.QTYPE.reverse or re.fullmatch(r"TYPE[0-9]+", rtype)):
        raise _RRError(f"not a TTL or type: {text!r}")
    line = f"{owner} {3600 if ttl is None else ttl} IN {rtype}{text[rdata_at:]}"
    try:
        parsed = dnslib.RR.fromZone(line, origin=".")
    except Exception as e:  # dnslib raises a zoo of types for bad rdata
        raise _RRError(f"bad rdata in {text!r}: {e}") from None
    if not parsed:
        raise _RRError(f"no record in {text!r}")
    rr = parsed[0]
    labels = rr.rname.label
    if any(b"." in label for label in labels):
        raise _RRError(f"owner name with an escaped dot: {text!r}")
    name = ".".join(label.decode("latin-1").lower() for label in labels) + "."
    try:
        names.to_wire(name)
        buf = _FlatBuffer()
        rr.rdata.pack(buf)
    except Exception as e:
        raise _RRError(f"cannot encode {text!r}: {e}") from None
    return wire.RR(name, int(rr.rtype), int(rr.ttl), bytes(buf.data))


# -- metrics -------------------------------------------------------------------------------


class _Counters(Collector):
    """CoreDNS's template metrics as plain dict counts, shared by every block's templates."""

    def __init__(self) -> None:
        self.matches: dict[tuple[str, str, str, str], int] = {}
        self.template_failures: dict[tuple[str, str, str, str, str, str], int] = {}
        self.rr_failures: dict[tuple[str, str, str, str, str, str], int] = {}

    def collect(self) -> Iterator[CounterMetricFamily]:
        labels = ["server", "zone", "view", "class", "type"]
        matches = CounterMetricFamily(
            "coredns_template_matches",
            "Counter of template regex matches.",
            labels=labels,
        )
        for (server, zone, cls, typ), n in list(self.matches.items()):
            matches.add_metric([server, zone, "", cls, typ], n)
        yield matches
        for name, help_text, counts in (
            (
                "coredns_template_template_failures",
                "Counter of go template failures.",
                self.template_failures,
            ),
            (
                "coredns_template_rr_failures",
                "Counter of mis-templated RRs.",
                self.rr_failures,
            ),
        ):
            family = CounterMetricFamily(name, help_text, labels=[*labels, "section", "template"])
            for (server, zone, cls, typ, section, source), n in list(counts.items()):
                family.add_metric([server, zone, "", cls, typ, section, source], n)
            yield family


_COUNTERS: weakref.WeakKeyDictionary[CollectorRegistry, _Counters] = weakref.WeakKeyDictionary()


def _counters(registry: CollectorRegistry | None) -> _Counters:
    if registry is None:
        return _Counters()  # counted, never exported
    found = _COUNTERS.get(registry)
    if found is None:
        found = _COUNTERS[registry] = _Counters()
        registry.register(found)
    return found


# -- the plugin ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Compiled:
    zones: tuple[str, ...]
    qclass: int
    qtype: int
    regexes: tuple[re.Pattern[str], ...]
    sections: tuple[tuple[str, tuple[GoTemplate, ...]], ...]  # answer, authority, additional
    rcode: int
    fallthrough: tuple[str, ...]
    constant: wire.Answer | None  # a template without records always answers the same
    cacheable: bool
    cache: dict[tuple[str, int, int], wire.Answer] = field(default_factory=dict)


def go_regex(pattern: str) -> re.Pattern[str]:
    r"""Compile an RE2 pattern with Python's engine (``\z`` is Python's ``\Z``)."""
    return re.compile(re.sub(r"(?<!\\)((?:\\\\)*)\\z", r"\1\\Z", pattern))


def _rcode(name: str) -> int:
    value = _RCODE_VALUES.get(name, wire.SERVFAIL)
    # An extended rcode needs an OPT record miekg/dns would refuse to pack without: SERVFAIL.
    return value if value < 16 else wire.SERVFAIL


def _compile(t: Template) -> _Compiled:
    sections = tuple(
        (section, tuple(GoTemplate.compile(src) for src in sources))
        for section, sources in (
            ("answer", t.answer),
            ("authority", t.authority),
            ("additional", t.additional),
        )
    )
    rcode = _rcode(t.rcode)
    has_records = any(templates for _, templates in sections)
    constant = None
    if rcode == wire.SERVFAIL:
        constant = SERVFAIL  # CoreDNS returns before rendering: the server writes SERVFAIL
    elif not has_records:
        constant = wire.build(".", rcode)
    try:
        regexes = tuple(go_regex(r) for r in t.match)
    except re.error as e:
        raise TemplateError(f"could not parse regex: {e}") from None
    return _Compiled(
        zones=t.zones,
        qclass=_CLASSES.get(t.qclass, 255),
        qtype=255 if t.qtype == "ANY" else int(getattr(dnslib.QTYPE, t.qtype)),
        regexes=regexes,
        sections=sections,
        rcode=rcode,
        fallthrough=t.fallthrough,
        constant=constant,
        cacheable=not any(g.uses_remote for _, gs in sections for g in gs),
    )


def _zone_of(qname: str, zones: Sequence[str]) -> str:
    """plugin.Zones.Matches: the longest zone containing qname, or ""."""
    best = ""
    for zone in zones:
        if names.is_subdomain(qname, zone) and len(zone) > len(best):
            best = zone
    return best


class Templates:
    """Every ``template`` stanza of one server block, in Corefile order.

    ``server`` is the metrics label (``dns://:53``); ``registry`` receives CoreDNS's
    template counters (None: counted but not exported). Raises :class:`TemplateError`
    when a template needs Go template features kdns does not render.
    """

    def __init__(
        self,
        config: TemplateConfig,
        *,
        server: str = "",
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._templates = tuple(_compile(t) for t in config.templates)
        self._zones = tuple(dict.fromkeys(z for t in config.templates for z in t.zones))
        self._server = server
        self._counts = _counters(registry)
        self._last_error_log = 0.0

    def match(self, qname: str, qtype: int, qclass: int, remote: str) -> wire.Answer | None:
        """The answer for a lower-case absolute ``qname``, or None for the next plugin."""
        if not _zone_of(qname, self._zones):
            return None
        for t in self._templates:
            zone = _zone_of(qname, t.zones)
            if not zone:
                continue
            if t.qclass != 255 and qclass != 255 and qclass != t.qclass:
                continue
            if t.qtype != 255 and qtype != 255 and qtype != t.qtype:
                continue
            found = None
            for regex in t.regexes:
                found = regex.search(qname)
                if found is not None:
                    break
            if found is None:
                if _zone_of(qname, t.fallthrough):
                    continue
                return SERVFAIL
            cls = _CLASS_NAMES.get(qclass if qclass != 255 else t.qclass, "")
            typ = dnslib.QTYPE.forward.get(qtype if qtype != 255 else t.qtype, "")
            key = (self._server, zone, cls, typ)
            self._counts.matches[key] = self._counts.matches.get(key, 0) + 1
            if t.constant is not None:
                return t.constant
            cache_key = (qname, qtype, qclass)
            if t.cacheable:
                cached = t.cache.get(cache_key)
                if cached is not None:
                    return cached
            answer = self._render(t, found, qname, qtype, qclass, zone, cls, typ, remote)
            if t.cacheable and answer is not SERVFAIL:
                if len(t.cache) >= _CACHE_MAX:
                    t.cache.clear()
                t.cache[cache_key] = answer
            return answer
        return None

    def _render(
        self,
        t: _Compiled,
        found: re.Match[str],
        qname: str,
        qtype: int,
        qclass: int,
        zone: str,
        cls: str,
        typ: str,
        remote: str,
    ) -> wire.Answer:
        match = [found.group(0), *(g or "" for g in found.groups())]
        group = {str(i): m for i, m in enumerate(match)}
        group.update({k: v or "" for k, v in found.groupdict().items()})
        question = {"Name": qname, "Qtype": str(qtype), "Qclass": str(qclass)}
        data = _Data(qname, zone, cls, typ, remote, found.re.pattern, match, group, question)
        records: dict[str, list[wire.RR]] = {}
        for section, templates in t.sections:
            out = records[section] = []
            for tmpl in templates:
                failures = self._counts.template_failures
                try:
                    text = tmpl.render(data)
                    failures = self._counts.rr_failures
                    out.append(parse_rr(text))
                except (_ExecError, _RRError) as e:
                    labels = (self._server, zone, cls, typ, section, tmpl.source)
                    failures[labels] = failures.get(labels, 0) + 1
                    self._log_error(qname, e)
                    return SERVFAIL
        return wire.build(
            qname, t.rcode, records["answer"], records["authority"], records["additional"]
        )

    def _log_error(self, qname: str, error: Exception) -> None:
        """A broken template fails every query alike: log it at most every 10 s."""
        now = time.monotonic()
        if now - self._last_error_log > 10:
            self._last_error_log = now
            log.error("plugin/template: %s: %s", qname, error)
