"""Connection options: parsing, validation and Go-style durations.

``connect(url, options, **kwargs)`` hands both forms to :func:`parse_options`, which
returns a frozen :class:`Options` with every value checked and every default resolved.
Durations everywhere (options and ``after``) go through :func:`parse_duration`: a number
is milliseconds, a str is a Go duration (``"300ms"``, ``"1m30s"``), a ``timedelta`` is
taken as is, and 0 means "no timeout".
"""

from __future__ import annotations

import datetime
import decimal
import math
import numbers
import re
import ssl as _ssl
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Tuple, Union

from .constants import COMPRESSION
from .errors import InvalidOption
from .handshake import CTL, TOKEN, user_header_problem

__all__ = ["Options", "OPTION_NAMES", "parse_duration", "parse_options"]

_MiB = 1024 * 1024
_MAX_NS = 2**63 - 1  # Go's time.Duration range: about 292 years

DEFAULT_DIAL_TIMEOUT = 30.0
DEFAULT_CLOSE_TIMEOUT = 10.0
DEFAULT_READ_LIMIT = 16 * _MiB
MAX_READ_LIMIT = 128 * _MiB
MAX_COMPRESSION_THRESHOLD = 100 * _MiB
DEFAULT_CHANNEL_CAPACITY = 256
MAX_CHANNEL_CAPACITY = 10000
DEFAULT_THRESHOLD_CONTEXT_TAKEOVER = 128
DEFAULT_THRESHOLD_NO_CONTEXT = 512
DEFAULT_PING_INTERVAL = 20.0
DEFAULT_PING_TIMEOUT = 20.0
DEFAULT_MAX_REDIRECTS = 10
MAX_REDIRECTS = 100
PROXY_SCHEMES = ("http", "https", "socks4", "socks4a", "socks5", "socks5h")

_UNIT_NS = {
    "ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000,
    "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000,
}
_UNITS = r"(ns|us|\u00b5s|\u03bcs|ms|s|m|h)"
_DURATION_PART = r"([0-9]*)(?:\.([0-9]*))?" + _UNITS
# Every part starts with a digit or a dot: were the number optional, "msms...x" could be
# split into "ms" or "m" + "s" at every pair, and fullmatch would backtrack 2^n ways.
_DURATION = re.compile(r"([+-]?)((?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)" + _UNITS + r")+)")
_DURATION_PARTS = re.compile(_DURATION_PART)


def _invalid(name: str, problem: str) -> InvalidOption:
    return InvalidOption(f"option {name!r}: {problem}", option=name)


def _parse_go_duration(text: str, name: str) -> int:
    """Nanoseconds in a Go duration string (sign already allowed, units required)."""
    if text in ("0", "+0", "-0"):
        return 0
    shown = text if len(text) <= 40 else text[:37] + "..."
    m = _DURATION.fullmatch(text)
    if m is None:
        raise _invalid(name, f"invalid duration {shown!r} (examples: '300ms', '1.5s', '1m30s')")
    total = 0
    for whole, frac, unit in _DURATION_PARTS.findall(m.group(2)):
        if not whole and not frac:
            raise _invalid(name, f"invalid duration {shown!r}")
        scale = _UNIT_NS[unit]
        whole = whole.lstrip("0")
        if len(whole) > 19:
            # 10**19 ns is beyond Go's range whatever the unit; and int() refuses strings of
            # more than 4,300 digits (a ValueError, not InvalidOption: seen writing fuzz/options.py)
            raise _invalid(name, f"duration {shown!r} is too large")
        total += int(whole or "0") * scale
        frac = frac.rstrip("0")
        if frac:
            # Exact, truncated to whole nanoseconds like Go: with this precision the Decimal
            # product is exact, and Decimal has no limit on the digits of a string.
            with decimal.localcontext() as ctx:
                ctx.prec = len(frac) + 20
                total += int(decimal.Decimal("0." + frac) * scale)
        if total > _MAX_NS:
            raise _invalid(name, f"duration {shown!r} is too large")
    if m.group(1) == "-" and total:
        raise _invalid(name, f"duration {shown!r} is negative")
    return total


def parse_duration(value: Any, name: str) -> Optional[float]:
    """Seconds in ``value``, or None when it is 0 ("no timeout").

    An int or float is milliseconds, a str a Go duration (``"300ms"``, ``"1.5s"``,
    ``"1m30s"``, ``"2h"``, ``"10us"``, ``"10µs"``, ``"5ns"``, ``"0"``), a
    ``datetime.timedelta`` is taken as is. Raises InvalidOption, naming ``name``, for a
    negative, infinite, NaN or unparsable value or another type (bool included).
    """
    if isinstance(value, str):
        ns = _parse_go_duration(value, name)
        return ns / 1e9 if ns else None
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            ms = float(value)
        except (OverflowError, ValueError):
            raise _invalid(name, f"duration {value!r} is too large") from None
        if math.isnan(ms) or math.isinf(ms):
            raise _invalid(name, f"duration must be finite, got {value!r}")
        seconds = ms / 1000.0
    else:
        raise _invalid(
            name,
            "a duration must be milliseconds (int or float), a Go duration str such as "
            f"'5s', or a timedelta; got {type(value).__name__}",
        )
    if seconds < 0:
        raise _invalid(name, f"duration {value!r} is negative")
    if seconds * 1e9 > _MAX_NS:
        raise _invalid(name, f"duration {value!r} is too large")
    return seconds if seconds > 0 else None


@dataclass(frozen=True)
class Options:
    """Validated connection options; durations in seconds (None: no timeout)."""

    headers: Tuple[Tuple[str, str], ...] = ()
    protocols: Tuple[str, ...] = ()
    dial_timeout: Optional[float] = DEFAULT_DIAL_TIMEOUT
    read_timeout: Optional[float] = None
    write_timeout: Optional[float] = None
    compression: COMPRESSION = COMPRESSION.DISABLED
    compression_threshold: int = DEFAULT_THRESHOLD_CONTEXT_TAKEOVER
    read_limit: int = DEFAULT_READ_LIMIT
    channel_capacity: int = DEFAULT_CHANNEL_CAPACITY
    ssl: Optional[_ssl.SSLContext] = None
    close_timeout: Optional[float] = DEFAULT_CLOSE_TIMEOUT
    # DESIGN §6: keepalive, redirects, proxies
    ping_interval: Optional[float] = DEFAULT_PING_INTERVAL
    ping_timeout: Optional[float] = DEFAULT_PING_TIMEOUT
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    # None: from the environment; False: none; else the proxy URL (wsfast.proxy parses it)
    proxy: Union[None, bool, str] = field(default=None, repr=False)   # (may hold a password)
    proxy_ssl: Optional[_ssl.SSLContext] = None


OPTION_NAMES: Tuple[str, ...] = (
    "headers", "protocols", "dial_timeout", "read_timeout", "write_timeout", "compression",
    "compression_threshold", "read_limit", "channel_capacity", "ssl", "close_timeout",
    "ping_interval", "ping_timeout", "max_redirects", "proxy", "proxy_ssl",
)


def _as_int(value: Any, name: str, lo: int, hi: int) -> int:
    """An integer in [lo, hi]; integral floats are accepted (Lua numbers are floats)."""
    if isinstance(value, bool):
        raise _invalid(name, f"expected an integer, got {value!r}")
    if isinstance(value, numbers.Integral):
        n = int(value)
    elif isinstance(value, float) and value.is_integer():
        n = int(value)
    else:
        raise _invalid(name, f"expected an integer, got {value!r}")
    if not lo <= n <= hi:
        raise _invalid(name, f"{n} is out of range {lo}..{hi}")
    return n


def _parse_headers(value: Any) -> Tuple[Tuple[str, str], ...]:
    name = "headers"
    if isinstance(value, Mapping):
        items: Iterable[Any] = value.items()
    elif isinstance(value, (str, bytes, bytearray)) or not isinstance(value, Iterable):
        raise _invalid(name, f"expected a dict or a list of (name, value) pairs, "
                             f"got {type(value).__name__}")
    else:
        items = value
    out = []
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise _invalid(name, f"expected a (name, value) pair, got {item!r}")
        key, val = item
        problem = user_header_problem(key, val)  # the handshake's rule: one rule, one place
        if problem is not None:
            raise _invalid(name, problem)
        out.append((key, val))
    return tuple(out)


def _parse_protocols(value: Any) -> Tuple[str, ...]:
    name = "protocols"
    if not isinstance(value, (list, tuple)):
        raise _invalid(name, f"expected a list of str, got {type(value).__name__}")
    seen = set()
    for p in value:
        if not isinstance(p, str) or not TOKEN.fullmatch(p):
            raise _invalid(name, f"subprotocol {p!r} is not a non-empty HTTP token")
        if p in seen:
            raise _invalid(name, f"subprotocol {p!r} is listed twice")
        seen.add(p)
    return tuple(value)


def _parse_compression(value: Any) -> COMPRESSION:
    n = _as_int(value, "compression", 0, 2)
    return COMPRESSION(n)


def parse_options(options: Optional[Mapping[str, Any]] = None,
                  kwargs: Optional[Mapping[str, Any]] = None) -> Options:
    """Merge the options mapping and keyword options into a validated :class:`Options`.

    Raises InvalidOption for an ``options`` that is not a mapping, an unknown name, a
    name given both ways, a wrong type or an out-of-range value.
    """
    if options is None:
        options = {}
    elif not isinstance(options, Mapping):
        raise InvalidOption(
            f"options must be a dict of option names to values, got {type(options).__name__}")
    kwargs = kwargs or {}
    merged = {}
    for source in (options, kwargs):
        for key, value in source.items():
            if not isinstance(key, str):
                raise InvalidOption(f"option names must be str, got {key!r}")
            if key not in OPTION_NAMES:
                raise InvalidOption(
                    f"unknown option {key!r}; valid options: {', '.join(OPTION_NAMES)}",
                    option=key)
            if key in merged:
                raise _invalid(key, "given both in the options dict and as a keyword")
            merged[key] = value

    out = {}
    if "headers" in merged:
        out["headers"] = _parse_headers(merged["headers"])
    if "protocols" in merged:
        out["protocols"] = _parse_protocols(merged["protocols"])
    for key in ("dial_timeout", "read_timeout", "write_timeout", "ping_interval", "ping_timeout"):
        if key in merged:
            out[key] = parse_duration(merged[key], key)
    if "close_timeout" in merged:
        ct = parse_duration(merged["close_timeout"], "close_timeout")
        if ct is None:
            raise _invalid("close_timeout", "must be greater than 0 (close is always bounded)")
        out["close_timeout"] = ct
    compression = COMPRESSION.DISABLED
    if "compression" in merged:
        compression = out["compression"] = _parse_compression(merged["compression"])
    if "compression_threshold" in merged:
        out["compression_threshold"] = _as_int(
            merged["compression_threshold"], "compression_threshold",
            0, MAX_COMPRESSION_THRESHOLD)
    elif compression == COMPRESSION.NO_CONTEXT:
        out["compression_threshold"] = DEFAULT_THRESHOLD_NO_CONTEXT
    if "read_limit" in merged:
        out["read_limit"] = (
            _as_int(merged["read_limit"], "read_limit", 0, MAX_READ_LIMIT)
            or DEFAULT_READ_LIMIT)
    if "channel_capacity" in merged:
        out["channel_capacity"] = _as_int(
            merged["channel_capacity"], "channel_capacity", 1, MAX_CHANNEL_CAPACITY)
    for key in ("ssl", "proxy_ssl"):
        if key in merged:
            ctx = merged[key]
            if ctx is not None and not isinstance(ctx, _ssl.SSLContext):
                raise _invalid(key, f"expected an ssl.SSLContext or None, "
                                    f"got {type(ctx).__name__}")
            out[key] = ctx
    if "max_redirects" in merged:
        out["max_redirects"] = _as_int(merged["max_redirects"], "max_redirects", 0, MAX_REDIRECTS)
    if "proxy" in merged:
        out["proxy"] = _parse_proxy(merged["proxy"])
    return Options(**out)


def _parse_proxy(value: Any) -> Union[None, bool, str]:
    """None (the environment), False (no proxy) or a proxy URL with a known scheme and a
    host (wsfast.proxy parses the rest when it dials)."""
    if value is None or value is False:
        return value
    if not isinstance(value, str):
        raise _invalid("proxy", f"expected None, False or a proxy URL str, "
                                f"got {type(value).__name__}")
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in PROXY_SCHEMES:
        raise _invalid("proxy", "a proxy URL starts with " + ", ".join(
            s + "://" for s in PROXY_SCHEMES))
    if not rest.rpartition("@")[2].split("/")[0] or CTL.search(value) or " " in value:
        raise _invalid("proxy", "the proxy URL has no host, or has spaces or control characters")
    return value
