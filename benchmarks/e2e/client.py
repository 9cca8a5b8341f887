"""Benchmark clients: one library per client, one run per process (the runner pins it).

    python -m benchmarks.e2e.client --client wsfast --scenario ticks --count 1000000 \\
        --url ws://127.0.0.1:PORT/ [--run ID]

prints one JSON line: client, scenario, messages, seconds, cpu_seconds (the process's CPU
time over the same interval), bytes, ok, error (and rss_kib_per_conn for the memory
scenario). Libraries are imported lazily: this module
also runs under the separate Python 3.12 interpreter that has websocket-rs. The asyncio
clients run on uvloop; those whose name ends in "-default" on asyncio's default loop.

Every client counts what it receives and keeps the last message; the run is an error
(not a number) unless the count and the last message are exactly what the server sent.
The clock starts just before the client sends its "start:<run>" message (the server
waits for it) and stops when the client's receive loop ends (server's close frame), at
the last echo, or at the server's "done" in the send scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import socket
import sys
import time
import traceback
from typing import Any, Callable, Dict, Optional

from .payloads import (
    SCENARIOS,
    SEND_POOL,
    Scenario,
    close_frame,
    expected_last,
    mask_frame,
    payload_bytes,
    send_message,
    tick,
)

_cpu_marks: list = []


def perf() -> float:
    """The benchmark clock; each reading also notes the process's CPU time (all threads),
    so that the two readings whose difference is the result's seconds (the clock's start
    and stop) give the CPU seconds of the timed interval."""
    cpu = time.process_time()
    t = time.perf_counter()
    _cpu_marks.append((t, cpu))
    return t


def timed_cpu(seconds: float) -> Optional[float]:
    marks = _cpu_marks
    for j in range(len(marks) - 1, 0, -1):
        for i in range(j):
            if marks[j][0] - marks[i][0] == seconds:
                return marks[j][1] - marks[i][1]
    return None

MASK = SEND_POOL - 1
MAX_SIZE = 1 << 24


class Ctx:
    def __init__(self, scenario: Scenario, count: int, url: str, run: str) -> None:
        self.scenario = scenario
        self.count = count
        self.url = url
        self.start = f"start:{run}"
        self.mode = scenario.mode
        self.deflate = scenario.deflate


class Result:
    def __init__(self, n: int, last: Any, seconds: float, nbytes: int = -1, **extra: Any) -> None:
        self.n, self.last, self.seconds, self.nbytes, self.extra = n, last, seconds, nbytes, extra


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def send_pool() -> list:
    return [send_message(i) for i in range(SEND_POOL)]


def measure_memory(open_one: Callable[[], Any], m: int) -> Result:
    keep = [open_one()]              # warm-up: lazy imports, first-connection allocations
    gc.collect()
    time.sleep(0.3)
    r0 = rss_kib()
    for _ in range(m):
        keep.append(open_one())
    gc.collect()
    time.sleep(0.5)
    r1 = rss_kib()
    return Result(m, None, 0.0, rss_before_kib=r0, rss_after_kib=r1,
                  rss_kib_per_conn=(r1 - r0) / m, _keep=keep)


# The event loop of the asyncio clients: uvloop, or asyncio's default loop for the
# "-default" clients (main() sets it from the client's name).
LOOP = "uvloop"


def run_async(coro_fn: Callable[[], Any]) -> Any:
    if LOOP == "asyncio":
        return asyncio.run(coro_fn())
    import uvloop
    return uvloop.run(coro_fn())


# ---------------------------------------------------------------- wsfast

class Wsfast:
    pure = False
    receive_loop = False
    capacity = None   # channel_capacity: None keeps the default (256)

    def __init__(self) -> None:
        import wsfast
        self.ws = wsfast
        if wsfast.COMPILED == self.pure:
            raise RuntimeError(f"wsfast.COMPILED is {wsfast.COMPILED}, this client needs "
                               f"{'the pure-Python' if self.pure else 'the compiled'} codec")

    def connect(self, ctx: Ctx):
        kw: Dict[str, Any] = {}
        if self.capacity is not None:
            kw["channel_capacity"] = self.capacity
        if ctx.deflate == "takeover":
            kw["compression"] = self.ws.COMPRESSION.CONTEXT_TAKEOVER
        elif ctx.deflate == "nct":
            kw["compression"] = self.ws.COMPRESSION.NO_CONTEXT
        return self.ws.connect(ctx.url, **kw)

    def stream(self, ctx: Ctx) -> Result:
        c = self.connect(ctx)
        ch = c.channel()
        n = nbytes = 0
        last = None
        mode = ctx.mode
        t0 = perf()
        c.send(ctx.start)
        if not self.receive_loop:
            if mode == "text":
                for msg in ch:
                    n += 1
                    last = msg.data
            elif mode == "json":
                from orjson import loads
                for msg in ch:
                    n += 1
                    last = loads(msg.data)
            else:
                for msg in ch:
                    n += 1
                    last = msg.data
                    nbytes += len(last)
        else:
            recv = ch.receive
            if mode == "text":
                while True:
                    msg, ok = recv()
                    if not ok:
                        break
                    n += 1
                    last = msg.data
            elif mode == "json":
                from orjson import loads
                while True:
                    msg, ok = recv()
                    if not ok:
                        break
                    n += 1
                    last = loads(msg.data)
            else:
                while True:
                    msg, ok = recv()
                    if not ok:
                        break
                    n += 1
                    last = msg.data
                    nbytes += len(last)
        t1 = perf()
        if c.error is not None or c.close_code != 1000:
            raise RuntimeError(f"connection ended with {c.close_code} {c.error!r}")
        return Result(n, last, t1 - t0, nbytes)

    def echo(self, ctx: Ctx) -> Result:
        c = self.connect(ctx)
        ch = c.channel()
        send = c.send
        msg = tick(0)
        n = 0
        last = None
        c.send(ctx.start)
        t0 = perf()
        if self.receive_loop:
            recv = ch.receive
            for _ in range(ctx.count):
                send(msg)
                m, ok = recv()
                if not ok:
                    break
                n += 1
                last = m.data
        else:
            it = iter(ch)
            for _ in range(ctx.count):
                send(msg)
                last = next(it).data
                n += 1
        t1 = perf()
        c.close()
        return Result(n, last, t1 - t0)

    def send(self, ctx: Ctx) -> Result:
        c = self.connect(ctx)
        pool = send_pool()
        send = c.send
        c.send(ctx.start)
        t0 = perf()
        for i in range(ctx.count):
            send(pool[i & MASK])
        m, ok = c.channel().receive()
        t1 = perf()
        c.close()
        return Result(ctx.count, m.data if ok else None, t1 - t0)

    def memory(self, ctx: Ctx) -> Result:
        return measure_memory(lambda: self.ws.connect(ctx.url), ctx.count)


class WsfastReceive(Wsfast):
    receive_loop = True


class WsfastLargeChannel(Wsfast):
    """The same loop with a deeper receive channel: fewer thread hand-offs per message."""

    capacity = 10000


class WsfastPure(Wsfast):
    pure = True


# ---------------------------------------------------------------- wsfast.asyncio

class WsfastAsyncio:
    """wsfast.asyncio.client.connect: ``async for msg in ch`` (or ``await ch.receive()``)."""

    receive_loop = False

    def __init__(self) -> None:
        import wsfast
        from wsfast.asyncio.client import connect
        if not wsfast.COMPILED:
            raise RuntimeError("wsfast.COMPILED is False, this client needs the compiled codec")
        self.ws = wsfast
        self._connect = connect

    def connect(self, ctx: Ctx):
        kw: Dict[str, Any] = {}
        if ctx.deflate == "takeover":
            kw["compression"] = self.ws.COMPRESSION.CONTEXT_TAKEOVER
        elif ctx.deflate == "nct":
            kw["compression"] = self.ws.COMPRESSION.NO_CONTEXT
        return self._connect(ctx.url, **kw)

    def stream(self, ctx: Ctx) -> Result:
        async def main() -> Result:
            c = await self.connect(ctx)
            ch = c.channel()
            n = nbytes = 0
            last = None
            mode = ctx.mode
            t0 = perf()
            await c.send(ctx.start)
            if not self.receive_loop:
                if mode == "text":
                    async for msg in ch:
                        n += 1
                        last = msg.data
                elif mode == "json":
                    from orjson import loads
                    async for msg in ch:
                        n += 1
                        last = loads(msg.data)
                else:
                    async for msg in ch:
                        n += 1
                        last = msg.data
                        nbytes += len(last)
            else:
                recv = ch.receive
                if mode == "text":
                    while True:
                        msg, ok = await recv()
                        if not ok:
                            break
                        n += 1
                        last = msg.data
                elif mode == "json":
                    from orjson import loads
                    while True:
                        msg, ok = await recv()
                        if not ok:
                            break
                        n += 1
                        last = loads(msg.data)
                else:
                    while True:
                        msg, ok = await recv()
                        if not ok:
                            break
                        n += 1
                        last = msg.data
                        nbytes += len(last)
            t1 = perf()
            if c.error is not None or c.close_code != 1000:
                raise RuntimeError(f"connection ended with {c.close_code} {c.error!r}")
            return Result(n, last, t1 - t0, nbytes)
        return run_async(main)

    def echo(self, ctx: Ctx) -> Result:
        async def main() -> Result:
            c = await self.connect(ctx)
            ch = c.channel()
            send = c.send
            msg = tick(0)
            n = 0
            last = None
            await send(ctx.start)
            t0 = perf()
            if self.receive_loop:
                recv = ch.receive
                for _ in range(ctx.count):
                    await send(msg)
                    m, ok = await recv()
                    if not ok:
                        break
                    n += 1
                    last = m.data
            else:
                it = ch.__aiter__()
                for _ in range(ctx.count):
                    await send(msg)
                    last = (await it.__anext__()).data
                    n += 1
            t1 = perf()
            await c.close()
            return Result(n, last, t1 - t0)
        return run_async(main)

    def send(self, ctx: Ctx) -> Result:
        async def main() -> Result:
            c = await self.connect(ctx)
            pool = send_pool()
            send = c.send
            await send(ctx.start)
            t0 = perf()
            for i in range(ctx.count):
                await send(pool[i & MASK])
            m, ok = await c.channel().receive()
            t1 = perf()
            await c.close()
            return Result(ctx.count, m.data if ok else None, t1 - t0)
        return run_async(main)

    def memory(self, ctx: Ctx) -> Result:
        async def main() -> Result:
            keep = [await self._connect(ctx.url)]
            gc.collect()
            await asyncio.sleep(0.3)
            r0 = rss_kib()
            for _ in range(ctx.count):
                keep.append(await self._connect(ctx.url))
            gc.collect()
            await asyncio.sleep(0.5)
            r1 = rss_kib()
            return Result(ctx.count, None, 0.0, rss_before_kib=r0, rss_after_kib=r1,
                          rss_kib_per_conn=(r1 - r0) / ctx.count)
        return run_async(main)


class WsfastAsyncioReceive(WsfastAsyncio):
    receive_loop = True


# ---------------------------------------------------------------- picows (core API)

class Picows:
    def __init__(self) -> None:
        import picows
        self.pw = picows

    def _listener_classes(self):
        pw = self.pw
        TEXT, BINARY, CONT, CLOSE = (pw.WSMsgType.TEXT, pw.WSMsgType.BINARY,
                                     pw.WSMsgType.CONTINUATION, pw.WSMsgType.CLOSE)

        class Base(pw.WSListener):
            def __init__(self) -> None:
                self.n = 0
                self.nbytes = 0
                self.last = None
                self.parts: list = []
                self.t_end = 0.0
                self.future = None
                self.paused = None

            def on_close(self, transport, frame) -> None:
                self.t_end = perf()
                transport.send_close(frame.get_close_code())

            def pause_writing(self) -> None:
                self.paused = asyncio.get_running_loop().create_future()

            def resume_writing(self) -> None:
                fut, self.paused = self.paused, None
                if fut is not None and not fut.done():
                    fut.set_result(None)

        class Text(Base):
            def on_ws_frame(self, transport, frame) -> None:
                t = frame.msg_type
                if t == TEXT:
                    if frame.fin:
                        self.n += 1
                        self.last = frame.get_payload_as_utf8_text()
                    else:
                        self.parts = [frame.get_payload_as_bytes()]
                elif t == CONT:
                    self.parts.append(frame.get_payload_as_bytes())
                    if frame.fin:
                        self.n += 1
                        self.last = b"".join(self.parts).decode("utf-8")
                elif t == CLOSE:
                    self.on_close(transport, frame)

        class Json(Base):
            def __init__(self) -> None:
                super().__init__()
                from orjson import loads
                self.loads = loads

            def on_ws_frame(self, transport, frame) -> None:
                t = frame.msg_type
                if t == TEXT:
                    self.n += 1
                    self.last = self.loads(frame.get_payload_as_utf8_text())
                elif t == CLOSE:
                    self.on_close(transport, frame)

        class Binary(Base):
            def on_ws_frame(self, transport, frame) -> None:
                t = frame.msg_type
                if t == BINARY:
                    self.n += 1
                    self.last = data = frame.get_payload_as_bytes()
                    self.nbytes += len(data)
                elif t == CLOSE:
                    self.on_close(transport, frame)

        class Reply(Base):
            """echo / send: each text message resolves the waiting future."""
            def on_ws_frame(self, transport, frame) -> None:
                t = frame.msg_type
                if t == TEXT:
                    self.n += 1
                    self.future.set_result(frame.get_payload_as_utf8_text())
                elif t == CLOSE:
                    self.on_close(transport, frame)

        return {"text": Text, "json": Json, "binary": Binary, "reply": Reply, "base": Base}

    def _connect(self, ctx: Ctx, kind: str):
        cls = self._listener_classes()[kind]
        return self.pw.ws_connect(cls, ctx.url, max_frame_size=MAX_SIZE)

    def stream(self, ctx: Ctx) -> Result:
        async def main() -> Result:
            transport, listener = await self._connect(ctx, ctx.mode)
            t0 = perf()
            transport.send(self.pw.WSMsgType.TEXT, ctx.start)
            await transport.wait_disconnected()
            if not listener.t_end:
                raise RuntimeError("disconnected without a close frame")
            return Result(listener.n, listener.last, listener.t_end - t0, listener.nbytes)
        return run_async(main)

    def echo(self, ctx: Ctx) -> Result:
        async def main() -> Result:
            loop = asyncio.get_running_loop()
            transport, listener = await self._connect(ctx, "reply")
            send, TEXT = transport.send, self.pw.WSMsgType.TEXT
            msg = tick(0)
            last = None
            send(TEXT, ctx.start)
            t0 = perf()
            for _ in range(ctx.count):
                listener.future = fut = loop.create_future()
                send(TEXT, msg)
                last = await fut
            t1 = perf()
            transport.send_close(self.pw.WSCloseCode.OK)
            await transport.wait_disconnected()
            return Result(listener.n, last, t1 - t0)
        return run_async(main)

    def send(self, ctx: Ctx) -> Result:
        async def main() -> Result:
            loop = asyncio.get_running_loop()
            transport, listener = await self._connect(ctx, "reply")
            send, TEXT = transport.send, self.pw.WSMsgType.TEXT
            pool = send_pool()
            listener.future = fut = loop.create_future()
            send(TEXT, ctx.start)
            t0 = perf()
            for i in range(ctx.count):
                send(TEXT, pool[i & MASK])
                if listener.paused is not None:
                    await listener.paused
            last = await fut
            t1 = perf()
            transport.send_close(self.pw.WSCloseCode.OK)
            await transport.wait_disconnected()
            return Result(ctx.count, last, t1 - t0)
        return run_async(main)

    def memory(self, ctx: Ctx) -> Result:
        async def main() -> Result:
            base = self._listener_classes()["base"]
            keep = [await self.pw.ws_connect(base, ctx.url)]
            gc.collect()
            await asyncio.sleep(0.3)
            r0 = rss_kib()
            for _ in range(ctx.count):
                keep.append(await self.pw.ws_connect(base, ctx.url))
            gc.collect()
            await asyncio.sleep(0.5)
            r1 = rss_kib()
            return Result(ctx.count, None, 0.0, rss_before_kib=r0, rss_after_kib=r1,
                          rss_kib_per_conn=(r1 - r0) / ctx.count)
        return run_async(main)


# ---------------------------------------------------------------- websockets-style async APIs

class AsyncWebsocketsAPI:
    """websockets.asyncio.client and picows.websockets share this API."""

    def connect(self, ctx: Ctx):
        raise NotImplementedError

    def stream(self, ctx: Ctx) -> Result:
        async def main() -> Result:
            ws = await self.connect(ctx)
            n = nbytes = 0
            last = None
            mode = ctx.mode
            t0 = perf()
            await ws.send(ctx.start)
            if mode == "text":
                async for data in ws:
                    n += 1
                    last = data
            elif mode == "json":
                from orjson import loads
                async for data in ws:
                    n += 1
                    last = loads(data)
            else:
                async for data in ws:
                    n += 1
                    last = data
                    nbytes += len(data)
            t1 = perf()
            await ws.close()
            return Result(n, last, t1 - t0, nbytes)
        return run_async(main)

    def echo(self, ctx: Ctx) -> Result:
        async def main() -> Result:
            ws = await self.connect(ctx)
            send, recv = ws.send, ws.recv
            msg = tick(0)
            n = 0
            last = None
            await send(ctx.start)
            t0 = perf()
            for _ in range(ctx.count):
                await send(msg)
                last = await recv()
                n += 1
            t1 = perf()
            await ws.close()
            return Result(n, last, t1 - t0)
        return run_async(main)

    def send(self, ctx: Ctx) -> Result:
        async def main() -> Result:
            ws = await self.connect(ctx)
            send = ws.send
            pool = send_pool()
            await send(ctx.start)
            t0 = perf()
            for i in range(ctx.count):
                await send(pool[i & MASK])
            last = await ws.recv()
            t1 = perf()
            await ws.close()
            return Result(ctx.count, last, t1 - t0)
        return run_async(main)

    def memory(self, ctx: Ctx) -> Result:
        async def main() -> Result:
            keep = [await self.connect(ctx)]
            gc.collect()
            await asyncio.sleep(0.3)
            r0 = rss_kib()
            for _ in range(ctx.count):
                keep.append(await self.connect(ctx))
            gc.collect()
            await asyncio.sleep(0.5)
            r1 = rss_kib()
            return Result(ctx.count, None, 0.0, rss_before_kib=r0, rss_after_kib=r1,
                          rss_kib_per_conn=(r1 - r0) / ctx.count)
        return run_async(main)


class WebsocketsAsyncio(AsyncWebsocketsAPI):
    def __init__(self) -> None:
        from websockets.asyncio.client import connect
        self._connect = connect

    def connect(self, ctx: Ctx):
        return self._connect(ctx.url, compression="deflate" if ctx.deflate else None,
                             max_size=MAX_SIZE)


class PicowsWebsockets(AsyncWebsocketsAPI):
    def __init__(self) -> None:
        from picows.websockets import connect
        self._connect = connect

    def connect(self, ctx: Ctx):
        return self._connect(ctx.url, compression="deflate" if ctx.deflate else None,
                             max_size=MAX_SIZE)


# ---------------------------------------------------------------- aiohttp

class Aiohttp:
    def __init__(self) -> None:
        import aiohttp
        self.aiohttp = aiohttp

    def _session(self):
        return self.aiohttp.ClientSession(connector=self.aiohttp.TCPConnector(limit=0))

    def _ws(self, session, ctx: Ctx):
        return session.ws_connect(ctx.url, compress=15 if ctx.deflate else 0,
                                  max_msg_size=MAX_SIZE)

    def stream(self, ctx: Ctx) -> Result:
        async def main() -> Result:
            async with self._session() as session:
                ws = await self._ws(session, ctx)
                n = nbytes = 0
                last = None
                mode = ctx.mode
                t0 = perf()
                await ws.send_str(ctx.start)
                if mode == "text":
                    async for msg in ws:
                        n += 1
                        last = msg.data
                elif mode == "json":
                    from orjson import loads
                    async for msg in ws:
                        n += 1
                        last = loads(msg.data)
                else:
                    async for msg in ws:
                        n += 1
                        last = msg.data
                        nbytes += len(last)
                t1 = perf()
                await ws.close()
                if ws.close_code != 1000:
                    raise RuntimeError(f"closed with {ws.close_code} {ws.exception()!r}")
                return Result(n, last, t1 - t0, nbytes)
        return run_async(main)

    def echo(self, ctx: Ctx) -> Result:
        async def main() -> Result:
            async with self._session() as session:
                ws = await self._ws(session, ctx)
                send, recv = ws.send_str, ws.receive_str
                msg = tick(0)
                n = 0
                last = None
                await send(ctx.start)
                t0 = perf()
                for _ in range(ctx.count):
                    await send(msg)
                    last = await recv()
                    n += 1
                t1 = perf()
                await ws.close()
                return Result(n, last, t1 - t0)
        return run_async(main)

    def send(self, ctx: Ctx) -> Result:
        async def main() -> Result:
            async with self._session() as session:
                ws = await self._ws(session, ctx)
                send = ws.send_str
                pool = send_pool()
                await send(ctx.start)
                t0 = perf()
                for i in range(ctx.count):
                    await send(pool[i & MASK])
                last = await ws.receive_str()
                t1 = perf()
                await ws.close()
                return Result(ctx.count, last, t1 - t0)
        return run_async(main)

    def memory(self, ctx: Ctx) -> Result:
        async def main() -> Result:
            async with self._session() as session:
                keep = [await self._ws(session, ctx)]
                gc.collect()
                await asyncio.sleep(0.3)
                r0 = rss_kib()
                for _ in range(ctx.count):
                    keep.append(await self._ws(session, ctx))
                gc.collect()
                await asyncio.sleep(0.5)
                r1 = rss_kib()
                return Result(ctx.count, None, 0.0, rss_before_kib=r0, rss_after_kib=r1,
                              rss_kib_per_conn=(r1 - r0) / ctx.count)
        return run_async(main)


# ---------------------------------------------------------------- sync iterables

class SyncIterAPI:
    """websockets.sync.client and websocket-rs's sync client: ``for msg in ws``."""

    def connect(self, ctx: Ctx):
        raise NotImplementedError

    def stream(self, ctx: Ctx) -> Result:
        ws = self.connect(ctx)
        n = nbytes = 0
        last = None
        mode = ctx.mode
        t0 = perf()
        ws.send(ctx.start)
        if mode == "text":
            for data in ws:
                n += 1
                last = data
        elif mode == "json":
            from orjson import loads
            for data in ws:
                n += 1
                last = loads(data)
        else:
            for data in ws:
                n += 1
                last = data
                nbytes += len(data)
        t1 = perf()
        ws.close()
        return Result(n, last, t1 - t0, nbytes)

    def echo(self, ctx: Ctx) -> Result:
        ws = self.connect(ctx)
        send, recv = ws.send, ws.recv
        msg = tick(0)
        n = 0
        last = None
        send(ctx.start)
        t0 = perf()
        for _ in range(ctx.count):
            send(msg)
            last = recv()
            n += 1
        t1 = perf()
        ws.close()
        return Result(n, last, t1 - t0)

    def send(self, ctx: Ctx) -> Result:
        ws = self.connect(ctx)
        send = ws.send
        pool = send_pool()
        send(ctx.start)
        t0 = perf()
        for i in range(ctx.count):
            send(pool[i & MASK])
        last = ws.recv()
        t1 = perf()
        ws.close()
        return Result(ctx.count, last, t1 - t0)

    def memory(self, ctx: Ctx) -> Result:
        return measure_memory(lambda: self.connect(ctx), ctx.count)


class WebsocketsSync(SyncIterAPI):
    def __init__(self) -> None:
        from websockets.sync.client import connect
        self._connect = connect

    def connect(self, ctx: Ctx):
        return self._connect(ctx.url, compression="deflate" if ctx.deflate else None,
                             max_size=MAX_SIZE, legacy=True)


class WebsocketRs(SyncIterAPI):
    def __init__(self) -> None:
        from websocket_rs.sync.client import connect
        self._connect = connect

    def connect(self, ctx: Ctx):
        if ctx.deflate:
            raise RuntimeError("websocket-rs's sync client has no permessage-deflate")
        return self._connect(ctx.url, receive_timeout=60.0)


# ---------------------------------------------------------------- websocket-client

class WebsocketClient:
    def __init__(self) -> None:
        import websocket
        self.websocket = websocket

    def connect(self, ctx: Ctx):
        if ctx.deflate:
            raise RuntimeError("websocket-client has no permessage-deflate")
        # skip_utf8_validation: recv() decodes text with bytes.decode, which validates;
        # the default extra check is a per-byte pure-Python DFA (without wsaccel)
        return self.websocket.create_connection(ctx.url, enable_multithread=False,
                                                skip_utf8_validation=True)

    def stream(self, ctx: Ctx) -> Result:
        ws = self.connect(ctx)
        recv = ws.recv
        n = nbytes = 0
        last = None
        mode = ctx.mode
        t0 = perf()
        ws.send(ctx.start)
        if mode == "text":
            while True:
                data = recv()
                if not data:      # "" after the close frame (answered by recv itself)
                    break
                n += 1
                last = data
        elif mode == "json":
            from orjson import loads
            while True:
                data = recv()
                if not data:
                    break
                n += 1
                last = loads(data)
        else:
            while True:
                data = recv()
                if not data:
                    break
                n += 1
                last = data
                nbytes += len(data)
        t1 = perf()
        ws.shutdown()
        return Result(n, last, t1 - t0, nbytes)

    def echo(self, ctx: Ctx) -> Result:
        return SyncIterAPI.echo(self, ctx)   # type: ignore[arg-type]

    def send(self, ctx: Ctx) -> Result:
        return SyncIterAPI.send(self, ctx)   # type: ignore[arg-type]

    def memory(self, ctx: Ctx) -> Result:
        return measure_memory(lambda: self.connect(ctx), ctx.count)


# ---------------------------------------------------------------- websocket-rs native (async)

class WebsocketRsAsync:
    def __init__(self) -> None:
        from websocket_rs import connect
        self._connect = connect

    def connect(self, ctx: Ctx):
        return self._connect(ctx.url, compression=bool(ctx.deflate))

    def stream(self, ctx: Ctx) -> Result:
        async def main() -> Result:
            ws = await self.connect(ctx)
            n = nbytes = 0
            last = None
            mode = ctx.mode
            t0 = perf()
            ws.send(ctx.start)
            if mode == "text":
                async for msg in ws:
                    n += 1
                    last = str(msg, "utf-8")   # WSMessage: a buffer, text or binary alike
            elif mode == "json":
                from orjson import loads
                async for msg in ws:
                    n += 1
                    last = loads(str(msg, "utf-8"))
            else:
                async for msg in ws:
                    n += 1
                    last = bytes(msg)
                    nbytes += len(last)
            t1 = perf()
            ws.close()
            return Result(n, last, t1 - t0, nbytes)
        return run_async(main)

    def echo(self, ctx: Ctx) -> Result:
        async def main() -> Result:
            ws = await self.connect(ctx)
            send, recv = ws.send, ws.recv
            msg = tick(0)
            n = 0
            last = None
            send(ctx.start)
            t0 = perf()
            for _ in range(ctx.count):
                send(msg)
                last = str(await recv(), "utf-8")
                n += 1
            t1 = perf()
            ws.close()
            return Result(n, last, t1 - t0)
        return run_async(main)

    def send(self, ctx: Ctx) -> Result:
        async def main() -> Result:
            ws = await self.connect(ctx)
            send = ws.send
            pool = send_pool()
            send(ctx.start)
            t0 = perf()
            for i in range(ctx.count):
                send(pool[i & MASK])
            last = str(await ws.recv(), "utf-8")
            t1 = perf()
            ws.close()
            return Result(ctx.count, last, t1 - t0)
        return run_async(main)

    def memory(self, ctx: Ctx) -> Result:
        async def main() -> Result:
            keep = [await self.connect(ctx)]
            gc.collect()
            await asyncio.sleep(0.3)
            r0 = rss_kib()
            for _ in range(ctx.count):
                keep.append(await self.connect(ctx))
            gc.collect()
            await asyncio.sleep(0.5)
            r1 = rss_kib()
            return Result(ctx.count, None, 0.0, rss_before_kib=r0, rss_after_kib=r1,
                          rss_kib_per_conn=(r1 - r0) / ctx.count)
        return run_async(main)


# ---------------------------------------------------------------- raw socket pseudo-peer

class Raw:
    """No WebSocket parsing at all: the server's ceiling for this machine and scenario."""

    def _open(self, ctx: Ctx):
        host, _, rest = ctx.url[len("ws://"):].partition(":")
        port = int(rest.split("/")[0])
        sock = socket.create_connection((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ext = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if ctx.deflate else ""
        sock.sendall((f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      f"Sec-WebSocket-Version: 13\r\n{ext}\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            more = sock.recv(65536)
            if not more:
                raise RuntimeError("EOF in the handshake")
            data += more
        head, _, rest_bytes = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(head.decode(errors="replace"))
        headers = {}
        for line in head.decode().split("\r\n")[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return sock, headers, rest_bytes

    def stream(self, ctx: Ctx) -> Result:
        if ctx.mode == "json":
            raise RuntimeError("n/a")
        sock, headers, got = self._open(ctx)
        expected = int(headers["x-stream-bytes"]) + 4
        buf = bytearray(1 << 20)
        recv_into = sock.recv_into
        total = len(got)
        tail = bytes(got[-4:])
        t0 = perf()
        sock.sendall(mask_frame(1, ctx.start.encode()))
        while total < expected:
            n = recv_into(buf)
            if not n:
                raise RuntimeError(f"EOF after {total} of {expected} bytes")
            total += n
            tail = (tail + bytes(buf[max(0, n - 4):n]))[-4:]
        t1 = perf()
        if total != expected or tail != close_frame(1000):
            raise RuntimeError(f"stream of {total} bytes ending {tail!r}")
        sock.sendall(close_frame(1000, masked=True))
        while sock.recv(65536):
            pass
        sock.close()
        last = expected_last(ctx.scenario, ctx.count)
        return Result(ctx.count, last, t1 - t0, payload_bytes(ctx.scenario, ctx.count))

    def echo(self, ctx: Ctx) -> Result:
        sock, _, _ = self._open(ctx)
        msg = tick(0).encode()
        frame = mask_frame(1, msg)
        size = 2 + len(msg)
        sendall, recv = sock.sendall, sock.recv
        sendall(mask_frame(1, ctx.start.encode()))
        n = 0
        data = b""
        t0 = perf()
        for _ in range(ctx.count):
            sendall(frame)
            data = recv(size)
            while len(data) < size:
                data += recv(size - len(data))
            n += 1
        t1 = perf()
        sendall(close_frame(1000, masked=True))
        while recv(65536):
            pass
        return Result(n, data[2:].decode(), t1 - t0)

    def send(self, ctx: Ctx) -> Result:
        sock, _, _ = self._open(ctx)
        pool = [mask_frame(1, m.encode()) for m in send_pool()]
        block = b"".join(pool)
        full, rem = divmod(ctx.count, SEND_POOL)
        sock.sendall(mask_frame(1, ctx.start.encode()))
        t0 = perf()
        for _ in range(full):
            sock.sendall(block)
        if rem:
            sock.sendall(b"".join(pool[:rem]))
        data = sock.recv(64)
        t1 = perf()
        sock.sendall(close_frame(1000, masked=True))
        while sock.recv(65536):
            pass
        return Result(ctx.count, data[2:].decode(), t1 - t0)


CLIENTS: Dict[str, Callable[[], Any]] = {
    "wsfast": Wsfast,
    "wsfast-10k": WsfastLargeChannel,
    "wsfast-receive": WsfastReceive,
    "wsfast-pure": WsfastPure,
    "wsfast-asyncio": WsfastAsyncio,
    "wsfast-asyncio-receive": WsfastAsyncioReceive,
    "wsfast-asyncio-default": WsfastAsyncio,
    "wsfast-asyncio-receive-default": WsfastAsyncioReceive,
    "picows": Picows,
    "picows-default": Picows,
    "picows-websockets": PicowsWebsockets,
    "picows-websockets-default": PicowsWebsockets,
    "aiohttp": Aiohttp,
    "aiohttp-default": Aiohttp,
    "websockets-sync": WebsocketsSync,
    "websockets-asyncio": WebsocketsAsyncio,
    "websockets-asyncio-default": WebsocketsAsyncio,
    "websocket-client": WebsocketClient,
    "websocket-rs": WebsocketRs,
    "websocket-rs-async": WebsocketRsAsync,
    "raw": Raw,
}


def validate(ctx: Ctx, res: Result) -> Optional[str]:
    sc = ctx.scenario
    if sc.kind == "memory":
        return None
    want_n = ctx.count
    if res.n != want_n:
        return f"received {res.n} messages, expected {want_n}"
    want = expected_last(sc, ctx.count)
    last = res.last
    if sc.mode == "json" and sc.kind == "stream":
        last = last.get("seq") if isinstance(last, dict) else last
    if last != want:
        return f"wrong last message: {str(last)[:80]!r} (expected {str(want)[:80]!r})"
    if sc.mode == "binary" and res.nbytes != payload_bytes(sc, ctx.count):
        return f"received {res.nbytes} payload bytes, expected {payload_bytes(sc, ctx.count)}"
    return None


def versions() -> Dict[str, str]:
    from importlib import metadata
    out = {"python": sys.version.split()[0]}
    for dist in ("wsfast", "picows", "aiohttp", "websockets", "websocket-client",
                 "websocket-rs", "orjson", "uvloop"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    try:
        import wsfast
        out["wsfast.COMPILED"] = str(wsfast.COMPILED)
    except ImportError:
        pass
    return out


def main(argv: Optional[list] = None) -> None:
    ap = argparse.ArgumentParser(description="one benchmark client run")
    ap.add_argument("--client", choices=sorted(CLIENTS))
    ap.add_argument("--scenario", choices=sorted(SCENARIOS))
    ap.add_argument("--count", type=int)
    ap.add_argument("--url")
    ap.add_argument("--run", default="0")
    ap.add_argument("--versions", action="store_true", help="print package versions and exit")
    args = ap.parse_args(argv)
    if args.versions:
        print(json.dumps(versions()))
        return
    global LOOP
    LOOP = "asyncio" if args.client.endswith("-default") else "uvloop"
    sc = SCENARIOS[args.scenario]
    ctx = Ctx(sc, args.count or sc.count, args.url, args.run)
    out: Dict[str, Any] = {"client": args.client, "scenario": sc.name, "count": ctx.count}
    try:
        impl = CLIENTS[args.client]()
        res = getattr(impl, sc.kind)(ctx)
        err = validate(ctx, res)
        out.update(messages=res.n, seconds=res.seconds,
                   bytes=res.nbytes if sc.mode == "binary" and res.nbytes >= 0
                   else payload_bytes(sc, ctx.count),
                   ok=err is None, error=err)
        out.update({k: v for k, v in res.extra.items() if not k.startswith("_")})
        cpu = timed_cpu(res.seconds) if res.seconds else None
        if cpu is not None:
            out["cpu_seconds"] = cpu
    except Exception as exc:   # report, don't crash: the runner shows "error"
        out.update(ok=False, error=f"{exc.__class__.__name__}: {exc}",
                   trace=traceback.format_exc(limit=6))
    print(json.dumps(out), flush=True)
    # don't let a library's close or thread teardown stall the run
    os._exit(0)


if __name__ == "__main__":
    main()
