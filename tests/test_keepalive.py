"""Keepalive (DESIGN §6): the clock measures the network, never the consumer.

The rules, each with a test that fails without it:

* a dead peer (silent after the handshake, or half-open) is found within
  ``ping_interval + ping_timeout`` plus a small bound; the channel ends after the
  buffered messages, ``error`` is a Timeout, ``close_code`` 1006, and the server got a
  close 1011 "keepalive timeout" as a last word;
* a slow consumer (the channel full, reading paused) never loses a healthy connection;
* a busy stream needs no ping; ``ping_interval`` 0 sends none; ``ping_timeout`` 0 pings
  and never concludes;
* the pong of a keepalive ping gives ``client.latency``; ``close()`` on a dead peer is
  bounded.

The tests that connect take the ``front`` fixture (conftest.py): each runs on the sync
client and on wsfast.asyncio behind the same calls (tests/frontends.py).
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from conftest import OP_CLOSE, OP_PING, OP_PONG, parse_close, read_frame, server_frame
from faultrelay import FaultRelay

import wsfast
from wsfast.keepalive import DEAD, PING, Keepalive

# ---------------------------------------------------------------------- the clock alone


def test_keepalive_clock_pings_after_the_interval_then_concludes():
    ka = Keepalive(1.0, 0.5)
    assert ka.due(0.5, 0.0) == (None, 1.0)
    assert ka.due(1.0, 0.0) == (PING, None)
    ka.ping_sent(1.0)
    assert ka.due(1.2, 0.0) == (None, 1.5)
    assert ka.due(1.5, 0.0) == (DEAD, None)


def test_keepalive_clock_any_bytes_after_the_ping_are_life():
    ka = Keepalive(1.0, 0.5)
    ka.ping_sent(1.0)
    assert ka.due(1.6, 1.1) == (None, 2.1)   # bytes at 1.1: the interval starts again there


def test_keepalive_clock_resumed_forgets_the_ping():
    ka = Keepalive(1.0, 0.5)
    ka.ping_sent(1.0)
    ka.resumed()   # (the front end counts the resumption at 5.0 as bytes received)
    assert ka.due(5.0, 5.0) == (None, 6.0)


def test_keepalive_clock_without_timeout_pings_every_interval():
    ka = Keepalive(1.0, None)
    ka.ping_sent(1.0)
    assert ka.due(1.9, 0.0) == (None, 2.0)
    assert ka.due(2.0, 0.0) == (PING, None)


def test_keepalive_clock_disabled():
    assert Keepalive(None, 1.0).due(100.0, 0.0) == (None, None)


def test_keepalive_pings_have_their_own_payloads():
    ka = Keepalive(1.0, 1.0)
    assert ka.ping_payload() != ka.ping_payload()


# ---------------------------------------------------------------------- a dead peer


def _count_pings(srv, pings):
    """raw_server script: read frames, count pings, never answer; until stop."""
    srv.conn.settimeout(5)   # (the fixture's close() ends the read at teardown)
    while not srv.stop.is_set():
        try:
            frame = read_frame(srv.conn)
        except (OSError, EOFError):
            return
        if frame[1] == OP_PING:
            pings.append(time.monotonic())
        elif frame[1] == OP_CLOSE:
            pings.append(("close",) + parse_close(frame[2]))
            return


def test_a_silent_peer_is_found_within_interval_plus_timeout(front, raw_server):
    seen: list = []
    srv = raw_server(lambda s: _count_pings(s, seen),
                     after_101=b"".join(server_frame(0x1, b"m%d" % i) for i in range(5)))
    start = time.monotonic()
    c = front.connect(srv.url, ping_interval="200ms", ping_timeout="300ms", close_timeout="2s")
    got = [m.data for m in c.channel()]   # ends when the peer is found dead
    took = time.monotonic() - start
    assert got == [f"m{i}" for i in range(5)]   # the buffered messages first
    assert isinstance(c.error, wsfast.Timeout) and c.error.retryable is True
    assert "keepalive" in str(c.error)
    assert c.close_code == 1006
    assert 0.45 <= took < 0.5 + 0.5, took
    srv.done.wait(2)
    pings = [p for p in seen if not isinstance(p, tuple)]
    assert len(pings) == 1
    assert ("close", 1011, "keepalive timeout") in seen   # the last word, since the socket took it
    with pytest.raises(wsfast.ConnectionClosed):
        c.close()


def test_a_half_open_connection_is_found(front, ws_server):
    """The relay stops forwarding without FIN or RST: the client's pings land in
    buffers and nothing comes back."""
    done = threading.Event()

    def stream(ws):
        for i in range(3):
            ws.send(f"m{i}")
        done.wait(5)

    srv = ws_server(stream, ping_interval=None)
    relay = FaultRelay(srv.port)
    try:
        c = front.connect(relay.url, ping_interval="150ms", ping_timeout="250ms")
        ch = c.channel()
        assert [ch.receive()[0].data for _ in range(3)] == ["m0", "m1", "m2"]
        relay.silence()
        start = time.monotonic()
        msg, ok = ch.receive()
        took = time.monotonic() - start
        assert (msg, ok) == (None, False)
        assert isinstance(c.error, wsfast.Timeout) and c.close_code == 1006
        assert took < 0.4 + 0.5, took
    finally:
        done.set()
        relay.close()


def test_close_on_a_dead_peer_is_bounded(front, raw_server):
    srv = raw_server(lambda s: s.stop.wait(10))   # reads nothing, answers nothing
    c = front.connect(srv.url, ping_interval="100ms", ping_timeout="100ms", close_timeout="300ms")
    start = time.monotonic()
    try:
        c.close()
    except wsfast.ConnectionClosed:
        pass   # the keepalive ended it first
    assert time.monotonic() - start < 1.0
    assert c.closed


# ---------------------------------------------------------------------- healthy connections


def _numbered(n, size=0):
    pad = "x" * size

    def handler(ws):
        for i in range(n):
            ws.send(json.dumps({"i": i, "pad": pad}))
        for _ in ws:   # stay open (answering pings) until the client closes
            pass
    return handler


@pytest.mark.parametrize("stall", [0.0, 0.6], ids=["steady", "stalls"])
def test_a_slow_consumer_keeps_a_healthy_connection(front, ws_server, stall):
    """2 ms per message, channel_capacity 8, ping_interval 200 ms: the 1,500 messages
    arrive whole and in order. With stalls, the consumer stops for 0.6 s (longer than
    ping_interval + ping_timeout) three times while the channel is full."""
    srv = ws_server(_numbered(1500, 200), ping_interval=None)
    c = front.connect(srv.url, channel_capacity=8, ping_interval="200ms", ping_timeout="200ms")
    got = []
    ch = c.channel()
    deadline = time.monotonic() + 30
    while len(got) < 1500 and time.monotonic() < deadline:
        msg, ok = ch.receive()
        if not ok:
            break
        got.append(json.loads(msg.data)["i"])
        time.sleep(0.002)
        if stall and len(got) % 500 == 250:
            time.sleep(stall)
    assert got == list(range(1500)), (len(got), c.error)
    assert c.error is None and not c.closed
    c.close()


def test_a_busy_stream_needs_no_ping(front, raw_server):
    seen: list = []

    def stream(s):
        s.conn.settimeout(0.001)
        end = time.monotonic() + 0.8
        i = 0
        while time.monotonic() < end:
            s.conn.sendall(server_frame(0x1, b"t%d" % i))
            i += 1
            time.sleep(0.02)
            try:
                while True:
                    frame = read_frame(s.conn)
                    if frame[1] == OP_PING:
                        seen.append(frame)
            except (OSError, EOFError):
                pass
    srv = raw_server(stream)
    c = front.connect(srv.url, ping_interval="100ms", ping_timeout="100ms")
    n = sum(1 for _ in c.channel())
    assert n > 20
    assert seen == []   # bytes every 20 ms: never 100 ms of silence
    assert c.close_code == 1006 and isinstance(c.error, wsfast.ConnectError)   # (the script's end)


def test_ping_interval_zero_sends_no_ping(front, raw_server):
    seen: list = []
    srv = raw_server(lambda s: _count_pings(s, seen))
    c = front.connect(srv.url, ping_interval=0)
    time.sleep(0.5)
    assert not c.closed and seen == []
    c.close()


def test_ping_timeout_zero_pings_and_never_concludes(front, raw_server):
    seen: list = []
    srv = raw_server(lambda s: _count_pings(s, seen))
    c = front.connect(srv.url, ping_interval="100ms", ping_timeout=0)
    time.sleep(0.55)
    assert not c.closed
    assert 3 <= len(seen) <= 6, seen
    c.close()


def test_a_keepalive_pong_gives_the_latency(front, raw_server):
    def answer_late(s):
        s.conn.settimeout(5)
        frame = read_frame(s.conn)
        assert frame[1] == OP_PING
        time.sleep(0.1)
        s.conn.sendall(server_frame(OP_PONG, frame[2]))
        _count_pings(s, [])   # until the client's close frame

    srv = raw_server(answer_late)
    c = front.connect(srv.url, ping_interval="100ms", ping_timeout="1s")
    assert c.latency is None
    end = time.monotonic() + 3
    while c.latency is None and time.monotonic() < end:
        time.sleep(0.01)
    assert c.latency is not None and 0.09 <= c.latency < 0.6
    c.close()


def test_the_reader_is_gone_after_a_keepalive_timeout(front, raw_server):
    from conftest import wait_no_readers

    srv = raw_server(lambda s: s.stop.wait(5))
    c = front.connect(srv.url, ping_interval="50ms", ping_timeout="50ms")
    ended = threading.Event()

    def drain():
        for _ in c.channel():
            pass
        ended.set()
    t = threading.Thread(target=drain)
    t.start()
    assert ended.wait(2)
    t.join(2)
    assert wait_no_readers(srv.url.split("//")[1]) == []


def test_an_idle_connection_whose_peer_answers_pings_stays_open(front, ws_server):
    """Nothing but pongs arrives for 0.8 s (8 intervals): pongs are life."""
    idle = threading.Event()
    srv = ws_server(lambda ws: idle.wait(5), ping_interval=None)
    c = front.connect(srv.url, ping_interval="100ms", ping_timeout="100ms")
    time.sleep(0.8)
    try:
        assert not c.closed, c.error
        assert c.latency is not None   # the keepalive pings were answered
    finally:
        c.close()    # (before the handler returns: then the server would close first)
        idle.set()
