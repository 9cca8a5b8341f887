"""The sync client against real servers on 127.0.0.1: the ``websockets`` server, and raw
socket servers where a misbehaving peer is needed. No mocks.

The tests that connect take the ``front`` fixture (conftest.py): each runs on the sync
client and on wsfast.asyncio behind the same calls (tests/frontends.py).
"""

from __future__ import annotations

import array
import hashlib
import random
import socket
import ssl
import threading
import time

import pytest
from conftest import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    close_frame,
    parse_close,
    read_frame,
    read_until_close,
    server_frame,
    wait_no_readers,
)
from websockets.exceptions import ConnectionClosed as WsConnectionClosed

import wsfast
from wsfast import errors

pytestmark = pytest.mark.timeout(60)

MiB = 1024 * 1024


# ---------------------------------------------------------------------- fixtures and helpers

@pytest.fixture(autouse=True)
def _no_reader_thread_left():
    yield
    alive = wait_no_readers(timeout=3.0)
    assert not alive, f"reader threads left behind: {alive}"


@pytest.fixture
def clients(front):
    """Factory: ``clients(url, ...)`` connects; the front end closes the client at teardown.

    Parametrised by ``front`` (conftest.py): every test that connects through it runs on
    the sync client and on wsfast.asyncio (tests/frontends.py)."""
    return front.connect


def receive(ch, timeout=10.0):
    """One message from a channel, failing the test (not hanging) if none comes."""
    return ch.receive(timeout=timeout)


def drain(ch, timeout=10.0):
    """Every message until the channel is closed; then the final receive result."""
    out = []
    while True:
        msg, ok = ch.receive(timeout=timeout)
        if not ok:
            return out, (msg, ok)
        out.append(msg)


def start_blocked_send(client, data, why):
    """Send ``data`` from a thread and check it is still blocked after 0.5 s; returns the
    thread and a dict that gets ``ok`` (send's result) or ``error``."""
    result = {}

    def sender():
        try:
            result["ok"] = client.send(data)
        except wsfast.Error as exc:
            result["error"] = exc

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    t.join(0.5)
    assert t.is_alive(), f"the send should be blocked: {why}"
    return t, result


def recording_handler(record, done, *, send=(), close=None):
    """websockets handler: records the request headers and subprotocol, sends ``send``,
    closes with ``close`` (code, reason) or else echoes until the client closes; then
    records the close code and reason the client sent."""

    def handler(ws):
        record["headers"] = ws.request.headers
        record["subprotocol"] = ws.subprotocol
        try:
            for m in send:
                ws.send(m)
            if close is not None:
                ws.close(*close)
            else:
                for msg in ws:
                    ws.send(msg)
        except WsConnectionClosed:
            pass
        finally:
            record["close_code"] = ws.close_code
            record["close_reason"] = ws.close_reason
            done.set()

    return handler


# ---------------------------------------------------------------------- echo

@pytest.mark.parametrize("data, kind", [
    ("hello", "text"),
    ("ünïcødé ✓ 𝄞", "text"),
    (b"\x00\x01\xfe\xff", "binary"),
    ("", "text"),
    (b"", "binary"),
    ("x" * 70000, "text"),
    (bytes(range(256)) * 300, "binary"),
])
def test_echo_of_text_binary_and_empty_messages_keeps_type_and_data(ws_server, clients, data, kind):
    srv = ws_server()
    c = clients(srv.url)
    assert c.send(data) is True
    msg, ok = receive(c.channel())
    assert ok
    assert msg.type == kind
    assert msg.data == data
    assert c.stats["messages_out"] == 1 and c.stats["messages_in"] == 1


def test_echo_of_a_message_at_the_16_MiB_default_read_limit(ws_server, clients):
    srv = ws_server(max_size=None)
    c = clients(srv.url)
    data = random.randbytes(16 * MiB - 7)
    c.send(data)
    msg, ok = receive(c.channel(), 30)
    assert ok and msg.type == "binary"
    assert len(msg.data) == len(data) and msg.data == data
    c.send("after")
    assert receive(c.channel())[0].data == "after"


def test_message_over_read_limit_fails_the_connection_with_1009(ws_server, clients):
    record, done = {}, threading.Event()

    def handler(ws):
        try:
            ws.recv()
            ws.send(b"x" * (16 * MiB + 1))
            ws.recv()
        except WsConnectionClosed:
            pass
        record["close_code"] = ws.close_code
        done.set()

    srv = ws_server(handler, max_size=None)
    c = clients(srv.url)
    c.send("go")
    msgs, last = drain(c.channel(), 20)
    assert msgs == [] and last == (None, False)
    assert c.closed
    assert c.close_code == 1009
    assert isinstance(c.error, wsfast.ProtocolError)
    assert c.error.close_code == 1009
    assert c.channel().closed
    assert done.wait(10)
    assert record["close_code"] == 1009


def test_smaller_read_limit_option_is_enforced(raw_server, clients):
    got = {}

    def script(srv):
        srv.conn.sendall(server_frame(OP_BINARY, b"a" * 1000))
        srv.conn.sendall(server_frame(OP_BINARY, b"b" * 1001))
        got["close"] = read_until_close(srv.conn)[:2]

    srv = raw_server(script)
    c = clients(srv.url, read_limit=1000)
    msgs, last = drain(c.channel())
    assert [m.data for m in msgs] == [b"a" * 1000]
    assert c.close_code == 1009
    srv.done.wait(5)
    assert got["close"][0] == 1009


# ---------------------------------------------------------------------- compression

COMPRESSIBLE = '{"symbol": "BTCUSD", "bid": 64123.5, "ask": 64124.0, "size": 0.25} ' * 120


@pytest.mark.parametrize("mode", [wsfast.COMPRESSION.CONTEXT_TAKEOVER, wsfast.COMPRESSION.NO_CONTEXT])
def test_compression_is_negotiated_and_actually_compresses(ws_server, clients, mode):
    srv = ws_server(compression="deflate")
    c = clients(srv.url, compression=int(mode))
    assert c.extensions is not None and c.extensions.startswith("permessage-deflate")
    if mode == wsfast.COMPRESSION.NO_CONTEXT:
        assert "client_no_context_takeover" in c.extensions
    raw_total = 0
    for i in range(20):
        payload = f"{i:04d}" + COMPRESSIBLE
        raw_total += len(payload)
        c.send(payload)
        msg, ok = receive(c.channel())
        assert ok and msg.type == "text" and msg.data == payload
    blob = COMPRESSIBLE.encode() * 3
    c.send(blob)
    msg, _ = receive(c.channel())
    assert msg.type == "binary" and msg.data == blob
    raw_total += len(blob)
    # the repetitive payloads deflate to a small fraction of their size
    assert c.stats["bytes_out"] < raw_total / 5, (c.stats, raw_total)
    assert c.stats["bytes_in"] < raw_total / 5, (c.stats, raw_total)


def test_compression_threshold_option_is_respected(ws_server, clients):
    srv = ws_server(compression="deflate")
    c = clients(srv.url, {"compression": 1, "compression_threshold": 1000})
    assert c.extensions is not None

    def wire_size(payload):
        before = c.stats["bytes_out"]
        c.send(payload)
        assert receive(c.channel())[0].data == payload
        return c.stats["bytes_out"] - before

    under = wire_size("a" * 999)
    at = wire_size("a" * 1000)
    assert under >= 999          # sent as is
    assert at < 100              # deflated


def test_compression_threshold_zero_compresses_small_messages(ws_server, clients):
    srv = ws_server(compression="deflate")
    c = clients(srv.url, compression=1, compression_threshold=0)
    before = c.stats["bytes_out"]
    c.send("a" * 100)
    assert receive(c.channel())[0].data == "a" * 100
    assert c.stats["bytes_out"] - before < 100


def test_no_compression_by_default(ws_server, clients):
    srv = ws_server(compression="deflate")
    c = clients(srv.url)
    assert c.extensions is None
    c.send(COMPRESSIBLE)
    assert receive(c.channel())[0].data == COMPRESSIBLE
    assert c.stats["bytes_out"] >= len(COMPRESSIBLE)


# ---------------------------------------------------------------------- handshake options

def test_subprotocol_chosen_by_the_server_is_reported(ws_server, clients):
    record, done = {}, threading.Event()
    srv = ws_server(recording_handler(record, done), subprotocols=["b"])
    c = clients(srv.url, protocols=["a", "b"])
    assert c.subprotocol == "b"
    c.close()
    assert done.wait(5)
    assert record["subprotocol"] == "b"
    assert record["headers"]["Sec-WebSocket-Protocol"] == "a, b"


def test_no_subprotocol_when_none_offered(ws_server, clients):
    c = clients(ws_server().url)
    assert c.subprotocol is None
    assert c.response_headers["upgrade"].lower() == "websocket"


@pytest.mark.parametrize("style", ["dict_option_dict_headers", "kwargs_pair_headers"])
def test_custom_headers_reach_the_server(ws_server, clients, style):
    record, done = {}, threading.Event()
    srv = ws_server(recording_handler(record, done))
    if style == "dict_option_dict_headers":   # the Lua spec's style
        c = clients(srv.url, {"headers": {"X-Token": "abc 123", "User-Agent": "tester/1"},
                              "dial_timeout": "5s", "read_timeout": 0})
    else:
        c = clients(srv.url, headers=[("X-Token", "abc 123"), ("User-Agent", "tester/1"),
                                      ("X-Multi", "1"), ("X-Multi", "2")], dial_timeout=5000)
    c.send("ping")
    assert receive(c.channel())[0].data == "ping"
    c.close()
    assert done.wait(5)
    headers = record["headers"]
    assert headers["X-Token"] == "abc 123"
    assert headers.get_all("User-Agent") == ["tester/1"]
    if style == "kwargs_pair_headers":
        assert headers.get_all("X-Multi") == ["1", "2"]


# ---------------------------------------------------------------------- closing

def test_server_close_delivers_every_message_then_ends_the_channel(ws_server, clients):
    record, done = {}, threading.Event()
    sent = [f"m{i}" for i in range(5)] + [b"\x00bin"]
    srv = ws_server(recording_handler(record, done, send=sent, close=(4000, "bye")))
    c = clients(srv.url)
    msgs, last = drain(c.channel())
    assert [m.data for m in msgs] == sent
    assert last == (None, False)
    assert c.channel().receive(timeout=0) == (None, False)
    assert c.closed
    assert c.close_code == 4000
    assert c.close_reason == "bye"
    assert c.error is None
    with pytest.raises(wsfast.ConnectionClosed) as info:
        c.send("late")
    err = info.value
    assert err.kind == errors.INTERNAL and err.retryable is False
    assert err.close_code == 4000 and err.reason == "bye"
    with pytest.raises(wsfast.ConnectionClosed):
        c.ping()
    with pytest.raises(wsfast.ConnectionClosed):
        c.close()
    assert done.wait(5)
    assert record["close_code"] == 4000   # the client echoed the server's code
    assert wait_no_readers(c.url) == []


def test_client_close_returns_true_and_records_1000(ws_server, clients):
    record, done = {}, threading.Event()
    srv = ws_server(recording_handler(record, done))
    c = clients(srv.url)
    c.send("x")
    assert receive(c.channel())[0].data == "x"
    assert not c.closed and c.close_code is None
    t0 = time.monotonic()
    assert c.close() is True
    assert time.monotonic() - t0 < 5
    assert c.closed
    assert c.close_code == 1000
    assert c.error is None
    assert c.channel().receive(timeout=5) == (None, False)
    with pytest.raises(wsfast.ConnectionClosed) as info:
        c.close()
    assert info.value.retryable is False and info.value.kind == errors.INTERNAL
    with pytest.raises(wsfast.ConnectionClosed):
        c.send("after close")
    assert done.wait(5)
    assert record["close_code"] == 1000
    assert wait_no_readers(c.url) == []


def test_close_code_and_reason_reach_the_server(ws_server, clients):
    record, done = {}, threading.Event()
    srv = ws_server(recording_handler(record, done))
    c = clients(srv.url)
    c.close(4001, "why")
    assert done.wait(5)
    assert record["close_code"] == 4001
    assert record["close_reason"] == "why"
    assert c.close_code == 4001 and c.close_reason == "why"   # the server echoed it
    record2, done2 = {}, threading.Event()
    c2 = clients(ws_server(recording_handler(record2, done2)).url)
    c2.close(wsfast.CLOSE_CODES.INTERNAL_ERROR, "é" * 61)   # 122 bytes: the longest reason
    assert done2.wait(5)
    assert record2["close_code"] == 1011 and record2["close_reason"] == "é" * 61
    assert c2.closed and c2.close_code == 1011 and c2.error is None


def test_context_manager_closes_on_exit(front, ws_server):
    record, done = {}, threading.Event()
    srv = ws_server(recording_handler(record, done))
    with front.connect(srv.url) as c:
        c.send("in")
        assert receive(c.channel())[0].data == "in"
    assert c.closed and c.close_code == 1000
    assert done.wait(5) and record["close_code"] == 1000
    with pytest.raises(RuntimeError):
        with front.connect(srv.url) as c2:
            raise RuntimeError("boom")
    assert c2.closed


def test_context_manager_after_server_close_does_not_raise(front, ws_server):
    srv = ws_server(recording_handler({}, threading.Event(), close=(1000, "")))
    with front.connect(srv.url) as c:
        assert drain(c.channel())[1] == (None, False)
    assert c.closed and c.close_code == 1000


def test_close_against_a_server_that_never_answers_returns_within_close_timeout(raw_server, clients):
    got = {}

    def script(srv):
        got["close"] = read_until_close(srv.conn)[:2]
        srv.stop.wait(20)   # never answer, keep the TCP connection open

    srv = raw_server(script)
    c = clients(srv.url, close_timeout=0.5 * 1000)
    t0 = time.monotonic()
    c.close()
    elapsed = time.monotonic() - t0
    assert 0.4 <= elapsed < 2.0
    assert c.closed
    assert c.close_code == 1006                 # the server never sent its close frame
    assert isinstance(c.error, wsfast.Timeout)  # a close timeout
    assert got["close"] == (1000, "")
    assert c.channel().receive(timeout=2) == (None, False)
    assert wait_no_readers(c.url) == []


def test_leaving_with_after_the_server_closed_waits_for_the_end_of_tcp(raw_server, front):
    # The server closes first and keeps TCP open. The client then waits, at most
    # close_timeout, for the server's FIN (RFC 6455 §7.1.1) before dropping TCP itself.
    # Leaving the with block (a close() that raises ConnectionClosed) must wait for that
    # end too, so that nothing of the connection outlives it: on asyncio, a transport
    # left open when the loop stops is collected later as an unclosed transport.
    ended = threading.Event()

    def script(srv):
        srv.conn.sendall(close_frame(1000))
        read_until_close(srv.conn)            # the client's answer
        srv.conn.settimeout(10)
        try:
            srv.conn.recv(1)                  # b"" or a reset: the client ended TCP
        except OSError:
            pass
        ended.set()

    srv = raw_server(script)
    with front.connect(srv.url, close_timeout="1500ms") as c:
        assert drain(c.channel())[1] == (None, False)
    # the client ends TCP at close_timeout; leaving the block waited for it (without
    # that wait the end comes about 1.5 s after the block, 1 s past this bound)
    assert ended.wait(0.5)
    assert c.closed and c.close_code == 1000
    assert wait_no_readers(c.url) == []


def test_close_while_another_thread_is_blocked_in_send_returns_within_close_timeout(
        raw_server, clients):
    def script(srv):
        srv.stop.wait(30)   # never read anything: the client's send blocks

    srv = raw_server(script)
    c = clients(srv.url, close_timeout="500ms")
    big = b"\x00" * (64 * MiB)
    t, send_result = start_blocked_send(c, big, "TCP backpressure")
    closer_done = {}

    def closer():
        try:
            c.close()
        except BaseException as exc:
            closer_done["error"] = exc
        closer_done["elapsed"] = time.monotonic() - t0

    t0 = time.monotonic()
    ct = threading.Thread(target=closer, daemon=True)
    ct.start()
    ct.join(5)
    assert not ct.is_alive(), "close() hung behind a blocked send"
    assert "error" not in closer_done, closer_done
    assert 0.4 <= closer_done["elapsed"] < 3   # close_timeout (500 ms), then the drop
    t.join(5)
    assert not t.is_alive(), "the blocked send was not released by close()"
    assert isinstance(send_result.get("error"), (wsfast.ConnectionClosed, wsfast.ConnectError))
    assert c.closed and c.close_code == 1006


def test_close_with_a_full_channel_and_an_idle_consumer_returns_promptly(raw_server, clients):
    got = {}

    def script(srv):
        srv.conn.sendall(b"".join(server_frame(OP_TEXT, f"m{i}".encode()) for i in range(1000)))
        got["close"] = read_until_close(srv.conn)[:2]
        srv.conn.sendall(close_frame(1000))

    srv = raw_server(script)
    c = clients(srv.url, channel_capacity=10)
    ch = c.channel()
    deadline = time.monotonic() + 5
    while len(ch) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(ch) == 10   # full: the reader is blocked on the channel
    t0 = time.monotonic()
    c.close()
    assert time.monotonic() - t0 < 2
    assert c.close_code == 1000 and c.error is None
    msgs, last = drain(ch)
    assert [m.data for m in msgs] == [f"m{i}" for i in range(len(msgs))]   # a prefix, in order
    assert 10 <= len(msgs) <= 1000
    assert last == (None, False)
    srv.done.wait(5)
    assert got["close"] == (1000, "")


# ---------------------------------------------------------------------- timeouts

def test_read_timeout_ends_a_silent_connection_with_1001(ws_server, clients):
    record, done = {}, threading.Event()
    srv = ws_server(recording_handler(record, done, send=(), close=None))
    c = clients(srv.url, read_timeout="300ms")
    t0 = time.monotonic()
    msgs, last = drain(c.channel())
    elapsed = time.monotonic() - t0
    assert msgs == [] and last == (None, False)
    assert 0.25 <= elapsed < 3.0
    assert isinstance(c.error, wsfast.Timeout)
    assert c.error.retryable is True and c.error.kind == errors.TIMEOUT
    assert c.closed and c.channel().closed
    assert c.close_code == 1001
    assert done.wait(5)
    assert record["close_code"] == 1001


def test_read_timeout_counts_from_the_last_data_message(raw_server, clients):
    def script(srv):
        for i in range(6):
            srv.conn.sendall(server_frame(OP_TEXT, f"tick{i}".encode()))
            time.sleep(0.15)
        code, _, _ = read_until_close(srv.conn)
        srv.conn.sendall(close_frame(code))

    srv = raw_server(script)
    c = clients(srv.url, read_timeout="600ms")
    msgs, last = drain(c.channel())
    assert [m.data for m in msgs] == [f"tick{i}" for i in range(6)]
    assert isinstance(c.error, wsfast.Timeout)
    assert c.close_code == 1001


@pytest.mark.parametrize("with_101", [False, True], ids=["after_handshake", "with_the_101"])
def test_read_timeout_does_not_fire_because_the_consumer_was_slow(raw_server, clients, with_101):
    # The reader blocks on the full channel longer than read_timeout; once the consumer
    # catches up the connection must still be alive: the server was not silent that long.
    burst = b"".join(server_frame(OP_TEXT, f"m{i}".encode()) for i in range(300))

    def script(srv):
        if not with_101:
            time.sleep(0.1)
            srv.conn.sendall(burst)
        code, _, _ = read_until_close(srv.conn, 20)
        srv.conn.sendall(close_frame(code))

    srv = raw_server(script, after_101=burst if with_101 else b"")
    c = clients(srv.url, read_timeout="1s", channel_capacity=10)
    ch = c.channel()
    time.sleep(1.5)
    for i in range(300):
        msg, ok = receive(ch)
        assert ok and msg.data == f"m{i}"
    time.sleep(0.2)
    assert c.error is None, "read timeout fired although the consumer was the slow one"
    assert drain(ch)[1] == (None, False)
    assert isinstance(c.error, wsfast.Timeout)


def test_dial_timeout_when_the_server_accepts_and_never_answers(front, raw_server):
    srv = raw_server(lambda s: s.stop.wait(20), handshake=False)
    t0 = time.monotonic()
    with pytest.raises(wsfast.Timeout) as info:
        front.connect(srv.url, dial_timeout="300ms")
    elapsed = time.monotonic() - t0
    assert 0.25 <= elapsed < 3.0
    assert info.value.retryable is True
    assert info.value.kind == errors.TIMEOUT
    assert isinstance(info.value, TimeoutError)
    assert srv.connected.is_set()


def test_connection_refused_is_a_retryable_connect_error(front):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(wsfast.ConnectError) as info:
        front.connect(f"ws://127.0.0.1:{port}/", dial_timeout="5s")
    err = info.value
    assert err.retryable is True
    assert err.kind == errors.INTERNAL
    assert isinstance(err.details["cause"], ConnectionRefusedError)
    assert err.__cause__ is err.details["cause"]


# ---------------------------------------------------------------------- handshake failures

@pytest.mark.parametrize("status, reason, retryable", [
    (403, "Forbidden", False),
    (503, "Service Unavailable", True),
])
def test_http_error_status_is_a_handshake_error_with_status_and_body(front, raw_server, status, reason,
                                                                     retryable):
    body = f"go away ({status})".encode()
    response = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    srv = raw_server(lambda s: s.stop.wait(20), response=response)
    with pytest.raises(wsfast.HandshakeError) as info:
        front.connect(srv.url, dial_timeout="5s")
    err = info.value
    assert err.status == status
    assert err.retryable is retryable
    assert err.kind == errors.INTERNAL
    assert err.body == body
    assert ("Content-Type", "text/plain") in err.headers


def test_wrong_sec_websocket_accept_is_a_handshake_error(front, raw_server):
    srv = raw_server(lambda s: s.stop.wait(20), accept="AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    with pytest.raises(wsfast.HandshakeError) as info:
        front.connect(srv.url, dial_timeout="5s")
    assert "Sec-WebSocket-Accept" in str(info.value)
    assert info.value.retryable is False


@pytest.mark.parametrize("offered", [["a"], []])
def test_subprotocol_not_offered_is_a_handshake_error(front, raw_server, offered):
    srv = raw_server(lambda s: s.stop.wait(20), extra_headers="Sec-WebSocket-Protocol: c\r\n")
    with pytest.raises(wsfast.HandshakeError) as info:
        front.connect(srv.url, protocols=offered, dial_timeout="5s")
    assert "subprotocol" in str(info.value)


# ---------------------------------------------------------------------- TLS

@pytest.fixture(scope="module")
def tls():
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


def test_tls_certificate_from_an_unknown_ca_is_rejected_by_default(front, ws_server, tls):
    server_ctx, _ = tls
    srv = ws_server(ssl=server_ctx)
    with pytest.raises(wsfast.ConnectError) as info:
        front.connect(f"wss://localhost:{srv.port}/", dial_timeout="5s")
    err = info.value
    assert err.retryable is False
    assert isinstance(err.details["cause"], ssl.SSLCertVerificationError)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_tls_echo_with_a_trusted_ca(ws_server, clients, tls, host):
    server_ctx, client_ctx = tls
    srv = ws_server(ssl=server_ctx, max_size=None)
    c = clients(f"wss://{host}:{srv.port}/", ssl=client_ctx, dial_timeout="5s")
    ch = c.channel()
    c.send("over tls")
    assert receive(ch)[0].data == "over tls"
    big = random.randbytes(3 * MiB)
    c.send(big)
    assert receive(ch)[0].data == big
    for i in range(200):
        c.send(f"n{i}")
    assert [receive(ch)[0].data for _ in range(200)] == [f"n{i}" for i in range(200)]
    c.close()
    assert c.closed and c.close_code == 1000 and c.error is None


def test_tls_concurrent_senders_and_reader_do_not_break_the_stream(ws_server, clients, tls):
    # OpenSSL forbids concurrent use of one SSL object: a reader's "want read" racing a
    # writer's SSL_write used to surface as a spurious EOF (1006).
    server_ctx, client_ctx = tls
    srv = ws_server(ssl=server_ctx, max_size=None)
    c = clients(f"wss://127.0.0.1:{srv.port}/", ssl=client_ctx, dial_timeout="5s")
    ch = c.channel()
    n_threads, per_thread = 6, 1500
    failures = []

    def sender(tid):
        try:
            for seq in range(per_thread):
                c.send(f"{tid}:{seq}:" + "x" * ((seq * 97 + tid) % 40000))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=sender, args=(t,), daemon=True) for t in range(n_threads)]
    for t in threads:
        t.start()
    next_seq = [0] * n_threads
    for _ in range(n_threads * per_thread):
        msg, ok = ch.receive(timeout=20)
        assert ok, f"connection ended: {c.error!r}, code {c.close_code}"
        tid, seq, rest = msg.data.split(":", 2)
        tid, seq = int(tid), int(seq)
        assert seq == next_seq[tid] and len(rest) == (seq * 97 + tid) % 40000
        next_seq[tid] += 1
    for t in threads:
        t.join(10)
    assert not failures
    c.close()
    assert c.closed and c.close_code == 1000 and c.error is None


# ---------------------------------------------------------------------- concurrency

def _payload(tid: int, seq: int):
    if seq % 100 == 7:
        size = 70 * 1024 + seq          # some frames over 64 KiB (8-byte length)
    else:
        size = (seq * 37 + tid * 11) % 3000
    head = f"{tid}:{seq}:"
    body = chr(ord("a") + (tid + seq) % 26) * size
    if tid % 2:
        return (head + body).encode()   # odd threads send binary
    return head + body


def test_concurrent_senders_never_interleave_frames(ws_server, clients):
    srv = ws_server(max_size=None)
    c = clients(srv.url)
    ch = c.channel()
    n_threads, per_thread = 8, 2000
    start = threading.Barrier(n_threads)
    failures = []

    def sender(tid):
        try:
            start.wait()
            for seq in range(per_thread):
                c.send(_payload(tid, seq))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=sender, args=(t,), daemon=True) for t in range(n_threads)]
    for t in threads:
        t.start()
    next_seq = [0] * n_threads
    total = n_threads * per_thread
    for _ in range(total):
        msg, ok = ch.receive(timeout=20)
        assert ok
        raw = msg.data.encode() if msg.type == "text" else msg.data
        tid_s, seq_s, _ = raw.split(b":", 2)
        tid, seq = int(tid_s), int(seq_s)
        assert seq == next_seq[tid], "per-thread order broken"
        assert msg.type == ("binary" if tid % 2 else "text")
        assert msg.data == _payload(tid, seq), "message corrupted"
        next_seq[tid] += 1
    for t in threads:
        t.join(10)
    assert not failures
    assert next_seq == [per_thread] * n_threads
    assert c.stats["messages_out"] == total and c.stats["messages_in"] == total


def test_slow_consumer_with_a_100k_burst_loses_nothing_and_applies_backpressure(raw_server, clients):
    n, size = 100_000, 1024
    header = b"\x82\x7e" + size.to_bytes(2, "big")
    filler = bytes(range(256)) * 3 + b"\x5a" * (size - 8 - 768)
    burst = bytearray()
    for i in range(n):
        burst += header
        burst += i.to_bytes(8, "big")
        burst += filler
    burst = bytes(burst)
    sent_all = threading.Event()
    got = {}

    def script(srv):
        srv.conn.settimeout(50)
        srv.conn.sendall(burst)
        sent_all.set()
        srv.conn.sendall(close_frame(1000, "done"))
        got["close"] = read_until_close(srv.conn, 20)[:2]

    srv = raw_server(script)
    c = clients(srv.url, channel_capacity=256)
    ch = c.channel()
    peak = 0
    end = time.monotonic() + 1.0
    while time.monotonic() < end:   # the consumer "sleeps"; watch the channel meanwhile
        peak = max(peak, len(ch))
        time.sleep(0.02)
    assert 0 < peak <= 256
    assert len(ch) <= 256
    assert not sent_all.is_set(), "the server's sendall should be blocked by backpressure"
    expected_tail = filler
    for i in range(n):
        msg, ok = ch.receive(timeout=20)
        assert ok
        data = msg.data
        if int.from_bytes(data[:8], "big") != i or len(data) != size:
            pytest.fail(f"message {i} lost or out of order: got {data[:8]!r} size {len(data)}")
        if i % 997 == 0:
            assert data[8:] == expected_tail
    assert ch.receive(timeout=10) == (None, False)
    assert sent_all.is_set()
    assert c.close_code == 1000 and c.close_reason == "done" and c.error is None
    assert c.stats["messages_in"] == n
    srv.done.wait(5)
    assert got["close"][0] == 1000   # the client echoes the code


def test_ping_is_answered_while_the_consumer_is_not_reading(raw_server, clients):
    got = {}
    pong_seen = threading.Event()

    def script(srv):
        conn = srv.conn
        conn.sendall(b"".join(server_frame(OP_TEXT, f"m{i}".encode()) for i in range(200)))
        t0 = time.monotonic()
        conn.sendall(server_frame(OP_PING, b"are you there?"))
        conn.settimeout(5)
        fin, op, payload, masked = read_frame(conn)
        got["pong"] = (fin, op, payload, masked, time.monotonic() - t0)
        pong_seen.set()
        srv.stop.wait(10)
        conn.sendall(close_frame(1000))
        got["close"] = read_until_close(conn)[:2]

    srv = raw_server(script)
    c = clients(srv.url, channel_capacity=256)
    assert pong_seen.wait(5), "no pong while the consumer was idle"
    fin, op, payload, masked, delay = got["pong"]
    assert (fin, op, payload, masked) == (True, OP_PONG, b"are you there?", True)
    assert delay < 2.0
    assert len(c.channel()) == 200
    srv.stop.set()
    msgs, last = drain(c.channel())
    assert [m.data for m in msgs] == [f"m{i}" for i in range(200)]
    assert last == (None, False) and c.close_code == 1000
    srv.done.wait(5)
    assert got["close"] == (1000, "")


def test_ping_is_answered_while_a_send_is_blocked_on_a_server_that_stops_reading(
        raw_server, clients):
    # A server that does not read while its own send is blocked (a sync server) and a
    # client whose send is blocked on that server: the reader must keep reading while
    # the pong waits for the write lock, or both ends deadlock.
    big = random.randbytes(48 * MiB)
    burst = b"".join(server_frame(OP_BINARY, i.to_bytes(4, "big") + b"\x00" * 60000)
                     for i in range(700))   # ~40 MiB: more than the kernel buffers hold
    client_blocked = threading.Event()
    got = {}

    def script(srv):
        conn = srv.conn
        conn.settimeout(30)
        client_blocked.wait(10)
        conn.sendall(server_frame(OP_PING, b"p1"))
        conn.sendall(burst)                  # completes only if the client keeps reading
        got["burst_sent"] = True
        fin, op, payload, masked = read_frame(conn)
        got["big"] = (op, len(payload), hashlib.sha256(payload).digest())
        got["next"] = read_frame(conn)[1:3]
        conn.sendall(close_frame(1000))
        got["close"] = read_until_close(conn)[:2]

    srv = raw_server(script)
    c = clients(srv.url)
    ch = c.channel()
    t, result = start_blocked_send(c, big, "the server is not reading")
    client_blocked.set()
    received = 0
    while received < 700:
        msg, ok = ch.receive(timeout=15)
        assert ok, "connection ended early"
        assert int.from_bytes(msg.data[:4], "big") == received
        received += 1
    t.join(15)
    assert result.get("ok") is True, result
    assert drain(ch, 15)[1] == (None, False)
    srv.done.wait(5)
    assert srv.error is None
    assert got["big"] == (OP_BINARY, len(big), hashlib.sha256(big).digest())
    assert got["next"] == (OP_PONG, b"p1")
    assert c.close_code == 1000


# ---------------------------------------------------------------------- invalid input from the server

def test_masked_server_frame_fails_with_1002(raw_server, clients):
    got = {}

    def script(srv):
        srv.conn.sendall(server_frame(OP_TEXT, b"ok"))
        srv.conn.sendall(server_frame(OP_TEXT, b"masked", mask=b"abcd"))
        got["close"] = read_until_close(srv.conn)[:2]

    srv = raw_server(script)
    c = clients(srv.url)
    msgs, last = drain(c.channel())
    assert [m.data for m in msgs] == ["ok"]
    assert last == (None, False)
    assert c.close_code == 1002
    assert isinstance(c.error, wsfast.ProtocolError) and c.error.close_code == 1002
    assert c.error.retryable is True
    srv.done.wait(5)
    assert got["close"][0] == 1002


def test_invalid_utf8_text_fails_with_1007(raw_server, clients):
    got = {}

    def script(srv):
        srv.conn.sendall(server_frame(OP_TEXT, "fine ✓".encode()))
        srv.conn.sendall(server_frame(OP_TEXT, b"bad \xff\xfe"))
        got["close"] = read_until_close(srv.conn)[:2]

    srv = raw_server(script)
    c = clients(srv.url)
    msgs, last = drain(c.channel())
    assert [m.data for m in msgs] == ["fine ✓"]
    assert c.close_code == 1007
    assert isinstance(c.error, wsfast.ProtocolError) and c.error.close_code == 1007
    srv.done.wait(5)
    assert got["close"][0] == 1007


def test_eof_without_close_frame_is_a_connect_error_with_1006(raw_server, clients):
    def script(srv):
        srv.conn.sendall(server_frame(OP_BINARY, b"last words"))
        # returning closes the TCP connection without a close frame

    srv = raw_server(script)
    c = clients(srv.url)
    msgs, last = drain(c.channel())
    assert [m.data for m in msgs] == [b"last words"]
    assert last == (None, False)
    assert isinstance(c.error, wsfast.ConnectError)
    assert c.error.retryable is True
    assert c.close_code == 1006
    with pytest.raises(wsfast.ConnectionClosed) as info:
        c.send("x")
    assert info.value.close_code == 1006


def test_messages_sent_together_with_the_101_response_are_delivered(raw_server, clients):
    frames = server_frame(OP_TEXT, b"early") + server_frame(OP_BINARY, b"\x01\x02")
    got = {}

    def script(srv):
        got["close"] = read_until_close(srv.conn)
        srv.conn.sendall(close_frame(1000))

    srv = raw_server(script, after_101=frames)
    c = clients(srv.url)
    ch = c.channel()
    assert [receive(ch)[0].data for _ in range(2)] == ["early", b"\x01\x02"]
    c.close()
    assert c.close_code == 1000
    assert srv.done.wait(5) and srv.error is None
    assert got["close"] == (1000, "", [])   # the close frame, nothing before it


# ---------------------------------------------------------------------- send validation

def test_send_argument_validation(ws_server, clients):
    c = clients(ws_server().url)
    with pytest.raises(wsfast.InvalidOption):
        c.send(b"\xff", wsfast.TEXT)
    with pytest.raises(wsfast.InvalidOption):
        c.send("x", 3)
    with pytest.raises(wsfast.InvalidOption):
        c.send("x", True)
    with pytest.raises(wsfast.InvalidOption):
        c.send(123)
    with pytest.raises(wsfast.InvalidOption):
        c.send(None)
    with pytest.raises(wsfast.InvalidOption):
        c.send("\ud800")
    with pytest.raises(wsfast.InvalidOption):
        c.ping(b"x" * 126)
    with pytest.raises(wsfast.InvalidOption):   # 40 items, 160 bytes: the limit is in bytes
        c.ping(memoryview(array.array("I", range(40))))
    with pytest.raises(wsfast.InvalidOption):
        c.ping(12)
    with pytest.raises(wsfast.InvalidOption):
        c.close(999)
    with pytest.raises(wsfast.InvalidOption):
        c.close(1005)
    with pytest.raises(wsfast.InvalidOption):
        c.close(1000, "x" * 124)
    with pytest.raises(ValueError):   # InvalidOption is a ValueError too
        c.close(1000, 5)
    # nothing was sent and the connection is still usable
    assert c.stats["messages_out"] == 0
    assert c.ping(b"x" * 125) is True
    ch = c.channel()
    assert c.send("é", wsfast.BINARY) is True
    msg = receive(ch)[0]
    assert msg.type == "binary" and msg.data == "é".encode()
    assert c.send(b"caf\xc3\xa9", wsfast.TEXT) is True
    msg = receive(ch)[0]
    assert msg.type == "text" and msg.data == "café"
    assert c.send(bytearray(b"ba"), wsfast.BINARY) and receive(ch)[0].data == b"ba"
    assert c.send(memoryview(b"mv")) and receive(ch)[0].data == b"mv"
    c.close()
    assert c.close_code == 1000 and c.error is None


def test_connect_option_errors_happen_before_any_connection(front):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.setblocking(False)
    url = f"ws://127.0.0.1:{listener.getsockname()[1]}/"
    try:
        bad = [
            lambda: front.connect(url, {"no_such_option": 1}),
            lambda: front.connect(url, bogus=True),
            lambda: front.connect(url, {"read_timeout": "1s"}, read_timeout="2s"),
            lambda: front.connect(url, dial_timeout=-1),
            lambda: front.connect(url, channel_capacity=0),
            lambda: front.connect(url, headers={"Bad Name": "x"}),
            lambda: front.connect(url.replace("ws://", "http://")),
            lambda: front.connect(url.replace("ws://", "ftp://")),
        ]
        for call in bad:
            with pytest.raises(wsfast.InvalidOption) as info:
                call()
            assert isinstance(info.value, ValueError)
            assert info.value.kind == errors.INVALID and info.value.retryable is False
        with pytest.raises(BlockingIOError):
            listener.accept()   # nobody ever connected
    finally:
        listener.close()


# ---------------------------------------------------------------------- threads

ENDINGS = ["client_close", "server_close", "protocol_error", "read_timeout", "eof",
           "close_timeout", "user_closed_channel"]


@pytest.mark.parametrize("ending", ENDINGS)
def test_reader_thread_exits_after_every_kind_of_ending(ws_server, raw_server, ending):
    if ending in ("client_close", "user_closed_channel"):
        c = wsfast.connect(ws_server().url)
        if ending == "user_closed_channel":
            c.channel().close()
            c.send("dropped")
            time.sleep(0.1)
        c.close()
    elif ending == "server_close":
        c = wsfast.connect(ws_server(recording_handler({}, threading.Event(),
                                                       close=(1001, ""))).url)
    elif ending == "read_timeout":
        c = wsfast.connect(ws_server().url, read_timeout=200)
    elif ending == "protocol_error":
        srv = raw_server(lambda s: (s.conn.sendall(server_frame(0x3, b"")),
                                    read_until_close(s.conn)))
        c = wsfast.connect(srv.url)
    elif ending == "eof":
        c = wsfast.connect(raw_server(lambda s: None).url)
    else:
        c = wsfast.connect(raw_server(lambda s: s.stop.wait(20)).url, close_timeout=300)
        c.close()
    assert drain(c.channel())[1] == (None, False)
    assert c.closed
    assert wait_no_readers(c.url, 2.0) == []
    expected = {"client_close": 1000, "user_closed_channel": 1000, "server_close": 1001,
                "read_timeout": 1001, "protocol_error": 1002, "eof": 1006, "close_timeout": 1006}
    assert c.close_code == expected[ending]


# ---------------------------------------------------------------------- select under contention

def test_select_over_two_clients_with_a_keepalive_timer(ws_server, clients, front):
    if front.name != "sync":   # (wsfast.asyncio.select: tests/test_async_channels.py)
        pytest.skip("wsfast.select over sync channels")
    srv1, srv2 = ws_server(), ws_server()
    c1, c2 = clients(srv1.url), clients(srv2.url)
    n = 3000

    def producer(c, name):
        for i in range(n):
            c.send(f"{name}:{i}")
            if i == n // 2:
                time.sleep(0.3)   # a quiet spell: the keep-alive timer fires

    producers = [threading.Thread(target=producer, args=(c, name), daemon=True)
                 for c, name in ((c1, "a"), (c2, "b"))]
    for t in producers:
        t.start()
    ch1, ch2 = c1.channel(), c2.channel()
    got = {ch1: [], ch2: []}
    pings = 0
    timer = wsfast.after("50ms")
    deadline = time.monotonic() + 30
    while len(got[ch1]) + len(got[ch2]) < 2 * n:
        assert time.monotonic() < deadline, "select loop stalled"
        r = wsfast.select(ch1.case_receive(), ch2.case_receive(), timer.case_receive())
        if r.channel is timer:
            assert r.ok and isinstance(r.value, float)
            c1.ping()
            c2.ping()
            pings += 1
            timer = wsfast.after("50ms")
            continue
        assert r.ok, "a channel closed early"
        got[r.channel].append(r.value.data)
    for t in producers:
        t.join(5)
    assert got[ch1] == [f"a:{i}" for i in range(n)]
    assert got[ch2] == [f"b:{i}" for i in range(n)]
    assert pings >= 1
    # the last selection: the last message of one of the streams, from its own channel
    assert not r.default and r.ok
    assert (r.channel, r.value.data) in ((ch1, f"a:{n - 1}"), (ch2, f"b:{n - 1}"))
    assert len(ch1) == 0 and len(ch2) == 0
    c1.close()
    c2.close()
    assert c1.close_code == 1000 and c2.close_code == 1000


def test_messages_arriving_during_close_are_delivered_while_the_channel_has_room(raw_server, clients):
    def script(srv):
        code, _reason, _before = read_until_close(srv.conn)
        # data frames sent after the client's close frame, before the close reply
        srv.conn.sendall(b"".join(server_frame(OP_TEXT, f"late{i}".encode()) for i in range(20)))
        srv.conn.sendall(close_frame(code))

    srv = raw_server(script)
    c = clients(srv.url, close_timeout="5s")
    c.close()
    assert [m.data for m in c.channel()] == [f"late{i}" for i in range(20)]
    assert c.close_code == 1000


def test_a_fast_consumer_reading_the_socket_itself_keeps_order_and_answers_pings(raw_server, clients):
    got = {}

    def script(srv):
        burst = b"".join(server_frame(OP_TEXT, f"m{i}".encode()) for i in range(50_000))
        srv.conn.sendall(burst + server_frame(OP_PING, b"are you there"))
        fin, opcode, payload, _ = read_frame(srv.conn)   # the pong, while the stream goes on
        got["pong"] = (opcode, payload)
        srv.conn.sendall(b"".join(server_frame(OP_TEXT, f"n{i}".encode()) for i in range(50_000)))
        srv.conn.sendall(close_frame(1000))
        got["close"] = read_until_close(srv.conn)[:2]

    srv = raw_server(script)
    c = clients(srv.url)
    data = [m.data for m in c.channel()]
    assert data == [f"m{i}" for i in range(50_000)] + [f"n{i}" for i in range(50_000)]
    assert got["pong"] == (OP_PONG, b"are you there")
    assert c.close_code == 1000


@pytest.mark.parametrize("loop", ["receive", "iterate"])
def test_round_trips_while_the_consumer_waits_on_the_socket_answer_pings(raw_server, clients, loop):
    # Request/reply: the consumer finds channel and socket empty and waits on the socket
    # itself; pings that arrive meanwhile must still be answered (by the reader thread).
    rounds = 500
    got = {"pongs": 0}

    def script(srv):
        srv.conn.settimeout(10)
        for i in range(rounds):
            fin, opcode, payload, _ = read_frame(srv.conn)
            while opcode == OP_PONG:
                got["pongs"] += 1
                fin, opcode, payload, _ = read_frame(srv.conn)
            out = server_frame(OP_TEXT, payload)
            if i % 50 == 0:
                out = server_frame(OP_PING, b"%d" % i) + out
            srv.conn.sendall(out)
        srv.conn.sendall(close_frame(1000))
        code, _, frames = read_until_close(srv.conn)
        got["pongs"] += sum(1 for op, _ in frames if op == OP_PONG)
        got["close"] = code

    srv = raw_server(script)
    c = clients(srv.url)
    ch = c.channel()
    it = iter(ch)
    for i in range(rounds):
        c.send(f"q{i}")
        data = (receive(ch)[0] if loop == "receive" else next(it)).data
        assert data == f"q{i}"
    assert drain(ch)[0] == []
    assert srv.done.wait(5)
    assert c.close_code == 1000 and got["close"] == 1000 and got["pongs"] == rounds // 50


@pytest.mark.parametrize("how", ["channel", "client"])
def test_closing_from_another_thread_ends_a_receive_waiting_on_a_silent_socket(
        raw_server, clients, how):
    silent = threading.Event()

    def script(srv):
        srv.conn.sendall(server_frame(OP_TEXT, b"first"))
        if how == "client":   # then nothing until the client's close frame
            read_until_close(srv.conn)
            srv.conn.sendall(close_frame(1000))
        else:
            silent.wait(10)

    srv = raw_server(script)
    c = clients(srv.url)
    ch = c.channel()
    assert receive(ch)[0].data == "first"
    with pytest.raises(wsfast.Timeout):
        ch.receive(timeout=0.05)     # bounded by the caller's timeout, not the poll slice
    result = {}

    def consumer():
        try:
            result["r"] = ch.receive(timeout=10)
        except BaseException as exc:
            result["error"] = exc
        result["at"] = time.monotonic()

    t = threading.Thread(target=consumer, daemon=True)
    t.start()
    try:
        t.join(0.5)
        assert t.is_alive() and not result, "the receive should be waiting: nothing was sent"
        t0 = time.monotonic()
        if how == "channel":
            ch.close()
        else:
            c.close()
        t.join(5)
    finally:
        silent.set()
    assert not t.is_alive(), "the receive went on waiting after the close"
    assert result.get("r") == (None, False), result
    assert result["at"] - t0 < 2.0   # woken by the close, not by its own 10 s timeout


# ---------------------------------------------------------------------- a full channel and writes

def _wait_full(ch, capacity, timeout=5.0):
    deadline = time.monotonic() + timeout
    while len(ch) < capacity and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(ch) >= capacity


def _read_message_and_pong(sock, deadline):
    """Server side: read client frames until one whole data message and a pong have come, or
    until ``deadline`` (monotonic); returns ``(message or None, pong payloads, other frames)``."""
    message, complete, pongs, others = bytearray(), False, [], []
    while not (complete and pongs):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            fin, opcode, payload, _masked = read_frame(sock)
        except (OSError, EOFError):   # socket.timeout is an OSError
            break
        if opcode == OP_PONG:
            pongs.append(payload)
        elif opcode in (OP_BINARY, 0x0) and not complete:
            message += payload
            complete = fin
        else:
            others.append((opcode, payload[:20]))
    return (bytes(message) if complete else None), pongs, others


def test_a_full_receive_channel_does_not_stop_outgoing_writes_pongs_included(raw_server, clients):
    # Issue 10. The consumer never reads: the channel fills, the reader stops reading the
    # socket (backpressure). Writing must go on: a large message under way and the pong.
    # (Before the engine rewrite the reader parked on the full channel and the queued
    # writes were never flushed.)
    big = random.randbytes(32 * MiB)
    send_started, frames_sent, may_read, read_done = (threading.Event() for _ in range(4))
    got = {}

    def script(srv):
        if not send_started.wait(20):
            raise TimeoutError("the test never started its send")
        # nothing read yet: the client's 32 MiB are stuck in the TCP buffers
        srv.conn.sendall(b"".join(server_frame(OP_TEXT, b"m%d" % i) for i in range(300))
                         + server_frame(OP_PING, b"still there?"))
        frames_sent.set()
        if not may_read.wait(20):
            raise TimeoutError("the test never let the server read")
        t0 = time.monotonic()
        got["message"], got["pongs"], got["others"] = _read_message_and_pong(srv.conn, t0 + 5)
        got["elapsed"] = time.monotonic() - t0
        read_done.set()
        got["close"] = read_until_close(srv.conn, 10)[:2]
        srv.conn.sendall(close_frame(1000))

    srv = raw_server(script)
    c = clients(srv.url, channel_capacity=10, close_timeout="2s")
    ch = c.channel()   # the idle consumer: never reads it
    st, send_result = start_blocked_send(c, big, "the server is not reading")
    send_started.set()
    try:
        assert frames_sent.wait(10)
        assert _wait_full(ch, 10), f"the channel did not fill: {len(ch)} messages"
    finally:
        may_read.set()   # only now does the server read
    assert read_done.wait(15)
    message, pongs = got["message"], got["pongs"]
    assert message is not None, (
        f"the 32 MiB message did not reach the server within 5 s (pongs {pongs}, "
        f"other frames {got['others']})")
    assert len(message) == len(big) and hashlib.sha256(message).digest() == hashlib.sha256(big).digest()
    assert pongs == [b"still there?"]
    st.join(5)
    assert send_result == {"ok": True}
    c.close()
    assert srv.done.wait(5) and srv.error is None, srv.error
    assert got["close"] == (1000, "")
    assert c.close_code == 1000


def test_close_from_another_thread_with_a_full_channel_and_an_idle_consumer(raw_server, clients):
    got = {}

    def script(srv):
        srv.conn.sendall(b"".join(server_frame(OP_TEXT, b"m%d" % i) for i in range(300))
                         + server_frame(OP_PING, b"still there?"))
        code, reason, before = read_until_close(srv.conn, 10)
        got["close"], got["before"] = (code, reason), before
        srv.conn.sendall(close_frame(code, reason))

    srv = raw_server(script)
    c = clients(srv.url, channel_capacity=10, close_timeout="2s")
    ch = c.channel()   # the idle consumer: never reads it until the end
    assert _wait_full(ch, 10), f"the channel did not fill: {len(ch)} messages"
    closer_done = {}

    def closer():
        t0 = time.monotonic()
        try:
            c.close(4001, "bye")
        except BaseException as exc:
            closer_done["error"] = exc
        closer_done["elapsed"] = time.monotonic() - t0

    ct = threading.Thread(target=closer, daemon=True)
    ct.start()
    ct.join(5)
    assert not ct.is_alive(), "close() hung"
    assert "error" not in closer_done, closer_done
    assert closer_done["elapsed"] < 2.0   # within close_timeout: the server answered
    assert srv.done.wait(5) and srv.error is None, srv.error
    assert got["close"] == (4001, "bye")   # the close frame reached the server
    assert c.closed and c.close_code == 4001 and c.close_reason == "bye" and c.error is None
    msgs, last = drain(ch)
    assert [m.data for m in msgs] == [f"m{i}" for i in range(len(msgs))]   # a prefix, in order
    assert len(msgs) >= 10 and last == (None, False)


def test_read_timeout_fires_while_only_pings_arrive_and_a_consumer_reads_the_socket(raw_server, clients):
    # Control frames are not data: a stream of pings every 0.5 ms must not keep a
    # connection alive past read_timeout, even while a consumer waits on the socket.
    def script(srv):
        srv.conn.settimeout(5)
        for i in range(50):   # messages first: the consumer reads the socket itself
            srv.conn.sendall(server_frame(OP_TEXT, b"m%d" % i))
            time.sleep(0.001)
        ping = server_frame(OP_PING, b"")
        end = time.monotonic() + 4
        try:
            while time.monotonic() < end and not srv.stop.is_set():
                srv.conn.sendall(ping)
                time.sleep(0.0005)
        except OSError:
            pass   # the client gave up on us: what the test wants

    srv = raw_server(script)
    c = clients(srv.url, read_timeout="300ms", close_timeout="1s")
    got = []
    t0 = time.monotonic()
    consumer = threading.Thread(target=lambda: got.extend(c.channel()), daemon=True)
    consumer.start()   # an iterator: it waits on the socket itself with no timeout of its own
    consumer.join(3)
    took = time.monotonic() - t0
    srv.stop.set()
    assert not consumer.is_alive(), "pings alone kept the connection open past read_timeout"
    assert [m.data for m in got] == [f"m{i}" for i in range(50)]
    assert isinstance(c.error, wsfast.Timeout) and "read timeout" in str(c.error)
    assert took < 2.5, f"the read timeout of 0.3 s took {took:.2f} s to fire"


def test_close_delivers_the_messages_that_came_before_it_even_with_a_full_channel(raw_server, clients):
    def script(srv):
        srv.conn.sendall(b"".join(server_frame(OP_TEXT, b"m%d" % i) for i in range(20)))
        code, reason, _ = read_until_close(srv.conn, 10)
        srv.conn.sendall(close_frame(code, reason))

    srv = raw_server(script)
    c = clients(srv.url, channel_capacity=4, close_timeout="3s")
    ch = c.channel()
    assert _wait_full(ch, 4)
    time.sleep(0.2)   # the other 16 are read and held: the channel has no room for them
    c.close()
    msgs, last = drain(ch)
    assert [m.data for m in msgs] == [f"m{i}" for i in range(20)]
    assert last == (None, False) and c.close_code == 1000 and c.error is None


def test_a_small_send_timing_out_on_a_full_queue_leaves_the_connection_usable(raw_server, clients):
    may_read = threading.Event()
    got = {}

    def script(srv):
        if not may_read.wait(20):
            raise TimeoutError("the test never let the server read")
        srv.conn.settimeout(10)
        frames = []
        while True:
            fin, opcode, payload, _ = read_frame(srv.conn)
            if opcode == OP_CLOSE:
                got["close"] = parse_close(payload)
                break
            frames.append(payload)
        got["frames"] = frames
        srv.conn.sendall(close_frame(1000))

    srv = raw_server(script)
    c = clients(srv.url, write_timeout="300ms", close_timeout="3s")
    sent = 0
    t0 = time.monotonic()
    with pytest.raises(wsfast.Timeout):
        while time.monotonic() - t0 < 30:
            c.send(b"%08d" % sent + b"x" * 1016)
            sent += 1
    assert not c.closed and c.error is None, "a send that wrote nothing must not end the connection"
    may_read.set()
    c.send(b"after")
    c.close()
    srv.done.wait(10)
    assert srv.error is None, srv.error
    assert got["frames"] == [b"%08d" % i + b"x" * 1016 for i in range(sent)] + [b"after"]
    assert got["close"] == (1000, "") and c.close_code == 1000


def test_latency_is_the_round_trip_of_the_last_answered_ping(raw_server, clients):
    delay = 0.15

    def script(srv):
        srv.conn.settimeout(10)
        while True:
            fin, opcode, payload, _ = read_frame(srv.conn)
            if opcode == OP_PING:
                time.sleep(delay)   # the network, as far as the client can tell
                srv.conn.sendall(server_frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                srv.conn.sendall(close_frame(1000))
                return

    srv = raw_server(script)
    c = clients(srv.url)
    assert c.latency is None   # no ping yet
    c.ping(b"one")
    deadline = time.monotonic() + 5
    while c.latency is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert c.latency is not None, "the pong never counted"
    assert delay <= c.latency < delay + 2.0
    c.close()
