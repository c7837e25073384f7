"""``cache [TTL] [ZONES...] { ... }``: caps and capacities of the response cache.

Reproduces CoreDNS's reading, oddities included: the first argument is a TTL only if it
is a plain integer, so ``cache 3600s`` caches zone ``3600s.`` with default caps; unknown
block options are an argument-count error, not ``unknown property``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kdns.corefile import goparse, keys
from kdns.corefile.dispenser import Dispenser
from kdns.corefile.errors import CorefileError
from kdns.corefile.setup import SetupContext, once

DEFAULT_CAPACITY = 10_000  # CoreDNS shards it 256 ways: 9984 entries in practice
MAX_SUCCESS_TTL = 3600
MAX_DENIAL_TTL = 1800
MIN_TTL = 5


@dataclass(frozen=True, slots=True)
class CacheConfig:
    NAME: ClassVar[str] = "cache"

    zones: tuple[str, ...]
    success_capacity: int = DEFAULT_CAPACITY
    success_ttl: int = MAX_SUCCESS_TTL
    success_min_ttl: int = MIN_TTL
    denial_capacity: int = DEFAULT_CAPACITY
    denial_ttl: int = MAX_DENIAL_TTL
    denial_min_ttl: int = MIN_TTL
    prefetch: int = 0  # 0: off
    prefetch_duration: float = 60.0
    prefetch_percentage: int = 10
    serve_stale: float = 0.0  # 0: off
    serve_stale_verify: bool = False
    servfail_ttl: float = 5.0
    disable_success: tuple[str, ...] = ()
    disable_denial: tuple[str, ...] = ()
    keepttl: bool = False


def parse(d: Dispenser, ctx: SetupContext) -> list[CacheConfig]:
    config: CacheConfig | None = None
    for _ in once(d):
        config = _stanza(d, ctx)
    assert config is not None
    return [config]


def _stanza(d: Dispenser, ctx: SetupContext) -> CacheConfig:
    opts: dict[str, object] = {}
    args = d.remaining_args()
    origins: list[str] = []
    if args:
        try:
            ttl = goparse.atoi(args[0])
        except CorefileError:
            pass
        else:
            if ttl <= 0:
                raise CorefileError(f"cache TTL can not be zero or negative: {ttl}")
            opts["success_ttl"] = opts["denial_ttl"] = ttl
            args = args[1:]
        origins = args
    zones = tuple(keys.origins(origins, ctx.keys))
    while d.next_block():
        option = d.val()
        if option in ("success", "denial"):
            _capacity(d, option, opts)
        elif option == "prefetch":
            _prefetch(d, opts)
        elif option == "serve_stale":
            _serve_stale(d, opts)
        elif option == "servfail":
            args = d.remaining_args()
            if len(args) != 1:
                raise d.arg_err()
            ttl_s = goparse.parse_duration(args[0])
            if ttl_s < 0:
                raise CorefileError("invalid negative ttl for servfail")
            if ttl_s > 300:
                raise CorefileError("caching SERVFAIL responses over 5 minutes is not permitted")
            opts["servfail_ttl"] = ttl_s
        elif option == "disable":
            args = d.remaining_args()
            if not args:
                raise d.arg_err()
            disabled = tuple(keys.fqdn(z).lower() for z in args[1:]) or (".",)
            if args[0] not in ("success", "denial"):
                raise CorefileError('cache type for disable must be "success" or "denial"')
            opts[f"disable_{args[0]}"] = disabled
        elif option == "keepttl":
            if d.remaining_args():
                raise d.arg_err()
            opts["keepttl"] = True
        else:
            raise d.arg_err()
    return CacheConfig(zones=zones, **opts)  # type: ignore[arg-type]


def _capacity(d: Dispenser, kind: str, opts: dict[str, object]) -> None:
    """``success|denial CAPACITY [TTL [MINTTL]]``."""
    args = d.remaining_args()
    if not args:
        raise d.arg_err()
    opts[f"{kind}_capacity"] = goparse.atoi(args[0])
    if len(args) > 1:
        ttl = goparse.atoi(args[1])
        if ttl <= 0:
            raise CorefileError(f"cache TTL can not be zero or negative: {ttl}")
        opts[f"{kind}_ttl"] = ttl
    if len(args) > 2:
        min_ttl = goparse.atoi(args[2])
        if min_ttl < 0:
            raise CorefileError(f"cache min TTL can not be negative: {min_ttl}")
        opts[f"{kind}_min_ttl"] = min_ttl


def _prefetch(d: Dispenser, opts: dict[str, object]) -> None:
    """``prefetch AMOUNT [DURATION [PERCENTAGE%]]``."""
    args = d.remaining_args()
    if not args or len(args) > 3:
        raise d.arg_err()
    amount = goparse.atoi(args[0])
    if amount < 0:
        raise CorefileError(f"prefetch amount should be positive: {amount}")
    opts["prefetch"] = amount
    if len(args) > 1:
        opts["prefetch_duration"] = goparse.parse_duration(args[1])
    if len(args) > 2:
        pct = args[2]
        if not pct.endswith("%"):
            last = pct[-1:] or ""
            raise CorefileError(f"last character of percentage should be `%`, but is: '{last}'")
        num = goparse.atoi(pct[:-1])
        if not 10 <= num <= 90:
            raise CorefileError(f"percentage should fall in range [10, 90]: {num}")
        opts["prefetch_percentage"] = num


def _serve_stale(d: Dispenser, opts: dict[str, object]) -> None:
    """``serve_stale [DURATION] [immediate|verify]``."""
    args = d.remaining_args()
    if len(args) > 5:
        raise d.arg_err()
    stale = 3600.0
    if args:
        stale = goparse.parse_duration(args[0])
        if stale < 0:
            raise CorefileError("invalid negative duration for serve_stale")
    verify = False
    if len(args) > 1:
        mode = args[1].lower()
        if mode not in ("immediate", "verify"):
            raise CorefileError(f"invalid value for serve_stale refresh mode: {mode}")
        verify = mode == "verify"
    opts["serve_stale"] = stale
    opts["serve_stale_verify"] = verify
