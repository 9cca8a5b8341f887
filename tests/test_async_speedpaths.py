"""The asyncio front end's fast paths (issue 12 item 4) keep §7's semantics exactly.

* ``async for`` over a channel: the compiled iterator (``wsfast.asyncio._chaniter``) and
  its pure-Python twin (``Channel._values``) behave the same; both run here whichever one
  ``Channel.__aiter__`` picks (``WSFAST_PURE_PYTHON=1`` picks the twin).
* A take calls ``Channel._took`` only at the low-water mark, not for every value.
* The engine offers what it holds from an index, and a send is written at once when
  nothing is queued (the sends that follow in the same pass of the loop are coalesced).
* ``close()`` returns once the transport is closed.
"""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from wsfast.asyncio import channels as chmod
from wsfast.asyncio.channels import Channel
from wsfast.asyncio.client import connect

try:
    import uvloop
except ImportError:
    uvloop = None

pytestmark = pytest.mark.timeout(120)

LOOPS = ["asyncio"] + (["uvloop"] if uvloop is not None else [])


def _compiled_iter(ch):
    return chmod._CValues(ch, ch._buf)


def _pure_iter(ch):
    return ch._values()


IMPLS = {"pure": _pure_iter}
try:
    from wsfast.asyncio._chaniter import Values as _Values
except ImportError:   # not built
    _Values = None
else:
    IMPLS["compiled"] = lambda ch: _Values(ch, ch._buf)


@pytest.fixture(params=LOOPS)
def run(request):
    def go(fn, timeout: float = 30.0):
        async def bounded():
            return await asyncio.wait_for(fn(), timeout)
        factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop
        loop = factory()
        try:
            return loop.run_until_complete(bounded())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
    return go


@pytest.fixture(params=sorted(IMPLS))
def values(request):
    """An ``async for`` iterator over a channel, of each implementation."""
    return IMPLS[request.param]


def test_the_compiled_iterator_is_used_unless_pure_python_is_asked_for(monkeypatch):
    import os
    pure = os.environ.get("WSFAST_PURE_PYTHON", "") not in ("", "0")
    it = Channel(1).__aiter__()
    if pure or _Values is None:
        assert not chmod.ITER_COMPILED and type(it).__name__ == "async_generator"
    else:
        assert chmod.ITER_COMPILED and type(it) is _Values


def test_values_in_order_then_the_end(run, values):
    async def main():
        ch = Channel(4)
        got = []

        async def produce():
            for i in range(1000):
                await ch.send(i)
            ch.close()

        task = asyncio.ensure_future(produce())
        async for v in values(ch):
            got.append(v)
        await task
        assert got == list(range(1000))
    run(main)


def test_a_buffered_value_completes_without_suspending(values):
    ch = Channel(4)
    ch.offer(["a", "b"])
    it = values(ch)
    step = it.__anext__()
    with pytest.raises(StopIteration) as stop:
        step.send(None)
    assert stop.value.value == "a" and len(ch) == 1
    ch.close()
    step = it.__anext__()
    with pytest.raises(StopIteration) as stop:
        step.send(None)
    assert stop.value.value == "b"
    step = it.__anext__()
    with pytest.raises(StopAsyncIteration):
        step.send(None)   # closed and drained: the end, also without suspending


# (the pure twin's dropped awaitable is an async generator's asend(): Python 3.13 warns that it
# was never awaited, which is the point here)
@pytest.mark.filterwarnings("ignore:coroutine method 'asend':RuntimeWarning")
def test_an_awaitable_never_driven_takes_nothing(run, values):
    # The value is taken when the awaitable runs, not when __anext__ makes it: a
    # wait_for with timeout 0 cancels the task before its first step. (After a
    # cancellation the async generator is finished, as an async for loop is: a new
    # iterator goes on, for both.)
    async def main():
        ch = Channel(4)
        ch.offer([1, 2])
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(values(ch).__anext__(), 0)
        assert len(ch) == 2
        values(ch).__anext__()   # made and dropped
        assert len(ch) == 2
        assert await values(ch).__anext__() == 1
    run(main)


def test_a_cancelled_wait_takes_nothing_and_passes_the_wakeup_on(run, values):
    async def main():
        ch = Channel(0)
        it1, it2 = values(ch), values(ch)
        t1 = asyncio.ensure_future(it1.__anext__())
        t2 = asyncio.ensure_future(it2.__anext__())
        await asyncio.sleep(0)
        assert ch.try_send("v")   # wakes the first waiter, the value waits in the buffer
        t1.cancel()               # woken, then cancelled before it ran
        with pytest.raises(asyncio.CancelledError):
            await t1
        assert await asyncio.wait_for(t2, 1) == "v"
        assert len(ch) == 0
    run(main)


def test_numbered_values_through_wait_for_arrive_whole_and_in_order(run, values):
    n = 20_000

    async def main():
        ch = Channel(16)

        async def produce():
            for i in range(n):
                await ch.send(i)
                if i % 500 == 0:
                    await asyncio.sleep(0.001)   # the receiver times out meanwhile
            ch.close()

        task = asyncio.ensure_future(produce())
        got = []
        timeouts = 0
        while True:
            try:
                got.append(await asyncio.wait_for(values(ch).__anext__(), 0.0002))
            except asyncio.TimeoutError:
                timeouts += 1
                continue
            except StopAsyncIteration:
                break
        await task
        assert got == list(range(n))
        assert timeouts > 10, timeouts
    run(main, timeout=60)


def test_under_a_tracer_the_python_level_protocol_does_the_same(run, values):
    # sys.settrace makes the interpreter use __next__/send/throw instead of am_send.
    async def main():
        ch = Channel(2)
        waiter = asyncio.ensure_future(values(ch).__anext__())
        await asyncio.sleep(0)
        waiter.cancel()            # thrown into the waiting iterator
        with pytest.raises(asyncio.CancelledError):
            await waiter
        ch.offer([1, 2])
        it = values(ch)
        assert [await it.__anext__(), await it.__anext__()] == [1, 2]
        later = asyncio.ensure_future(it.__anext__())
        await asyncio.sleep(0)
        ch.close()
        with pytest.raises(StopAsyncIteration):
            await later

    def tracer(frame, event, arg):
        return None
    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        run(main)
    finally:
        sys.settrace(old)


class _Source:
    """Holds a batch and offers it from an index when resumed, as the engine does."""

    def __init__(self, ch, values):
        self.ch, self.values = ch, values
        ch.set_source(self)
        self.i = ch.offer(values)
        self.resumes = 0

    def resume(self):
        self.resumes += 1
        if self.i < len(self.values):
            self.i = self.ch.offer(self.values, self.i)


@pytest.mark.parametrize("take", ["async for", "receive", "try_receive"])
def test_took_runs_at_the_low_water_mark_only(run, monkeypatch, take):
    calls = []
    orig = Channel._took

    def counting(self):
        calls.append(len(self._buf))
        orig(self)
    monkeypatch.setattr(Channel, "_took", counting)

    async def main():
        ch = Channel(256)
        src = _Source(ch, list(range(10_000)))
        got = []
        if take == "async for":
            async for v in ch:
                got.append(v)
                if len(got) == 10_000:
                    break
        elif take == "receive":
            for _ in range(10_000):
                got.append((await ch.receive())[0])
        else:
            for _ in range(10_000):
                got.append(ch.try_receive()[0])
        assert got == list(range(10_000))
        # resumed at 128 each time: ~10,000 / 128 resumes, _took at each and no other take
        assert 70 <= src.resumes <= 80, src.resumes
        assert len(calls) <= src.resumes + 1, len(calls)
        assert all(n <= 128 for n in calls)
    run(main)


def test_a_parked_sender_is_let_in_by_the_first_take(run):
    async def main():
        ch = Channel(3)
        for i in range(3):
            ch.try_send(i)
        sent = asyncio.ensure_future(ch.send(3))
        await asyncio.sleep(0)
        assert not sent.done()
        assert ch.try_receive() == (0, True)   # room: the sender is woken at once
        assert await asyncio.wait_for(sent, 1) is True
        assert [ch.try_receive()[0] for _ in range(3)] == [1, 2, 3]
    run(main)


# ---------------------------------------------------------------------- the engine


def _numbered(n):
    def handler(ws):
        for i in range(n):
            ws.send(json.dumps({"i": i}))
        for _ in ws:
            pass
    return handler


def test_the_engine_offers_what_it_holds_from_an_index(run, ws_server, monkeypatch):
    seen = []
    orig = Channel.offer

    def offer(self, values, start=0, *, overflow=False):
        seen.append((id(values), len(values), start))
        return orig(self, values, start, overflow=overflow)
    monkeypatch.setattr(Channel, "offer", offer)
    srv = ws_server(_numbered(5000))

    async def main():
        async with connect(srv.url, channel_capacity=8) as c:
            await asyncio.sleep(0.3)   # the server's burst arrives; the channel is full
            n = 0
            async for msg in c.channel():
                assert json.loads(msg.data)["i"] == n
                n += 1
                if n == 5000:
                    break
    run(main)
    resumed = [s for s in seen if s[2] > 0]
    assert resumed, "nothing was offered from an index"
    # a held batch is offered again as the same list, from further on each time
    by_list = {}
    for ident, size, start in seen:
        by_list.setdefault((ident, size), []).append(start)
    assert any(len(starts) > 2 and starts == sorted(starts) for starts in by_list.values())


def test_a_send_is_written_at_once_and_the_next_ones_of_the_pass_coalesce(run, ws_server):
    srv = ws_server()

    async def main():
        async with connect(srv.url) as c:
            proto = c._conn.proto
            await asyncio.sleep(0.05)
            await c.send("one")
            assert proto.output_size == 0       # written in the send itself
            await c.send("two")
            await c.send("three")
            assert proto.output_size > 0        # queued for the end of this pass
            await asyncio.sleep(0)
            assert proto.output_size == 0
            got = [(await c.channel().receive())[0].data for _ in range(3)]
            assert got == ["one", "two", "three"]
            await asyncio.sleep(0.05)
            await c.send("four")                # a new pass: at once again
            assert proto.output_size == 0
            assert (await c.channel().receive())[0].data == "four"
    run(main)


def test_close_returns_once_the_transport_is_closed(run, ws_server):
    srv = ws_server(_numbered(10))

    async def main():
        c = await connect(srv.url)
        async for _ in c.channel():
            break
        await c.close()
        assert c._conn._transport.is_closing()
        assert c._conn._lost.is_set()
    for _ in range(5):
        run(main)
