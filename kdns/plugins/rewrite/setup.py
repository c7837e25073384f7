"""``rewrite [continue|stop] FIELD ...``: CoreDNS's rule grammar, one parse function.

Every ``rewrite`` stanza of a block is one rule, in file order (CoreDNS keeps them in
one plugin instance). The block form ``rewrite [stop|continue] { LINE... }`` joins its
lines into one argument list, as CoreDNS's setup does, which is how ``name regex ...``
followed by ``answer name ...`` on the next line becomes one rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

import dnslib

from kdns.corefile import keys
from kdns.corefile.dispenser import Dispenser
from kdns.corefile.setup import SetupContext, stanzas
from kdns.errors import ConfigurationError

MATCH_TYPES = ("exact", "prefix", "suffix", "substring", "regex")
CLASSES = {"IN": 1, "CS": 2, "CH": 3, "HS": 4, "NONE": 254, "ANY": 255}
RCODES = {
    "NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5,
    "YXDOMAIN": 6, "YXRRSET": 7, "NXRRSET": 8, "NOTAUTH": 9, "NOTZONE": 10,
}  # fmt: skip
EDNS0_ACTIONS = ("set", "append", "replace", "unset")
VARIABLES = ("{qname}", "{qtype}", "{client_ip}", "{client_port}", "{protocol}")
UNSUPPORTED_VARIABLES = ("{server_ip}", "{server_port}")
_GROUP = re.compile(r"\{(\d+)\}")


class RuleError(ConfigurationError):
    """A rewrite rule CoreDNS would refuse (the message is CoreDNS's)."""


@dataclass(frozen=True, slots=True)
class Match:
    """How a rule matches the question name: ``kind`` is one of :data:`MATCH_TYPES`."""

    kind: str
    value: str  # a lower-case name or part of one; the pattern source for regex
    pattern: re.Pattern[str] | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """One response rewrite of a name rule: ``auto``, ``name FROM TO`` or ``value FROM TO``."""

    kind: str
    pattern: re.Pattern[str] | None = None
    replacement: str = ""


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule; ``field`` says which of the optional parts are set."""

    mode: str  # "stop" or "continue"
    field: str  # name, type, class, ttl, rcode, edns0
    match: Match | None = None  # name, ttl, rcode
    to: str = ""  # name: the replacement (regex: with {N} groups)
    answers: tuple[Answer, ...] = ()  # name: response rewrites
    from_int: int = 0  # type, class, rcode: the value matched
    to_int: int = 0  # type, class, rcode: the value written
    ttl: tuple[int, int] = (0, 0)  # ttl: the [min, max] the TTLs are clamped to
    edns0: tuple[str, str, int, bytes, int, int] = ("", "", 0, b"", 0, 0)
    # edns0: (kind local|nsid|subnet, action, code, data or variable, v4 bits, v6 bits)


@dataclass(frozen=True, slots=True)
class RewriteConfig:
    NAME: ClassVar[str] = "rewrite"

    rules: tuple[Rule, ...] = field(default_factory=tuple)


def parse(d: Dispenser, ctx: SetupContext) -> list[RewriteConfig]:
    rules: list[Rule] = []
    for _ in stanzas(d):
        args = d.remaining_args()
        if len(args) < 2:
            while d.next_block():
                args.append(d.val())
                args.extend(d.remaining_args())
        try:
            rules.append(new_rule(args))
        except RuleError as exc:
            raise d.err(str(exc)) from None
    return [RewriteConfig(tuple(rules))]


def new_rule(args: list[str]) -> Rule:
    """A rule from its arguments, after the directive name (CoreDNS's ``newRule``)."""
    if not args:
        raise RuleError("no rule type specified for rewrite")
    mode = "stop"
    if args[0].lower() in ("stop", "continue"):
        mode = args[0].lower()
        args = args[1:]
        if not args:
            raise RuleError("no rule type specified for rewrite")
    kind, rest = args[0].lower(), args[1:]
    if kind == "answer":
        raise RuleError("response rewrites must begin with a name rule")
    if kind == "name":
        return _name_rule(mode, rest)
    if kind in ("type", "class"):
        if len(rest) != 2:
            raise RuleError(f"{kind} rules must have exactly two arguments")
        table = CLASSES if kind == "class" else None
        old, new = _code(kind, rest[0], table), _code(kind, rest[1], table)
        return Rule(mode, kind, from_int=old, to_int=new)
    if kind == "ttl":
        return _ttl_rule(mode, rest)
    if kind == "rcode":
        return _rcode_rule(mode, rest)
    if kind == "edns0":
        return _edns0_rule(mode, rest)
    if kind == "cname":
        raise RuleError("rule type 'cname' is not supported by kdns")
    raise RuleError(f'invalid rule type "{args[0]}"')


def _code(kind: str, text: str, table: dict[str, int] | None) -> int:
    upper = text.upper()
    if table is not None:
        if upper in table:
            return table[upper]
        raise RuleError(f'invalid class "{upper}"')
    if upper in dnslib.QTYPE.reverse:
        return int(dnslib.QTYPE.reverse[upper])
    found = re.fullmatch(r"TYPE([0-9]{1,5})", upper)
    if found and int(found.group(1)) < 65536:
        return int(found.group(1))
    raise RuleError(f'invalid type "{upper}"')


def _match(kind: str, value: str) -> Match:
    if kind not in MATCH_TYPES:
        raise RuleError(
            "name rule supports only exact, prefix, suffix, substring, and regex name "
            f"matching, received: {kind}"
        )
    if kind == "regex":
        try:
            return Match(kind, value, _go_regex(value))
        except re.error:
            raise RuleError(f"invalid regex matching pattern: {value}") from None
    value = value.lower()
    if kind in ("exact", "suffix") and not value.endswith("."):
        value += "."
    return Match(kind, value)


def _go_regex(pattern: str) -> re.Pattern[str]:
    from kdns.plugins.template.template import go_regex  # Go's RE2 syntax, read once

    return go_regex(pattern)


def _groups_fit(replacement: str, pattern: re.Pattern[str], source: str) -> None:
    used = {int(n) for n in _GROUP.findall(replacement)}
    if len(used) > pattern.groups:
        raise RuleError(
            f"the rewrite regex pattern ({replacement}) uses more subexpressions than its "
            f"corresponding matching regex pattern ({source})"
        )


def _name_rule(mode: str, args: list[str]) -> Rule:
    if len(args) < 2:
        raise RuleError("too few arguments for a name rule")
    if len(args) == 2:
        kind, source, target, options = "exact", args[0], args[1], []
    else:
        kind, source, target, options = args[0].lower(), args[1], args[2], args[3:]
    match = _match(kind, source)
    to = target.lower()
    if kind in ("exact", "suffix", "regex") and not to.endswith("."):
        to += "."
    if match.pattern is not None:
        _groups_fit(to, match.pattern, source)
    elif kind == "exact" and not keys.is_domain_name(to):
        raise RuleError(f"invalid name after rewrite: {target}")
    answers: list[Answer] = []
    if kind == "exact":
        answers.append(Answer("auto"))
    i = 0
    while i < len(options):
        word = options[i].lower()
        if word == "answer":
            i += 1
            if i >= len(options):
                raise RuleError("missing answer rewrite after 'answer'")
            word = options[i].lower()
        elif i == 0:  # the first option needs the keyword, later ones may omit it
            raise RuleError(f"unexpected argument {options[i]!r}: expected 'answer'")
        if word == "auto":
            if not any(a.kind == "auto" for a in answers):
                answers.append(Answer("auto"))
            i += 1
            continue
        if word not in ("name", "value"):
            raise RuleError(
                f"invalid answer rewrite type {options[i]!r}: expected auto, name or value"
            )
        if i + 2 >= len(options):
            raise RuleError(f"answer {word} rewrites need FROM and TO")
        source_re, replacement = options[i + 1], options[i + 2].lower()
        if not replacement.endswith("."):
            replacement += "."
        try:
            pattern = _go_regex(source_re)
        except re.error:
            raise RuleError(f"invalid regex matching pattern: {source_re}") from None
        _groups_fit(replacement, pattern, source_re)
        answers.append(Answer(word, pattern, replacement))
        i += 3
    return Rule(mode, "name", match=match, to=to, answers=tuple(answers))


def _ttl_rule(mode: str, args: list[str]) -> Rule:
    if len(args) == 2:
        kind, source, value = "exact", args[0], args[1]
    elif len(args) == 3:
        kind, source, value = args[0].lower(), args[1], args[2]
    else:
        raise RuleError(f"wrong number of arguments ({len(args)}) for a ttl rule")
    low, sep, high = value.partition("-")
    try:
        if not sep:
            bounds = (int(value), int(value))
        else:
            bounds = (int(low) if low else 0, int(high) if high else 2**31 - 1)
    except ValueError:
        raise RuleError(f"invalid TTL '{value}' for a ttl rule") from None
    if not 0 <= bounds[0] <= bounds[1] <= 2**31 - 1:
        raise RuleError(f"invalid TTL '{value}' for a ttl rule")
    return Rule(mode, "ttl", match=_match(kind, source), ttl=bounds)


def _rcode(text: str, what: str) -> int:
    if text.isdigit() and int(text) <= 15:
        return int(text)
    if text.upper() in RCODES:
        return RCODES[text.upper()]
    if (text.isdigit() and int(text) <= 23) or text.upper() in ("BADVERS", "BADSIG", "BADCOOKIE"):
        raise RuleError(f"extended RCODE '{text}' in a rcode rule is not supported by kdns")
    raise RuleError(f"invalid {what} RCODE '{text}' for a rcode rule")


def _rcode_rule(mode: str, args: list[str]) -> Rule:
    if len(args) < 3:
        raise RuleError(f"too few ({len(args)}) arguments for a rcode rule")
    if len(args) > 4:
        raise RuleError("too many arguments for a rcode rule")
    kind, source = ("exact", args[0]) if len(args) == 3 else (args[0].lower(), args[1])
    old, new = _rcode(args[-2], "matching"), _rcode(args[-1], "replacement")
    return Rule(mode, "rcode", match=_match(kind, source), from_int=old, to_int=new)


def _edns0_rule(mode: str, args: list[str]) -> Rule:
    if len(args) < 2:
        raise RuleError("too few arguments for an EDNS0 rule")
    kind, action = args[0].lower(), args[1].lower()
    if action not in EDNS0_ACTIONS:
        raise RuleError(f"invalid action: {args[1]!r}")
    rest = args[2:]
    if kind == "local":
        if action == "unset":
            if len(rest) != 1:
                raise RuleError("EDNS0 local unset rules take one argument (the code)")
            return Rule(mode, "edns0", edns0=("local", action, _option_code(rest[0]), b"", 0, 0))
        if len(rest) != 2:
            raise RuleError("EDNS0 local rules require two arguments")
        return Rule(
            mode, "edns0", edns0=("local", action, _option_code(rest[0]), _data(rest[1]), 0, 0)
        )
    if kind == "nsid":
        if rest:
            raise RuleError("EDNS0 NSID rules do not accept args")
        return Rule(mode, "edns0", edns0=("nsid", action, 3, b"", 0, 0))
    if kind == "subnet":
        if action == "unset":
            if rest:
                raise RuleError("EDNS0 subnet unset rules do not accept args")
            return Rule(mode, "edns0", edns0=("subnet", action, 8, b"", 0, 0))
        if len(rest) != 2:
            raise RuleError("EDNS0 subnet rules require two arguments")
        try:
            v4, v6 = int(rest[0]), int(rest[1])
        except ValueError:
            raise RuleError("EDNS0 subnet bit lengths must be integers") from None
        if not 0 <= v4 <= 32 or not 0 <= v6 <= 128:
            raise RuleError("EDNS0 subnet bit lengths out of range (IPv4 0-32, IPv6 0-128)")
        return Rule(mode, "edns0", edns0=("subnet", action, 8, b"", v4, v6))
    raise RuleError(f"invalid rule type {args[0]!r}")


def _option_code(text: str) -> int:
    try:
        code = int(text, 0)
    except ValueError:
        raise RuleError(f"could not parse EDNS0 code: {text}") from None
    if not 0 <= code <= 0xFFFF:
        raise RuleError(f"could not parse EDNS0 code: {text}")
    return code


def _data(text: str) -> bytes:
    """Hex after ``0x``, a variable in braces, else the text's bytes."""
    if text in UNSUPPORTED_VARIABLES:
        raise RuleError(f"EDNS0 variable {text} is not supported by kdns")
    if text.startswith("{") and text.endswith("}"):
        if text not in VARIABLES:
            raise RuleError(f"unsupported EDNS0 variable {text} (kdns has no metadata plugin)")
        return text.encode()
    if text.startswith("0x"):
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            raise RuleError(f"could not parse EDNS0 data: {text}") from None
    return text.encode()
