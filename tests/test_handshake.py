"""Tests of wsfast.handshake: the HTTP upgrade and permessage-deflate negotiation (sans-I/O),
plus interop with a real server (websockets) and a raw socket server."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import socket
import struct
import threading
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wsfast
from wsfast.constants import COMPRESSION
from wsfast.errors import HandshakeError, InvalidOption
from wsfast.handshake import (
    USER_AGENT,
    DeflateParams,
    Response,
    ResponseParser,
    accept_value,
    build_request,
    check_response,
    extension_offer,
    new_key,
)

pytestmark = pytest.mark.timeout(30)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
URL = "wss://example.com/ws"
OFFER_1 = ("permessage-deflate; client_max_window_bits, "
           "permessage-deflate; client_max_window_bits; client_no_context_takeover")
OFFER_2 = "permessage-deflate; client_no_context_takeover; server_no_context_takeover"


def response_101(*extra: tuple[str, str], accept: str = ACCEPT) -> Response:
    headers = (("Upgrade", "websocket"), ("Connection", "Upgrade"),
               ("Sec-WebSocket-Accept", accept)) + extra
    return Response(101, "Switching Protocols", headers)


def check(response: Response, *, protocols=(), compression=COMPRESSION.DISABLED, body=b""):
    return check_response(response, key=KEY, protocols=protocols, compression=compression,
                          url=URL, body=body)


def negotiate(extensions: str, compression: int):
    """The DeflateParams check_response derives from a Sec-WebSocket-Extensions value."""
    _, value, params = check(response_101(("Sec-WebSocket-Extensions", extensions)),
                             compression=compression)
    assert value == extensions.strip()
    return params


# --- key, accept, offer -----------------------------------------------------------------


def test_accept_value_matches_rfc6455_example():
    assert accept_value(KEY) == ACCEPT


def test_new_key_is_base64_of_16_random_bytes():
    keys = {new_key() for _ in range(20)}
    assert len(keys) == 20
    for key in keys:
        assert len(base64.b64decode(key, validate=True)) == 16
        assert len(key) == 24


def test_extension_offer_per_compression_mode():
    assert extension_offer(COMPRESSION.DISABLED) is None
    assert extension_offer(0) is None
    assert extension_offer(COMPRESSION.CONTEXT_TAKEOVER) == OFFER_1
    assert extension_offer(1) == OFFER_1
    assert extension_offer(COMPRESSION.NO_CONTEXT) == OFFER_2


@pytest.mark.parametrize("bad", [3, -1, True, "1", None, 1.0])
def test_extension_offer_rejects_unknown_mode(bad):
    with pytest.raises(InvalidOption):
        extension_offer(bad)


# --- request ----------------------------------------------------------------------------


def test_build_request_minimal_bytes_in_order():
    request = build_request(host_header="example.com", resource="/ws?x=1", key=KEY,
                            user_agent="ua/1")
    assert request == (
        b"GET /ws?x=1 HTTP/1.1\r\n"
        b"Host: example.com\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"User-Agent: ua/1\r\n"
        b"\r\n"
    )


def test_build_request_protocols_extensions_and_user_headers_in_order():
    request = build_request(
        host_header="example.com:8443", resource="/", key=KEY,
        headers=[("Origin", "https://example.com"), ("X-Token", "a b;c"), ("X-Token", "2")],
        protocols=["graphql-ws", "chat"], extensions=OFFER_1, user_agent="ua/1")
    assert request.split(b"\r\n") == [
        b"GET / HTTP/1.1",
        b"Host: example.com:8443",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Key: " + KEY.encode(),
        b"Sec-WebSocket-Version: 13",
        b"Sec-WebSocket-Protocol: graphql-ws, chat",
        b"Sec-WebSocket-Extensions: " + OFFER_1.encode(),
        b"User-Agent: ua/1",
        b"Origin: https://example.com",
        b"X-Token: a b;c",
        b"X-Token: 2",
        b"",
        b"",
    ]


def test_build_request_default_user_agent_names_wsfast():
    request = build_request(host_header="h", resource="/", key=KEY)
    assert USER_AGENT.startswith("wsfast")
    assert b"\r\nUser-Agent: " + USER_AGENT.encode() + b"\r\n" in request


def test_build_request_user_agent_none_omits_it():
    request = build_request(host_header="h", resource="/", key=KEY, user_agent=None)
    assert b"user-agent" not in request.lower()


def test_build_request_user_supplied_user_agent_wins_case_insensitively():
    request = build_request(host_header="h", resource="/", key=KEY,
                            headers=[("user-agent", "mine/2")])
    assert request.lower().count(b"user-agent") == 1
    assert request.endswith(b"\r\nuser-agent: mine/2\r\n\r\n")


@pytest.mark.parametrize("name", ["Host", "host", "HOST"])
def test_build_request_refuses_a_user_host_header(name):
    # The security policy checked the URL's host; another Host would route elsewhere.
    with pytest.raises(InvalidOption, match="security policy"):
        build_request(host_header="10.0.0.1:8080", resource="/", key=KEY,
                      headers=[("X-A", "1"), (name, "virtual.example")])


def test_connect_refuses_a_user_host_header_before_any_connection():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        port = listener.getsockname()[1]
        for headers in ({"Host": "other.example"}, [("X-A", "1"), ("host", f"127.0.0.1:{port}")]):
            with pytest.raises(InvalidOption, match="security policy"):
                wsfast.connect(f"ws://127.0.0.1:{port}/", headers=headers, dial_timeout="2s")
            with pytest.raises(InvalidOption, match="security policy"):
                wsfast.connect(f"ws://127.0.0.1:{port}/", {"headers": headers, "dial_timeout": "2s"})
        with pytest.raises(BlockingIOError):  # nothing ever connected
            listener.accept()


def test_build_request_encodes_latin1_values():
    request = build_request(host_header="h", resource="/", key=KEY,
                            headers=[("X-Name", "café")], user_agent=None)
    assert b"X-Name: caf\xe9\r\n" in request


@pytest.mark.parametrize("kwargs", [
    {"headers": [("X-Name", "snow ☃")]},            # not Latin-1
    {"headers": [("X-A", "a\r\nX-Injected: 1")]},   # CRLF injection
    {"headers": [("X-A", "a\nb")]},
    {"headers": [("X-A", "a\x00b")]},
    {"headers": [("X A", "1")]},                    # name not a token
    {"headers": [("", "1")]},
    {"headers": [("X-A:", "1")]},
    {"headers": [("X-A", 1)]},
    {"headers": [("X-A",)]},
    {"headers": [("Host", "a")]},                   # the URL's host is the one checked
    {"headers": [("Sec-WebSocket-Key", "x")]},      # owned by the handshake
    {"headers": [("Sec-WebSocket-Accept", "x")]},   # every Sec-WebSocket-* name
    {"headers": [("sec-websocket-anything", "x")]},
    {"headers": [("sec-websocket-protocol", "chat")]},
    {"headers": [("Sec-WebSocket-Extensions", "permessage-deflate")]},
    {"headers": [("Upgrade", "websocket")]},
    {"headers": [("Connection", "close")]},
    {"headers": [("Sec-WebSocket-Version", "8")]},
    {"protocols": ["chat", "bad protocol"]},
    {"protocols": [""]},
    {"protocols": ["a,b"]},
    {"resource": "ws"},
    {"resource": "/a b"},
    {"resource": "/\r\nX: 1"},
    {"resource": "/é"},
    {"host_header": "h\r\nX: 1"},
    {"host_header": "hôst☃"},
    {"user_agent": "ua\n"},
    {"extensions": "permessage-deflate\r\n"},
])
def test_build_request_rejects_invalid_input_with_invalid_option(kwargs):
    args = {"host_header": "h", "resource": "/", "key": KEY, **kwargs}
    with pytest.raises(InvalidOption):
        build_request(**args)


# --- response parser --------------------------------------------------------------------

HEAD = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12\r\n"
    b"X-Spaced:   padded value \t\r\n"
    b"\r\n"
)
# Two server frames that arrive with the 101: a text "hi" and a ping with a CRLFCRLF payload.
FRAMES = b"\x81\x02hi" + b"\x89\x04\r\n\r\n"


def feed_all(parser: ResponseParser, data: bytes, step: int):
    result = None
    for i in range(0, len(data), step):
        result = parser.feed(data[i:i + step])
    return result


def test_parser_fed_one_byte_at_a_time_keeps_leftover_frames_exactly():
    data = HEAD + FRAMES
    parser = ResponseParser()
    results = [parser.feed(data[i:i + 1]) for i in range(len(data))]
    assert results[:len(HEAD) - 1] == [None] * (len(HEAD) - 1)
    response = results[len(HEAD) - 1]
    assert response is not None
    assert response.status == 101
    assert response.reason == "Switching Protocols"
    assert response.headers == (
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", ACCEPT),
        ("Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=12"),
        ("X-Spaced", "padded value"),
    )
    # Bytes fed after completion are appended to the leftover, the response is returned again.
    assert all(r is response for r in results[len(HEAD) - 1:])
    assert parser.leftover == FRAMES
    assert parser.response is response


def test_parser_one_chunk_leftover_is_everything_after_the_empty_line():
    parser = ResponseParser()
    response = parser.feed(HEAD + FRAMES)
    assert response is not None and response.status == 101
    assert parser.leftover == FRAMES


def test_parser_leftover_is_empty_when_nothing_followed():
    parser = ResponseParser()
    assert parser.leftover == b""
    assert parser.feed(HEAD) is not None
    assert parser.leftover == b""


@given(st.lists(st.integers(min_value=0, max_value=len(HEAD + FRAMES)), max_size=12))
def test_parser_result_does_not_depend_on_how_bytes_are_split(cuts):
    data = HEAD + FRAMES
    bounds = [0, *sorted(cuts), len(data)]
    parser = ResponseParser()
    result = None
    for start, stop in zip(bounds, bounds[1:]):
        result = parser.feed(data[start:stop]) or result
    assert result == ResponseParser().feed(data)
    assert parser.leftover == FRAMES


def test_parser_accepts_bytearray_and_memoryview():
    parser = ResponseParser()
    assert parser.feed(bytearray(HEAD[:10])) is None
    assert parser.feed(memoryview(HEAD[10:] + FRAMES)) is not None
    assert parser.leftover == FRAMES


def test_parser_accepts_bare_lf_line_endings():
    data = (b"HTTP/1.1 101 Switching Protocols\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\n"
            b"\n") + FRAMES
    parser = ResponseParser()
    response = feed_all(parser, data, 1)
    assert response.get("connection") == "Upgrade"
    assert parser.leftover == FRAMES


@pytest.mark.parametrize("end", [b"\r\n\n", b"\n\r\n"])
def test_parser_mixed_empty_line_ending(end):
    parser = ResponseParser()
    response = parser.feed(b"HTTP/1.1 101 OK\r\nUpgrade: websocket" + end + FRAMES)
    assert response.headers == (("Upgrade", "websocket"),)
    assert parser.leftover == FRAMES


@pytest.mark.parametrize("line, reason", [
    (b"HTTP/1.1 101 Switching Protocols", "Switching Protocols"),
    (b"HTTP/1.1 101 ", ""),
    (b"HTTP/1.1 101", ""),
    (b"HTTP/1.1 101 Web Socket Protocol Handshake", "Web Socket Protocol Handshake"),
    (b"HTTP/1.1 403 Forbidden \xe9t\xe9", "Forbidden \xe9t\xe9"),
])
def test_parser_accepts_any_reason_phrase(line, reason):
    response = ResponseParser().feed(line + b"\r\n\r\n")
    assert response.reason == reason
    assert response.status in (101, 403)


@pytest.mark.parametrize("data", [
    b"HTTP/1.0 101 Switching Protocols\r\n\r\n",
    b"HTTP/2 101\r\n\r\n",
    b"HTTP/1.1 1011 Switching\r\n\r\n",
    b"HTTP/1.1 10 Switching\r\n\r\n",
    b"HTTP/1.1 099 Low\r\n\r\n",
    b"HTTP/1.1 600 High\r\n\r\n",
    b"HTTP/1.1  101 Switching\r\n\r\n",
    b"HTTP/1.1 abc Switching\r\n\r\n",
    b"HTTP/1.1 101 Bad\x00reason\r\n\r\n",
    b"HTTP/1.1\r\n\r\n",
    b"http/1.1 101 Switching Protocols\r\n\r\n",
    b"SSH-2.0-OpenSSH_9.6\r\n",
    b"\x16\x03\x01\x00",
    b"\r\nHTTP/1.1 101 Switching Protocols\r\n\r\n",
    b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n continued\r\n\r\n",   # obs-fold
    b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n\tcontinued\r\n\r\n",
    b"HTTP/1.1 101 OK\r\nNo colon here\r\n\r\n",
    b"HTTP/1.1 101 OK\r\nUpgrade : websocket\r\n\r\n",              # space before colon
    b"HTTP/1.1 101 OK\r\n: empty name\r\n\r\n",
    b"HTTP/1.1 101 OK\r\nX(bad): 1\r\n\r\n",
    b"HTTP/1.1 101 OK\r\nX-A: a\x00b\r\n\r\n",
    b"HTTP/1.1 101 OK\r\nX-A: a\rb\r\n\r\n",                        # bare CR
    b"HTTP/1.1 101 OK\r\nX-A: a\x7fb\r\n\r\n",
    b"HTTP/1.1 101 OK\r\n\r\r\n",
])
def test_parser_rejects_malformed_response(data):
    parser = ResponseParser(url=URL)
    with pytest.raises(HandshakeError, match="^malformed response") as info:
        feed_all(parser, data, 1)
    assert info.value.retryable is False
    assert info.value.details["url"] == URL


def test_parser_fails_on_the_first_byte_that_cannot_start_a_status_line():
    parser = ResponseParser()
    assert parser.feed(b"HT") is None
    with pytest.raises(HandshakeError, match="^malformed response"):
        parser.feed(b"ML")


def test_parser_error_is_sticky():
    parser = ResponseParser()
    with pytest.raises(HandshakeError) as first:
        parser.feed(b"HTTP/1.0 200 OK\r\n")
    with pytest.raises(HandshakeError) as second:
        parser.feed(b"\r\n")
    assert second.value is first.value


def _block(size: int) -> bytes:
    """A header block of exactly ``size`` bytes."""
    head = b"HTTP/1.1 101 OK\r\nX-Pad: "
    return head + b"a" * (size - len(head) - 4) + b"\r\n\r\n"


def test_parser_accepts_a_header_block_of_exactly_max_size():
    data = _block(65536)
    assert len(data) == 65536
    parser = ResponseParser()
    response = parser.feed(data + FRAMES * 1000)  # the leftover does not count
    assert response is not None
    assert parser.leftover == FRAMES * 1000


@pytest.mark.parametrize("step", [1, 4096, 1 << 20])
def test_parser_rejects_a_header_block_over_max_size(step):
    with pytest.raises(HandshakeError, match="^response too large"):
        feed_all(ResponseParser(), _block(65537), step)


def test_parser_rejects_an_endless_header_line_without_waiting_for_its_end():
    parser = ResponseParser(max_size=1024)
    parser.feed(b"HTTP/1.1 101 OK\r\nX-Pad: " + b"a" * 900)
    with pytest.raises(HandshakeError, match="^response too large"):
        parser.feed(b"a" * 200)


def test_parser_header_count_limit():
    ok = b"HTTP/1.1 101 OK\r\n" + b"X-A: 1\r\n" * 256 + b"\r\n"
    assert len(ResponseParser().feed(ok).headers) == 256
    too_many = b"HTTP/1.1 101 OK\r\n" + b"X-A: 1\r\n" * 257 + b"\r\n"
    with pytest.raises(HandshakeError, match="^response too large"):
        ResponseParser().feed(too_many)


def test_parser_custom_limits():
    with pytest.raises(HandshakeError, match="^response too large"):
        ResponseParser(max_headers=1).feed(b"HTTP/1.1 101 OK\r\nA: 1\r\nB: 2\r\n\r\n")
    with pytest.raises(HandshakeError, match="^response too large"):
        ResponseParser(max_size=20).feed(b"HTTP/1.1 101 OK\r\nA: 1\r\n\r\n")


# --- Response helpers -------------------------------------------------------------------


def test_response_get_is_case_insensitive_and_joins_repeats():
    response = Response(101, "", (("Set-Cookie", "a=1"), ("X-A", "x"), ("set-cookie", "b=2")))
    assert response.get("SET-COOKIE") == "a=1, b=2"
    assert response.get_all("set-cookie") == ["a=1", "b=2"]
    assert response.get("x-a") == "x"
    assert response.get("missing") is None
    assert response.get_all("missing") == []


@pytest.mark.parametrize("headers, expected", [
    ((), None),
    ((("Content-Length", "12"),), 12),
    ((("content-length", "0"),), 0),
    ((("Content-Length", "12, 12"),), 12),
    ((("Content-Length", "12"), ("Content-Length", "12")), 12),
    ((("Content-Length", "12"), ("Content-Length", "13")), None),
    ((("Content-Length", "-1"),), None),
    ((("Content-Length", "abc"),), None),
    ((("Content-Length", "١٢"),), None),          # non-ASCII digits
    ((("Content-Length", "9" * 4000),), None),
    ((("Content-Length", "12"), ("Transfer-Encoding", "chunked")), None),
])
def test_response_content_length(headers, expected):
    assert Response(403, "Forbidden", headers).content_length == expected


# --- check_response: status and upgrade headers -----------------------------------------


def test_check_response_accepts_a_minimal_101():
    assert check(response_101()) == (None, None, None)


@pytest.mark.parametrize("status, retryable", [
    (403, False), (404, False), (400, False), (401, False), (302, False), (200, False),
    (426, False), (408, True), (429, True), (500, True), (502, True), (503, True), (504, True),
])
def test_check_response_non_101_raises_with_status_headers_body(status, retryable):
    headers = (("Content-Type", "text/plain"), ("Retry-After", "5"))
    body = b"x" * 5000
    with pytest.raises(HandshakeError) as info:
        check(Response(status, "Some Reason", headers), body=body)
    err = info.value
    assert str(err) == f"server rejected WebSocket upgrade: HTTP {status} Some Reason"
    assert err.status == status
    assert err.retryable is retryable
    assert err.headers == list(headers)
    assert err.body == body[:4096]
    assert err.details["url"] == URL


def test_check_response_non_101_without_reason_phrase():
    with pytest.raises(HandshakeError, match=r"HTTP 403$"):
        check(Response(403, "", ()))


def test_non_101_response_and_its_body_from_the_parser_leftover():
    parser = ResponseParser()
    response = parser.feed(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nforbidden")
    assert response.content_length == 9
    with pytest.raises(HandshakeError) as info:
        check(response, body=parser.leftover)
    assert (info.value.status, info.value.body, info.value.retryable) == (403, b"forbidden", False)


@pytest.mark.parametrize("headers", [
    (("Connection", "Upgrade"), ("Sec-WebSocket-Accept", ACCEPT)),
    (("Upgrade", "h2c"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", ACCEPT)),
    (("Upgrade", "websockets"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", ACCEPT)),
    (("Upgrade", "websocket"), ("Sec-WebSocket-Accept", ACCEPT)),
    (("Upgrade", "websocket"), ("Connection", "keep-alive"), ("Sec-WebSocket-Accept", ACCEPT)),
    (("Upgrade", "websocket"), ("Connection", "upgraded"), ("Sec-WebSocket-Accept", ACCEPT)),
    (("Upgrade", "websocket"), ("Connection", "Upgrade")),
    (("Upgrade", "websocket"), ("Connection", "Upgrade"),
     ("Sec-WebSocket-Accept", accept_value("AAAAAAAAAAAAAAAAAAAAAA=="))),
    (("Upgrade", "websocket"), ("Connection", "Upgrade"),
     ("Sec-WebSocket-Accept", ACCEPT), ("Sec-WebSocket-Accept", ACCEPT)),
    (("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", "")),
])
def test_check_response_rejects_bad_upgrade_connection_or_accept(headers):
    with pytest.raises(HandshakeError) as info:
        check(Response(101, "Switching Protocols", headers))
    assert info.value.retryable is False
    assert info.value.status == 101
    assert info.value.details["url"] == URL


@pytest.mark.parametrize("upgrade, connection", [
    ("WebSocket", "upgrade"),
    ("WEBSOCKET", "UPGRADE"),
    ("websocket", "keep-alive, Upgrade"),
    ("websocket", "Upgrade,keep-alive"),
])
def test_check_response_upgrade_and_connection_tokens_case_insensitive(upgrade, connection):
    headers = (("Upgrade", upgrade), ("Connection", connection), ("Sec-WebSocket-Accept", ACCEPT))
    assert check(Response(101, "", headers)) == (None, None, None)


def test_check_response_connection_token_in_a_repeated_header():
    headers = (("Upgrade", "websocket"), ("Connection", "keep-alive"),
               ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", ACCEPT))
    assert check(Response(101, "", headers)) == (None, None, None)


def test_check_response_rejects_an_invalid_compression_argument():
    with pytest.raises(InvalidOption):
        check(response_101(), compression=5)


# --- check_response: subprotocol --------------------------------------------------------


def test_subprotocol_absent_is_none_even_when_offered():
    assert check(response_101(), protocols=["chat"])[0] is None


def test_subprotocol_offered_is_returned():
    response = response_101(("Sec-WebSocket-Protocol", "superchat"))
    assert check(response, protocols=["chat", "superchat"]) == ("superchat", None, None)


def test_empty_subprotocol_header_counts_as_absent():
    assert check(response_101(("Sec-WebSocket-Protocol", "")), protocols=["chat"])[0] is None


@pytest.mark.parametrize("headers, protocols", [
    ((("Sec-WebSocket-Protocol", "other"),), ["chat"]),
    ((("Sec-WebSocket-Protocol", "chat"),), []),
    ((("Sec-WebSocket-Protocol", "Chat"),), ["chat"]),          # exact match only
    ((("Sec-WebSocket-Protocol", "chat, superchat"),), ["chat", "superchat"]),
    ((("Sec-WebSocket-Protocol", "chat"), ("Sec-WebSocket-Protocol", "chat")), ["chat"]),
])
def test_subprotocol_not_offered_or_several_raise(headers, protocols):
    with pytest.raises(HandshakeError, match="subprotocol"):
        check(response_101(*headers), protocols=protocols)


# --- check_response: permessage-deflate negotiation -------------------------------------


def test_no_extension_header_means_no_compression():
    for mode in COMPRESSION:
        assert check(response_101(), compression=mode) == (None, None, None)


def test_empty_extension_header_counts_as_absent():
    assert check(response_101(("Sec-WebSocket-Extensions", "")),
                 compression=COMPRESSION.CONTEXT_TAKEOVER) == (None, None, None)


def test_extension_in_response_when_compression_disabled_raises():
    with pytest.raises(HandshakeError, match="none was offered"):
        check(response_101(("Sec-WebSocket-Extensions", "permessage-deflate")))


def test_context_takeover_plain_accept():
    assert negotiate("permessage-deflate", 1) == DeflateParams(False, False, 15, 15)


@pytest.mark.parametrize("value, expected", [
    ("permessage-deflate; server_no_context_takeover", DeflateParams(True, False, 15, 15)),
    ("permessage-deflate; client_no_context_takeover", DeflateParams(False, True, 15, 15)),
    ("permessage-deflate; server_max_window_bits=10", DeflateParams(False, False, 10, 15)),
    ("permessage-deflate; client_max_window_bits=9", DeflateParams(False, False, 15, 9)),
    ('permessage-deflate; server_max_window_bits="10"', DeflateParams(False, False, 10, 15)),
    ('permessage-deflate; client_max_window_bits="1\\1"', DeflateParams(False, False, 15, 11)),
    ("permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
     "server_max_window_bits=12; client_max_window_bits=13", DeflateParams(True, True, 12, 13)),
    ("  permessage-deflate ;server_max_window_bits = 12 ;  client_no_context_takeover\t",
     DeflateParams(False, True, 12, 15)),
    ("Permessage-Deflate; Server_No_Context_Takeover", DeflateParams(True, False, 15, 15)),
    ("permessage-deflate,", DeflateParams(False, False, 15, 15)),   # empty list element
])
def test_context_takeover_params(value, expected):
    assert negotiate(value, COMPRESSION.CONTEXT_TAKEOVER) == expected


@pytest.mark.parametrize("bits", range(8, 16))
@pytest.mark.parametrize("name", ["server_max_window_bits", "client_max_window_bits"])
def test_window_bits_8_to_15_accepted(name, bits):
    params = negotiate(f"permessage-deflate; {name}={bits}", COMPRESSION.CONTEXT_TAKEOVER)
    assert getattr(params, name) == bits


@pytest.mark.parametrize("value", ["7", "16", "0", "08", "abc", "1O", '"16"', '""', "-9", "9.0"])
@pytest.mark.parametrize("name", ["server_max_window_bits", "client_max_window_bits"])
def test_window_bits_invalid_values_rejected(name, value):
    with pytest.raises(HandshakeError, match=name):
        negotiate(f"permessage-deflate; {name}={value}", COMPRESSION.CONTEXT_TAKEOVER)


@pytest.mark.parametrize("name", ["server_max_window_bits", "client_max_window_bits"])
def test_window_bits_without_value_rejected_in_a_response(name):
    with pytest.raises(HandshakeError, match=name):
        negotiate(f"permessage-deflate; {name}", COMPRESSION.CONTEXT_TAKEOVER)


@pytest.mark.parametrize("value", [
    "permessage-deflate; server_no_context_takeover=1",
    'permessage-deflate; client_no_context_takeover="x"',
])
def test_no_context_takeover_with_a_value_rejected(value):
    with pytest.raises(HandshakeError, match="must not have a value"):
        negotiate(value, COMPRESSION.CONTEXT_TAKEOVER)


@pytest.mark.parametrize("value", [
    "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
    "permessage-deflate; client_max_window_bits=10; CLIENT_MAX_WINDOW_BITS=11",
])
def test_duplicate_params_rejected(value):
    with pytest.raises(HandshakeError, match="duplicate"):
        negotiate(value, COMPRESSION.CONTEXT_TAKEOVER)


def test_unknown_param_rejected():
    with pytest.raises(HandshakeError, match="unknown parameter"):
        negotiate("permessage-deflate; mem_level=5", COMPRESSION.CONTEXT_TAKEOVER)


@pytest.mark.parametrize("value", [
    "permessage-deflate, permessage-deflate",
    "permessage-deflate; client_no_context_takeover, permessage-deflate",
    "permessage-deflate, x-webkit-deflate-frame",
    "x-webkit-deflate-frame",
    "deflate-frame",
])
def test_other_or_several_extensions_rejected(value):
    with pytest.raises(HandshakeError, match="extension"):
        negotiate(value, COMPRESSION.CONTEXT_TAKEOVER)


def test_two_extension_headers_are_two_extensions():
    response = response_101(("Sec-WebSocket-Extensions", "permessage-deflate"),
                            ("Sec-WebSocket-Extensions", "permessage-deflate"))
    with pytest.raises(HandshakeError, match="2 extensions"):
        check(response, compression=COMPRESSION.CONTEXT_TAKEOVER)


@pytest.mark.parametrize("value", [
    "permessage-deflate;",
    "permessage-deflate; ;server_no_context_takeover",
    "permessage-deflate server_no_context_takeover",
    "permessage-deflate; server_max_window_bits=",
    'permessage-deflate; server_max_window_bits="10',
    'permessage-deflate; server_max_window_bits="1 0"',
    "permessage-deflate; server_max_window_bits=10 11",
    "permessage-deflate; a=b=c",
    "; permessage-deflate",
    "permessage deflate",
    "permessage-deflate; server_max_window_bits=(10)",
])
def test_malformed_extension_header_rejected(value):
    with pytest.raises(HandshakeError, match="Sec-WebSocket-Extensions"):
        negotiate(value, COMPRESSION.CONTEXT_TAKEOVER)


@pytest.mark.parametrize("value, expected", [
    ("permessage-deflate; server_no_context_takeover", DeflateParams(True, True, 15, 15)),
    ("permessage-deflate; server_no_context_takeover; client_no_context_takeover",
     DeflateParams(True, True, 15, 15)),
    ("permessage-deflate; client_no_context_takeover; server_no_context_takeover; "
     "server_max_window_bits=9", DeflateParams(True, True, 9, 15)),
])
def test_no_context_params_always_reset_the_client_context(value, expected):
    assert negotiate(value, COMPRESSION.NO_CONTEXT) == expected


@pytest.mark.parametrize("value", [
    "permessage-deflate",
    "permessage-deflate; client_no_context_takeover",
    "permessage-deflate; server_max_window_bits=10",
])
def test_no_context_requires_server_no_context_takeover(value):
    with pytest.raises(HandshakeError, match="server_no_context_takeover"):
        negotiate(value, COMPRESSION.NO_CONTEXT)


def test_no_context_rejects_client_max_window_bits_it_did_not_offer():
    with pytest.raises(HandshakeError, match="client_max_window_bits was not offered"):
        negotiate("permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
                  COMPRESSION.NO_CONTEXT)


def test_negotiation_returns_subprotocol_value_and_params_together():
    value = "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
    response = response_101(("Sec-WebSocket-Protocol", "chat"),
                            ("Sec-WebSocket-Extensions", value))
    assert check(response, protocols=["chat"], compression=1) == (
        "chat", value, DeflateParams(False, False, 12, 12))


def test_negotiation_error_details():
    with pytest.raises(HandshakeError) as info:
        negotiate("permessage-deflate; mem_level=5", 1)
    err = info.value
    assert err.retryable is False
    assert err.status == 101
    assert ("Sec-WebSocket-Extensions", "permessage-deflate; mem_level=5") in err.headers


# --- interop: websockets' server --------------------------------------------------------


@contextlib.contextmanager
def websockets_server(**kwargs):
    """A websockets sync echo server on 127.0.0.1; yields its port."""
    from websockets.sync.server import serve

    def echo(ws):
        with contextlib.suppress(Exception):
            for message in ws:
                ws.send(message)

    with serve(echo, "127.0.0.1", 0, **kwargs) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server.socket.getsockname()[1]
        finally:
            server.shutdown()
            thread.join(10)


def recv_frame(sock: socket.socket, buf: bytearray) -> tuple[int, bytes]:
    """One unmasked server frame from ``buf`` + the socket: (first byte, payload)."""
    def need(n: int) -> None:
        while len(buf) < n:
            chunk = sock.recv(65536)
            assert chunk, "server closed the connection"
            buf.extend(chunk)

    need(2)
    first, length = buf[0], buf[1] & 0x7F
    assert not buf[1] & 0x80, "server frames are not masked"
    offset = 2
    if length == 126:
        need(4)
        length, offset = struct.unpack("!H", buf[2:4])[0], 4
    elif length == 127:
        need(10)
        length, offset = struct.unpack("!Q", buf[2:10])[0], 10
    need(offset + length)
    payload = bytes(buf[offset:offset + length])
    del buf[:offset + length]
    return first, payload


def send_frame(sock: socket.socket, first: int, payload: bytes) -> None:
    """One masked client frame (payload < 64 KiB)."""
    mask = os.urandom(4)
    header = bytes([first]) + (bytes([0x80 | len(payload)]) if len(payload) < 126
                               else bytes([0x80 | 126]) + struct.pack("!H", len(payload)))
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(header + mask + masked)


def handshake(port: int, *, protocols, compression: int):
    """Open a TCP connection, do the upgrade with wsfast.handshake; returns the results."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = new_key()
    sock.sendall(build_request(host_header=f"127.0.0.1:{port}", resource="/chat?x=1", key=key,
                               protocols=protocols, extensions=extension_offer(compression),
                               headers=[("Origin", "http://127.0.0.1")]))
    parser = ResponseParser()
    response = None
    while response is None:
        chunk = sock.recv(4096)
        assert chunk, "server closed during the handshake"
        response = parser.feed(chunk)
    result = check_response(response, key=key, protocols=protocols, compression=compression,
                            url=f"ws://127.0.0.1:{port}/chat?x=1")
    return sock, response, bytearray(parser.leftover), result


def echo_roundtrip(sock: socket.socket, buf: bytearray, params) -> None:
    """Send a message (compressed with the negotiated client parameters when compression is
    on) and check the echo (inflated with the negotiated server parameters)."""
    message = ("price tick " * 200).encode()
    if params is None:
        send_frame(sock, 0x81, message)
    else:
        encoder = zlib.compressobj(wbits=-params.client_max_window_bits)
        data = encoder.compress(message) + encoder.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(b"\x00\x00\xff\xff")
        send_frame(sock, 0xC1, data[:-4])  # FIN + RSV1 + text
    first, payload = recv_frame(sock, buf)
    if params is None:
        assert first == 0x81
        assert payload == message
    else:
        assert first == 0xC1, "the echo is compressed"
        decoder = zlib.decompressobj(wbits=-params.server_max_window_bits)
        assert decoder.decompress(payload + b"\x00\x00\xff\xff") == message
    send_frame(sock, 0x88, struct.pack("!H", 1000))
    first, _ = recv_frame(sock, buf)
    assert first == 0x88


def parse_server_answer(value: str) -> dict:
    """websockets' answer as {param: value or True}, to compare with DeflateParams."""
    name, *params = [part.strip() for part in value.split(";")]
    assert name == "permessage-deflate"
    return {k.strip(): (v.strip() if sep else True)
            for k, sep, v in (p.partition("=") for p in params)}


@pytest.mark.parametrize("compression", [COMPRESSION.CONTEXT_TAKEOVER, COMPRESSION.NO_CONTEXT])
def test_interop_websockets_default_deflate(compression):
    with websockets_server(compression="deflate", subprotocols=["superchat", "chat"]) as port:
        sock, response, buf, (subprotocol, value, params) = handshake(
            port, protocols=["chat", "v2.chat"], compression=compression)
        with sock:
            assert subprotocol == "chat"
            assert value == response.get("Sec-WebSocket-Extensions")
            answer = parse_server_answer(value)
            assert params == DeflateParams(
                server_no_context_takeover="server_no_context_takeover" in answer,
                client_no_context_takeover=("client_no_context_takeover" in answer
                                            or compression == COMPRESSION.NO_CONTEXT),
                server_max_window_bits=int(answer.get("server_max_window_bits", 15)),
                client_max_window_bits=int(answer.get("client_max_window_bits", 15)))
            if compression == COMPRESSION.NO_CONTEXT:
                assert params.server_no_context_takeover
                assert "client_max_window_bits" not in answer
            echo_roundtrip(sock, buf, params)


@pytest.mark.parametrize("factory_kwargs, compression, expected", [
    ({"client_no_context_takeover": True}, COMPRESSION.CONTEXT_TAKEOVER,
     DeflateParams(False, True, 15, 15)),
    ({"server_no_context_takeover": True, "server_max_window_bits": 10,
      "client_max_window_bits": 9}, COMPRESSION.CONTEXT_TAKEOVER,
     DeflateParams(True, False, 10, 9)),
    ({"server_max_window_bits": 11}, COMPRESSION.NO_CONTEXT,
     DeflateParams(True, True, 11, 15)),
])
def test_interop_websockets_custom_deflate(factory_kwargs, compression, expected):
    from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

    factory = ServerPerMessageDeflateFactory(**factory_kwargs)
    with websockets_server(compression=None, extensions=[factory]) as port:
        sock, _, buf, (subprotocol, value, params) = handshake(
            port, protocols=[], compression=compression)
        with sock:
            assert subprotocol is None
            assert value is not None
            assert params == expected
            echo_roundtrip(sock, buf, params)


@pytest.mark.parametrize("compression", list(COMPRESSION))
def test_interop_websockets_without_compression(compression):
    with websockets_server(compression=None) as port:
        sock, _, buf, result = handshake(port, protocols=["chat"], compression=compression)
        with sock:
            assert result == (None, None, None)
            echo_roundtrip(sock, buf, None)


def test_interop_websockets_deflate_server_and_a_client_offering_nothing():
    with websockets_server(compression="deflate") as port:
        sock, _, buf, result = handshake(port, protocols=[], compression=COMPRESSION.DISABLED)
        with sock:
            assert result == (None, None, None)
            echo_roundtrip(sock, buf, None)


# --- interop: a raw server sending the 101 and a frame in one send() --------------------


def test_raw_server_101_and_first_frame_in_one_segment_leftover_is_the_frame():
    frame = b"\x81\x05hello" + b"\x82\x7e\x01\x00" + bytes(range(256))
    listener = socket.create_server(("127.0.0.1", 0))
    sent = threading.Event()
    errors = []

    def serve_once():
        try:
            conn, _ = listener.accept()
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                key = re.search(rb"\r\nSec-WebSocket-Key: ([^\r]+)\r\n", request).group(1)
                conn.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\n"
                    b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Accept: " + accept_value(key.decode()).encode() + b"\r\n"
                    b"\r\n" + frame)
                sent.set()
                conn.recv(1)  # wait for the client to close
        except Exception as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
            sent.set()

    thread = threading.Thread(target=serve_once, daemon=True)
    thread.start()
    with listener, socket.create_connection(listener.getsockname(), timeout=10) as sock:
        key = new_key()
        sock.sendall(build_request(host_header="127.0.0.1", resource="/", key=key))
        assert sent.wait(10)
        parser = ResponseParser()
        response = None
        while response is None:
            chunk = sock.recv(65536)
            assert chunk
            response = parser.feed(chunk)
        assert check_response(response, key=key, protocols=(), compression=0,
                              url="ws://127.0.0.1/") == (None, None, None)
        assert parser.leftover == frame
    thread.join(10)
    assert not errors
