"""Go's strconv/time/net parsing, with Go's error texts.

CoreDNS plugins return these errors unwrapped (``plugin/cache: strconv.Atoi: parsing
"x": invalid syntax``), so matching CoreDNS's messages means matching Go's grammar and
wording: ``Atoi`` takes a sign, ``ParseUint`` does not, durations need a unit except
for a bare ``0``.
"""

from __future__ import annotations

import ipaddress
import json
import re

from kdns.corefile.errors import CorefileError

_INT = re.compile(r"[+-]?[0-9]+")
_UINT = re.compile(r"[0-9]+")
_DURATION_PART = re.compile(r"([0-9]*)(\.[0-9]*)?([^0-9.]+)")
_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_MAX_DURATION = (1 << 63) - 1  # nanoseconds


def quote(text: str) -> str:
    """Go's %q for the common (printable) case."""
    return json.dumps(text, ensure_ascii=False)


def atoi(text: str) -> int:
    """strconv.Atoi."""
    if not _INT.fullmatch(text):
        raise CorefileError(f"strconv.Atoi: parsing {quote(text)}: invalid syntax")
    value = int(text)
    if not -(1 << 63) <= value < (1 << 63):
        raise CorefileError(f"strconv.Atoi: parsing {quote(text)}: value out of range")
    return value


def parse_uint(text: str, bits: int = 64) -> int:
    """strconv.ParseUint(text, 10, bits)."""
    if not _UINT.fullmatch(text):
        raise CorefileError(f"strconv.ParseUint: parsing {quote(text)}: invalid syntax")
    value = int(text)
    if value >= 1 << bits:
        raise CorefileError(f"strconv.ParseUint: parsing {quote(text)}: value out of range")
    return value


def parse_duration(text: str) -> float:
    """time.ParseDuration, in seconds."""
    orig = text
    sign = 1.0
    if text[:1] in ("+", "-"):
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    if text == "":
        raise CorefileError(f"time: invalid duration {quote(orig)}")
    total_ns = 0.0
    pos = 0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if m is None:
            if not text[pos].isdigit() and text[pos] != ".":
                raise CorefileError(f"time: invalid duration {quote(orig)}")
            raise CorefileError(f"time: missing unit in duration {quote(orig)}")
        whole, frac, unit = m.group(1), m.group(2) or "", m.group(3)
        if whole == "" and frac in ("", "."):
            raise CorefileError(f"time: invalid duration {quote(orig)}")
        if unit not in _UNITS:
            raise CorefileError(f"time: unknown unit {quote(unit)} in duration {quote(orig)}")
        number = float((whole or "0") + (frac if frac != "." else ""))
        total_ns += number * _UNITS[unit] * 1e9
        pos = m.end()
    if total_ns > _MAX_DURATION:
        raise CorefileError(f"time: invalid duration {quote(orig)}")
    return sign * total_ns / 1e9


def format_duration(seconds: float) -> str:
    """time.Duration.String(): ``2s``, ``1m30s``, ``500ms``."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("\u00b5s", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _trim(ns / size) + unit
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    out = sign
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return out + _trim(rest / 1e9) + "s"


def _trim(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"


def split_host_port(hostport: str) -> tuple[str, str]:
    """net.SplitHostPort: ``host:port`` or ``[v6]:port``, port required."""

    def fail(reason: str) -> CorefileError:
        return CorefileError(f"address {hostport}: {reason}")

    i = hostport.rfind(":")
    if i < 0:
        raise fail("missing port in address")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise fail("missing ']' in address")
        if end + 1 == len(hostport):
            raise fail("missing port in address")
        if end + 1 != i:
            if hostport[end + 1] == ":":
                raise fail("too many colons in address")
            raise fail("missing port in address")
        host = hostport[1:end]
        if "[" in hostport[1:] or "]" in hostport[end + 1 :]:
            raise fail("unexpected '[' in address")
    else:
        host = hostport[:i]
        if ":" in host:
            raise fail("too many colons in address")
        if "[" in host:
            raise fail("unexpected '[' in address")
        if "]" in host:
            raise fail("unexpected ']' in address")
    if "[" in hostport[i + 1 :]:
        raise fail("unexpected '[' in address")
    if "]" in hostport[i + 1 :]:
        raise fail("unexpected ']' in address")
    return host, hostport[i + 1 :]


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """net.ParseIP: a literal address without zone or brackets, else None."""
    if "%" in text or not text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def join_host_port(host: str, port: int | str) -> str:
    """net.JoinHostPort."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"
