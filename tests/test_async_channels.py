"""wsfast.asyncio channels, select and after (DESIGN §1, §7): Go semantics inside one event
loop, and cancellation that loses nothing.

Every test runs on the default event loop and, when it is installed, on uvloop (the ``run``
fixture). Every wait is bounded: each test's coroutine runs under ``asyncio.wait_for``
and the module under pytest-timeout.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import random
import threading
import time

import pytest

import wsfast
from wsfast import ChannelClosed, InvalidOption
from wsfast.asyncio import Channel, Selected, after, select

try:
    import uvloop
except ImportError:   # the suite runs on the default loop only
    uvloop = None

pytestmark = pytest.mark.timeout(120)

HAS_TIMEOUT = hasattr(asyncio, "timeout")   # 3.11+


def _run_with(factory, coro):
    if factory is None:
        return asyncio.run(coro)
    if hasattr(asyncio, "Runner"):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro)
    loop = factory()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()


_NO_UVLOOP = pytest.mark.skipif(uvloop is None, reason="uvloop is not installed")


@pytest.fixture(params=["asyncio", pytest.param("uvloop", marks=_NO_UVLOOP)])
def run(request):
    """``run(main, timeout=30)``: run ``main()`` on a fresh loop of the parametrised kind,
    failing after ``timeout`` seconds."""
    return _runner(request.param)


@pytest.fixture(params=["asyncio", pytest.param("uvloop", marks=[_NO_UVLOOP, pytest.mark.loop_twin])])
def run_long(request):
    """``run`` for the long tests (a second or more each): their uvloop run carries
    loop_twin, which make test-fast leaves out (make test runs it)."""
    return _runner(request.param)


def _runner(kind: str):
    factory = uvloop.new_event_loop if kind == "uvloop" else None

    def runner(main, timeout: float = 30.0):
        async def bounded():
            return await asyncio.wait_for(main(), timeout)
        return _run_with(factory, bounded())
    return runner


async def settle(n: int = 3) -> None:
    """Let every ready task take its next steps."""
    for _ in range(n):
        await asyncio.sleep(0)


def uncancel() -> None:
    task = asyncio.current_task()
    if hasattr(task, "uncancel"):
        task.uncancel()


# ------------------------------------------------------------------------- Go semantics


def test_buffered_channel_takes_capacity_values_then_send_waits(run):
    async def main():
        ch = Channel(2)
        assert await ch.send(1) is True
        assert await ch.send(2) is True
        assert len(ch) == 2
        third = asyncio.ensure_future(ch.send(3))
        await settle()
        assert not third.done() and len(ch) == 2
        assert await ch.receive() == (1, True)
        assert await asyncio.wait_for(third, 1) is True
        assert [await ch.receive(), await ch.receive()] == [(2, True), (3, True)]
        assert len(ch) == 0
    run(main)


def test_rendezvous_send_waits_for_a_receiver_and_receive_for_a_sender(run):
    async def main():
        ch = Channel()
        assert ch.try_send("x") is False           # nobody waits
        sender = asyncio.ensure_future(ch.send("a"))
        await settle()
        assert not sender.done() and len(ch) == 0
        # a blocked sender is not ready for a non-blocking receive (documented) ...
        assert ch.try_receive() is None
        # ... but a receiver that waits gets its value
        assert await asyncio.wait_for(ch.receive(), 1) == ("a", True)
        assert await asyncio.wait_for(sender, 1) is True

        receiver = asyncio.ensure_future(ch.receive())
        await settle()
        assert not receiver.done()
        assert ch.try_send("b") is True            # a receiver waits: handed over at once
        assert await asyncio.wait_for(receiver, 1) == ("b", True)
        assert ch.try_send("c") is False
    run(main)


def test_close_wakes_waiting_receivers_and_senders(run):
    async def main():
        empty = Channel(1)
        receivers = [asyncio.ensure_future(empty.receive()) for _ in range(3)]
        full = Channel(1)
        await full.send("kept")
        senders = [asyncio.ensure_future(full.send(i)) for i in range(3)]
        rv = Channel()
        rv_sender = asyncio.ensure_future(rv.send("never"))
        await settle()
        assert not any(t.done() for t in receivers + senders + [rv_sender])
        empty.close()
        full.close()
        rv.close()
        assert await asyncio.wait_for(asyncio.gather(*receivers), 1) == [(None, False)] * 3
        for t in senders + [rv_sender]:
            with pytest.raises(ChannelClosed):
                await asyncio.wait_for(t, 1)
        # buffered values are still delivered after close, then (None, False)
        assert await full.receive() == ("kept", True)
        assert await full.receive() == (None, False)
        assert await rv.receive() == (None, False)
        full.close()   # idempotent
        assert full.closed
    run(main)


def test_send_and_offer_on_a_closed_channel_raise_channel_closed(run):
    async def main():
        ch = Channel(3)
        ch.close()
        with pytest.raises(ChannelClosed):
            await ch.send(1)
        with pytest.raises(ChannelClosed):
            ch.try_send(1)
        with pytest.raises(ChannelClosed):
            ch.offer([1, 2])
        assert isinstance(ChannelClosed("x"), wsfast.Error)
        assert len(ch) == 0
    run(main)


def test_iteration_drains_then_ends_at_close(run):
    async def main():
        ch = Channel(10)
        for i in range(5):
            await ch.send(i)

        async def consume():
            return [v async for v in ch]
        consumer = asyncio.ensure_future(consume())
        await settle()
        assert not consumer.done()   # drained, waiting for more
        await ch.send(5)
        await ch.send(6)
        ch.close()
        assert await asyncio.wait_for(consumer, 1) == list(range(7))
        assert [v async for v in ch] == []
    run(main)


def test_len_capacity_closed_bool_repr_and_bad_capacity():
    ch = Channel(3)
    assert (len(ch), ch.capacity, ch.closed, bool(ch)) == (0, 3, False, True)
    assert ch.try_send(1) and ch.try_send(2)
    assert len(ch) == 2 and "len=2" in repr(ch)
    ch.close()
    assert ch.closed and "closed" in repr(ch) and bool(ch)
    assert Channel().capacity == 0
    for bad in (-1, 1.5, True, "2", None):
        with pytest.raises(InvalidOption):
            Channel(bad)


def test_a_buffered_value_is_received_without_suspending():
    # No event loop at all: the coroutine and the async generator finish on their first
    # step, so no Future was created and no loop round trip happened.
    ch = Channel(4)
    ch.offer(["a", "b", "c"])
    coro = ch.receive()
    with pytest.raises(StopIteration) as stop:
        coro.send(None)
    assert stop.value.value == ("a", True)
    step = ch.__aiter__().__anext__()
    with pytest.raises(StopIteration) as stop:
        step.send(None)
    assert stop.value.value == "b"
    ch.close()
    assert ch.try_receive() == ("c", True)
    coro = ch.receive()
    with pytest.raises(StopIteration) as stop:
        coro.send(None)   # closed and drained: also without suspending
    assert stop.value.value == (None, False)


def test_async_for_cancelled_or_broken_leaves_the_rest_in_the_channel(run):
    async def main():
        ch = Channel(10)
        got = []

        async def consume():
            async for v in ch:
                got.append(v)
        task = asyncio.ensure_future(consume())
        await settle()
        task.cancel()              # cancelled while waiting on the empty channel
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 1)
        for i in range(6):
            await ch.send(i)
        async for v in ch:
            got.append(v)
            if v == 2:
                break
        assert got == [0, 1, 2] and len(ch) == 3
        ch.close()
        assert [v async for v in ch] == [3, 4, 5]
    run(main)


# ------------------------------------------------------------------------------- select


def test_select_picks_uniformly_at_random_among_ready_cases(run):
    async def main():
        a, b, c = Channel(1), Channel(1), Channel(1)
        counts = {a: 0, b: 0}
        for _ in range(4000):
            for ch in (a, b):
                if not len(ch):
                    ch.try_send(0)
            r = await select(a.case_receive(), b.case_receive())
            counts[r.channel] += 1
        assert 1700 < counts[a] < 2300, counts
        counts3 = {a: 0, b: 0, c: 0}
        for _ in range(3000):
            for ch in (a, b, c):
                if not len(ch):
                    ch.try_send(0)
            r = await select([a.case_receive(), b.case_receive(), c.case_receive()])
            counts3[r.channel] += 1
        assert all(800 < n < 1200 for n in counts3.values()), counts3
        # a ready send case competes with a ready receive case the same way
        d, e = Channel(1000), Channel(1000)
        e.offer([0] * 1000)
        sends = 0
        for _ in range(1000):
            r = await select(d.case_send(1), e.case_receive())
            sends += r.channel is d
        assert 400 < sends < 600, sends
    run(main)


def test_select_default_returns_at_once_only_when_nothing_is_ready(run):
    async def main():
        a, b = Channel(1), Channel()
        r = await select(a.case_receive(), b.case_receive(), default=True)
        assert r == Selected(None, None, False, True) and r.default
        assert await select(default=True) == (None, None, False, True)
        a.try_send(7)
        assert await select(a.case_receive(), b.case_receive(), default=True) == (a, 7, True, False)
        assert await select(a.case_send(8), default=True) == (a, None, True, False)
        assert await select(a.case_send(9), default=True) == Selected(None, None, False, True)
        assert isinstance(r, wsfast.Selected)   # the same named tuple as the sync select
    run(main)


def test_select_waits_for_the_first_case_to_become_ready(run):
    async def main():
        a, b, out = Channel(), Channel(5), Channel(0)
        waiting = asyncio.ensure_future(select(a.case_receive(), b.case_receive(), out.case_send("o")))
        await settle()
        assert not waiting.done()
        await b.send("b1")
        assert await asyncio.wait_for(waiting, 1) == (b, "b1", True, False)
        assert len(a._receivers) == len(b._receivers) == len(out._senders) == 0   # withdrawn
        # a send case completes when a receiver comes
        waiting = asyncio.ensure_future(select(a.case_receive(), out.case_send("o")))
        await settle()
        assert await asyncio.wait_for(out.receive(), 1) == ("o", True)
        assert await asyncio.wait_for(waiting, 1) == (out, None, True, False)
    run(main)


def test_the_case_that_becomes_ready_first_wins_the_waiting_select(run):
    async def main():
        for _ in range(20):
            a, b = Channel(1), Channel(1)
            waiting = asyncio.ensure_future(select(a.case_receive(), b.case_receive()))
            await settle()
            a.try_send("first")    # wakes the select ...
            b.try_send("second")   # ... before this one is ready; it runs after both
            assert await asyncio.wait_for(waiting, 1) == (a, "first", True, False)
            assert b.try_receive() == ("second", True)
    run(main)


def test_select_on_closed_channels_and_bad_cases(run):
    async def main():
        a = Channel(1)
        a.close()
        assert await select(a.case_receive()) == (a, None, False, False)
        with pytest.raises(ChannelClosed):
            await select(a.case_send(1))
        b, c = Channel(), Channel()
        waiting = asyncio.ensure_future(select(b.case_receive()))
        sending = asyncio.ensure_future(select(Channel(0).case_receive(), c.case_send(2)))
        await settle()
        b.close()
        c.close()
        assert await asyncio.wait_for(waiting, 1) == (b, None, False, False)
        with pytest.raises(ChannelClosed):
            await asyncio.wait_for(sending, 1)
        with pytest.raises(InvalidOption):
            await select()
        with pytest.raises(InvalidOption):
            await select(wsfast.Channel(1).case_receive())   # a sync channel's case
        with pytest.raises(InvalidOption):
            await select(a)
    run(main)


def test_select_never_matches_itself_on_a_rendezvous_channel(run):
    async def main():
        ch = Channel()
        both = asyncio.ensure_future(select(ch.case_send("mine"), ch.case_receive()))
        await asyncio.sleep(0.02)
        assert not both.done()
        assert await asyncio.wait_for(ch.receive(), 1) == ("mine", True)
        assert await asyncio.wait_for(both, 1) == (ch, None, True, False)
        # two such selects match each other
        x = asyncio.ensure_future(select(ch.case_send("x"), ch.case_receive()))
        y = asyncio.ensure_future(select(ch.case_send("y"), ch.case_receive()))
        rx, ry = await asyncio.wait_for(asyncio.gather(x, y), 1)
        if rx.value is None:    # x's send went to y's receive
            assert ry == (ch, "x", True, False)
        else:
            assert rx == (ch, "y", True, False) and ry == (ch, None, True, False)
    run(main)


# -------------------------------------------------------------------------------- after


def test_after_fires_once_after_the_duration(run):
    async def main():
        for duration in ("50ms", 50, 50.0, datetime.timedelta(milliseconds=50)):
            t0 = time.monotonic()
            timer = after(duration)
            assert timer.try_receive() is None
            value, ok = await asyncio.wait_for(timer.receive(), 2)
            elapsed = time.monotonic() - t0
            assert ok and 0.045 <= elapsed < 1.0, elapsed
            assert abs(value - time.time()) < 1.0
            assert timer.try_receive() is None and not timer.closed
        r = await select(Channel().case_receive(), after("10ms").case_receive())
        assert r.ok and isinstance(r.value, float)
    run(main)


def test_after_zero_is_ready_at_once_and_bad_durations_raise():
    timer = after(0)   # no loop needed
    value, ok = timer.try_receive()
    assert ok and abs(value - time.time()) < 1
    for bad in (-1, "soon", True, None, float("nan")):
        with pytest.raises(InvalidOption):
            after(bad)
    with pytest.raises(RuntimeError):
        after("1s")    # no running event loop


def test_after_needs_no_thread_or_task_and_a_dropped_timer_is_cancelled(run):
    async def main():
        threads = threading.active_count()
        tasks = len(asyncio.all_tasks())
        timers = [after("1h") for _ in range(1000)]
        assert threading.active_count() == threads
        assert len(asyncio.all_tasks()) == tasks
        handle = timers[0]._handle
        assert not handle.cancelled()
        del timers
        gc.collect()
        assert handle.cancelled()
        fired = after("5ms")
        await asyncio.sleep(0.02)
        assert fired._handle is None and len(fired) == 1
    run(main)


# ----------------------------------------------------------------- cancellation: the races


def test_a_receiver_woken_then_cancelled_before_it_runs_takes_nothing(run):
    async def main():
        ch = Channel(1)
        first = asyncio.ensure_future(ch.receive())
        second = asyncio.ensure_future(ch.receive())
        await settle()
        assert ch.try_send("v") is True   # wakes `first` ...
        first.cancel()                    # ... which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(first, 1)
        assert await asyncio.wait_for(second, 1) == ("v", True)   # the wake-up passed on
        # alone, the value stays in the channel
        lone = asyncio.ensure_future(ch.receive())
        await settle()
        ch.try_send("w")
        lone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(lone, 1)
        assert ch.try_receive() == ("w", True)
        # rendezvous: the value handed to the cancelled receiver stays first in line
        rv = Channel()
        lone = asyncio.ensure_future(rv.receive())
        await settle()
        assert rv.try_send("r") is True
        lone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(lone, 1)
        assert await asyncio.wait_for(rv.receive(), 1) == ("r", True)
    run(main)


def test_a_sender_woken_then_cancelled_before_it_runs_sends_nothing(run):
    async def main():
        ch = Channel(1)
        await ch.send("a")
        first = asyncio.ensure_future(ch.send("b"))
        second = asyncio.ensure_future(ch.send("c"))
        await settle()
        assert ch.try_receive() == ("a", True)   # room: wakes `first` ...
        first.cancel()                           # ... cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(first, 1)
        assert await asyncio.wait_for(second, 1) is True   # the room passed on
        assert await ch.receive() == ("c", True)
        assert ch.try_receive() is None        # "b" was never sent

        # rendezvous: a receiver that parks wakes the blocked sender; cancelled before it
        # hands over, that sender sends nothing and the next sender serves the receiver
        rv = Channel()
        s1 = asyncio.ensure_future(rv.send("s1"))
        s2 = asyncio.ensure_future(rv.send("s2"))
        await settle()
        receiver = asyncio.ensure_future(rv.receive())
        await asyncio.sleep(0)     # the receiver parks and wakes s1
        s1.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(s1, 1)
        assert await asyncio.wait_for(receiver, 1) == ("s2", True)
        assert await asyncio.wait_for(s2, 1) is True
        assert rv.try_receive() is None and len(rv) == 0
    run(main)


def test_a_cancelled_send_on_a_full_channel_never_delivers_its_value(run):
    async def main():
        ch = Channel(1)
        await ch.send("kept")
        blocked = asyncio.ensure_future(ch.send("cancelled"))
        await settle()
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(blocked, 1)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ch.send("timed out"), 0.01)
        if HAS_TIMEOUT:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.01):
                    await ch.send("timed out too")
        assert await ch.receive() == ("kept", True)
        await asyncio.sleep(0.02)
        assert ch.try_receive() is None and len(ch) == 0
        await ch.send("next")       # still usable
        assert await ch.receive() == ("next", True)
    run(main)


def test_a_select_woken_then_cancelled_before_it_runs_takes_nothing(run):
    async def main():
        a, b = Channel(1), Channel(1)
        sel = asyncio.ensure_future(select(a.case_receive(), b.case_receive()))
        plain = asyncio.ensure_future(a.receive())
        await settle()
        a.try_send("v")       # wakes the select (first in a's queue) ...
        sel.cancel()          # ... cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(sel, 1)
        assert await asyncio.wait_for(plain, 1) == ("v", True)
        assert len(a._receivers) == len(b._receivers) == 0
        # a send case woken by room, cancelled before it runs: sends nothing
        full = Channel(1)
        full.try_send("x")
        sel = asyncio.ensure_future(select(full.case_send("never"), Channel().case_receive()))
        await settle()
        assert full.try_receive() == ("x", True)
        sel.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(sel, 1)
        await asyncio.sleep(0.01)
        assert full.try_receive() is None and len(full._senders) == 0
    run(main)


N_VALUES = 100_000


async def _numbered_through_timeouts(capacity: int, n: int, timeout: float, receive_with_timeout):
    """A producer task sends 0..n-1 (pausing now and then, so that receives time out,
    some of them just as a value arrives); the consumer reads them through
    ``receive_with_timeout`` and retries timeouts. Returns (values, timeouts)."""
    ch = Channel(capacity)
    rng = random.Random(1234)

    async def produce():
        for i in range(n):
            await ch.send(i)
            if rng.random() < 0.02:
                await asyncio.sleep(timeout * rng.choice((0, 0.6, 1.0, 1.4)))
        ch.close()

    producer = asyncio.ensure_future(produce())
    got = []
    timeouts = 0
    while True:
        try:
            value, ok = await receive_with_timeout(ch)
        except (asyncio.TimeoutError, TimeoutError):
            timeouts += 1
            continue
        if not ok:
            break
        got.append(value)
    await asyncio.wait_for(producer, 5)
    return got, timeouts


# At capacity 0 a blocked sender hands over only once a receiver waits: two loop
# iterations, and uvloop runs a 0.5 ms timer as call_soon (it rounds to whole ms), so a
# rendezvous receive gets 2 ms there.
TIMEOUT_CASES = [(64, N_VALUES, 0.0005), (1, 20_000, 0.0005), (0, 20_000, 0.002)]


@pytest.mark.parametrize("capacity,n,timeout", TIMEOUT_CASES)
def test_numbered_values_through_wait_for_arrive_whole_and_in_order(run_long, capacity, n, timeout):
    async def main():
        return await _numbered_through_timeouts(
            capacity, n, timeout, lambda ch: asyncio.wait_for(ch.receive(), timeout))
    got, timeouts = run_long(main, timeout=60)
    assert len(got) == n and got == list(range(n))
    assert timeouts > 0


@pytest.mark.skipif(not HAS_TIMEOUT, reason="asyncio.timeout is 3.11+")
@pytest.mark.parametrize("capacity,n,timeout", TIMEOUT_CASES)
def test_numbered_values_through_asyncio_timeout_arrive_whole_and_in_order(
        run_long, capacity, n, timeout):
    async def receive(ch):
        async with asyncio.timeout(timeout):
            return await ch.receive()

    async def main():
        return await _numbered_through_timeouts(capacity, n, timeout, receive)
    got, timeouts = run_long(main, timeout=60)
    assert len(got) == n and got == list(range(n))
    assert timeouts > 0


class Storm:
    """Cancels a victim task again and again at random moments. The victim swallows
    only these cancellations (``absorb()``), so a test's teardown can still cancel it."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.armed = False
        self.count = 0

    async def run(self, victim: asyncio.Future, stop: asyncio.Event) -> None:
        while not stop.is_set() and not victim.done():
            await asyncio.sleep(self.rng.choice((0, 0, 0.00005, 0.0002)))
            if self.rng.random() < 0.5:
                await asyncio.sleep(0)
            self.armed = True
            victim.cancel()
            self.count += 1

    def absorb(self) -> bool:
        """In the victim's ``except CancelledError``: True when the storm did it."""
        if not self.armed:
            return False
        self.armed = False
        uncancel()
        return True


@pytest.mark.parametrize("capacity", [0, 3])
def test_select_receiving_through_a_storm_of_cancellations_loses_and_duplicates_nothing(
        run_long, capacity):
    n = 20_000

    async def main():
        rng = random.Random(capacity)
        storm = Storm(rng)
        a, b = Channel(capacity), Channel(capacity)
        got = {a: [], b: []}
        cancels = 0

        async def produce(ch, tag):
            for i in range(n):
                await ch.send((tag, i))
                if rng.random() < 0.05:
                    await asyncio.sleep(0)
            ch.close()

        async def consume():
            nonlocal cancels
            open_ = [a, b]
            while open_:
                try:
                    r = await select([ch.case_receive() for ch in open_])
                except asyncio.CancelledError:
                    if not storm.absorb():
                        raise
                    cancels += 1
                    continue
                if r.ok:
                    got[r.channel].append(r.value)
                else:
                    open_.remove(r.channel)

        producers = [asyncio.ensure_future(produce(a, "a")), asyncio.ensure_future(produce(b, "b"))]
        consumer = asyncio.ensure_future(consume())
        stop = asyncio.Event()
        storming = asyncio.ensure_future(storm.run(consumer, stop))
        await consumer
        stop.set()
        await asyncio.gather(storming, *producers)
        return got[a], got[b], cancels

    got_a, got_b, cancels = run_long(main, timeout=60)
    assert got_a == [("a", i) for i in range(n)]
    assert got_b == [("b", i) for i in range(n)]
    assert cancels > 100, cancels


@pytest.mark.parametrize("capacity", [0, 3])
def test_select_sending_through_a_storm_of_cancellations_loses_and_duplicates_nothing(
        run, capacity):
    n = 20_000

    async def main():
        rng = random.Random(10 + capacity)
        storm = Storm(rng)
        a, b = Channel(capacity), Channel(capacity)
        sent = {a: [], b: []}
        got = {a: [], b: []}
        cancels = 0

        async def produce():
            nonlocal cancels
            nxt = {a: 0, b: 0}
            while nxt[a] < n or nxt[b] < n:
                cases = [ch.case_send((id(ch), nxt[ch])) for ch in (a, b) if nxt[ch] < n]
                try:
                    r = await select(cases)
                except asyncio.CancelledError:
                    if not storm.absorb():
                        raise
                    cancels += 1
                    continue            # retried: a cancelled case must not have been sent
                sent[r.channel].append((id(r.channel), nxt[r.channel]))
                nxt[r.channel] += 1
            a.close()
            b.close()

        async def consume(ch):
            async for v in ch:
                got[ch].append(v)
                if rng.random() < 0.3:
                    await asyncio.sleep(0)

        consumers = [asyncio.ensure_future(consume(a)), asyncio.ensure_future(consume(b))]
        producer = asyncio.ensure_future(produce())
        stop = asyncio.Event()
        storming = asyncio.ensure_future(storm.run(producer, stop))
        await producer
        stop.set()
        await asyncio.gather(storming, *consumers)
        return sent, got, cancels, a, b

    sent, got, cancels, a, b = run(main, timeout=60)
    for ch in (a, b):
        assert got[ch] == sent[ch]
        assert got[ch] == [(id(ch), i) for i in range(n)]
    assert cancels > 100, cancels


# ----------------------------------------------------------------------- offer and resume


class RecordingSource:
    """A source that records its resumes and, like a protocol, offers what is held."""

    def __init__(self, ch: Channel, values=()):
        self.ch = ch
        self.values = list(values)
        self.i = 0
        self.resumes = []   # len(ch) at each resume
        ch.set_source(self)

    def feed(self) -> int:
        self.i = self.ch.offer(self.values, self.i)
        return self.i

    def resume(self) -> None:
        self.resumes.append(len(self.ch))
        if self.i < len(self.values):
            try:
                self.feed()
            except ChannelClosed:
                pass


def test_offer_takes_what_fits_and_the_source_resumes_at_half_capacity(run):
    async def main():
        ch = Channel(4)
        src = RecordingSource(ch, range(10))
        assert src.feed() == 4 and len(ch) == 4
        got = []
        for expect_len_after in (3, 2):
            got.append((await ch.receive())[0])
            if expect_len_after == 3:
                assert src.resumes == []          # 3 left: above the low-water mark
        # the receive that brought it down to 2 resumed the source, which refilled
        assert src.resumes == [2] and src.i == 6 and len(ch) == 4
        async for v in ch:
            got.append(v)
            if len(got) == 10:
                break
        assert got == list(range(10))
        assert src.resumes == [2, 2, 2]   # each refill cut short, each resumed once
        await asyncio.sleep(0.01)
        assert src.resumes == [2, 2, 2]
    run(main)


def test_offer_serves_waiting_receivers_first_and_resumes_when_a_receiver_waits(run):
    async def main():
        ch = Channel()
        receivers = [asyncio.ensure_future(ch.receive()) for _ in range(2)]
        await settle()
        src = RecordingSource(ch, ["x", "y", "z"])
        assert src.feed() == 2                    # one value per waiting receiver
        assert await asyncio.wait_for(asyncio.gather(*receivers), 1) == [("x", True), ("y", True)]
        assert src.resumes == []                  # (capacity 0: an empty buffer is no room)
        # a receiver waiting on the empty channel is room: the source is resumed then
        assert await asyncio.wait_for(ch.receive(), 1) == ("z", True)
        assert src.resumes == [0]
    run(main)


def test_offer_start_overflow_close_and_detach(run):
    async def main():
        ch = Channel(2)
        assert ch.offer([0, 1, 2, 3, 4], 1) == 3 and len(ch) == 2
        assert ch.offer(["a", "b", "c"], overflow=True) == 3 and len(ch) == 5
        assert ch.offer([], 0) == 0 and ch.offer([1], 1) == 1
        assert [ch.try_receive()[0] for _ in range(5)] == [1, 2, "a", "b", "c"]

        refused = Channel(1)
        src = RecordingSource(refused, [1, 2, 3])
        assert src.feed() == 1
        refused.close()                           # closing resumes a refused source ...
        assert src.resumes == [1]
        with pytest.raises(ChannelClosed):        # ... whose next offer raises
            refused.offer([4])

        detached = Channel(1)
        src = RecordingSource(detached, [1, 2])
        assert src.feed() == 1
        detached.set_source(None)
        assert await detached.receive() == (1, True)
        assert src.resumes == []
    run(main)


def test_a_protocol_like_producer_is_paused_and_resumed_exactly_when_room_appears(run):
    """The client's pattern: a loop callback delivers batches with offer(); when a batch
    is cut short it holds the rest and pauses (the transport would stop reading) until
    the channel resumes it; an ``async for`` consumer reads slowly."""
    async def main():
        loop = asyncio.get_running_loop()
        ch = Channel(8)
        total = 5000
        state = {"next": 0, "held": [], "paused": False, "pauses": 0, "early": 0}

        class Proto:
            def resume(self):
                if not state["paused"]:
                    state["early"] += 1
                    return
                assert len(ch) <= ch.capacity // 2
                held = state["held"]
                i = ch.offer(held)
                state["held"] = held[i:]
                if not state["held"]:
                    state["paused"] = False
                    loop.call_soon(data_received)

        def data_received():
            if state["paused"] or state["next"] >= total:
                if state["next"] >= total and not state["paused"]:
                    ch.close()
                return
            start = state["next"]
            batch = list(range(start, min(total, start + random.randint(1, 20))))
            state["next"] = batch[-1] + 1
            i = ch.offer(batch)
            if i < len(batch):
                state["held"] = batch[i:]
                state["paused"] = True
                state["pauses"] += 1
            else:
                loop.call_soon(data_received)

        ch.set_source(Proto())
        loop.call_soon(data_received)
        got = []
        async for v in ch:
            got.append(v)
            if state["paused"]:   # else it would have been resumed by this receive
                assert len(ch) > ch.capacity // 2
            if random.random() < 0.2:
                await asyncio.sleep(0)
        return got, state

    got, state = run(main)
    assert got == list(range(5000))
    assert state["pauses"] > 50 and state["early"] == 0
