"""Response codes and their names, written once: miekg/dns's tables, as CoreDNS prints them."""

from __future__ import annotations

# miekg/dns RcodeToString: the log plugin's {rcode}, explain's report, template's names.
TO_TEXT: dict[int, str] = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
    6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE", 16: "BADSIG",
    17: "BADKEY", 18: "BADTIME", 19: "BADMODE", 20: "BADNAME", 21: "BADALG",
    22: "BADTRUNC", 23: "BADCOOKIE",
}  # fmt: skip

# miekg/dns StringToRcode: every name above, and BADVERS, which shares 16 with BADSIG.
FROM_TEXT: dict[str, int] = {name: code for code, name in TO_TEXT.items()} | {"BADVERS": 16}

# CoreDNS's rcode metric label: 16 is BADVERS there (the answer to an unknown EDNS
# version); codes past NOTZONE other than 16 are counted by number.
METRIC_TEXT: dict[int, str] = {c: n for c, n in TO_TEXT.items() if c <= 10} | {16: "BADVERS"}


def to_text(rcode: int) -> str:
    return TO_TEXT.get(rcode, str(rcode))


def metric_label(rcode: int) -> str:
    return METRIC_TEXT.get(rcode, str(rcode))
