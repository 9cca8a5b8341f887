"""Reconnect decisions (DESIGN §6), sans-I/O: no sockets, no threads, no sleeping, no clock.

:func:`split_options` separates the reconnect options (``backoff_min``, ``backoff_max``,
``backoff_factor``, ``max_attempts``) from :func:`wsfast.connect`'s and validates both;
:class:`Backoff` is told what happened ("an attempt failed with this error", "an attempt
connected", "a connection lived from t0 to t1") and answers whether to retry and how long
to wait first. The sync iterator (:mod:`wsfast.reconnect`) and the asyncio front end
drive the same machine; each supplies its own clock and waiting.
"""

from __future__ import annotations

import math
import numbers
import random as _random
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from .errors import Error, HandshakeError, InvalidOption
from .options import OPTION_NAMES, Options, parse_duration, parse_options

__all__ = [
    "RECONNECT_NAMES", "SHORT_LIVED", "ReconnectOptions", "parse_reconnect_options",
    "split_options", "retry_after", "Backoff",
]

RECONNECT_NAMES: Tuple[str, ...] = ("backoff_min", "backoff_max", "backoff_factor", "max_attempts")

DEFAULT_BACKOFF_MIN = 0.5
DEFAULT_BACKOFF_MAX = 30.0
DEFAULT_BACKOFF_FACTOR = 2.0

#: a connection that stayed open this many seconds or more resets the backoff
SHORT_LIVED = 10.0

_DELTA_SECONDS = re.compile(r"[0-9]+")   # RFC 9110 §10.2.3 delay-seconds; an HTTP-date is ignored


def _invalid(name: str, problem: str) -> InvalidOption:
    return InvalidOption(f"option {name!r}: {problem}", option=name)


@dataclass(frozen=True)
class ReconnectOptions:
    """Validated reconnect options; durations in seconds."""

    backoff_min: float = DEFAULT_BACKOFF_MIN
    backoff_max: float = DEFAULT_BACKOFF_MAX
    backoff_factor: float = DEFAULT_BACKOFF_FACTOR
    max_attempts: Optional[int] = None


def parse_reconnect_options(values: Mapping[str, Any]) -> ReconnectOptions:
    """A :class:`ReconnectOptions` from ``values`` (only reconnect names; absent: default).

    ``backoff_min`` and ``backoff_max`` are durations (:func:`wsfast.options.parse_duration`;
    ``backoff_min`` may be 0, ``backoff_max`` may not), ``backoff_min <= backoff_max``;
    ``backoff_factor`` a real number >= 1; ``max_attempts`` None or an integer >= 1.
    Raises InvalidOption naming the option.
    """
    out: Dict[str, Any] = {}
    if "backoff_min" in values:
        out["backoff_min"] = parse_duration(values["backoff_min"], "backoff_min") or 0.0
    if "backoff_max" in values:
        top = parse_duration(values["backoff_max"], "backoff_max")
        if top is None:
            raise _invalid("backoff_max", "must be greater than 0")
        out["backoff_max"] = top
    low = out.get("backoff_min", DEFAULT_BACKOFF_MIN)
    high = out.get("backoff_max", DEFAULT_BACKOFF_MAX)
    if low > high:
        raise _invalid("backoff_min", f"{low:g} s is more than backoff_max ({high:g} s)")
    if "backoff_factor" in values:
        factor = values["backoff_factor"]
        if isinstance(factor, bool) or not isinstance(factor, numbers.Real):
            raise _invalid("backoff_factor", f"expected a number >= 1, got {factor!r}")
        try:
            factor = float(factor)
        except (OverflowError, ValueError):
            raise _invalid("backoff_factor", f"{factor!r} is too large") from None
        if math.isnan(factor) or math.isinf(factor) or factor < 1:
            raise _invalid("backoff_factor", f"expected a finite number >= 1, got {factor!r}")
        out["backoff_factor"] = factor
    if "max_attempts" in values:
        n = values["max_attempts"]
        if n is not None:
            if isinstance(n, bool) or not (
                    isinstance(n, numbers.Integral) or isinstance(n, float) and n.is_integer()):
                raise _invalid("max_attempts", f"expected None or an integer >= 1, got {n!r}")
            n = int(n)
            if n < 1:
                raise _invalid("max_attempts", f"expected None or an integer >= 1, got {n}")
        out["max_attempts"] = n
    return ReconnectOptions(**out)


def split_options(options: Optional[Mapping[str, Any]] = None,
                  kwargs: Optional[Mapping[str, Any]] = None) -> Tuple[Options, ReconnectOptions]:
    """``reconnecting()``'s options dict and keywords → (connect options, reconnect options).

    The reconnect names are taken out and checked here; the rest goes to
    :func:`wsfast.options.parse_options`. Raises InvalidOption for an ``options`` that is
    not a mapping, a name that is not a str, an unknown name, a name given both in the
    dict and as a keyword, or a bad value.
    """
    if options is None:
        options = {}
    elif not isinstance(options, Mapping):
        raise InvalidOption(
            f"options must be a dict of option names to values, got {type(options).__name__}")
    kwargs = kwargs or {}
    reconnect: Dict[str, Any] = {}
    rest: Tuple[Dict[str, Any], Dict[str, Any]] = ({}, {})
    for source, keep in zip((options, kwargs), rest):
        for key, value in source.items():
            if not isinstance(key, str):
                raise InvalidOption(f"option names must be str, got {key!r}")
            if key in RECONNECT_NAMES:
                if key in reconnect:
                    raise _invalid(key, "given both in the options dict and as a keyword")
                reconnect[key] = value
            elif key in OPTION_NAMES:
                keep[key] = value
            else:
                raise InvalidOption(
                    f"unknown option {key!r}; valid options: "
                    f"{', '.join(OPTION_NAMES + RECONNECT_NAMES)}", option=key)
    return parse_options(*rest), parse_reconnect_options(reconnect)


def retry_after(err: BaseException) -> Optional[float]:
    """Seconds in the ``Retry-After`` of a 429 or 503 HandshakeError, else None.

    Only delay-seconds count (the first such header); an HTTP-date or junk is ignored.
    """
    if not isinstance(err, HandshakeError) or err.status not in (429, 503):
        return None
    for name, value in err.details.get("headers") or ():
        if isinstance(name, str) and name.lower() == "retry-after" and isinstance(value, str):
            value = value.strip()
            if _DELTA_SECONDS.fullmatch(value):
                return float(int(value))
    return None


class Backoff:
    """When to reconnect, and after how long (DESIGN §6); one per reconnecting loop.

    Feed it events, in order, and ask :meth:`delay` before each attempt:

    * :meth:`failed` (an attempt raised ``err``): True to retry, False to raise ``err``
      (it is not ``retryable is True``, or ``max_attempts`` consecutive attempts failed);
    * :meth:`connected` (an attempt succeeded): ends the run of failed attempts;
    * :meth:`ended` (the connection lived from ``opened`` to ``closed``, in seconds of one
      clock): under :data:`SHORT_LIVED` seconds it counts as a failure for the delay
      (not for ``max_attempts``); otherwise the next attempt is immediate again.

    The delay after ``n`` consecutive failures is uniform in ``[0, d]`` ("full jitter"),
    ``d = min(backoff_max, backoff_min * backoff_factor ** (n - 1))``; 0 when ``n`` is 0
    (the first attempt, and the first after a connection that lived long enough). A 429 or
    503 refusal's ``Retry-After`` makes the next delay at least that, capped at
    ``backoff_max``. ``random`` (a callable returning a float in [0, 1)) is the jitter
    source.
    """

    def __init__(self, options: Optional[ReconnectOptions] = None,
                 random: Callable[[], float] = _random.random) -> None:
        self.options = options if options is not None else ReconnectOptions()
        self._random = random
        self.failures = 0            # consecutive failures, for the delay
        self.failed_attempts = 0     # consecutive failed attempts, for max_attempts
        self._retry_after: Optional[float] = None

    def ceiling(self) -> float:
        """``d``, the upper bound of the next delay's jitter (0 when none is due)."""
        n = self.failures
        o = self.options
        if n <= 0 or o.backoff_min <= 0:
            return 0.0
        try:
            d = o.backoff_min * o.backoff_factor ** (n - 1)
        except OverflowError:
            return o.backoff_max
        return min(d, o.backoff_max)

    def delay(self) -> float:
        """Seconds to wait before the next attempt (0: at once). Draws the jitter."""
        d = self.ceiling()
        wait = self._random() * d if d > 0 else 0.0
        if self._retry_after is not None:
            wait = max(wait, min(self._retry_after, self.options.backoff_max))
        return wait

    def failed(self, err: BaseException) -> bool:
        """An attempt raised ``err``: True to retry after :meth:`delay`, False to raise it."""
        if not isinstance(err, Error) or err.retryable is not True:
            return False
        self.failed_attempts += 1
        limit = self.options.max_attempts
        if limit is not None and self.failed_attempts >= limit:
            return False
        self.failures += 1
        self._retry_after = retry_after(err)
        return True

    def connected(self) -> None:
        """An attempt succeeded: the run of failed attempts (for ``max_attempts``) ends."""
        self.failed_attempts = 0
        self._retry_after = None

    def ended(self, opened: float, closed: float) -> None:
        """The connection yielded at ``opened`` ended at ``closed`` (seconds, one clock)."""
        self._retry_after = None
        if closed - opened >= SHORT_LIVED:
            self.failures = 0
        else:
            self.failures += 1
