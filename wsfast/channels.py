"""Go-style channels, ``select`` and timers for plain threads.

Design (Go's runtime, transposed):

* Each :class:`Channel` has one ``threading.Lock`` guarding a deque buffer and two
  queues of parked waiters (receivers, senders). The common case -- ``receive`` on a
  channel holding values -- is one lock round and a ``popleft``.
* A blocked operation parks on a waiter's own lock (acquired at creation; whoever
  completes the operation hands over the value, then releases it). A waiter of a plain
  ``send``/``receive`` belongs to one queue, so popping it under the channel lock makes
  the popper its only owner. The waiters of one ``select`` sit in several queues and
  share a *claim* lock: a thread that wants to complete one of them must win
  ``claim.acquire(False)`` first, so exactly one case of a select ever completes.
* ``select`` locks all its channels (in ``id`` order, so no two selects deadlock), tries
  the cases in random order (Go's fairness), and only if none is ready enqueues one
  waiter per case before it parks. Holding every lock while enqueueing means a select
  never matches with itself.
* :func:`after` timers share one daemon thread and a heap; pending timers whose channel
  nobody references any more are dropped.

Feeding a channel from a message source (the WebSocket connection's reader now, a
reconnecting stream later): the source calls :meth:`Channel.offer`, which never blocks
and takes what fits; when values were left out, the channel calls the source's
``resume()`` once receivers have drained it to half its capacity (or it was closed),
and the source offers them again. A receiver that finds the channel empty first asks
the source's ``fetch(timeout)`` to read values in its own thread (no hand-off between
threads for a consumer that keeps up). See :class:`Source`.
"""

from __future__ import annotations

import heapq
import itertools
import math
import numbers
import os
import random
import threading
import time
import typing
import weakref
from collections import deque
from typing import Any, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from .errors import ChannelClosed, InvalidOption, Timeout
from .options import parse_duration

__all__ = ["Channel", "Selected", "Source", "select", "after"]

_allocate_lock = threading.Lock
_random = random.random
_TIMEOUT_MAX = threading.TIMEOUT_MAX
_EMPTY = object()


def _check_timeout(timeout: Any) -> float:
    """A timeout in seconds, clamped to what ``Lock.acquire`` accepts."""
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise InvalidOption(f"timeout must be a number of seconds or None, got {timeout!r}")
    t = float(timeout)
    if math.isnan(t) or t < 0:
        raise InvalidOption(f"timeout must be >= 0 seconds, got {timeout!r}")
    return t if t < _TIMEOUT_MAX else _TIMEOUT_MAX


class _SelectState:
    """Shared by the waiters of one blocked ``select``."""

    __slots__ = ("claim", "park", "fired")

    def __init__(self) -> None:
        self.claim = _allocate_lock()
        self.park = _allocate_lock()
        self.park.acquire()
        self.fired: Optional[_Waiter] = None


class _Waiter:
    """A parked send or receive; ``value``/``ok`` are filled in by whoever completes it."""

    __slots__ = ("park", "sel", "value", "ok", "case", "done", "batch")

    def __init__(self, park: Any, sel: Optional[_SelectState] = None,
                 value: Any = None, case: int = -1) -> None:
        self.park = park
        self.sel = sel
        self.value = value
        self.ok = False
        self.case = case
        self.done = False   # set by the completer after value/ok, before it releases park
        self.batch = False  # a channel iterator: it may take a _Batch of values at once


class Source(typing.Protocol):
    """What feeds a channel through [`offer`][wsfast.Channel.offer] and
    [`set_source`][wsfast.Channel.set_source]: the connection's reader, a reconnecting
    stream, or any code; the interface knows nothing of WebSockets.

    Both methods are called by the channel, never with a value in hand, and must not
    raise.
    """

    def fetch(self, timeout: Optional[float]) -> bool:
        """A receiver found the channel empty and is about to wait: produce values now.

        The source offers them in the receiver's thread (``overflow=True`` is allowed
        here: the receiver takes them at once), so a consumer that keeps up reads the
        socket itself, with no hand-off between threads. Called without the channel's
        lock; the time it takes counts against the receiver's timeout. Must not raise.

        Args:
            timeout: The longest it may wait for values, in seconds (None: the receiver
                has no limit, the source picks its own bound; 0: do not wait).

        Returns:
            True when it offered some.
        """

    def resume(self) -> None:
        """Values an ``offer`` left out may now fit, or the channel was closed.

        Called when receivers drained the channel to half its capacity, or on ``close()``
        (the next offer raises ChannelClosed). Called with the channel's lock held: only
        wake the source's own thread; never block, never call back into the channel,
        never raise.
        """


class _Batch:
    """Values handed to a waiting channel iterator in one go (see :meth:`Channel.offer`)."""

    __slots__ = ("items",)

    def __init__(self, items: List[Any]) -> None:
        self.items = items


def _many(value: Any) -> bool:
    return value.__class__ is _Batch


def _await_done(w: _Waiter) -> None:
    """An interrupted waiter that was already claimed: wait for its completer to finish
    filling it in (a few bytecodes under a channel lock). Never re-acquires ``park``:
    the interrupted acquire may have taken it already."""
    while not w.done:
        time.sleep(0.0001)


def _new_park() -> Any:
    lock = _allocate_lock()
    lock.acquire()
    return lock


def _claim(w: _Waiter) -> bool:
    """Own ``w`` (already popped from its queue). False: its select completed elsewhere."""
    sel = w.sel
    if sel is None:
        return True
    if sel.claim.acquire(False):
        sel.fired = w
        return True
    return False


class Channel:
    """A Go channel for plain threads: FIFO, bounded by ``capacity``, closable.

    ``send`` blocks while the channel is full, ``receive`` while it is empty. After
    ``close()`` buffered values are still delivered, then ``receive`` returns
    ``(None, False)``. Safe to use from any number of threads; usable without any
    WebSocket. ``for v in ch:`` receives until closed and drained; ``len(ch)`` is the
    number of values buffered now; a channel is always truthy (``if ch:`` does not test
    emptiness). The ``timeout=`` arguments are plain seconds, like ``threading``'s.

    Args:
        capacity: The bound, an int >= 0 (0: a rendezvous channel, where a send waits
            for a receiver).

    Raises:
        InvalidOption: ``capacity`` is not an int >= 0.
    """

    __slots__ = ("_lock", "_buf", "_cap", "_low", "_closed", "_recvq", "_sendq",
                 "_refused", "_source", "__weakref__")

    def __init__(self, capacity: int = 0) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, numbers.Integral) \
                or capacity < 0:
            raise InvalidOption(f"channel capacity must be an int >= 0, got {capacity!r}")
        self._lock = _allocate_lock()
        self._buf: deque = deque()
        self._cap = int(capacity)
        # A source whose offer was cut short is resumed once the buffer drains to this
        # level, so it refills many slots per wake-up instead of one.
        self._low = self._cap // 2
        self._closed = False
        self._recvq: deque = deque()   # parked receivers (buffer is empty)
        self._sendq: deque = deque()   # parked senders (buffer is full, or capacity 0)
        self._refused = False          # an offer() left values out: resume the source
        self._source: Optional[Source] = None

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
        # A channel is an object, not a container: ``if ch:`` must not depend on len().
        return True

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<Channel capacity={self._cap} len={len(self._buf)}{state}>"

    # -- receive ------------------------------------------------------------------------

    def receive(self, timeout: Optional[float] = None) -> Tuple[Any, bool]:
        """The next value as ``(value, True)``; ``(None, False)`` once closed and drained.

        Blocks until then.

        Args:
            timeout: Seconds to wait at most (0 polls; None: no limit).

        Raises:
            Timeout: ``timeout`` expired.
            InvalidOption: A negative or non-number ``timeout``.
        """
        # Fast path without the lock: deque.popleft is atomic. Every locked path that
        # takes from the buffer tolerates an IndexError from this race. (An empty buffer
        # is looked at first: a raised IndexError costs ~0.3 µs, on every receive of a
        # consumer that keeps up.)
        buf = self._buf
        if buf:
            try:
                value = buf.popleft()
            except IndexError:
                pass
            else:
                if self._sendq or self._refused:
                    with self._lock:
                        self._refill()
                return value, True
        return self._receive_slow(timeout)

    def _receive_slow(self, timeout: Optional[float], batch: bool = False) -> Tuple[Any, bool]:
        if timeout is not None:
            timeout = _check_timeout(timeout)
        source = self._source
        if source is not None and not self._closed:
            start = time.monotonic() if timeout else 0.0
            if source.fetch(timeout):
                try:
                    value = self._buf.popleft()
                except IndexError:
                    pass
                else:
                    return value, True
            if timeout:
                timeout = max(0.0, timeout - (time.monotonic() - start))
        with self._lock:
            ready = self._try_receive_locked()
            if ready is not None:
                return ready
            if self._refused:
                self._refill()  # a source cut short while lock-free pops drained us
            if timeout == 0:
                raise Timeout("channel receive timed out")
            w = _Waiter(_new_park())
            w.batch = batch
            self._recvq.append(w)
        if self._park(w, self._recvq, timeout):
            return w.value, w.ok
        raise Timeout(f"channel receive timed out after {timeout} s")

    def __iter__(self) -> Iterator[Any]:
        """Yield values until the channel is closed and drained.

        The iterator takes everything buffered in one lock round and yields it from a
        local batch (the receive loop of a fast stream pays no lock per value). Values
        of the batch not yet yielded when the loop ends (``break``, an exception) go
        back to the front of the channel, so nothing is lost. While a loop runs, its
        batch may hold values besides the ``capacity`` buffered: up to ``capacity``, or,
        when the loop was waiting on an empty channel, a whole batch handed over by a
        source's ``offer`` (the WebSocket reader: one socket read's messages). Raises
        nothing.
        """
        lock = self._lock
        while True:
            old = None
            if self._buf:   # (a look without the lock: a loop that keeps up finds it empty)
                with lock:
                    if self._buf:
                        # Take the buffer whole (one lock round), then pop it value by
                        # value: a lock-free receive() in another thread may still hold
                        # the old deque and pop from it, and each popleft is atomic, so a
                        # value goes to exactly one of us (copying it into a list could
                        # hand a value to both: seen on Python 3.9 and, without the swap,
                        # on 3.11).
                        old, self._buf = self._buf, deque()
                        if self._sendq or self._refused:
                            self._refill()
            if old is not None:
                pop = old.popleft
                try:
                    while True:
                        try:
                            value = pop()
                        except IndexError:
                            break
                        yield value
                finally:
                    if old:   # the loop ended early: the rest goes back, in order
                        rest = []
                        try:
                            while True:
                                rest.append(pop())
                        except IndexError:
                            pass
                        if rest:
                            self._give_back(rest)
                continue
            value, ok = self._receive_slow(None, True)
            if not ok:
                return
            if not _many(value):
                yield value
                continue
            it = iter(value.items)   # a source handed us a whole batch: ours alone
            try:
                yield from it
            finally:
                rest = list(it)
                if rest:
                    self._give_back(rest)

    def _refill(self) -> None:
        # Called with the lock held after a value left the buffer: admit parked senders
        # into the freed room, and resume a source cut short at the low-water mark.
        buf = self._buf
        sendq = self._sendq
        cap = self._cap
        while sendq and len(buf) < cap:
            w = sendq.popleft()
            if _claim(w):
                buf.append(w.value)
                w.ok = True
                w.done = True
                w.park.release()
        if self._refused and len(buf) <= self._low:
            self._refused = False
            if self._source is not None:
                self._source.resume()

    # -- send ---------------------------------------------------------------------------

    def send(self, value: Any, timeout: Optional[float] = None) -> bool:
        """Send ``value``, blocking while the channel is full.

        Args:
            value: Any object.
            timeout: Seconds to wait at most (0 polls; None: no limit).

        Returns:
            True once it is buffered or (capacity 0) taken by a receiver; False when
                ``timeout`` expired, without sending.

        Raises:
            ChannelClosed: The channel is closed, also when it is closed while this call
                is blocked.
            InvalidOption: A negative or non-number ``timeout``.
        """
        if timeout is not None:
            timeout = _check_timeout(timeout)
        with self._lock:
            if self._try_send_locked(value):
                return True
            if timeout == 0:
                return False
            w = _Waiter(_new_park(), None, value)
            self._sendq.append(w)
        if not self._park(w, self._sendq, timeout):
            return False
        if w.ok:
            return True
        raise ChannelClosed("channel closed while send was blocked")

    def close(self) -> None:
        """Close the channel (idempotent); raises nothing.

        Wakes every blocked sender (they raise ChannelClosed) and receiver. Buffered values
        are still delivered.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for q in (self._recvq, self._sendq):
                while q:
                    w = q.popleft()
                    if _claim(w):
                        if q is self._recvq:
                            w.value = None
                        w.ok = False
                        w.done = True
                        w.park.release()
            if self._refused:
                self._refused = False
                if self._source is not None:
                    self._source.resume()

    # -- parking ------------------------------------------------------------------------

    def _park(self, w: _Waiter, q: deque, timeout: Optional[float]) -> bool:
        """Wait until ``w`` completes (True) or ``timeout`` expires (False, dequeued)."""
        park = w.park
        try:
            if timeout is None:
                park.acquire()
                return True
            if park.acquire(True, timeout):
                return True
        except BaseException:  # e.g. KeyboardInterrupt: undo, keeping no value lost
            if not self._cancel(w, q):
                _await_done(w)
                if q is self._recvq and w.ok:
                    self._give_back(w.value.items if _many(w.value) else [w.value])
            raise
        if self._cancel(w, q):
            return False
        park.acquire()  # completed while timing out: released already, under our lock
        return True

    def _cancel(self, w: _Waiter, q: deque) -> bool:
        with self._lock:
            try:
                q.remove(w)
            except ValueError:
                return False
            return True

    def _push_back(self, value: Any) -> None:
        # A received value whose receiver was interrupted goes back to the front.
        self._give_back([value])

    def _give_back(self, values: List[Any]) -> None:
        """Values taken but not consumed go back ahead of everything buffered; receivers
        that parked meanwhile (the buffer looked empty) get them first."""
        with self._lock:
            i = self._hand_off_locked(values, 0)
            if i < len(values):
                self._buf.extendleft(reversed(values[i:] if i else values))

    def _hand_off_locked(self, values: Sequence[Any], i: int) -> int:
        """Give ``values[i:]`` to parked receivers, in order (a waiting iterator takes
        all the rest in one hand-off); return the index reached. Lock held."""
        recvq = self._recvq
        n = len(values)
        while recvq and i < n:
            w = recvq.popleft()
            if _claim(w):
                if w.batch:
                    # one hand-off per offer instead of one per value
                    w.value = _Batch(list(values[i:]) if i else values)
                    i = n
                else:
                    w.value = values[i]
                    i += 1
                w.ok = True
                w.done = True
                w.park.release()
        return i

    # -- select support (called with the lock held) -------------------------------------

    def _try_receive_locked(self) -> Optional[Tuple[Any, bool]]:
        buf = self._buf
        if buf:
            try:
                value = buf.popleft()
            except IndexError:  # a lock-free receive took it
                pass
            else:
                if self._sendq or self._refused:
                    self._refill()
                return value, True
        sendq = self._sendq
        while sendq:
            w = sendq.popleft()
            if _claim(w):
                value = w.value
                w.ok = True
                w.done = True
                w.park.release()
                return value, True
        if self._closed:
            return None, False
        if self._refused:
            self._refill()   # (a lock-free receive drained it: the source may go on)
        return None

    def _try_send_locked(self, value: Any) -> bool:
        if self._closed:
            raise ChannelClosed("send on a closed channel")
        recvq = self._recvq
        while recvq:
            w = recvq.popleft()
            if _claim(w):
                w.value = value
                w.ok = True
                w.done = True
                w.park.release()
                return True
        buf = self._buf
        if len(buf) < self._cap:
            buf.append(value)
            return True
        return False

    # -- cases --------------------------------------------------------------------------

    def case_send(self, value: Any) -> _Case:
        """A [`select`][wsfast.select] case sending ``value`` on this channel; raises nothing."""
        return _Case(self, True, value)

    def case_receive(self) -> _Case:
        """A [`select`][wsfast.select] case receiving from this channel; raises nothing."""
        return _Case(self, False, None)

    # -- sources ------------------------------------------------------------------------

    def set_source(self, source: Optional[Source]) -> None:
        """Attach the [`Source`][wsfast.channels.Source] that feeds this channel (None detaches it).

        Receivers that find the channel empty ask it to ``fetch``; it is ``resume``d
        when an ``offer`` it made was cut short and room is back. A channel has
        at most one source at a time; a new one replaces the old (a reconnecting
        stream hands its channel from one connection to the next). Raises nothing.
        """
        with self._lock:
            self._source = source
            self._refused = False

    def offer(self, values: Sequence[Any], start: int = 0, *, overflow: bool = False) -> int:
        """Send ``values[start:]`` in order without blocking; return the index reached.

        Parked receivers get values first (a waiting iterator takes all of them in one
        hand-off), then the buffer takes what fits in its capacity, all in one lock
        round. When some are left out (the returned index is below ``len(values)``),
        the source is resumed once receivers drain the channel to half its capacity.
        The channel may keep ``values`` itself (handed to a waiting iterator): do not
        change the sequence afterwards.

        Args:
            values: The values to send.
            start: The index of the first one.
            overflow: Place everything, beyond the capacity (for values a receiver is
                about to take itself, see ``Source.fetch``, or the last values of a
                stream that has ended).

        Raises:
            ChannelClosed: The channel is closed (nothing is sent then).
        """
        n = len(values)
        lock = self._lock
        lock.acquire()   # (not `with`: ~0.1 µs less per offer, one per socket read)
        try:
            if self._closed:
                raise ChannelClosed("send on a closed channel")
            i = self._hand_off_locked(values, start) if self._recvq else start
            if i < n:
                buf = self._buf
                room = n - i if overflow else self._cap - len(buf)
                if room > 0:
                    j = i + room if i + room < n else n
                    buf.extend(values[i:j] if i or j != n else values)
                    i = j
                if i < n:
                    self._refused = True
            return i
        finally:
            lock.release()


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


class Selected(NamedTuple):
    """The outcome of ``select``: a named tuple ``(channel, value, ok, default)``.

    ```python
    r = wsfast.select(ch.case_receive(), timer.case_receive())
    if r.channel is timer: ...
    elif not r.ok: ...          # ch closed
    else: handle(r.value)
    ```

    Attributes:
        channel (Channel | None): The chosen case's channel (None for the default).
        value (Any): The received value (None for a send case).
        ok (bool): False when a receive case found the channel closed and drained.
        default (bool): True when no case was ready (``default=True``).
    """

    channel: Optional[Channel]
    value: Any
    ok: bool
    default: bool


_DEFAULT = Selected(None, None, False, True)


def select(*cases: _Case, default: bool = False,
           timeout: Optional[float] = None) -> Selected:
    """Wait until one case can proceed, perform it and return a [`Selected`][wsfast.Selected].

    When several are ready one is chosen uniformly at random (Go's fairness). A receive
    case on a closed, drained channel is ready, with ``ok=False``.

    Args:
        *cases: From ``ch.case_send(v)`` and ``ch.case_receive()``; a single list or
            tuple of cases is accepted too.
        default: If no case is ready, return ``Selected(None, None, False, True)`` at
            once.
        timeout: Seconds to wait at most (None: no limit).

    Raises:
        Timeout: ``timeout`` expired.
        ChannelClosed: The chosen send case's channel is closed.
        InvalidOption: No cases and no default, something that is not a case, a bad
            ``timeout``.
    """
    if len(cases) == 1 and isinstance(cases[0], (list, tuple)):
        cases = tuple(cases[0])
    for c in cases:
        if type(c) is not _Case:
            raise InvalidOption(f"select takes cases (case_send/case_receive), got {c!r}")
    if timeout is not None:
        timeout = _check_timeout(timeout)
    n = len(cases)
    if n == 0:
        if default:
            return _DEFAULT
        raise InvalidOption("select needs at least one case (or default=True)")

    if n == 1:
        channels = [cases[0].channel]
        order: Any = (0,)
    else:
        channels = list({id(c.channel): c.channel for c in cases}.values())
        if len(channels) > 1:
            channels.sort(key=id)  # global lock order
        if n == 2:
            order = (0, 1) if _random() < 0.5 else (1, 0)
        else:
            order = list(range(n))
            random.shuffle(order)

    locked = []
    try:
        for ch in channels:
            ch._lock.acquire()
            locked.append(ch)
        for i in order:
            c = cases[i]
            if c.is_send:
                if c.channel._try_send_locked(c.value):
                    return Selected(c.channel, None, True, False)
            else:
                r = c.channel._try_receive_locked()
                if r is not None:
                    return Selected(c.channel, r[0], r[1], False)
        if default:
            return _DEFAULT
        if timeout == 0:
            raise Timeout("select timed out")
        sel = _SelectState()
        waiters = []
        for i, c in enumerate(cases):
            ch = c.channel
            w = _Waiter(sel.park, sel, c.value if c.is_send else None, i)
            (ch._sendq if c.is_send else ch._recvq).append(w)
            waiters.append(w)
    finally:
        for ch in locked:
            ch._lock.release()

    park = sel.park
    try:
        fired = park.acquire() if timeout is None else park.acquire(True, timeout)
    except BaseException:  # e.g. KeyboardInterrupt: withdraw, keeping no value lost
        if sel.claim.acquire(False):
            _withdraw(cases, waiters, None)
        else:
            while sel.fired is None:   # claimed a moment ago: the claimer records itself next
                time.sleep(0.0001)
            w = sel.fired
            _await_done(w)
            _withdraw(cases, waiters, w)
            c = cases[w.case]
            if not c.is_send and w.ok:
                c.channel._push_back(w.value)
        raise
    if not fired:
        if sel.claim.acquire(False):
            _withdraw(cases, waiters, None)
            raise Timeout(f"select timed out after {timeout} s")
        park.acquire()  # a channel completed us while we were timing out
    w = sel.fired
    _withdraw(cases, waiters, w)
    c = cases[w.case]
    if c.is_send:
        if not w.ok:
            raise ChannelClosed("channel closed while select was sending on it")
        return Selected(c.channel, None, True, False)
    return Selected(c.channel, w.value, w.ok, False)


def _withdraw(cases: Tuple[_Case, ...], waiters: List[_Waiter],
              fired: Optional[_Waiter]) -> None:
    """Remove a finished select's other waiters from their channels' queues."""
    for w in waiters:
        if w is fired:
            continue
        c = cases[w.case]
        ch = c.channel
        with ch._lock:
            try:
                (ch._sendq if c.is_send else ch._recvq).remove(w)
            except ValueError:
                pass  # popped as stale by a channel that lost the claim race


# -- timers -------------------------------------------------------------------------------


class _TimerThread:
    """One daemon thread firing every ``after`` channel from a heap of deadlines."""

    def __init__(self) -> None:
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # Also run in a forked child: the parent's thread and lock state do not survive.
        self._cond = threading.Condition(_allocate_lock())
        self._heap: List[Any] = getattr(self, "_heap", [])
        self._seq = itertools.count()
        self._thread: Optional[threading.Thread] = None
        self._compact_at = 1024

    def schedule(self, seconds: float, ch: Channel) -> None:
        entry = (time.monotonic() + seconds, next(self._seq), weakref.ref(ch))
        with self._cond:
            heap = self._heap
            heapq.heappush(heap, entry)
            if len(heap) >= self._compact_at:
                # Drop timers whose channel was garbage-collected (nobody can receive).
                heap[:] = [e for e in heap if e[2]() is not None]
                heapq.heapify(heap)
                self._compact_at = max(1024, 2 * len(heap))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="wsfast-timers",
                                                daemon=True)
                self._thread.start()
            elif heap[0] is entry:
                self._cond.notify()

    def _run(self) -> None:
        cond = self._cond
        heap = self._heap
        while True:
            with cond:
                while True:
                    if not heap:
                        cond.wait()
                        continue
                    now = time.monotonic()
                    wait = heap[0][0] - now
                    if wait <= 0:
                        break
                    cond.wait(wait if wait < _TIMEOUT_MAX else _TIMEOUT_MAX)
                due = []
                while heap and heap[0][0] <= now:
                    due.append(heapq.heappop(heap)[2])
            for ref in due:
                ch = ref()
                if ch is not None:
                    _fire_timer(ch)


def _fire_timer(ch: Channel) -> None:
    try:
        # Never blocks the timer thread, even if a user sent into the timer channel.
        ch.send(time.time(), 0)
    except ChannelClosed:
        pass


_timers = _TimerThread()


def after(duration: Any) -> Channel:
    """A channel that receives one value, ``time.time()`` at firing, after ``duration``.

    The channel (capacity 1) is never closed. All timers share one background thread; a
    timer whose channel is no longer referenced is dropped.

    Args:
        duration: Milliseconds (int or float), a Go duration str (``"30s"``) or a
            ``timedelta``; 0 fires at once.

    Raises:
        InvalidOption: A bad duration (negative, infinite, unparsable, a bool).
    """
    seconds = parse_duration(duration, "duration")
    ch = Channel(1)
    if seconds is None:
        ch._buf.append(time.time())
    else:
        _timers.schedule(seconds, ch)
    return ch
