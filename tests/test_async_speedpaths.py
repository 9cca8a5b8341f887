"""The asyncio front end's fast paths (issue 12 item 4) keep §7's semantics exactly.

* A take calls ``Channel._took`` only at the low-water mark, not for every value.
* The engine offers what it holds from an index.
* ``close()`` returns once the transport is closed.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from wsfast.asyncio.channels import Channel
from wsfast.asyncio.client import connect

try:
    import uvloop
except ImportError:
    uvloop = None

pytestmark = pytest.mark.timeout(120)

LOOPS = ["asyncio"] + (["uvloop"] if uvloop is not None else [])


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
