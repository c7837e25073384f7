"""``template CLASS TYPE [ZONES...] { match; answer; additional; authority; rcode; fallthrough }``.

Answers are Go text/template sources, kept verbatim here (rendering is the template
handler's job). Regexes are checked with Python's engine, which accepts the RE2 subset
Corefiles use (AKS's ``^(?:[^.]+\\.){4,}internal\\.cloudapp\\.net\\.$``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import dnslib

from kdns.corefile import keys
from kdns.corefile.dispenser import Dispenser
from kdns.corefile.setup import SetupContext, fall_zones, stanzas, where

_CLASSES = {"IN": 1, "CS": 2, "CH": 3, "HS": 4, "NONE": 254, "ANY": 255}
UPSTREAM_WHY = "deprecated, and ignored by CoreDNS too; delete the line"
RCODES = (
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN",
    "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE", "BADSIG", "BADVERS", "BADKEY", "BADTIME",
    "BADMODE", "BADNAME", "BADALG", "BADTRUNC", "BADCOOKIE",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Template:
    qclass: str
    qtype: str
    zones: tuple[str, ...]
    match: tuple[str, ...] = (".*",)
    answer: tuple[str, ...] = ()
    additional: tuple[str, ...] = ()
    authority: tuple[str, ...] = ()
    rcode: str = "NOERROR"
    fallthrough: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TemplateConfig:
    """All ``template`` stanzas of a block, tried in Corefile order."""

    NAME: ClassVar[str] = "template"

    templates: tuple[Template, ...]


def _is_type(name: str) -> bool:
    return name == "ANY" or name in dnslib.QTYPE.reverse


def parse(d: Dispenser, ctx: SetupContext) -> list[TemplateConfig]:
    templates: list[Template] = []
    for _ in stanzas(d):
        if not d.next_arg():
            raise d.arg_err()
        qclass = d.val()
        if qclass not in _CLASSES:
            raise d.err(f"invalid query class {qclass}")
        if not d.next_arg():
            raise d.arg_err()
        qtype = d.val()
        if not _is_type(qtype):
            raise d.err(f"invalid RR class {qtype}")
        zones = tuple(keys.origins(d.remaining_args(), ctx.keys))
        sections: dict[str, list[str]] = {
            "match": [],
            "answer": [],
            "additional": [],
            "authority": [],
        }
        rcode = "NOERROR"
        fall: tuple[str, ...] = ()
        while d.next_block():
            option = d.val()
            if option in sections:
                args = d.remaining_args()
                if not args:
                    raise d.arg_err()
                if option == "match":
                    for regex in args:
                        try:
                            re.compile(regex)
                        except re.error as e:
                            raise d.err(f"could not parse regex: {regex}, {e}") from None
                sections[option].extend(args)
            elif option == "rcode":
                if not d.next_arg():
                    raise d.arg_err()
                if d.val() not in RCODES:
                    raise d.err(f"unknown rcode {d.val()}")
                rcode = d.val()
            elif option == "fallthrough":
                fall = fall_zones(d.remaining_args())
            elif option == "upstream":
                ctx.not_acted_on("template", where(d), "upstream", UPSTREAM_WHY)
                d.remaining_args()
            else:
                raise d.arg_err()
        if not sections["answer"] and not sections["authority"] and rcode == "NOERROR":
            raise d.err("no answer section for template found")
        templates.append(
            Template(
                qclass=qclass,
                qtype=qtype,
                zones=zones,
                match=tuple(sections["match"]) or (".*",),
                answer=tuple(sections["answer"]),
                additional=tuple(sections["additional"]),
                authority=tuple(sections["authority"]),
                rcode=rcode,
                fallthrough=fall,
            )
        )
    return [TemplateConfig(tuple(templates))]
