"""Bad input gets a clear error, never a hang or a crash: a case for every error path.

The paths are the ones ``python -m fuzz.outcomes`` lists (every ``wsfast.Error`` the fuzz
targets make on their corpora: the checked-in seeds, and with ``--build`` what the fuzz
runs kept), and the ones seen in the code those targets exercise that no corpus reaches
(the ``raise`` sites of ``_codec.pyx``/``_codec_py.py``, ``protocol.py``, ``handshake.py``,
``proxy.py``, ``policy.py`` and ``options.py``, and the timeouts that keep bad input from
hanging). A case names its path by its message with the particulars taken out
(``fuzz.outcomes.template``: numbers are ``N``, quoted values ``'…'``), so that each case
is one row of the outcome table (docs/reliability.md, "Bad input: every error path");
``test_every_path_the_seed_corpora_reach_has_a_case`` keeps it so.

How each kind of case runs, on both front ends (the ``front`` fixture: the sync client
and wsfast.asyncio) and, since ``make test`` runs the suite twice, on both codec paths:

* **frames**: a raw scripted server (conftest's ``RawServer``) accepts the upgrade,
  sends the bad bytes and reads the client's close frame. The client's channel ends
  with nothing delivered, ``client.error`` is the typed error, ``client.close_code`` the
  expected code, and the code in the close frame the server read is the same (a case
  that ends in EOF or a reset has 1006 and no close frame).
* **handshake** and **proxy**: the server answers the upgrade request (or the CONNECT,
  acting as the proxy) with the bad bytes; ``connect()`` raises the typed error and the
  client sends nothing after its request (no frame, no close frame).
* **urls and options**: ``connect()`` (or the policy API) raises the typed error before
  any connection: a listener given as the URL is never connected to.

Bounds, for every case:

* time: the failing call (``connect()``, and for frame cases until the channel has
  ended) returns within ``NET_SECONDS`` = 2.5 s with a socket, ``LOCAL_SECONDS`` = 0.5 s
  without (here, on a loaded 2-core machine: 5-30 ms and well under 1 ms; a refusal
  whose body never ends is bounded by its 1 s body wait, and the timeout cases by their
  300 ms option; the cases that send tens of thousands of frames get ``SLOW_SECONDS`` =
  10 s, for the pure-Python codec under tracemalloc: 0.3-0.7 s here). The pytest
  timeout is 30 s a test.
* memory: the tracemalloc peak during the failing call stays under ``MEMORY`` = 4 MiB
  (here 0.1-0.3 MiB; the bomb 2.6 MiB). That is also the bound for the frames that announce 2**62 bytes,
  100 MiB (16 MiB is the default ``read_limit``) and a 64 MiB decompression bomb under a
  1 MiB ``read_limit``: they fail with 1009 without allocating what they announce. (A
  frame announcing up to ``read_limit`` bytes has its buffer allocated at the header,
  so the case that announces 4 MiB under a 4 MiB ``read_limit`` and then ends is allowed
  5 MiB.) A message in tens of thousands of 2-byte or empty fragments is held in about
  its payload: those cases are allowed 1 MiB, and
  ``test_a_message_in_many_fragments_is_held_in_about_its_payload`` checks what the
  parser holds, sans-I/O (the pure-Python twin kept an object per fragment: 20-30 times
  the payload, and without end for empty fragments).
* leftovers: within ``LEFTOVER_SECONDS`` = 3 s of the end, no more threads and no more
  sockets (``/proc/self/fd``) than before the case (the reader thread may take a moment
  to go); ResourceWarnings are errors in this suite.
"""

from __future__ import annotations

import re
import socket
import struct
import sys
import threading
import time
import tracemalloc
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from conftest import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_TEXT,
    RawServer,
    accept_for,
    read_until_close,
    server_frame,
)

import wsfast
import wsfast.codec
from wsfast import ConnectError, HandshakeError, InvalidOption, PermissionDenied, ProtocolError, ProxyError

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:   # the fuzz package lives at the top of the checkout
    sys.path.insert(0, str(ROOT))

from benchmarks.leaks import socket_fds  # noqa: E402
from fuzz.outcomes import template  # noqa: E402

pytestmark = pytest.mark.timeout(30)

KiB = 1 << 10
MiB = 1 << 20
NET_SECONDS = 2.5
LOCAL_SECONDS = 0.5
SLOW_SECONDS = 10.0   # the cases of tens of thousands of frames (the pure-Python codec, traced)
MEMORY = 4 * MiB
LEFTOVER_SECONDS = 3.0
CONNECT_URL = "websocket.connect.url"


@dataclass(frozen=True)
class Case:
    """One error path. ``data``: the bytes the server sends (frames: after the 101, a list
    for pieces sent 50 ms apart; handshake/proxy: the whole answer), or for a local case
    the call ``data(connect, url)``. ``code``: the close code the client reports (and
    sends, when ``end`` is "read"); None for errors before the WebSocket exists.
    ``message``: the error's message with the particulars taken out (the path)."""

    name: str
    data: Any
    error: type
    code: Optional[int]
    message: str
    options: dict = field(default_factory=dict)
    headers: str = ""       # frames: extra headers of the 101
    end: str = "read"       # frames: "read" the close frame, "eof", "reset"; handshake: "read" (half-close
    #                         after the answer, then read to EOF), "hold" (no half-close), "reset"
    proxy: bool = False     # handshake: the server is the client's HTTP proxy
    memory: int = MEMORY
    seconds: float = NET_SECONDS
    fronts: dict = field(default_factory=dict)   # front name -> (error, message) where a front differs

    def expected(self, front: str) -> tuple:
        return self.fronts.get(front, (self.error, self.message))

    def __str__(self) -> str:
        return self.name


def frame_header(b0: int, length: int) -> bytes:
    """A server frame header announcing ``length`` bytes (64-bit form)."""
    return struct.pack("!BBQ", b0, 127, length)


def bomb(size: int) -> bytes:
    """The deflated (raw, sync-flushed, tail removed) payload of ``size`` zero bytes."""
    d = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(MiB)
    out = [d.compress(chunk) for _ in range(size // MiB)]
    out.append(d.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(out)[:-4]


def fragments(opcode: int, piece: bytes, count: int) -> bytes:
    """A message begun, then continued ``count`` times, each frame carrying ``piece``; not ended."""
    return server_frame(opcode, piece, fin=False) + server_frame(OP_CONT, piece, fin=False) * count


DEFLATE = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
ON = {"compression": wsfast.COMPRESSION.CONTEXT_TAKEOVER}

# ---------------------------------------------------------------------- frames

FRAME_CASES = [
    # 1002: the frame breaks RFC 6455's framing rules
    Case("masked", server_frame(OP_TEXT, b"x", mask=b"abcd"), ProtocolError, 1002,
         "server frames must not be masked"),
    Case("rsv2", bytes((0xA1, 1)) + b"x", ProtocolError, 1002, "reserved bits RSV2/RSV3 set"),
    Case("data-opcode-3", bytes((0x83, 0)), ProtocolError, 1002, "unknown opcode N"),
    Case("control-opcode-0xb", bytes((0x8B, 0)), ProtocolError, 1002, "unknown opcode N"),
    Case("rsv1-control", bytes((0xC9, 0)), ProtocolError, 1002, "reserved bit RSV1 set on a control frame"),
    Case("fragmented-ping", bytes((0x09, 0)), ProtocolError, 1002, "fragmented control frame"),
    Case("ping-126", struct.pack("!BBH", 0x89, 126, 126) + b"p" * 126, ProtocolError, 1002,
         "control frame payload over N bytes"),
    Case("continuation-first", server_frame(OP_CONT, b"x"), ProtocolError, 1002,
         "continuation frame with no message open"),
    Case("rsv1-continuation", server_frame(OP_TEXT, b"a", fin=False) + bytes((0xC0, 1)) + b"b",
         ProtocolError, 1002, "reserved bit RSV1 set on a continuation frame", options=ON, headers=DEFLATE),
    Case("data-inside-fragments", server_frame(OP_TEXT, b"a", fin=False) + server_frame(OP_TEXT, b"b"),
         ProtocolError, 1002, "new data frame inside a fragmented message"),
    Case("rsv1-not-negotiated", server_frame(OP_TEXT, b"a", rsv1=True), ProtocolError, 1002,
         "reserved bit RSV1 set without a negotiated extension"),
    Case("length-msb", frame_header(0x82, 1 << 63), ProtocolError, 1002,
         "frame length has the most significant bit set"),
    Case("close-1-byte", server_frame(OP_CLOSE, b"\x03"), ProtocolError, 1002,
         "close frame with a N-byte payload"),
    Case("close-code-1005", server_frame(OP_CLOSE, struct.pack("!H", 1005)), ProtocolError, 1002,
         "invalid close code N"),
    Case("close-code-5000", server_frame(OP_CLOSE, struct.pack("!H", 5000) + b"x"), ProtocolError, 1002,
         "invalid close code N"),
    # 1007: invalid payload data
    Case("utf8-text", server_frame(OP_TEXT, b"bad \xff"), ProtocolError, 1007,
         "invalid UTF-8 in text message"),
    Case("utf8-in-fragments", server_frame(OP_TEXT, b"\xce", fin=False) + server_frame(OP_CONT, b"\x41"),
         ProtocolError, 1007, "invalid UTF-8 in text message"),
    # the first fragment cannot start a character: fails at once, not when the message ends
    Case("utf8-surrogate-prefix", server_frame(OP_TEXT, b"\xed\xa0", fin=False), ProtocolError, 1007,
         "invalid UTF-8 in text message"),
    Case("utf8-large-text", [frame_header(0x81, 70_001) + b"a" * 1000, b"a" * 69_000 + b"\xff"],
         ProtocolError, 1007, "invalid UTF-8 in text message"),
    Case("utf8-close-reason", server_frame(OP_CLOSE, b"\x03\xe8\xff"), ProtocolError, 1007,
         "invalid UTF-8 in close reason"),
    Case("deflate-garbage", server_frame(OP_TEXT, b"\xff\xff\xff", rsv1=True), ProtocolError, 1007,
         "invalid compressed data: … (zlib's message)", options=ON, headers=DEFLATE),
    # 1009: over read_limit, without allocating what the frame announces
    Case("over-read-limit", server_frame(OP_BINARY, b"x" * 1001), ProtocolError, 1009,
         "message over the read limit (N bytes)", options={"read_limit": 1000}),
    Case("over-read-limit-in-fragments",
         server_frame(OP_BINARY, b"x" * 600, fin=False) + server_frame(OP_CONT, b"x" * 600),
         ProtocolError, 1009, "message over the read limit (N bytes)", options={"read_limit": 1000}),
    Case("announces-2**62", frame_header(0x82, 1 << 62), ProtocolError, 1009,
         "message over the read limit (N bytes)"),
    Case("announces-100MiB", frame_header(0x82, 100 * MiB) + b"x" * 1000, ProtocolError, 1009,
         "message over the read limit (N bytes)"),
    Case("compressed-announces-2**62", frame_header(0xC2, 1 << 62), ProtocolError, 1009,
         "compressed message over the read limit (N bytes)", options=ON, headers=DEFLATE),
    Case("deflate-bomb-64MiB", lambda: server_frame(OP_BINARY, bomb(64 * MiB), rsv1=True), ProtocolError,
         1009, "message over the read limit (N bytes) after inflate",
         options={**ON, "read_limit": MiB}, headers=DEFLATE),
    # ... and a message in many small fragments is held in about its payload's size, not in
    # an object per fragment (the pure-Python twin kept a list of them: 20-30 times the payload
    # for 2-byte fragments, and empty ones grew it with no end and no error)
    Case("tiny-binary-fragments", fragments(OP_BINARY, b"ab", 40_000), ProtocolError, 1009,
         "message over the read limit (N bytes)", options={"read_limit": 64 * KiB}, memory=MiB,
         seconds=SLOW_SECONDS),
    Case("tiny-text-fragments", fragments(OP_TEXT, b"ab", 40_000), ProtocolError, 1009,
         "message over the read limit (N bytes)", options={"read_limit": 64 * KiB}, memory=MiB,
         seconds=SLOW_SECONDS),
    Case("empty-fragments", fragments(OP_BINARY, b"", 20_000) + server_frame(OP_CONT, b"x" * 1001),
         ProtocolError, 1009, "message over the read limit (N bytes)", options={"read_limit": 1000},
         memory=MiB, seconds=SLOW_SECONDS),
    # 1006: the stream ends without a close frame
    Case("eof-mid-frame", bytes((0x81, 10)) + b"abc", ConnectError, 1006,
         "connection closed without a close frame (N)", end="eof"),
    Case("eof-in-announced-read-limit", frame_header(0x82, 4 * MiB) + b"x" * 1000, ConnectError, 1006,
         "connection closed without a close frame (N)", options={"read_limit": 4 * MiB}, end="eof",
         memory=5 * MiB),
    Case("reset-mid-frame", bytes((0x82, 100)) + b"abc", ConnectError, 1006,
         "connection lost: [Errno N] Connection reset by peer", end="reset"),
    # half a frame, then nothing: the read timeout ends it (1001)
    Case("half-frame-then-silence", bytes((0x81, 10)) + b"abc", wsfast.Timeout, 1001,
         "read timeout: no message for N s", options={"read_timeout": "300ms"}),
]


# ---------------------------------------------------------------------- handshake

def response(*headers: str, upgrade: bool = True, connection: bool = True, accept: bool = True) -> bytes:
    """A 101 with the upgrade headers (``{accept}``: AnswerServer puts in the right value)
    and ``headers``."""
    lines = ["HTTP/1.1 101 Switching Protocols"]
    lines += ["Upgrade: websocket"] if upgrade else []
    lines += ["Connection: Upgrade"] if connection else []
    lines += ["Sec-WebSocket-Accept: {accept}"] if accept else []
    return ("\r\n".join(lines + list(headers)) + "\r\n\r\n").encode("latin-1")


def refusal(status: str, *headers: str, body: bytes = b"") -> bytes:
    return ("\r\n".join([f"HTTP/1.1 {status}", *headers]) + "\r\n\r\n").encode("latin-1") + body


def malformed(name: str, data: bytes, what: str) -> Case:
    return Case(name, data, HandshakeError, None, f"malformed response: {what}")


def rejected(name: str, data: bytes, what: str, **kwargs) -> Case:
    return Case(name, data, HandshakeError, None, f"invalid WebSocket handshake response: {what}", **kwargs)


def extensions(name: str, value: str, what: str, mode=wsfast.COMPRESSION.CONTEXT_TAKEOVER) -> Case:
    return rejected(name, response(f"Sec-WebSocket-Extensions: {value}"), what, options={"compression": mode})


def redirect(name: str, status: str, location: str, message: str, error: type = HandshakeError,
             **kwargs) -> Case:
    return Case(name, refusal(status, f"Location: {location}", "Content-Length: 0"), error, None, message,
                **kwargs)


OK_101 = response()
EXT = "Sec-WebSocket-Extensions '…': "
BAD_EXT = "invalid Sec-WebSocket-Extensions '…': "
NO_CONTEXT = wsfast.COMPRESSION.NO_CONTEXT

# The handshake's response and the proxy's answer to CONNECT go through the same parser:
# each of these is tried both ways.
MALFORMED = [
    ("not-http", b"SSH-2.0-OpenSSH_9.2\r\n", "not an HTTP response: '…'"),
    ("status-line", b"HTTP/1.1 2OO OK\r\n\r\n", "invalid status line '…'"),
    ("http-2", b"HTTP/2.0 101 Switching Protocols\r\n\r\n", "unsupported HTTP version '…'"),
    ("status-099", b"HTTP/1.1 099 Early\r\n\r\n", "invalid status code N"),
    ("reason-control", b"HTTP/1.1 101 Swi\x01tching\r\n\r\n", "invalid reason phrase '…'"),
    ("header-no-colon", b"HTTP/1.1 200 OK\r\nNoColonHere\r\n\r\n", "header line without a colon '…'"),
    ("header-name", b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "invalid header name '…'"),
    ("header-value", b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n", "invalid header value '…'"),
    ("folding", b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\tfolded\r\n\r\n", "obsolete line folding '…'"),
]

HANDSHAKE_CASES = [malformed(name, data, what) for name, data, what in MALFORMED] + [
    malformed("http-1.0", b"HTTP/1.0 101 Switching Protocols\r\n\r\n", "unsupported HTTP version '…'"),
    Case("too-large", OK_101[:-2] + b"X-Big: " + b"y" * 66_000 + b"\r\n\r\n", HandshakeError, None,
         "response too large: more than N bytes or N headers"),
    Case("too-many-headers", OK_101[:-2] + b"X-A: 1\r\n" * 300 + b"\r\n", HandshakeError, None,
         "response too large: more than N bytes or N headers"),
    Case("refused-403", refusal("403 Forbidden", "Content-Length: 4", body=b"nope"), HandshakeError, None,
         "server rejected WebSocket upgrade: HTTP N …"),
    Case("refused-no-reason", refusal("404", "Content-Length: 0"), HandshakeError, None,
         "server rejected WebSocket upgrade: HTTP N …"),
    # the body of a refusal that never ends is waited for at most 1 s
    Case("refusal-body-never-ends", refusal("503 Busy", "Content-Length: 1000000", body=b"x" * 10),
         HandshakeError, None, "server rejected WebSocket upgrade: HTTP N …", end="hold"),
    rejected("no-upgrade", response(upgrade=False), "Upgrade header is None, expected '…'"),
    rejected("upgrade-h2c", response().replace(b"websocket", b"h2c"), "Upgrade header is '…', expected '…'"),
    rejected("no-connection", response(connection=False), "Connection header is None, expected '…'"),
    rejected("no-accept", response(accept=False), "Sec-WebSocket-Accept is None, expected '…'"),
    rejected("wrong-accept", response().replace(b"{accept}", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
             "Sec-WebSocket-Accept is '…', expected '…'"),
    rejected("two-subprotocols", response("Sec-WebSocket-Protocol: a, b"),
             "the server chose several subprotocols: …", options={"protocols": ["a", "b"]}),
    rejected("subprotocol-not-offered", response("Sec-WebSocket-Protocol: chat"),
             "the server chose subprotocol '…', which was not offered"),
    rejected("extension-not-offered", response("Sec-WebSocket-Extensions: permessage-deflate"),
             "the server accepted extensions '…', but none was offered"),
    extensions("extension-unparsable", "permessage-deflate; a=b: c",
               BAD_EXT + "unexpected '…' at position N"),
    extensions("extension-no-value", "permessage-deflate; x=",
               BAD_EXT + "expected a value for … at position N"),
    extensions("extension-quoted-not-token", 'permessage-deflate; server_max_window_bits="1 2"',
               BAD_EXT + "quoted value of … is not a token"),
    extensions("extension-two", "permessage-deflate, permessage-deflate",
               EXT + "the server accepted N extensions (…), only one permessage-deflate was offered"),
    extensions("extension-other", "x-webkit-deflate-frame",
               EXT + "the server accepted extension '…', which was not offered"),
    extensions("extension-duplicate",
               "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
               EXT + "duplicate parameter …"),
    extensions("extension-flag-with-value", "permessage-deflate; server_no_context_takeover=1",
               EXT + "parameter … must not have a value"),
    extensions("extension-window-bits", "permessage-deflate; server_max_window_bits=16",
               EXT + "…_max_window_bits must be N..N, not '…'"),
    extensions("extension-client-bits-not-offered",
               "permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
               EXT + "client_max_window_bits was not offered", mode=NO_CONTEXT),
    extensions("extension-unknown-parameter", "permessage-deflate; clover", EXT + "unknown parameter …"),
    extensions("extension-missing-server-nct", "permessage-deflate",
               EXT + "server_no_context_takeover was offered but is missing", mode=NO_CONTEXT),
    redirect("redirect-malformed-location", "302 Found", "/a b", "redirect to a malformed Location '…'"),
    redirect("redirect-ftp", "301 Moved", "ftp://files.test/x",
             "redirect to a '…' URL (only ws, wss, http, https are followed)"),
    redirect("redirect-too-many", "302 Found", "/again",
             "too many redirects: HTTP N to '…' after N followed (max_redirects N)",
             options={"max_redirects": 0}),
    redirect("redirect-bad-port", "307 Temporary", "ws://127.0.0.1:x/",
             "invalid WebSocket URL '…': bad port '…'", error=InvalidOption),
    redirect("redirect-bad-host", "308 Permanent", "http://e&a/",
             "invalid WebSocket URL '…': bad host label '…'", error=InvalidOption),
    # (a redirect from wss to ws needs a TLS server: tests/test_redirects.py has it)
    Case("eof-in-response", b"HTTP/1.1 101 Switching", ConnectError, None,
         "the server closed the connection during the handshake"),
    Case("reset-in-response", b"HTTP/1.1 101 Switching", ConnectError, None,
         "connection lost during the handshake: [Errno N] Connection reset by peer", end="reset"),
    # a response that never ends: the dial timeout
    Case("response-never-ends", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n", wsfast.Timeout,
         None, "dial timeout waiting for the HTTP upgrade response", options={"dial_timeout": "300ms"},
         end="hold"),
]


def tunnel(name: str, data: bytes, message: str, **kwargs) -> Case:
    """The server is the client's HTTP proxy and answers its CONNECT with ``data``."""
    return Case(name, data, kwargs.pop("error", ProxyError), None, message, proxy=True, **kwargs)


def tunnel_malformed(name: str, data: bytes, what: str) -> Case:
    return tunnel(name, data, f"the proxy <url> answered CONNECT with malformed response: {what}")


def tunnel_refused(name: str, data: bytes) -> Case:
    return tunnel(name, data, "the proxy <url> refused the tunnel to …: N …")


PROXY_CASES = [tunnel_malformed(f"proxy-{name}", data, what) for name, data, what in MALFORMED] + [
    tunnel("proxy-too-large", b"HTTP/1.1 200 OK\r\n" + b"Via: 1.1 squid\r\n" * 300 + b"\r\n",
           "the proxy <url> answered CONNECT with response too large: more than N bytes or N headers"),
    tunnel_refused("proxy-403", b"HTTP/1.0 403 Forbidden\r\n\r\n"),
    tunnel_refused("proxy-407", b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"),
    tunnel_refused("proxy-101", b"HTTP/1.1 101 Switching Protocols\r\n\r\n"),
    tunnel_refused("proxy-no-reason", b"HTTP/1.1 502\r\n\r\n"),
    tunnel("proxy-silent-eof", b"", "the proxy <url> closed the connection without answering to CONNECT"),
    tunnel("proxy-eof-mid-answer", b"HTTP/1.1 200 Conn",
           "the proxy <url> closed the connection in the middle of its answer to CONNECT"),
    tunnel("proxy-reset", b"",
           "the proxy <url> broke the connection during CONNECT: [Errno N] Connection reset by peer",
           end="reset"),
    # a tunnel whose first bytes come with the proxy's answer, before the client spoke: the
    # sync client hands them on as the server's (then its upgrade check refuses them),
    # wsfast.asyncio refuses them at once
    tunnel("proxy-bytes-before-request", b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 101 Switching Protocols\r\n\r\n",
           "invalid WebSocket handshake response: Upgrade header is None, expected '…'", error=HandshakeError,
           fronts={"asyncio": (ProxyError,
                               "the proxy sent bytes of the target's stream before the client spoke")}),
]


# ---------------------------------------------------------------------- urls, options, policy

def _connect_to(url: str, *args, **kwargs) -> Callable:
    return lambda connect, _listener: connect(url, *args, **kwargs)


def _connect_with(*args, **kwargs) -> Callable:
    return lambda connect, listener: connect(listener, *args, **kwargs)


def _allow(pattern: str) -> Callable:
    return lambda _connect, _listener: wsfast.allow(CONNECT_URL, pattern)


def _under(*rules: Any) -> Callable:
    def call(connect, listener):
        with wsfast.policy_scope(wsfast.Policy(*rules)):
            connect(listener)
    return call


def _strict(connect, listener):
    wsfast.set_policy(None, strict=True)
    try:
        connect(listener)
    finally:
        wsfast.set_policy(None)


def _set_policy_in_scope(connect, listener):
    with wsfast.policy_scope(wsfast.Policy(wsfast.allow("*"))):
        wsfast.set_policy(None)


def _hook_raises(action, resource):
    raise KeyError(resource)


def local(name: str, call: Callable, error: type, message: str, **kwargs) -> Case:
    return Case(name, call, error, None, message, seconds=LOCAL_SECONDS, **kwargs)


def url(name: str, text: Any, what: str) -> Case:
    return local(name, _connect_to(text), InvalidOption, f"invalid WebSocket URL '…': {what}")


def proxy_url(name: str, text: Any, what: str) -> Case:
    return local(name, _connect_with(proxy=text), InvalidOption, f"<source>: invalid proxy URL '…': {what}")


def environ_proxy(name: str, value: str, what: str) -> Case:
    return local(name, _connect_to("wss://example.test/"), InvalidOption,
                 f"<source>: invalid proxy URL '…': {what}", options={"environ": {"https_proxy": value}})


def option(name: str, what: str, *args, **kwargs) -> Case:
    """``what`` goes after "option 'NAME': " unless it starts with "!"."""
    message = what[1:] if what.startswith("!") else f"option '…': {what}"
    return local(name, _connect_with(*args, **kwargs), InvalidOption, message)


def pattern(name: str, text: str, what: str) -> Case:
    message = what if what.startswith("allow") else f"pattern '…': {what}"
    return local(name, _allow(text), InvalidOption, message)


def denied(name: str, call: Callable, message: str) -> Case:
    return local(name, call, PermissionDenied, message)


HOST_254 = ".".join(["a" * 60] * 5)
LABEL_64 = "a" * 64 + ".test"
ALLOW_CONNECT = wsfast.allow("websocket.connect")
DENIED = "websocket.connect denied for <url>: "
URL_DENIED = "websocket.connect.url denied for <url>: "

# The host and port rules are the same in a WebSocket URL and a proxy URL: each of these
# is tried both ways.
AUTHORITIES = [
    ("port-text", "example.test:http", "bad port '…'"),
    ("port-range", "example.test:70000", "port N out of range N..N"),
    ("ipv6-unterminated", "[::1", "unterminated IPv6 literal"),
    ("ipv6-trailing", "[::1]x", "unexpected text after the IPv6 literal"),
    ("bracket", "h]", "brackets outside an IPv6 literal"),
    ("zone-id", "[fe80::1%25eth0]", "percent-encoding (or a zone id) in the host"),
    ("ipv6-bad", "[::g]", "bad IPv6 literal '…'"),
    ("percent-host", "ex%41mple.test", "percent-encoding in the host"),
    ("idna", "ä=.test", "host is not valid IDNA N (idna's message)"),
    ("host-254", HOST_254, "host longer than N characters"),
    ("empty-label", "a..test", "empty label in the host"),
    ("label-64", LABEL_64, "host label longer than N characters"),
    ("label-char", "a*b.test", "bad host label '…'"),
    ("a-label", "xn--b.test", "bad IDNA N label '…' (idna's message)"),
    ("ipv4-short", "127.1", "'…' is not a canonical dotted-quad IPv4 address"),
    ("backslash", "h\\x", "backslash"),
]

LOCAL_CASES = [url(f"url-{name}", f"ws://{host}/", what) for name, host, what in AUTHORITIES] + [
    proxy_url(f"proxy-url-{name}", f"http://{host}", what) for name, host, what in AUTHORITIES] + [
    local("url-not-str", _connect_to(123), InvalidOption, "URL must be a str, not int"),
    url("url-space", "ws://a b/", "whitespace or control character '…' at position N"),
    url("url-http", "http://example.test/", "the scheme must be <url> or <url>"),
    url("url-fragment", "ws://example.test/#top", "fragments are not allowed in WebSocket URLs"),
    url("url-two-at", "ws://a@b@example.test/", "more than one '…' in the authority"),
    url("url-no-host", "ws:///path", "missing host"),
    url("url-userinfo-no-host", "ws://user@/", "missing host"),
    url("url-bad-escape", "ws://example.test/%zz", "bad percent-escape '…'"),
    url("url-escaped-slash", "ws://example.test/a%2Fb", "%XX in the path"),
    url("url-dot-parameters", "ws://example.test/a/..;/b", "dot segment with parameters '…' in the path"),
    # (parse_proxy_url's "no scheme": NO_PUBLIC_PATH below)
    proxy_url("proxy-url-no-host", "http://:3128", "missing host"),
    proxy_url("proxy-url-path", "http://proxy.test:3128/x", "a proxy URL has no path, query or fragment"),
    proxy_url("proxy-url-two-at", "http://a@b@proxy.test", "more than one '…' (write '…' in a user name or "
              "password as %N)"),
    proxy_url("proxy-url-userinfo", "http://user:p%80x@proxy.test",
              "the user name or password is not UTF-8 once percent-decoded"),
    proxy_url("proxy-url-quote", "http://'", "invalid WebSocket URL '…': bad host label '…'"),
    # (options.py checks a proxy option's scheme, host and characters first: these come
    # from the environment, read when connect() picks the proxy)
    environ_proxy("proxy-env-port", "http://proxy.test:x", "bad port '…'"),
    environ_proxy("proxy-env-scheme", "ftp://proxy.test:21",
                  "unsupported scheme '…' (<url>, <url>, <url>, <url>, <url>, <url>)"),
    environ_proxy("proxy-env-no-host", "http://", "no host"),
    environ_proxy("proxy-env-control", "http://proxy.test\x01:1", "spaces or control characters"),
    environ_proxy("proxy-env-undecodable", "http://pr\udcffoxy.test",
                  "whitespace or control character '…' at position N"),
    option("proxy-option-type", "expected None, False or a proxy URL str, got …", proxy=["x"]),
    option("proxy-option-scheme", "a proxy URL starts with <url>, <url>, <url>, <url>, <url>, <url>",
           proxy="//proxy.test"),
    option("proxy-option-host", "the proxy URL has no host, or has spaces or control characters", proxy="http://"),
    option("unknown-option", "!unknown option '…'; valid options: headers, protocols, dial_timeout, "
           "read_timeout, write_timeout, compression, compression_threshold, read_limit, channel_capacity, "
           "ssl, close_timeout, ping_interval, ping_timeout, max_redirects, proxy, proxy_ssl",
           {"no_such_option": 1}),
    option("option-name-type", "!option names must be str, got …", {1: 2}),
    option("option-twice", "given both in the options dict and as a keyword", {"read_timeout": "1s"},
           read_timeout="2s"),
    option("duration-syntax", "invalid duration '…' (examples: '…', '…', '…')", dial_timeout="1x"),
    option("duration-too-large", "duration '…' is too large", dial_timeout="2562048h"),
    option("duration-digits", "duration '…' is too large", dial_timeout="1" * 5000 + "s"),
    option("duration-negative", "duration '…' is negative", dial_timeout="-5s"),
    option("duration-float-too-large", "duration Ne+N is too large", dial_timeout=1e43),
    option("duration-nan", "duration must be finite, got …", dial_timeout=float("nan")),
    option("duration-type", "a duration must be milliseconds (int or float), a Go duration str such as '…', "
           "or a timedelta; got …", dial_timeout=[1]),
    option("duration-negative-number", "duration -N is negative", dial_timeout=-1),
    option("close-timeout-zero", "must be greater than N (close is always bounded)", close_timeout=0),
    option("int-type", "expected an integer, got …", compression="1"),
    option("int-range", "N is out of range N..N", channel_capacity=0),
    option("headers-type", "expected a dict or a list of (name, value) pairs, got …", headers="X: 1"),
    option("headers-pair", "expected a (name, value) pair, got …", headers=["X"]),
    option("header-name", "header name '…' is not an HTTP token", headers={"Bad Name": "x"}),
    option("header-host", "header '…' cannot be set: the request carries the URL's host, the one the "
           "security policy checked, and another Host would have the server route it to a host no policy "
           "checked; put the host in the URL", headers={"Host": "other.test"}),
    option("header-owned", "header '…' is set by the WebSocket handshake; use the protocols and compression "
           "options", headers={"Sec-WebSocket-Key": "x"}),
    option("header-value-control", "value of header '…' contains a control character (CR, LF, NUL...)",
           headers={"X-A": "a\r\nX-B: b"}),
    option("header-value-latin1", "value of header '…' is not Latin-1 encodable", headers={"X-A": "€"}),
    option("header-value-type", "value of header '…' must be a str, not int", headers={"X-A": 1}),
    option("protocols-type", "expected a list of str, got …", protocols="chat"),
    option("protocol-token", "subprotocol '…' is not a non-empty HTTP token", protocols=["a b"]),
    option("protocol-twice", "subprotocol '…' is listed twice", protocols=["chat", "chat"]),
    option("ssl-type", "expected an ssl.SSLContext or None, got …", ssl="yes"),
    pattern("pattern-userinfo", "wss://user@example.test/*", "userinfo is never matched"),
    pattern("pattern-path", "wss://example.test/a/../*",
            "its path is not normalised ('…', '…', '…', %NF...)"),
    pattern("pattern-default-port", "wss://example.test:443*",
            "the default port never appears in a normalised URL"),
    pattern("pattern-character", "wss://example.test/a b*", "character never found in a normalised URL"),
    pattern("pattern-inside-host", "wss://example.test*",
            "allow pattern '…' ends inside the host, so it also matches other hosts (e.g. <url>); end the "
            "host with '…' or '…'"),
    denied("denied-connect-no-rule", _under(wsfast.allow(CONNECT_URL)), DENIED + "no rule allows it"),
    denied("denied-connect-rule", _under(wsfast.deny("*")), DENIED + "denied by deny('…', '…')"),
    denied("denied-url-no-rule", _under(ALLOW_CONNECT), URL_DENIED + "no rule allows it"),
    denied("denied-url-rule", _under(ALLOW_CONNECT, wsfast.deny(CONNECT_URL, "ws://127.0.0.1*")),
           URL_DENIED + "denied by deny('…', '…')"),
    denied("denied-by-hook", _under(lambda a, r: a != CONNECT_URL), URL_DENIED + "denied by hook …"),
    denied("hook-raises", _under(_hook_raises), DENIED + "hook … raised …"),
    denied("hook-returns-str", _under(lambda a, r: "yes"), DENIED + "hook … returned …, not True/False/None"),
    denied("strict-no-policy", _strict, DENIED + "strict mode and no policy in force"),
    denied("set-policy-in-scope", _set_policy_in_scope, "set_policy() is not allowed inside a policy_scope"),
]


# ---------------------------------------------------------------------- measuring

def _sockets() -> Optional[int]:
    """Open sockets of this process (None where /proc is not there)."""
    try:
        return socket_fds()
    except OSError:
        return None


def _threads() -> list:
    # (not the workers of an event loop's default executor, "asyncio_0"...: made by the
    # loop's first lookup, they stay for the loop's life, whatever the case did)
    return [t.name for t in threading.enumerate() if not re.fullmatch(r"asyncio_\d+", t.name)]


def resources() -> tuple:
    return len(_threads()), _sockets()


def assert_released(before: tuple) -> None:
    """Within LEFTOVER_SECONDS, threads and sockets are back to ``before`` (or fewer)."""
    end = time.monotonic() + LEFTOVER_SECONDS
    while True:
        threads, sockets = resources()
        if threads <= before[0] and (sockets is None or sockets <= before[1]):
            return
        if time.monotonic() > end:
            raise AssertionError(f"left behind after {LEFTOVER_SECONDS} s: threads {before[0]} -> {threads} "
                                 f"({_threads()}), sockets {before[1]} -> {sockets}")
        time.sleep(0.01)


@contextmanager
def bounded(case: Case):
    """Times the block and takes its tracemalloc peak; checks both against the case's bounds."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    start = time.monotonic()
    try:
        yield
    finally:
        seconds = time.monotonic() - start
        peak = tracemalloc.get_traced_memory()[1] - base
        if not was_tracing:
            tracemalloc.stop()
    assert seconds < case.seconds, f"{case}: {seconds:.3f} s, the bound is {case.seconds} s"
    assert peak < case.memory, f"{case}: tracemalloc peak {peak / MiB:.2f} MiB, bound {case.memory / MiB} MiB"


def check_error(err: BaseException, case: Case, front: str) -> None:
    error, message = case.expected(front)
    assert type(err) is error, f"{case}: {type(err).__name__}: {err}"
    assert template(str(err)) == message, f"{case}: {str(err)!r}"


def drain(ch) -> list:
    got = []
    while True:
        msg, ok = ch.receive(timeout=10)
        if not ok:
            return got
        got.append(msg)


def _reset(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


# ---------------------------------------------------------------------- the cases

@pytest.mark.parametrize("case", FRAME_CASES, ids=str)
def test_bad_frames_fail_the_connection_with_their_close_code(front, raw_server, case):
    before = resources()
    data = case.data() if callable(case.data) else case.data
    got = {}

    def script(srv):
        for i, piece in enumerate(data if isinstance(data, list) else [data]):
            if i:
                time.sleep(0.05)
            srv.conn.sendall(piece)
        if case.end == "read":
            got["close"] = read_until_close(srv.conn)[:2]
        elif case.end == "reset":
            _reset(srv.conn)
        # then the server closes the connection

    srv = raw_server(script, extra_headers=case.headers)
    with bounded(case):
        c = front.connect(srv.url, dial_timeout="5s", **case.options)
        messages = drain(c.channel())
    assert messages == []
    check_error(c.error, case, front.name)
    assert c.close_code == case.code
    if isinstance(c.error, ProtocolError):
        assert c.error.close_code == case.code and c.error.retryable is True
    assert srv.done.wait(5) and srv.error is None, srv.error
    if case.end == "read":   # the close frame the client sent
        assert got["close"][0] == case.code
    with pytest.raises(wsfast.ConnectionClosed):
        c.send("after")
    srv.close()
    assert_released(before)


@pytest.mark.parametrize("kind, piece, count", [
    ("binary", b"", 100_000), ("binary", b"ab", 30_000), ("text", b"ab", 30_000),
    ("text", "\u00e9\u20ac".encode(), 30_000)])
def test_a_message_in_many_fragments_is_held_in_about_its_payload(kind, piece, count):
    # Sans-I/O and exact: what the parser holds while the message is open (the network
    # cases above bound the peak of a whole connection). Within twice the payload (the
    # compiled codec's buffer doubles) and 320 KiB (it decodes text of up to 64 KiB into
    # 4-byte code points as it comes); an object per fragment was 20-30 times the payload,
    # and a stream of empty fragments grew it without end.
    parser = wsfast.codec.FrameParser()
    stream = fragments(OP_TEXT if kind == "text" else OP_BINARY, piece, count)
    tracemalloc.start()
    try:
        for i in range(0, len(stream), 65536):
            assert parser.feed(stream[i:i + 65536]) == [] and parser.error is None
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    payload = len(piece) * (count + 1)
    assert held < 2 * payload + 320 * KiB, (held, payload)


class AnswerServer(RawServer):
    """conftest's RawServer answering the request with ``answer``, in which ``{accept}``
    becomes the Sec-WebSocket-Accept of the request's key."""

    def __init__(self, answer: bytes, script: Callable) -> None:
        self.answer = answer
        super().__init__(script)

    def _response(self, request: bytes) -> bytes:
        key = re.search(rb"(?im)^sec-websocket-key:[ \t]*(\S+)", request)
        if key is None:   # (a CONNECT)
            return self.answer
        return self.answer.replace(b"{accept}", accept_for(key.group(1).decode()).encode())


def _read_to_eof(conn: socket.socket) -> bytes:
    out = b""
    try:
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return out
            out += chunk
    except ConnectionResetError:   # the client closed with our answer unread
        return out


@pytest.mark.parametrize("case", HANDSHAKE_CASES + PROXY_CASES, ids=str)
def test_bad_handshakes_and_proxy_answers_raise_from_connect(front, request, case):
    before = resources()
    got = {}

    def script(srv):
        if case.end == "reset":
            _reset(srv.conn)
            return
        if case.end == "read":
            try:
                srv.conn.shutdown(socket.SHUT_WR)   # the whole answer is out
            except OSError:   # (ENOTCONN: the client stopped reading it and reset already)
                pass
        got["after"] = _read_to_eof(srv.conn)

    srv = AnswerServer(case.data, script)
    request.addfinalizer(srv.close)
    target, options = srv.url, dict(case.options)
    if case.proxy:
        target, options["proxy"] = "ws://target.test/", f"http://127.0.0.1:{srv.port}"
    with bounded(case), pytest.raises(wsfast.Error) as info:
        front.connect(target, {"dial_timeout": "5s", **options})
    check_error(info.value, case, front.name)
    assert srv.done.wait(5) and srv.error is None, srv.error
    if case.proxy:
        assert srv.request.startswith(b"CONNECT target.test:80 HTTP/1.1\r\n")
    else:
        assert srv.request.startswith(b"GET / HTTP/1.1\r\n")
    if "after" in got:   # nothing after the request (but the upgrade request, through a tunnel)
        after = got["after"]
        assert after == b"" or case.proxy and after.startswith(b"GET / HTTP/1.1\r\n") \
            and after.index(b"\r\n\r\n") == len(after) - 4, after
    srv.close()
    assert_released(before)


@pytest.mark.parametrize("case", LOCAL_CASES, ids=str)
def test_bad_urls_options_and_policies_fail_before_any_connection(front, monkeypatch, case):
    for name, value in case.options.get("environ", {}).items():
        monkeypatch.setenv(name, value)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.setblocking(False)
    before = resources()
    try:
        with bounded(case), pytest.raises(wsfast.Error) as info:
            case.data(front.connect, f"ws://127.0.0.1:{listener.getsockname()[1]}/")
        check_error(info.value, case, front.name)
        assert info.value.retryable is False
        with pytest.raises(BlockingIOError):
            listener.accept()   # nobody connected
        assert_released(before)
    finally:
        listener.close()


# ---------------------------------------------------------------------- the table has a case per path

# Paths a fuzz target reaches through an internal function that no public call reaches.
NO_PUBLIC_PATH = {
    ("InvalidOption", None, "<source>: invalid proxy URL '…': no scheme (<url>, <url>, <url>, <url>, <url>, "
     "<url>)"): "options.py refuses a proxy option without a scheme first, and a proxy from the "
                "environment defaults to http://",
}


def case_paths() -> set:
    """(class, close code, message) of every case, as fuzz.outcomes names a path."""
    paths = set()
    for c in FRAME_CASES + HANDSHAKE_CASES + PROXY_CASES + LOCAL_CASES:
        for error, message in [(c.error, c.message), *c.fronts.values()]:
            paths.add((error.__name__, c.code if error is not wsfast.Timeout else None, message))
    return paths


def test_every_path_the_seed_corpora_reach_has_a_case():
    pytest.importorskip("atheris", reason="the frames target needs atheris (Linux x86-64 wheels only)")
    from fuzz import TARGETS, outcomes

    results = {target: outcomes.replay(target, outcomes.corpus_files(target, False)) for target in TARGETS}
    findings = [(t, key) for t, paths in results.items() for key in paths if key[0] == "FINDING"]
    assert not findings
    missing = outcomes.uncovered(results)
    assert not missing, "paths with no case in test_bad_input.py:\n" + "\n".join(map(str, missing))
