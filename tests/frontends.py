"""Both front ends behind the sync API, so that one test runs on each (parametrise, do not copy).

``make("sync")`` calls ``wsfast`` itself. ``make("asyncio")`` (and ``make("uvloop")``)
run ``wsfast.asyncio`` on an event loop of their own in a thread, and show it through
the sync client's surface: ``connect(...)`` returns an object with
``send``, ``ping``, ``close``, ``channel().receive(timeout)``, the same attributes and
the same errors; ``reconnecting(...)`` an iterator of such clients with ``close()``.
Each call runs as a task on that loop, in a copy of the caller's
context, so a policy scope of the calling thread applies as it would in a task. A
``receive`` with a timeout is ``asyncio.wait_for`` on the channel, which the asyncio
front end promises loses nothing when it expires (Timeout, as the sync channel raises).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any, Callable, Optional

import pytest

import wsfast
import wsfast.asyncio as wsa

try:
    import uvloop
except ImportError:   # pragma: no cover - the test extra installs it
    uvloop = None

CALL_BOUND = 60.0   # seconds: no facade call waits longer than this for its loop


class LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self, kind: str) -> None:
        self.loop = uvloop.new_event_loop() if kind == "uvloop" else asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"{kind}-loop", daemon=True)
        self.thread.start()

    def run(self, make: Callable[[], Any], timeout: Optional[float] = None) -> Any:
        """Run the coroutine ``make()`` as a task on the loop, in a copy of this thread's
        context; return its result or raise its exception."""
        ctx = contextvars.copy_context()
        done = threading.Event()
        box: list = []

        def start() -> None:
            task = ctx.run(self.loop.create_task, make())
            task.add_done_callback(lambda t: (box.append(t), done.set()))

        self.loop.call_soon_threadsafe(start)
        if not done.wait(CALL_BOUND if timeout is None else timeout + CALL_BOUND):
            raise AssertionError("the event loop did not finish a call in time")
        return box[0].result()

    def get(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` called in the loop's thread."""
        async def call() -> Any:
            return fn()
        return self.run(call)

    def stop(self) -> None:
        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        try:
            self.run(drain)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            if not self.thread.is_alive():
                self.loop.close()


class AsyncChannel:
    """A ``wsfast.asyncio.Channel`` seen through the sync channel's receive side."""

    def __init__(self, lt: LoopThread, channel: wsa.Channel) -> None:
        self._lt = lt
        self._ch = channel

    def receive(self, timeout: Optional[float] = None) -> tuple:
        """As ``wsfast.Channel.receive``: raises wsfast.Timeout when ``timeout`` expires."""
        async def receive() -> tuple:
            ready = self._ch.try_receive()   # (a value, or the end, at once: as timeout=0 polls)
            if ready is not None:
                return ready
            if timeout is None:
                return await self._ch.receive()
            if timeout <= 0:
                raise wsfast.Timeout("channel receive timed out after 0s")
            try:
                return await asyncio.wait_for(self._ch.receive(), timeout)
            except asyncio.TimeoutError:
                raise wsfast.Timeout(f"channel receive timed out after {timeout}s") from None
        return self._lt.run(receive, timeout)

    def try_receive(self) -> Optional[tuple]:
        return self._lt.get(self._ch.try_receive)

    def close(self) -> None:
        self._lt.get(self._ch.close)

    def __iter__(self):
        while True:
            value, ok = self.receive()
            if not ok:
                return
            yield value

    def __len__(self) -> int:
        return self._lt.get(lambda: len(self._ch))

    @property
    def closed(self) -> bool:
        return self._lt.get(lambda: self._ch.closed)


class AsyncClient:
    """A ``wsfast.asyncio.Client`` seen through the sync client's surface."""

    def __init__(self, lt: LoopThread, client: wsa.Client) -> None:
        self._lt = lt
        self._client = client
        self._channel = AsyncChannel(lt, client.channel())

    def channel(self) -> AsyncChannel:
        return self._channel

    def send(self, data: Any, type: Optional[int] = None) -> bool:
        return self._lt.run(lambda: self._client.send(data, type))

    def ping(self, data: Any = b"") -> bool:
        return self._lt.run(lambda: self._client.ping(data))

    def close(self, code: int = 1000, reason: str = "") -> bool:
        return self._lt.run(lambda: self._client.close(code, reason))

    def __getattr__(self, name: str) -> Any:   # url, proxy, close_code, error, stats, ...
        if name.startswith("_"):
            raise AttributeError(name)
        return self._lt.get(lambda: getattr(self._client, name))

    def __enter__(self) -> AsyncClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.close()
        except wsfast.ConnectionClosed:
            pass


class AsyncReconnecting:
    """A ``wsfast.asyncio.Reconnecting`` seen through the sync iterator's surface: each
    ``next()`` is one ``__anext__`` on the loop; ``close()`` may come from any thread."""

    def __init__(self, lt: LoopThread, stream: Any) -> None:
        self._lt = lt
        self._stream = stream

    def __iter__(self) -> AsyncReconnecting:
        return self

    def __next__(self) -> AsyncClient:
        try:
            client = self._lt.run(lambda: self._stream.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None
        return AsyncClient(self._lt, client)

    def close(self) -> None:
        self._lt.get(self._stream.close)

    @property
    def failures(self) -> list:
        return self._lt.get(lambda: list(self._stream.failures))

    def __enter__(self) -> AsyncReconnecting:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._lt.run(self._stream.aclose)


class AsyncFrontEnd:
    """``connect`` of ``wsfast.asyncio`` on a loop thread, called like ``wsfast.connect``."""

    def __init__(self, kind: str) -> None:
        self.name = kind
        self.lt = LoopThread(kind)
        self._made: list = []

    def connect(self, url: str, options: Any = None, /, **kwargs: Any) -> AsyncClient:
        async def connect() -> wsa.Client:
            return await wsa.connect(url, options, **kwargs)
        client = AsyncClient(self.lt, self.lt.run(connect))
        self._made.append(client)
        return client

    def reconnecting(self, url: str, options: Any = None, /, **kwargs: Any) -> AsyncReconnecting:
        return AsyncReconnecting(self.lt, wsa.reconnecting(url, options, **kwargs))

    def close(self) -> None:
        close_all(self._made)   # before the loop stops
        self.lt.stop()


class SyncFrontEnd:
    name = "sync"

    def __init__(self) -> None:
        self._made: list = []

    def connect(self, url: str, options: Any = None, /, **kwargs: Any) -> wsfast.Client:
        client = wsfast.connect(url, options, **kwargs)
        self._made.append(client)
        return client

    @staticmethod
    def reconnecting(url: str, options: Any = None, /, **kwargs: Any) -> wsfast.Reconnecting:
        return wsfast.reconnecting(url, options, **kwargs)

    def close(self) -> None:
        close_all(self._made)


def close_all(made: list) -> None:
    """Close every client a front end made, also one already closed: that close() waits
    for the end of TCP, so no reader thread or transport outlives the test (an asyncio
    transport left open when its loop stops is collected later, in some other test, as an
    unclosed transport)."""
    while made:
        try:
            made.pop(0).close()
        except wsfast.ConnectionClosed:
            pass


FRONT_ENDS = ["sync", pytest.param("asyncio", marks=pytest.mark.asyncio_twin)]   # the pair
ALL_LOOPS = FRONT_ENDS + [pytest.param("uvloop", marks=pytest.mark.asyncio_twin)]  # and uvloop


def make(kind: str) -> Any:
    return SyncFrontEnd() if kind == "sync" else AsyncFrontEnd(kind)
