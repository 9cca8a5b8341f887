"""Receive micro-benchmarks of wsfast.asyncio.Channel: the client's hot path, a receive on a
channel that has values buffered, against asyncio.Queue and the sync wsfast.Channel.

    .venv/bin/python -m pytest benchmarks/test_async_channels_bench.py --benchmark-only
    .venv/bin/python -m benchmarks.test_async_channels_bench      # ns per receive, both loops

Each round takes ``N`` buffered values; the time is per value.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import pytest

import wsfast
from wsfast.asyncio import Channel

try:
    import uvloop
except ImportError:
    uvloop = None

N = 100_000


async def _await_receive(ch) -> None:
    receive = ch.receive
    for _ in range(N):
        await receive()


async def _async_for(ch) -> None:
    n = 0
    async for _ in ch:
        n += 1
        if n == N:
            break


async def _try_receive(ch) -> None:
    take = ch.try_receive
    for _ in range(N):
        take()


async def _queue_get(q) -> None:
    get = q.get
    for _ in range(N):
        await get()


async def _queue_get_nowait(q) -> None:
    get = q.get_nowait
    for _ in range(N):
        get()


async def _sync_channel_receive(ch) -> None:
    receive = ch.receive
    for _ in range(N):
        receive()


async def _deque_popleft(d) -> None:   # the floor: the loop and a popleft
    pop = d.popleft
    for _ in range(N):
        pop()


def _filled_channel() -> Channel:
    ch = Channel(N)
    ch.offer(range(N))
    return ch


class _Held:
    """The engine's pattern: a channel of capacity 256 fed by a source that holds the
    rest of a batch and offers it from an index when resumed at half capacity."""

    def __init__(self, ch: Channel, values: list) -> None:
        self.ch, self.values, self.i = ch, values, 0
        ch.set_source(self)
        self.i = ch.offer(values)

    def resume(self) -> None:
        if self.i < len(self.values):
            self.i = self.ch.offer(self.values, self.i)


def _held_channel() -> Channel:
    ch = Channel(256)
    _Held(ch, list(range(N)))   # the channel keeps its source
    return ch


def _filled_queue() -> asyncio.Queue:
    q: asyncio.Queue = asyncio.Queue()
    for i in range(N):
        q.put_nowait(i)
    return q


def _filled_sync() -> wsfast.Channel:
    ch = wsfast.Channel(N)
    ch.offer(list(range(N)))
    return ch


CASES = {
    "await ch.receive()": (_await_receive, _filled_channel),
    "async for v in ch": (_async_for, _filled_channel),
    "async for v in ch (capacity 256, held)": (_async_for, _held_channel),
    "await ch.receive() (256, held)": (_await_receive, _held_channel),
    "ch.try_receive()": (_try_receive, _filled_channel),
    "await asyncio.Queue.get()": (_queue_get, _filled_queue),
    "asyncio.Queue.get_nowait()": (_queue_get_nowait, _filled_queue),
    "sync wsfast.Channel.receive()": (_sync_channel_receive, _filled_sync),
    "deque.popleft() (floor)": (_deque_popleft, lambda: deque(range(N))),
}


def _loop_factories():
    yield "asyncio", asyncio.new_event_loop
    if uvloop is not None:
        yield "uvloop", uvloop.new_event_loop


def _best_ns(loop, fn, make, rounds: int = 7) -> float:
    best = float("inf")
    for _ in range(rounds):
        target = loop.run_until_complete(_make(make))
        t = time.perf_counter()
        loop.run_until_complete(fn(target))
        best = min(best, time.perf_counter() - t)
    return best / N * 1e9


async def _make(make):
    return make()   # inside the loop: asyncio.Queue binds to it


@pytest.fixture(params=[name for name, _ in _loop_factories()])
def loop(request):
    factory = dict(_loop_factories())[request.param]
    lp = factory()
    yield lp
    lp.close()


@pytest.mark.parametrize("case", list(CASES))
def test_buffered_receive(benchmark, loop, case):
    pytest.importorskip("pytest_benchmark")
    fn, make = CASES[case]
    benchmark.group = f"buffered receive (per round of {N} values)"
    benchmark.extra_info["values"] = N

    def setup():
        return (loop.run_until_complete(_make(make)),), {}

    benchmark.pedantic(lambda target: loop.run_until_complete(fn(target)), setup=setup,
                       rounds=15, iterations=1)


def main() -> None:
    for name, factory in _loop_factories():
        loop = factory()
        try:
            print(f"{name}: ns per buffered receive (best of 7 rounds of {N})")
            for case, (fn, make) in CASES.items():
                print(f"  {case:40s} {_best_ns(loop, fn, make):7.1f}")
        finally:
            loop.close()


if __name__ == "__main__":
    main()
