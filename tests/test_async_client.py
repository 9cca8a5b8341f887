"""The asyncio client (DESIGN §7) against real servers on 127.0.0.1, on the default event
loop and on uvloop: the same behaviour as the sync client, on the same sans-I/O core.

Every test's coroutine runs under a bound (``asyncio.wait_for`` in ``run``).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from conftest import OP_PING, read_frame, server_frame
from test_redirects import HttpServer, redirect, upgrade_ok

import wsfast
from wsfast.asyncio.client import connect
from wsfast.asyncio.reconnect import reconnecting

try:
    import uvloop
except ImportError:
    uvloop = None

pytestmark = pytest.mark.timeout(120)

LOOPS = ["asyncio"] + (["uvloop"] if uvloop is not None else [])


# The long tests' uvloop runs carry loop_twin: make test-fast leaves them out, make test
# runs them.
LONG_LOOPS = ["asyncio"] + ([pytest.param("uvloop", marks=pytest.mark.loop_twin)]
                            if uvloop is not None else [])


@pytest.fixture(params=LOOPS)
def run(request):
    """``run(coro_fn, timeout=20)``: run ``coro_fn()`` on a new loop of the kind asked for."""
    return _runner(request.param)


@pytest.fixture(params=LONG_LOOPS)
def run_long(request):
    """``run`` for the long tests (seconds each): their uvloop run is a loop_twin."""
    return _runner(request.param)


def _runner(kind: str):
    def go(fn, timeout: float = 20.0):
        async def bounded():
            return await asyncio.wait_for(fn(), timeout)
        if kind == "uvloop":
            if hasattr(asyncio, "Runner"):
                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    return runner.run(bounded())
            loop = uvloop.new_event_loop()
            try:
                return loop.run_until_complete(bounded())
            finally:
                loop.close()
        return asyncio.run(bounded())
    return go


def _numbered(n, size=0, then_wait=True, burst=0):
    """A handler sending ``n`` numbered messages; with ``burst``, a pause of 2 ms after
    every ``burst`` of them, so that a consumer catches up and waits."""
    pad = "x" * size

    def handler(ws):
        for i in range(n):
            ws.send(json.dumps({"i": i, "pad": pad}))
            if burst and i % burst == burst - 1:
                time.sleep(0.002)
        if then_wait:
            for _ in ws:
                pass
    return handler


def test_send_receive_close(run, ws_server):
    srv = ws_server()

    async def main():
        async with connect(srv.url) as c:
            assert await c.send("hello") is True
            assert await c.send(b"\x00\x01") is True
            await c.send("as bytes", wsfast.BINARY)
            ch = c.channel()
            assert (await ch.receive())[0].data == "hello"
            assert (await ch.receive())[0].data == b"\x00\x01"
            assert (await ch.receive())[0].data == b"as bytes"
            assert c.stats["messages_in"] == 3 and c.stats["messages_out"] == 3
        assert c.closed and c.close_code == 1000 and c.error is None
        assert await c.channel().receive() == (None, False)
        with pytest.raises(wsfast.ConnectionClosed):
            await c.send("late")
        with pytest.raises(wsfast.ConnectionClosed):
            await c.close()
    run(main)


def test_await_connect_and_bad_arguments(run, ws_server):
    srv = ws_server()

    async def main():
        c = await connect(srv.url, {"headers": {"X-A": "1"}}, channel_capacity=4)
        with pytest.raises(wsfast.InvalidOption):
            await c.send(b"\xff", wsfast.TEXT)
        with pytest.raises(wsfast.InvalidOption):
            await c.ping(b"x" * 126)
        with pytest.raises(wsfast.InvalidOption):
            await c.close(1005)
        await c.close()
    run(main)
    with pytest.raises(wsfast.InvalidOption):
        connect(srv.url, bogus=1)


def test_many_messages_in_order_through_a_small_channel(run, ws_server):
    """Backpressure: 20,000 messages through channel_capacity 8, all in order."""
    srv = ws_server(_numbered(20_000, 50))

    async def main():
        async with connect(srv.url, channel_capacity=8) as c:
            n = 0
            async for msg in c.channel():
                assert json.loads(msg.data)["i"] == n
                n += 1
                if n == 20_000:
                    break
    run(main)


@pytest.mark.parametrize("n", [10_000, pytest.param(100_000, marks=pytest.mark.slow)])
def test_cancelled_receives_lose_nothing(run_long, ws_server, n):
    """100,000 numbered messages (10,000 in test-fast) read through wait_for(receive(),
    0.5 ms): every one, in order, whatever the timeouts cancelled."""
    srv = ws_server(_numbered(n, burst=50))   # (pauses: receives wait, and time out)

    async def main():
        async with connect(srv.url) as c:
            ch = c.channel()
            expected = 0
            timeouts = 0
            while expected < n:
                try:
                    msg, ok = await asyncio.wait_for(ch.receive(), 0.0005)
                except asyncio.TimeoutError:
                    timeouts += 1
                    continue
                assert ok
                assert json.loads(msg.data)["i"] == expected
                expected += 1
            assert timeouts, "no receive was cancelled: the test proved nothing"
    run_long(main, timeout=60)


def test_pings_are_answered_while_the_consumer_sleeps(run, raw_server):
    """A ping that comes with more messages than the channel holds, the consumer
    asleep: the pong goes out anyway (reading pauses after that read, not before)."""
    got = {}

    def script(s):
        s.conn.sendall(b"".join(server_frame(0x1, b"m") for _ in range(4))
                       + server_frame(OP_PING, b"are you there"))
        s.conn.settimeout(3)
        while True:
            frame = read_frame(s.conn)
            if frame[1] == 0xA:
                got["pong"] = frame[2]
                return

    srv = raw_server(script)

    async def main():
        c = await connect(srv.url, channel_capacity=2)
        await asyncio.sleep(0.5)   # the consumer sleeps
        assert got.get("pong") == b"are you there"
        await c.close()
    run(main)


def test_a_silent_peer_is_found_by_keepalive(run, raw_server):
    seen = []

    def script(s):
        s.conn.settimeout(5)
        try:
            while True:
                frame = read_frame(s.conn)
                seen.append(frame[1])
        except (OSError, EOFError):
            return

    srv = raw_server(script, after_101=server_frame(0x1, b"first"))

    async def main():
        start = time.monotonic()
        c = await connect(srv.url, ping_interval="150ms", ping_timeout="200ms")
        got = [m.data async for m in c.channel()]
        took = time.monotonic() - start
        assert got == ["first"]
        assert isinstance(c.error, wsfast.Timeout) and c.close_code == 1006
        assert 0.3 <= took < 0.35 + 0.5, took
    run(main)
    assert OP_PING in seen


def test_a_slow_consumer_keeps_a_healthy_connection(run_long, ws_server):
    srv = ws_server(_numbered(1500, 200), ping_interval=None)

    async def main():
        async with connect(srv.url, channel_capacity=8, ping_interval="200ms",
                           ping_timeout="200ms") as c:
            got = []
            async for msg in c.channel():
                got.append(json.loads(msg.data)["i"])
                await asyncio.sleep(0.002)
                if len(got) == 750:
                    await asyncio.sleep(0.6)   # longer than interval + timeout, channel full
                if len(got) == 1500:
                    break
            assert got == list(range(1500))
            assert c.error is None
    run_long(main, timeout=40)


def test_read_timeout(run, raw_server):
    srv = raw_server(lambda s: s.stop.wait(3))

    async def main():
        c = await connect(srv.url, read_timeout="200ms", ping_interval=0)
        assert await c.channel().receive() == (None, False)
        assert isinstance(c.error, wsfast.Timeout) and c.close_code == 1001
    run(main)


def test_close_on_a_silent_server_is_bounded(run, raw_server):
    srv = raw_server(lambda s: s.stop.wait(5))

    async def main():
        c = await connect(srv.url, close_timeout="300ms")
        start = time.monotonic()
        await c.close()
        assert time.monotonic() - start < 1.0
        assert c.closed and c.close_code == 1006 and isinstance(c.error, wsfast.Timeout)
    run(main)


def test_refusal_and_redirects(run):
    final = HttpServer(upgrade_ok)
    first = HttpServer(redirect(302, final.url + "x"))
    refuse = HttpServer(lambda r: b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope")

    async def main():
        async with connect(first.url) as c:
            assert c.url == final.url + "x"
        with pytest.raises(wsfast.HandshakeError) as info:
            await connect(refuse.url)
        assert info.value.status == 403 and info.value.body == b"nope"
        with pytest.raises(wsfast.HandshakeError):
            await connect(first.url, max_redirects=0)
        policy = wsfast.Policy(wsfast.allow("websocket.connect"),
                               wsfast.allow("websocket.connect.url", first.url + "*"))
        with wsfast.policy_scope(policy):   # the task's context: the hop is checked
            with pytest.raises(wsfast.PermissionDenied):
                await connect(first.url)
    try:
        before = final.accepted
        run(main)
        assert final.accepted == before + 1   # the denied hop opened no connection
    finally:
        for s in (final, first, refuse):
            s.close()


def test_dial_errors(run):
    async def main():
        with pytest.raises(wsfast.ConnectError):
            await connect("ws://127.0.0.1:1/")
        policy = wsfast.Policy(wsfast.deny("websocket.connect"))
        with wsfast.policy_scope(policy):
            with pytest.raises(wsfast.PermissionDenied):
                await connect("ws://127.0.0.1:1/")
    run(main)


def test_reconnecting_recovers_and_resubscribes(run, ws_server):
    sessions = []

    def handler(ws):
        sessions.append(1)
        sub = ws.recv()
        for i in range(5):
            ws.send(f"{sub}:{i}")
        if len(sessions) == 1:
            ws.close(1012, "restart")
            return
        for _ in ws:
            pass

    srv = ws_server(handler)

    async def main():
        got = []
        async with reconnecting(srv.url, backoff_min="10ms") as clients:
            n = 0
            async for client in clients:
                n += 1
                await client.send(f"sub{n}")
                async for msg in client.channel():
                    got.append(msg.data)
                    if len(got) == 10:
                        break
                if len(got) == 10:
                    break
        assert got == [f"sub1:{i}" for i in range(5)] + [f"sub2:{i}" for i in range(5)]
    run(main)
    assert len(sessions) == 2


def test_reconnecting_close_ends_a_pending_delay(run):
    srv = HttpServer(lambda r: b"HTTP/1.1 503 No\r\nRetry-After: 30\r\nContent-Length: 0\r\n\r\n")

    async def main():
        clients = reconnecting(srv.url, backoff_max="60s")
        asyncio.get_running_loop().call_later(0.3, clients.close)
        start = time.monotonic()
        async for _ in clients:
            pytest.fail("no client should come")
        assert time.monotonic() - start < 1.5
    try:
        run(main)
    finally:
        srv.close()


def test_no_thread_per_connection(run, ws_server):
    srv = ws_server()

    def ours():
        return {t for t in threading.enumerate() if t.name.startswith("wsfast")}

    async def main():
        # (threads of the process that are no connection's, such as the sync channels'
        # timer thread an earlier test started, are there before and after alike)
        before = ours()
        clients = []
        try:
            for _ in range(20):
                clients.append(await connect(srv.url))
            new = [t.name for t in ours() - before]
            assert new == []   # (the server's threads are the websockets library's)
        finally:
            for c in clients:
                await c.close()
    run(main)


def test_large_messages(run, ws_server):
    """Messages of 1 and 8 MiB, one frame each (uvloop holds the read buffer while the
    protocol runs: an earlier version failed here with BufferError)."""
    srv = ws_server(max_size=None)

    async def main():
        async with connect(srv.url, read_limit=32 * 1024 * 1024) as c:
            for size in (1 << 20, 8 << 20):
                blob = bytes(range(256)) * (size // 256)
                await c.send(blob)
                msg, ok = await c.channel().receive()
                assert ok and msg.data == blob
    run(main, timeout=60)
