"""Go-style channels, ``select`` and timers inside one asyncio event loop (DESIGN §1, §7).

Design: cancellation loses nothing, by construction.

* A value moves only inside a call made by the task that returns it. ``send`` appends
  to the channel's buffer in the sender's own call; ``receive`` pops from it in the
  receiver's own call. A task that must wait parks a waiter (a Future) and is only
  ever *woken*: when it runs again it retries its operation itself. So a task
  cancelled while parked, or woken and cancelled before it ran, has moved nothing: it
  removes its waiter, passes the wake-up on to the next waiter if the reason for it is
  still there, and re-raises.
* A send that finds a receiver parked appends the value to the buffer (beyond the
  capacity if need be: at capacity 0 the buffer then holds it for that receiver) and
  wakes it; nothing is handed into a waiter. A receiver never takes a value out of a
  parked sender: a receiver that parks wakes a blocked sender instead, which hands over
  when it runs. If the woken receiver is cancelled, its value simply stays first in line.
  The price, at capacity 0 only: a blocked sender hands over one loop step after a
  receiver starts waiting, and a non-blocking receive (``try_receive``, ``select`` with
  ``default``) does not see a blocked sender (Go's would take its value).
* ``select`` tries its cases in random order (Go's fairness); if none is ready it parks
  one waiter per case, all sharing one Future, so the first channel to wake it wins: it
  retries that case first (Go: the first case to become ready), and the others, in
  random order, only if that one is no longer ready.
* Hot path: ``receive`` on a channel holding values is a ``popleft`` in a coroutine that
  never suspends (no Future, no loop round trip); ``async for`` is a compiled iterator
  (``_chaniter.Values``: a buffered value is returned from ``am_send`` with no coroutine,
  frame or Future; the pure-Python twin is the async generator ``_values``). A take
  does more than the pop only at ``_wake_at`` (a parked sender, or a refused source's
  low-water mark). ``offer`` is the batch hand-off of a protocol callback.

Not thread-safe: use a channel from its event loop's thread only (feed it from another
thread through ``loop.call_soon_threadsafe``).
"""

from __future__ import annotations

import asyncio
import numbers
import os
import random
import time
import typing
import weakref
from collections import deque
from typing import Any, AsyncIterator, List, Optional, Sequence, Tuple

from ..channels import Selected
from ..errors import ChannelClosed, InvalidOption
from ..options import parse_duration

__all__ = ["Channel", "Selected", "Source", "select", "after"]

_get_running_loop = asyncio.get_running_loop
_random = random.random
_CLOSED: Tuple[Any, bool] = (None, False)
_DEFAULT = Selected(None, None, False, True)

# The compiled ``async for`` iterator (wsfast/asyncio/_chaniter.pyx); without it, or with
# WSFAST_PURE_PYTHON=1, the async generator ``Channel._values`` does the same in Python.
_CValues: Any = None
if os.environ.get("WSFAST_PURE_PYTHON", "") in ("", "0"):
    try:
        from ._chaniter import Values as _CValues
    except ImportError:   # not built (no compiler, WSFAST_NO_EXTENSIONS=1)
        pass
ITER_COMPILED = _CValues is not None


class Source(typing.Protocol):
    """What feeds a channel through [`offer`][wsfast.asyncio.Channel.offer] and
    [`set_source`][wsfast.asyncio.Channel.set_source].

    Only ``resume`` is called (an object with ``wsfast.channels.Source``'s interface fits:
    its ``fetch`` is never called, as a receiver in an event loop cannot read for itself).
    """

    def resume(self) -> None:
        """Values an ``offer`` left out may now fit, or the channel was closed.

        Called when receivers drained the channel to half its capacity, or a receiver waits on
        an empty one, or on ``close()`` (the next ``offer`` raises ChannelClosed). Called
        synchronously from the receiving task's call or from ``close()``; it may call ``offer``
        at once. Must not raise.
        """


class _Waiter:
    """A parked task: ``fut`` gets the waiter itself as result when it is woken."""

    __slots__ = ("fut", "case")

    def __init__(self, fut: asyncio.Future, case: int = -1) -> None:
        self.fut = fut
        self.case = case   # index of the select case, -1 for a plain send/receive


def _wake(q: deque) -> bool:
    """Wake the first live waiter of ``q`` (popping it and any stale ones)."""
    while q:
        w = q.popleft()
        fut = w.fut
        if not fut.done():
            fut.set_result(w)
            return True
    return False


def _live(q: deque) -> bool:
    """True when ``q`` holds a waiter that can still be woken (stale ones are dropped)."""
    while q:
        if not q[0].fut.done():
            return True
        q.popleft()
    return False


def _unpark(w: _Waiter, q: deque) -> bool:
    """Take back a waiter whose task was interrupted; True when it had been woken."""
    fut = w.fut
    if not fut.done():
        fut.cancel()
    if fut.cancelled():
        try:
            q.remove(w)
        except ValueError:
            pass   # dropped as stale by a waker
        return False
    return True


class Channel:
    """A Go channel for one asyncio event loop: FIFO, bounded by ``capacity``, closable.

    After ``close()`` buffered values are still delivered, then ``receive`` returns
    ``(None, False)``. ``async for v in ch:`` receives until closed and drained;
    ``len(ch)`` is the number of values buffered now; a channel is always truthy. A value
    moves only inside a call of the task that returns it, so a cancelled task has moved
    nothing.

    Args:
        capacity: The bound, an int >= 0 (0: rendezvous: a blocked sender hands its value
            over one loop step after a receiver starts waiting).

    Raises:
        InvalidOption: ``capacity`` is not an int >= 0.
    """

    __slots__ = ("_buf", "_cap", "_low", "_closed", "_receivers", "_senders", "_refused",
                 "_source", "_wake_at", "__weakref__")

    def __init__(self, capacity: int = 0) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, numbers.Integral) \
                or capacity < 0:
            raise InvalidOption(f"channel capacity must be an int >= 0, got {capacity!r}")
        self._buf: deque = deque()
        self._cap = int(capacity)
        self._low = self._cap // 2     # a refused source is resumed at this fill level
        self._closed = False
        self._receivers: deque = deque()   # parked receivers (the buffer was empty)
        self._senders: deque = deque()   # parked senders (no room, no receiver)
        self._refused = False          # an offer() left values out: resume the source
        self._source: Optional[Source] = None
        # A take that leaves len(buffer) <= _wake_at calls _took(): -1 when nothing
        # waits for room, capacity - 1 with a parked sender, the low-water mark with a
        # refused source. May be stale-high (a needless _took), never stale-low.
        self._wake_at = -1

    # -- properties ---------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """The buffer size given at creation (0: rendezvous)."""
        return self._cap

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called (buffered values may remain)."""
        return self._closed

    def __len__(self) -> int:
        return len(self._buf)

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<wsfast.asyncio.Channel capacity={self._cap} len={len(self._buf)}{state}>"

    # -- receive ------------------------------------------------------------------------

    async def receive(self) -> Tuple[Any, bool]:
        """The next value as ``(value, True)``; ``(None, False)`` once closed and drained.

        Waits while the channel is empty; completes without suspending when a value is
        buffered. Cancelled while waiting, it takes nothing. Raises nothing (cancellation
        aside).
        """
        buf = self._buf
        try:
            value = buf.popleft()
        except IndexError:
            return await self._receive_wait()
        if len(buf) <= self._wake_at:
            self._took()
        return value, True

    def try_receive(self) -> Optional[Tuple[Any, bool]]:
        """``receive`` without waiting; raises nothing.

        At capacity 0 a blocked sender is not ready for it (only a waiting receiver lets a
        sender hand over).

        Returns:
            ``(value, True)``; ``(None, False)`` when closed and drained; None when nothing is
                ready.
        """
        buf = self._buf
        if buf:
            value = buf.popleft()
            if len(buf) <= self._wake_at:
                self._took()
            return value, True
        if self._closed:
            return _CLOSED
        return None

    async def _receive_wait(self) -> Tuple[Any, bool]:
        recvq = self._receivers
        loop = None
        again = False
        while True:
            r = self.try_receive()
            if r is not None:
                return r
            if loop is None:
                loop = _get_running_loop()
            fut = loop.create_future()
            w = _Waiter(fut)
            if again:
                recvq.appendleft(w)   # woken first, but another task took the value
            else:
                recvq.append(w)
            self._receiver_parked()
            try:
                await fut
            except BaseException:
                if _unpark(w, recvq):
                    self._pass_on(False)
                raise
            again = True

    def _receiver_parked(self) -> None:
        # A receiver waits now: a blocked sender may hand over (capacity 0), a refused
        # source may offer (its offer can wake the receiver at once).
        if self._senders:
            _wake(self._senders)
        if self._refused:
            self._resume()

    def __aiter__(self) -> AsyncIterator[Any]:
        """``async for v in ch``: values until the channel is closed and drained; raises nothing.

        Each value is taken only when the loop gets it; ``break`` or a cancellation leaves the
        rest in the channel. Compiled when the extension is built: a value that is buffered is
        returned without a coroutine, frame or Future.
        """
        if _CValues is not None:
            return _CValues(self, self._buf)
        return self._values()

    async def _values(self) -> AsyncIterator[Any]:
        # The pure-Python twin of _chaniter.Values.
        buf = self._buf   # the deque is never replaced
        pop = buf.popleft
        while True:
            try:
                value = pop()
            except IndexError:
                value, ok = await self._receive_wait()
                if not ok:
                    return
            else:
                wake_at = self._wake_at
                if wake_at >= 0 and len(buf) <= wake_at:
                    self._took()
            yield value

    def _took(self) -> None:
        # A take left len(buffer) <= _wake_at: let a parked sender into the room, resume a
        # refused source at the low-water mark.
        n = len(self._buf)
        if self._senders and n < self._cap:
            _wake(self._senders)
        if self._refused and n <= self._low and n < self._cap:
            self._resume()   # (capacity 0: only a waiting receiver is room)
        self._rewatch()

    def _rewatch(self) -> None:
        """Recompute _wake_at from the parked senders and the refused source."""
        at = -1
        if self._senders:
            at = self._cap - 1
        if self._refused:
            low = self._low if self._low < self._cap else self._cap - 1
            if low > at:
                at = low
        self._wake_at = at

    def _sender_parked(self) -> None:
        if self._wake_at < self._cap - 1:
            self._wake_at = self._cap - 1

    # -- send ---------------------------------------------------------------------------

    async def send(self, value: Any) -> bool:
        """Send ``value``, waiting while the channel is full (capacity 0: until a receiver waits).

        Cancelled while waiting, it sends nothing.

        Args:
            value: Any object.

        Returns:
            True once it is buffered or handed to a waiting receiver.

        Raises:
            ChannelClosed: The channel is closed, also when it is closed while this waits.
        """
        if self.try_send(value):
            return True
        return await self._send_wait(value)

    def try_send(self, value: Any) -> bool:
        """``send`` without waiting.

        Args:
            value: Any object.

        Returns:
            True when sent; False when the channel is full and no receiver waits.

        Raises:
            ChannelClosed: The channel is closed.
        """
        if self._closed:
            raise ChannelClosed("send on a closed channel")
        buf = self._buf
        recvq = self._receivers
        while recvq:
            w = recvq.popleft()
            fut = w.fut
            if not fut.done():
                buf.append(value)
                fut.set_result(w)
                return True
        if len(buf) < self._cap:
            buf.append(value)
            return True
        return False

    async def _send_wait(self, value: Any) -> bool:
        sendq = self._senders
        loop = _get_running_loop()
        again = False
        while True:
            fut = loop.create_future()
            w = _Waiter(fut)
            if again:
                sendq.appendleft(w)
            else:
                sendq.append(w)
            self._sender_parked()
            try:
                await fut
            except BaseException:
                if _unpark(w, sendq):
                    self._pass_on(True)
                raise
            if self.try_send(value):
                return True
            again = True

    def _join(self, w: _Waiter, send_side: bool) -> None:
        """A select's waiter joins the queue of its side (select then calls
        _receiver_parked / _sender_parked, in the order it needs)."""
        (self._senders if send_side else self._receivers).append(w)

    def _leave(self, w: _Waiter, send_side: bool) -> None:
        """A select's waiter leaves the queue of its side, if it is still there."""
        try:
            (self._senders if send_side else self._receivers).remove(w)
        except ValueError:
            pass   # popped by the channel that woke it, or dropped as stale

    def _pass_on(self, send_side: bool) -> None:
        """A woken task did not use its wake-up: give it to the next waiter if what
        woke it (a value, room, a waiting receiver) is still there."""
        if send_side:
            if self._senders and (self._closed or len(self._buf) < self._cap
                                or _live(self._receivers)):
                _wake(self._senders)
        elif self._receivers and (self._buf or self._closed):
            _wake(self._receivers)

    def close(self) -> None:
        """Close the channel (idempotent); raises nothing.

        Wakes every waiting receiver (they get the buffered values, then ``(None, False)``) and
        sender (they raise ChannelClosed).
        """
        if self._closed:
            return
        self._closed = True
        for q in (self._receivers, self._senders):
            while q:
                _wake(q)
        if self._refused:
            self._resume()

    # -- sources ------------------------------------------------------------------------

    def set_source(self, source: Optional[Source]) -> None:
        """Attach the [`Source`][wsfast.asyncio.channels.Source] that feeds this channel (None detaches it).

        It is ``resume``d when an ``offer`` it made was cut short and room is back. A new
        source replaces the old one. Raises nothing.
        """
        self._source = source
        self._refused = False
        self._rewatch()

    def offer(self, values: Sequence[Any], start: int = 0, *, overflow: bool = False) -> int:
        """Send ``values[start:]`` in order without waiting; return the index reached.

        Waiting receivers get one value each, then the buffer takes what fits in its capacity.
        When some are left out the source is resumed once receivers drain the channel to half
        its capacity (or a receiver waits on it empty), or when it is closed. Synchronous: for
        a protocol callback in the loop's thread.

        Args:
            values: The values to send.
            start: The index of the first one.
            overflow: Place everything, beyond the capacity.

        Raises:
            ChannelClosed: The channel is closed (nothing is sent then).
        """
        if self._closed:
            raise ChannelClosed("send on a closed channel")
        n = len(values)
        i = start
        buf = self._buf
        room = self._cap - len(buf)
        recvq = self._receivers
        while recvq and i < n:
            w = recvq.popleft()
            fut = w.fut
            if not fut.done():
                buf.append(values[i])
                i += 1
                fut.set_result(w)
        if i < n:
            if overflow:
                room = n - i
            if room > 0:
                j = i + room if i + room < n else n
                buf.extend(values[i:j] if i or j != n else values)
                i = j
            if i < n:
                self._refused = True
                self._rewatch()
        return i

    def _resume(self) -> None:
        self._refused = False
        source = self._source
        if source is not None:
            source.resume()

    # -- cases --------------------------------------------------------------------------

    def case_send(self, value: Any) -> _Case:
        """A [`select`][wsfast.asyncio.select] case sending ``value`` on this channel; raises nothing."""
        return _Case(self, True, value)

    def case_receive(self) -> _Case:
        """A [`select`][wsfast.asyncio.select] case receiving from this channel; raises nothing."""
        return _Case(self, False, None)


class _Case:
    """One case of a ``select``: a send of ``value`` or a receive, on ``channel``."""

    __slots__ = ("channel", "is_send", "value")

    def __init__(self, channel: Channel, is_send: bool, value: Any) -> None:
        self.channel = channel
        self.is_send = is_send
        self.value = value

    def __repr__(self) -> str:
        kind = f"send {self.value!r}" if self.is_send else "receive"
        return f"<case {kind} on {self.channel!r}>"


def _try_case(c: _Case) -> Optional[Selected]:
    ch = c.channel
    if c.is_send:
        if ch.try_send(c.value):
            return Selected(ch, None, True, False)
        return None
    r = ch.try_receive()
    if r is None:
        return None
    return Selected(ch, r[0], r[1], False)


def _poll(cases: Tuple[_Case, ...]) -> Optional[Selected]:
    """Try every case once, in random order (Go's fairness)."""
    n = len(cases)
    if n == 1:
        return _try_case(cases[0])
    if n == 2:
        a, b = cases if _random() < 0.5 else (cases[1], cases[0])
        r = _try_case(a)
        return r if r is not None else _try_case(b)
    order = list(cases)
    random.shuffle(order)
    for c in order:
        r = _try_case(c)
        if r is not None:
            return r
    return None


async def select(*cases: _Case, default: bool = False) -> Selected:
    """Wait until one case can proceed, perform it and return a [`Selected`][wsfast.asyncio.Selected].

    When several are ready one is chosen at random. A receive case on a closed, drained
    channel is ready, with ``ok=False``. Cancelled while waiting, no case has happened.

    Args:
        *cases: From ``ch.case_send(v)`` and ``ch.case_receive()`` of ``wsfast.asyncio``
            channels; a single list or tuple of cases is accepted too.
        default: If no case is ready, return ``Selected(None, None, False, True)`` at once.

    Raises:
        ChannelClosed: The chosen send case's channel is closed.
        InvalidOption: No cases and no default, or something that is not a
            ``wsfast.asyncio`` case.
    """
    if len(cases) == 1 and isinstance(cases[0], (list, tuple)):
        cases = tuple(cases[0])
    for c in cases:
        if type(c) is not _Case:
            raise InvalidOption("select takes wsfast.asyncio cases (case_send/case_receive), "
                                f"got {c!r}")
    if not cases:
        if default:
            return _DEFAULT
        raise InvalidOption("select needs at least one case (or default=True)")
    r = _poll(cases)
    if r is not None:
        return r
    if default:
        return _DEFAULT
    return await _select_wait(cases)


async def _select_wait(cases: Tuple[_Case, ...]) -> Selected:
    loop = _get_running_loop()
    while True:
        fut = loop.create_future()
        waiters: List[_Waiter] = []
        # Receive cases first: a channel may wake a blocked sender for us, or a source
        # may offer at once. Our send cases are not queued yet, so we never wake ourselves.
        for i, c in enumerate(cases):
            if not c.is_send:
                w = _Waiter(fut, i)
                c.channel._join(w, False)
                waiters.append(w)
        for w in waiters:
            if fut.done():
                break
            cases[w.case].channel._receiver_parked()
        for i, c in enumerate(cases):
            if c.is_send:
                ch = c.channel
                w = _Waiter(fut, i)
                ch._join(w, True)
                ch._sender_parked()
                waiters.append(w)
        try:
            await fut
        except BaseException:
            _withdraw(cases, waiters)
            if not fut.done():
                fut.cancel()
            if not fut.cancelled():
                c = cases[fut.result().case]
                c.channel._pass_on(c.is_send)
            raise
        _withdraw(cases, waiters)
        # The waking case first: another case wins only when that one is no longer
        # ready, so there is no wake-up left to pass on.
        r = _try_case(cases[fut.result().case])
        if r is None:
            r = _poll(cases)
        if r is not None:
            return r


def _withdraw(cases: Tuple[_Case, ...], waiters: List[_Waiter]) -> None:
    """Remove a select's waiters from the queues they are still in."""
    for w in waiters:
        c = cases[w.case]
        c.channel._leave(w, c.is_send)


# -- timers -------------------------------------------------------------------------------


class _Timer(Channel):
    """The channel of :func:`after`; dropping it cancels its pending loop timer."""

    __slots__ = ("_handle", "_loop")

    def __init__(self) -> None:
        self._handle: Optional[asyncio.TimerHandle] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        super().__init__(1)

    def __del__(self) -> None:
        handle = self._handle
        if handle is None:
            return
        try:
            loop = self._loop
            if asyncio._get_running_loop() is loop:
                handle.cancel()
            elif loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(handle.cancel)
        except Exception:   # interpreter shutdown, a loop closing meanwhile
            pass


def _fire(ref: weakref.ref) -> None:
    ch = ref()
    if ch is None:
        return
    ch._handle = None
    try:
        ch.try_send(time.time())   # never waits (a user may have filled the channel)
    except ChannelClosed:
        pass


def after(duration: Any) -> Channel:
    """A channel that receives one value, ``time.time()`` at firing, after ``duration``.

    The channel (capacity 1) is never closed. Uses ``loop.call_later`` of the running loop
    (no task or thread per timer); a timer whose channel is dropped is cancelled.

    Args:
        duration: Milliseconds (int or float), a Go duration str (``"30s"``) or a
            ``timedelta``; 0 fires at once.

    Raises:
        InvalidOption: A bad duration (negative, infinite, unparsable, a bool).
        RuntimeError: No running event loop (except for 0).
    """
    seconds = parse_duration(duration, "duration")
    if seconds is None:
        ch = Channel(1)
        ch.try_send(time.time())   # (empty, capacity 1: always taken)
        return ch
    loop = _get_running_loop()
    timer = _Timer()
    timer._loop = loop
    timer._handle = loop.call_later(seconds, _fire, weakref.ref(timer))
    return timer
