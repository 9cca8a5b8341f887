"""Keepalive and reconnect through a network that misbehaves (tests/faultrelay.py).

A websockets server streams numbered messages; the fault relay between it and the
client stalls, trickles, resets mid-frame or goes silent. Per connection, no message
is lost, duplicated or reordered; a stall shorter than the keepalive bound is
survived; a dead path is found within it and ``wsfast.reconnecting`` recovers.

The tests that connect take the ``front`` fixture (conftest.py): each runs on the sync
client and on wsfast.asyncio behind the same calls (tests/frontends.py).
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from faultrelay import FaultRelay

import wsfast


class Stream:
    """A websockets server: each connection gets ``{"conn": n, "i": i}`` messages,
    ``every`` seconds apart (0: as fast as it can), ``count`` of them, then it stays
    open (answering pings) until the client goes."""

    def __init__(self, ws_server, count: int, every: float = 0.0, size: int = 0) -> None:
        self.connections = 0
        self.count = count
        self.every = every
        self.pad = "x" * size
        self.done = threading.Event()
        self.server = ws_server(self.handler, ping_interval=None, max_size=None)

    def handler(self, ws) -> None:
        self.connections += 1
        conn = self.connections
        try:
            for i in range(self.count):
                ws.send(json.dumps({"conn": conn, "i": i, "pad": self.pad}))
                if self.every:
                    time.sleep(self.every)
            for _ in ws:
                pass
        except Exception:
            pass   # the relay cut it


@pytest.fixture
def relay_to():
    relays = []

    def start(port: int) -> FaultRelay:
        relay = FaultRelay(port)
        relays.append(relay)
        return relay

    yield start
    for relay in relays:
        relay.close()


def _check_in_order(messages):
    """Per connection: 0, 1, 2... with nothing missing, doubled or swapped."""
    by_conn: dict = {}
    for m in messages:
        by_conn.setdefault(m["conn"], []).append(m["i"])
    for conn, seq in by_conn.items():
        assert seq == list(range(len(seq))), (conn, seq[:20])
    return by_conn


def test_a_stall_shorter_than_the_keepalive_bound_is_survived(front, ws_server, relay_to):
    stream = Stream(ws_server, 40, every=0.01)
    relay = relay_to(stream.server.port)
    c = front.connect(relay.url, ping_interval="200ms", ping_timeout="300ms")
    ch = c.channel()
    got = [json.loads(ch.receive()[0].data) for _ in range(10)]
    relay.stall(0.35)   # < ping_interval + ping_timeout
    while len(got) < 40:
        msg, ok = ch.receive()
        assert ok, c.error
        got.append(json.loads(msg.data))
    _check_in_order(got)
    assert c.error is None and not c.closed
    c.close()


def test_trickled_bytes_keep_a_slow_large_message_alive(front, ws_server, relay_to):
    """64 KiB arriving 2 KiB every 20 ms (~0.7 s), with ping_interval 100 ms and
    ping_timeout 100 ms: any bytes read are life, so the message arrives whole."""
    stream = Stream(ws_server, 3, size=64 * 1024)
    relay = relay_to(stream.server.port)
    relay.trickle(2048, 0.02)
    c = front.connect(relay.url, ping_interval="100ms", ping_timeout="100ms")
    got = []
    for _ in range(3):
        msg, ok = c.channel().receive()
        assert ok, c.error
        got.append(json.loads(msg.data))
    _check_in_order(got)
    assert len(got[0]["pad"]) == 64 * 1024
    assert c.error is None
    c.close()


def test_a_reset_mid_frame_is_a_retryable_error_and_reconnect_recovers(ws_server, relay_to):
    stream = Stream(ws_server, 300, every=0.001, size=300)
    relay = relay_to(stream.server.port)
    relay.reset_after(20_000)   # about 60 messages, then RST in the middle of a frame
    got = []
    errors = []
    with wsfast.reconnecting(relay.url, backoff_min="50ms", ping_interval="1s") as clients:
        for n, client in enumerate(clients, 1):
            count = 0
            for msg in client.channel():
                got.append(json.loads(msg.data))
                count += 1
                if count == 300:
                    break
            if count == 300 or n > 3:
                break
            errors.append(client.error)
    by_conn = _check_in_order(got)
    assert isinstance(errors[0], wsfast.ConnectError) and errors[0].retryable is True
    assert 0 < len(by_conn[1]) < 300          # the first connection was cut
    assert len(by_conn[2]) == 300             # the second got its whole stream


def test_a_path_gone_silent_is_found_and_the_stream_recovers(ws_server, relay_to):
    """Half-open: the relay forwards nothing and sends no FIN. Keepalive finds it within
    ping_interval + ping_timeout, and reconnecting dials again."""
    stream = Stream(ws_server, 20, every=0.01)
    relay = relay_to(stream.server.port)
    got = []
    ends = []
    with wsfast.reconnecting(relay.url, backoff_min="10ms",
                             ping_interval="150ms", ping_timeout="200ms") as clients:
        for n, client in enumerate(clients, 1):
            relay.clear()   # (from the second connection on, the path works again)
            ch = client.channel()
            for i in range(20):
                msg, ok = ch.receive()
                if not ok:
                    break
                got.append(json.loads(msg.data))
                if n == 1 and i == 9:
                    relay.silence()
                    silent_since = time.monotonic()
            if n == 1:
                for _ in ch:   # ends when the keepalive gives up
                    pass
                ends.append(time.monotonic() - silent_since)
                assert isinstance(client.error, wsfast.Timeout) and client.close_code == 1006
            else:
                break
    by_conn = _check_in_order(got)
    assert len(by_conn[1]) >= 10 and len(by_conn[2]) == 20
    # found within ping_interval + ping_timeout (the last bytes came at most 10 ms before)
    assert ends[0] < 0.35 + 0.5, ends
