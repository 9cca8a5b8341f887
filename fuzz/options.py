"""Go durations and connection options.

``parse_duration`` is checked against a reference parser written here from Go's
grammar (``[-+]?([0-9]*(\\.[0-9]*)?unit)+``, ``"0"`` alone, units ns us µs μs ms s m h,
at most 2^63-1 ns, fractions truncated to the nanosecond, no negative values): both
accept the same strings with the same value, and a refusal is ``InvalidOption``.
``parse_options`` gets dicts of fuzzed names and values: ``InvalidOption`` or an
``Options``, nothing else.
"""

from __future__ import annotations

import datetime
import sys

from wsfast.errors import InvalidOption
from wsfast.options import OPTION_NAMES, parse_duration, parse_options

UNITS = {"ns": 1, "us": 10**3, "\u00b5s": 10**3, "\u03bcs": 10**3, "ms": 10**6, "s": 10**9,
         "m": 60 * 10**9, "h": 3600 * 10**9}
MAX_NS = 2**63 - 1

if hasattr(sys, "set_int_max_str_digits"):   # the reference converts any number of digits
    sys.set_int_max_str_digits(0)


class Finding(AssertionError):
    """An invariant does not hold."""


def reference_ns(text: str):
    """Nanoseconds, or None when Go's grammar (as wsfast documents it) refuses ``text``."""
    s = text
    neg = False
    if s[:1] in ("+", "-"):
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        return None
    total = 0
    i = 0
    while i < len(s):
        j = i
        while j < len(s) and "0" <= s[j] <= "9":
            j += 1
        whole = s[i:j]
        frac = ""
        if j < len(s) and s[j] == ".":
            k = j + 1
            while k < len(s) and "0" <= s[k] <= "9":
                k += 1
            frac = s[j + 1:k]
            j = k
        if not whole and not frac:
            return None
        for unit in ("ns", "us", "\u00b5s", "\u03bcs", "ms", "s", "m", "h"):
            # the longest unit that matches: "ms" before "m", "ns"/"us" before "s"
            if s.startswith(unit, j) and not (unit == "m" and s.startswith("ms", j)):
                break
        else:
            return None
        scale = UNITS[unit]
        # a whole part with more digits than any valid duration has is too large
        if len(whole.lstrip("0")) > 19:
            return "too large"
        total += int(whole or "0") * scale
        if frac:   # exact: big integers (the reference may be slow, not wrong)
            total += int(frac) * scale // 10 ** len(frac)
        if total > MAX_NS:
            return "too large"
        i = j + len(unit)
    if neg and total:
        return None
    return total


def _check_duration(text: str) -> None:
    try:
        got = parse_duration(text, "d")
    except InvalidOption:
        got = "invalid"
    want = reference_ns(text)
    if want is None or want == "too large":
        if got != "invalid":
            raise Finding(f"parse_duration({text!r:.200}) = {got!r}, the reference refuses it ({want})")
        return
    expect = want / 1e9 if want else None
    if got != expect:
        raise Finding(f"parse_duration({text!r:.200}) = {got!r}, the reference says {expect!r}")


def _value(kind: str, text: str):
    if kind == "i":
        try:
            return int(text[:4000])
        except ValueError:
            return len(text)
    if kind == "f":
        try:
            return float(text)
        except ValueError:
            return float(len(text)) / 7
    if kind == "b":
        return text == "1"
    if kind == "n":
        return None
    if kind == "t":
        return datetime.timedelta(microseconds=len(text) * 1000 - 5000)
    if kind == "d":   # a dict of headers: k1:v1|k2:v2
        return dict(item.partition(":")[::2] for item in text.split("|"))
    if kind == "l":   # a list: a|b|c
        return text.split("|")
    if kind == "p":   # a list of pairs: k1:v1|k2:v2
        return [tuple(item.partition(":")[::2]) for item in text.split("|")]
    return text


def one_input(data: bytes) -> None:
    """The input is UTF-8 text (bad bytes become lone surrogates), one item a line: a
    duration, then options ``name=<kind>value`` (kind: s str, i int, f float, b bool, n
    None, t timedelta, d dict, l list, p pairs); a name prefixed with ``+`` is a keyword
    argument rather than an options dict entry."""
    lines = data.decode("utf-8", "surrogateescape").split("\n")
    _check_duration(lines[0])
    options, kwargs = {}, {}
    for line in lines[1:8]:
        name, _, value = line.partition("=")
        where = options
        if name.startswith("+"):
            where, name = kwargs, name[1:]
        if name.isascii() and name.isdigit() and int(name) < len(OPTION_NAMES):
            name = OPTION_NAMES[int(name)]
        where[name] = _value(value[:1], value[1:])
    try:
        parse_options(options, kwargs)
    except InvalidOption:
        pass
