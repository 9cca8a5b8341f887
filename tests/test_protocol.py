"""The sans-I/O Protocol without a socket: bytes in, messages and bytes out.

Every rule the front ends rely on is pinned here: the opening handshake as a phase of
its own (open, refusal, redirect), frames in, one ordered output, the closing
handshake, "nothing after our close frame", EOF and loss, the failures a front end
times, and ping -> pong matching.
"""

from __future__ import annotations

import socket
import struct
import zlib

import pytest
from conftest import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, accept_for, close_frame, server_frame
from hypothesis import given
from hypothesis import strategies as st

import wsfast
from wsfast.errors import ConnectError, ConnectionClosed, HandshakeError, ProtocolError, Timeout
from wsfast.options import parse_options
from wsfast.policy import parse_url
from wsfast.protocol import CLOSED, CLOSING, CONNECTING, OPEN, Protocol

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


@pytest.fixture(autouse=True)
def _no_socket(monkeypatch):
    """Any socket opened in this module is a bug: the Protocol does no I/O."""
    def refuse(*args, **kwargs):
        raise AssertionError("test_protocol must not open a socket")
    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def new(url="ws://example.com/chat?x=1", **options) -> Protocol:
    return Protocol(parse_url(url), parse_options(None, options), key=KEY)


def response_101(extra: str = "", key: str = KEY) -> bytes:
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_for(key)}\r\n{extra}\r\n").encode("latin-1")


def opened(**options) -> Protocol:
    p = new(**options)
    p.data_to_send()   # the request
    assert p.receive_data(response_101()) == []
    assert p.state is OPEN
    return p


def client_frames(data: bytes) -> list:
    """Decode the client's (masked) frames: [(fin, opcode, rsv1, payload)]."""
    out = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        pos += 2
        assert b1 & 0x80, "a client frame must be masked"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack_from("!H", data, pos)[0]
            pos += 2
        elif n == 127:
            n = struct.unpack_from("!Q", data, pos)[0]
            pos += 8
        key = data[pos:pos + 4]
        pos += 4
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(data[pos:pos + n]))
        pos += n
        out.append((bool(b0 & 0x80), b0 & 0x0F, bool(b0 & 0x40), payload))
    return out


def close_payload(code, reason=""):
    return struct.pack("!H", code) + reason.encode()


# ---------------------------------------------------------------------- opening handshake

def test_the_request_is_the_first_output_and_names_the_resource_host_and_key():
    p = new(headers={"X-Token": "abc"}, protocols=["chat"])
    assert p.state is CONNECTING
    request = p.data_to_send()
    assert p.data_to_send() == b""   # taken once
    head = request.decode("latin-1")
    assert head.startswith("GET /chat?x=1 HTTP/1.1\r\nHost: example.com\r\n")
    assert f"Sec-WebSocket-Key: {KEY}\r\n" in head
    assert "Sec-WebSocket-Protocol: chat\r\n" in head and "X-Token: abc\r\n" in head
    assert head.endswith("\r\n\r\n")


def test_a_101_fed_one_byte_at_a_time_opens_the_connection():
    p = new(protocols=["chat"])
    p.data_to_send()
    raw = response_101("Sec-WebSocket-Protocol: chat\r\nX-A: 1\r\nx-a: 2\r\n")
    for i in range(len(raw) - 1):
        assert p.receive_data(raw[i:i + 1]) == []
        assert p.state is CONNECTING
    p.receive_data(raw[-1:])
    assert p.state is OPEN and p.handshake_complete
    assert p.subprotocol == "chat" and p.extensions is None
    assert p.response_headers["x-a"] == "1, 2"   # repeated headers folded, names lower-cased
    assert p.handshake_error is None and p.error is None


def test_frames_that_come_with_the_101_are_decoded_and_their_pings_answered():
    p = new()
    p.data_to_send()
    msgs = p.receive_data(response_101() + server_frame(OP_TEXT, b"hi") + server_frame(OP_PING, b"p"))
    assert [(m.type, m.data) for m in msgs] == [("text", "hi")]
    assert [(op, payload) for _, op, _, payload in client_frames(p.data_to_send())] == [(OP_PONG, b"p")]


def test_a_wrong_accept_is_a_handshake_error_and_the_connection_is_over():
    p = new()
    p.data_to_send()
    p.receive_data(response_101(key="c29tZSBvdGhlciBrZXk="))
    assert p.state is CLOSED and not p.handshake_complete
    assert isinstance(p.handshake_error, HandshakeError) and p.error is p.handshake_error
    assert "Sec-WebSocket-Accept" in str(p.handshake_error)
    with pytest.raises(ConnectionClosed):
        p.send_message("x")


def test_a_malformed_response_is_a_handshake_error():
    p = new()
    p.data_to_send()
    p.receive_data(b"SSH-2.0-OpenSSH\r\n")
    assert p.state is CLOSED
    assert "malformed response" in str(p.handshake_error)


def test_a_refusal_waits_for_its_body_then_carries_status_headers_and_body():
    p = new()
    p.data_to_send()
    p.receive_data(b"HTTP/1.1 503 Busy\r\nContent-Length: 10\r\nRetry-After: 3\r\n\r\nbusy")
    assert p.state is CONNECTING and p.reading_refusal_body
    p.receive_data(b" now!")
    assert p.state is CONNECTING
    p.receive_data(b"!")
    assert p.state is CLOSED and not p.reading_refusal_body
    err = p.handshake_error
    assert err.status == 503 and err.body == b"busy now!!" and err.retryable is True
    assert ("Retry-After", "3") in err.headers
    assert p.redirect is None


def test_a_refusal_body_cut_short_by_the_front_ends_bound_keeps_what_came():
    p = new()
    p.data_to_send()
    p.receive_data(b"HTTP/1.1 404 Not Found\r\nContent-Length: 1000\r\n\r\nnot he")
    assert p.reading_refusal_body
    p.end_of_response()
    assert p.state is CLOSED
    assert p.handshake_error.status == 404 and p.handshake_error.body == b"not he"
    assert p.handshake_error.retryable is False


def test_a_refusal_body_is_kept_to_4_KiB():
    p = new()
    p.data_to_send()
    p.receive_data(b"HTTP/1.1 500 Oops\r\n\r\n" + b"x" * 5000)
    assert p.state is CLOSED
    assert p.handshake_error.body == b"x" * 4096


def test_eof_during_a_refusal_body_settles_the_error():
    p = new()
    p.data_to_send()
    p.receive_data(b"HTTP/1.1 403 Forbidden\r\n\r\nno")
    p.receive_eof()
    assert p.state is CLOSED and p.handshake_error.status == 403 and p.handshake_error.body == b"no"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_an_outcome_with_its_location(status):
    p = new()
    p.data_to_send()
    p.receive_data(f"HTTP/1.1 {status} Moved\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n".encode())
    assert p.state is CLOSED
    assert p.redirect == "/elsewhere"
    assert p.handshake_error.status == status
    assert p.handshake_error.details["location"] == "/elsewhere"


def test_a_3xx_without_location_or_a_4xx_is_no_redirect():
    for head in (b"HTTP/1.1 301 Moved\r\nContent-Length: 0\r\n\r\n",
                 b"HTTP/1.1 404 Nope\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n"):
        p = new()
        p.data_to_send()
        p.receive_data(head)
        assert p.state is CLOSED and p.redirect is None and p.handshake_error is not None


def test_eof_or_loss_during_the_handshake_is_a_connect_error():
    p = new()
    p.data_to_send()
    p.receive_data(b"HTTP/1.1 101 Switching")
    p.receive_eof()
    assert p.state is CLOSED and isinstance(p.error, ConnectError) and p.handshake_error is None
    q = new()
    q.data_to_send()
    exc = ConnectionResetError(104, "reset")
    q.connection_lost(exc)
    assert isinstance(q.error, ConnectError) and q.error.details["cause"] is exc and q.eof


@pytest.mark.parametrize("mode", [1, 2])
def test_deflate_is_negotiated_and_both_directions_compress(mode):
    p = new(compression=mode, compression_threshold=0)
    request = p.data_to_send().decode("latin-1")
    assert "permessage-deflate" in request
    ext = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    p.receive_data(response_101(f"Sec-WebSocket-Extensions: {ext}\r\n"))
    assert p.state is OPEN and p.extensions == ext
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = c.compress(b"hello hello hello") + c.flush(zlib.Z_SYNC_FLUSH)
    msgs = p.receive_data(server_frame(OP_TEXT, body[:-4], rsv1=True))
    assert [m.data for m in msgs] == ["hello hello hello"]
    p.send_message("x" * 1000)
    [(fin, op, rsv1, payload)] = client_frames(p.data_to_send())
    assert fin and op == OP_TEXT and rsv1 and len(payload) < 100
    assert zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff") == b"x" * 1000


# ---------------------------------------------------------------------- frames and output

def test_messages_of_every_kind_in_any_split():
    p = opened()
    stream = (server_frame(OP_TEXT, "ünï".encode()) + server_frame(OP_BINARY, b"\x00\xff")
              + server_frame(OP_TEXT, b"fr", fin=False) + server_frame(0, b"ag"))
    got = []
    for i in range(0, len(stream), 3):
        got += p.receive_data(stream[i:i + 3])
    assert [(m.type, m.data) for m in got] == [("text", "ünï"), ("binary", b"\x00\xff"), ("text", "frag")]
    assert p.messages_in == 3 and p.bytes_in == len(stream)


def test_data_pings_and_pongs_leave_in_one_order():
    p = opened()
    p.send_message("first")
    p.send_ping(b"mine")
    p.receive_data(server_frame(OP_PING, b"theirs"))   # the pong goes after what was queued
    p.send_message(b"\x01", wsfast.BINARY)
    frames = client_frames(p.data_to_send())
    assert [(op, payload) for _, op, _, payload in frames] == [
        (OP_TEXT, b"first"), (OP_PING, b"mine"), (OP_PONG, b"theirs"), (OP_BINARY, b"\x01")]
    assert p.output_size == 0 and p.messages_out == 2


def test_output_size_counts_what_data_to_send_will_return():
    p = opened()
    first = p.send_message("abc")
    assert first == 2 + 4 + 3 == p.output_size   # send_message returns its frame's size
    p.send_ping(b"")
    size = p.output_size
    data = p.data_to_send()
    assert size == len(data) > 0 and p.output_size == 0
    assert p.send_message(b"x" * 70000) == 2 + 8 + 4 + 70000 == len(p.data_to_send())


def test_a_pong_acknowledges_its_ping_and_those_before_it_with_their_tokens():
    p = opened()
    p.send_ping(b"1", token="t1")
    p.send_ping(b"2", token="t2")
    p.send_ping(b"3", token="t3")
    p.receive_data(server_frame(OP_PONG, b"2"))
    assert p.take_pongs() == ["t2"]   # "1" is acknowledged too, silently: it is no longer pending
    assert p.take_pongs() == []
    p.receive_data(server_frame(OP_PONG, b"1") + server_frame(OP_PONG, b"unsolicited"))
    assert p.take_pongs() == []
    p.receive_data(server_frame(OP_PONG, b"3"))
    assert p.take_pongs() == ["t3"] and p.pongs == 4


def test_a_message_over_the_read_limit_fails_with_1009():
    p = opened(read_limit=1000)
    p.data_to_send()
    assert p.receive_data(server_frame(OP_BINARY, b"x" * 1001)) == []
    assert p.state is CLOSED
    assert isinstance(p.error, ProtocolError) and p.close_code == 1009
    [(_, op, _, payload)] = client_frames(p.data_to_send())
    assert op == OP_CLOSE and struct.unpack("!H", payload[:2])[0] == 1009


def test_a_protocol_error_sends_its_close_code_and_ignores_what_follows():
    p = opened()
    msgs = p.receive_data(server_frame(OP_TEXT, b"ok") + server_frame(OP_TEXT, b"x", mask=b"abcd")
                          + server_frame(OP_TEXT, b"after"))
    assert [m.data for m in msgs] == ["ok"]
    assert p.state is CLOSED and p.close_code == 1002 and isinstance(p.error, ProtocolError)
    [(_, op, _, payload)] = client_frames(p.data_to_send())
    assert op == OP_CLOSE and struct.unpack("!H", payload[:2])[0] == 1002
    assert p.receive_data(server_frame(OP_TEXT, b"later")) == []
    assert p.data_to_send() == b""


def test_invalid_utf8_fails_with_1007():
    p = opened()
    p.receive_data(server_frame(OP_TEXT, b"\xff\xfe"))
    assert p.close_code == 1007 and p.state is CLOSED


# ---------------------------------------------------------------------- closing

def test_our_close_then_theirs_completes_the_handshake_with_their_code():
    p = opened()
    p.send_close(1000, "bye")
    assert p.state is CLOSING and p.awaiting_close
    [(_, op, _, payload)] = client_frames(p.data_to_send())
    assert op == OP_CLOSE and payload == close_payload(1000, "bye")
    msgs = p.receive_data(server_frame(OP_TEXT, b"late") + close_frame(1000, "ok"))
    assert [m.data for m in msgs] == ["late"]   # messages before their close still count
    assert p.state is CLOSED and not p.awaiting_close
    assert (p.close_code, p.close_reason, p.error) == (1000, "ok", None)
    assert p.data_to_send() == b""   # no second close frame


def test_nothing_is_sent_after_our_close_frame():
    p = opened()
    p.send_close()
    p.data_to_send()
    with pytest.raises(ConnectionClosed, match="closing"):
        p.send_message("x")
    with pytest.raises(ConnectionClosed):
        p.send_ping()
    with pytest.raises(ConnectionClosed):
        p.send_close()
    p.receive_data(server_frame(OP_PING, b"ping after our close"))
    assert p.data_to_send() == b""   # no pong after the close frame


def test_their_close_is_answered_with_their_code_and_ends_the_connection():
    p = opened()
    p.receive_data(close_frame(4001, "going"))
    assert p.state is CLOSED
    [(_, op, _, payload)] = client_frames(p.data_to_send())
    assert op == OP_CLOSE and payload == struct.pack("!H", 4001)
    assert (p.close_code, p.close_reason, p.error) == (4001, "going", None)
    with pytest.raises(ConnectionClosed, match="4001"):
        p.send_close()


def test_their_close_without_a_code_is_answered_without_one():
    p = opened()
    p.receive_data(server_frame(OP_CLOSE))
    [(_, op, _, payload)] = client_frames(p.data_to_send())
    assert op == OP_CLOSE and payload == b""
    assert p.close_code == 1005


def test_eof_without_a_close_frame_is_a_1006_connect_error():
    p = opened()
    p.receive_eof()
    assert p.state is CLOSED and p.eof
    assert isinstance(p.error, ConnectError) and p.close_code == 1006


def test_eof_after_the_closing_handshake_is_no_error():
    p = opened()
    p.send_close()
    p.receive_data(close_frame(1000))
    p.receive_eof()
    assert p.error is None and p.close_code == 1000 and p.eof


def test_a_close_the_server_never_answers_times_out_as_1006():
    p = opened(close_timeout="1s")
    p.send_close(1000)
    p.close_timed_out()
    assert p.state is CLOSED
    assert isinstance(p.error, Timeout) and "close timeout" in str(p.error)
    assert p.close_code == 1006 and p.close_reason == ""


def test_a_user_close_unanswered_before_eof_is_1006_not_ours():
    p = opened()
    p.send_close(1000, "mine")
    p.receive_eof()
    assert p.close_code == 1006 and isinstance(p.error, ConnectError)


def test_a_failure_the_front_end_timed_sends_its_code_and_records_it():
    p = opened()
    p.fail(Timeout("read timeout"), 1001, "read timeout")
    assert p.state is CLOSED
    assert (p.close_code, p.close_reason) == (1001, "read timeout")
    assert isinstance(p.error, Timeout)
    [(_, op, _, payload)] = client_frames(p.data_to_send())
    assert op == OP_CLOSE and payload == close_payload(1001, "read timeout")


def test_a_failure_during_our_close_keeps_1006_and_sends_no_second_close():
    p = opened()
    p.send_close(1000)
    p.data_to_send()
    p.fail(Timeout("write timeout"))
    assert p.data_to_send() == b""
    assert p.close_code == 1006 and isinstance(p.error, Timeout)


def test_loss_of_the_connection_keeps_its_cause():
    p = opened()
    exc = BrokenPipeError(32, "broken pipe")
    p.connection_lost(exc)
    assert p.state is CLOSED and p.eof and p.error.details["cause"] is exc and p.close_code == 1006


def test_the_first_error_is_the_one_kept():
    p = opened()
    p.receive_data(server_frame(OP_TEXT, b"\xff"))
    first = p.error
    p.receive_eof()
    p.fail(Timeout("later"))
    assert p.error is first and p.close_code == 1007


def test_stats_count_messages_and_wire_bytes_both_ways():
    p = opened()
    assert p.bytes_out == 0   # the HTTP request is not a WebSocket byte
    p.send_message("hello")
    out = p.data_to_send()
    assert p.messages_out == 1 and p.bytes_out == len(out)
    data = server_frame(OP_TEXT, b"a") + server_frame(OP_TEXT, b"b")
    p.receive_data(data)
    assert p.messages_in == 2 and p.bytes_in == len(data)


# ---------------------------------------------------------------------- properties

_server_events = st.lists(st.one_of(
    st.tuples(st.just("text"), st.text(max_size=300)),
    st.tuples(st.just("binary"), st.binary(max_size=300)),
    st.tuples(st.just("ping"), st.binary(max_size=125)),
), max_size=20)


@given(events=_server_events, close=st.booleans(), data=st.data())
def test_any_split_of_a_response_and_frames_gives_the_same_messages_and_output(events, close, data):
    stream = bytearray(response_101())
    expected, pongs = [], []
    for kind, value in events:
        if kind == "text":
            stream += server_frame(OP_TEXT, value.encode())
            expected.append(("text", value))
        elif kind == "binary":
            stream += server_frame(OP_BINARY, value)
            expected.append(("binary", value))
        else:
            stream += server_frame(OP_PING, value)
            pongs.append(value)
    if close:
        stream += close_frame(1000, "done")
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    p = new()
    p.data_to_send()
    got = []
    for a, b in zip([0] + cuts, cuts + [len(stream)]):
        got += p.receive_data(bytes(stream[a:b]))
    assert [(m.type, m.data) for m in got] == expected
    frames = client_frames(p.data_to_send())
    assert [payload for _, op, _, payload in frames if op == OP_PONG] == pongs
    if close:
        assert p.state is CLOSED and p.close_code == 1000 and p.error is None
        assert frames[-1][1] == OP_CLOSE
    else:
        assert p.state is OPEN and all(op == OP_PONG for _, op, _, _ in frames)


@given(actions=st.lists(st.one_of(
    st.tuples(st.just("text"), st.text(max_size=200)),
    st.tuples(st.just("binary"), st.binary(max_size=70000)),
    st.tuples(st.just("ping"), st.binary(max_size=125)),
), max_size=15), take_every=st.integers(1, 5))
def test_what_is_sent_leaves_in_order_however_often_the_output_is_taken(actions, take_every):
    p = opened()
    out = bytearray()
    expected = []
    for i, (kind, value) in enumerate(actions):
        if kind == "ping":
            p.send_ping(value)
            expected.append((OP_PING, value))
        else:
            p.send_message(value)
            payload = value.encode() if kind == "text" else value
            expected.append((OP_TEXT if kind == "text" else OP_BINARY, payload))
        if i % take_every == 0:
            size = p.output_size
            taken = p.data_to_send()
            assert size == len(taken)
            out += taken
    out += p.data_to_send()
    assert [(op, payload) for _, op, _, payload in client_frames(bytes(out))] == expected
    assert p.output_size == 0
