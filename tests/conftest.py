"""Shared fixtures: real servers on 127.0.0.1 for tests that need a peer.

* ``ws_server(handler, **kwargs)``: a ``websockets`` sync server (port 0) running
  ``serve_forever`` in a daemon thread; kwargs go to ``websockets.sync.server.serve``
  (``compression``, ``subprotocols``, ``max_size``, ``ssl``...). Returns a
  :class:`WsServer` with ``url``/``port``; shut down at teardown.
* ``raw_server(script, ...)``: a hand-written server for misbehaving peers. It accepts
  one connection, reads the HTTP request, answers 101 (with a correct
  Sec-WebSocket-Accept unless told otherwise, or any bytes given as ``response``),
  then calls ``script(server)`` in its thread (``server.conn``, ``server.request``) and
  closes the connection when the script returns. Helpers build server frames and read
  (unmask) client frames.
* ``wait_no_readers()``: waits for every ``wsfast-reader`` thread to exit.

Hypothesis profiles, chosen by ``WSFAST_HYPOTHESIS_PROFILE`` (default ``ci``; pytest's
``--hypothesis-profile`` overrides it):

* ``ci`` (``make test``): derandomized, no example database: every run draws the same
  examples, so a failure reproduces on the next run; hypothesis' default 100 examples.
* ``fast`` (``make test-fast``): as ``ci`` with a quarter of the examples (the codec tests
  scale their counts by it too): the everyday run stays short; ``make test`` draws all.
* ``deep`` (``make test-deep``): random seeds, failures kept in ``.hypothesis/`` and replayed
  first, 20 times the examples, no deadline. The codec tests scale their per-test example
  counts by the profile's ``max_examples`` (see ``hsettings`` in test_codec.py).
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import threading
import time
from typing import Callable, Optional

import pytest

# ---------------------------------------------------------------------- hypothesis profiles

try:
    from hypothesis import settings as _hypothesis_settings
    from hypothesis.database import DirectoryBasedExampleDatabase
except ImportError:   # the suites that do not need hypothesis still run without it
    pass
else:
    _hypothesis_settings.register_profile("ci", derandomize=True, database=None, max_examples=100)
    _hypothesis_settings.register_profile("fast", derandomize=True, database=None, max_examples=25)
    _hypothesis_settings.register_profile(
        "deep", derandomize=False, database=DirectoryBasedExampleDatabase(".hypothesis/examples"),
        max_examples=20 * 100, deadline=None, print_blob=True)
    _hypothesis_settings.load_profile(os.environ.get("WSFAST_HYPOTHESIS_PROFILE") or "ci")


GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


# ---------------------------------------------------------------------- the environment

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "ws_proxy", "wss_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def _no_proxy_from_the_environment(monkeypatch):
    """The client reads the proxy variables (DESIGN §6); a machine that sets them (CI
    behind a proxy for its package registries) must not route the tests' 127.0.0.1
    connections through its proxy. Tests of the environment set them themselves."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


# ---------------------------------------------------------------------- frames

def accept_for(key: str) -> str:
    """The Sec-WebSocket-Accept value for a Sec-WebSocket-Key (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + GUID).digest()).decode("ascii")


def server_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False,
                 mask: Optional[bytes] = None) -> bytes:
    """One server-to-client frame (unmasked unless ``mask`` is given: a protocol error)."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        header = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        header = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        header = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask is not None:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return header + mask + payload
    return header + payload


def close_frame(code: Optional[int] = 1000, reason: str = "") -> bytes:
    if code is None:
        return server_frame(OP_CLOSE)
    return server_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode("utf-8"))


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def read_frame(sock: socket.socket):
    """Read one client frame: returns ``(fin, opcode, payload, masked)``, payload unmasked."""
    b0, b1 = recv_exactly(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", recv_exactly(sock, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", recv_exactly(sock, 8))[0]
    masked = bool(b1 & 0x80)
    key = recv_exactly(sock, 4) if masked else b"\0\0\0\0"
    data = recv_exactly(sock, n)
    if masked and n:
        k = (key * (n // 4 + 1))[:n]
        data = (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")
    return bool(b0 & 0x80), b0 & 0x0F, data, masked


def parse_close(payload: bytes):
    """(code, reason) of a close frame payload; (None, "") when empty."""
    if not payload:
        return None, ""
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8")


def read_until_close(sock: socket.socket, timeout: float = 5.0):
    """Read client frames until a close frame; returns ``(code, reason, frames_before)``."""
    sock.settimeout(timeout)
    frames = []
    while True:
        fin, opcode, payload, _masked = read_frame(sock)
        if opcode == OP_CLOSE:
            code, reason = parse_close(payload)
            return code, reason, frames
        frames.append((opcode, payload))


# ---------------------------------------------------------------------- websockets server

class WsServer:
    def __init__(self, server, scheme: str = "ws") -> None:
        self.server = server
        self.port = server.socket.getsockname()[1]
        self.url = f"{scheme}://127.0.0.1:{self.port}/"
        self.thread = threading.Thread(target=server.serve_forever, name="test-ws-server",
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


def echo_handler(ws) -> None:
    """websockets handler: echo every message back with its type."""
    for msg in ws:
        ws.send(msg)


@pytest.fixture
def ws_server():
    """Factory: ``ws_server(handler=echo_handler, **serve_kwargs) -> WsServer``."""
    from websockets.sync.server import serve

    servers = []

    def start(handler: Callable = echo_handler, **kwargs) -> WsServer:
        scheme = "wss" if kwargs.get("ssl") is not None else "ws"
        srv = WsServer(serve(handler, "127.0.0.1", 0, **kwargs), scheme)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


# ---------------------------------------------------------------------- raw server

class RawServer:
    """One-connection scripted server; ``error`` holds what the script raised, if anything."""

    def __init__(self, script: Optional[Callable], *, handshake: bool = True,
                 response: Optional[bytes] = None, extra_headers: str = "",
                 accept: Optional[str] = None, after_101: bytes = b"") -> None:
        self.script = script
        self.handshake = handshake
        self.response = response
        self.extra_headers = extra_headers
        self.accept = accept
        self.after_101 = after_101   # bytes sent in the same write as the 101 (e.g. frames)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/"
        self.conn: Optional[socket.socket] = None
        self.request: Optional[bytes] = None
        self.error: Optional[BaseException] = None
        self.result = None
        self.stop = threading.Event()   # scripts that must hold the connection wait on this
        self.connected = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="test-raw-server", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.listener.settimeout(20)
            conn, _ = self.listener.accept()
            self.conn = conn
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(20)
            self.connected.set()
            if self.handshake:
                self.request = self._read_request(conn)
                conn.sendall(self._response(self.request))
            if self.script is not None:
                self.result = self.script(self)
        except BaseException as exc:  # reported to the test through .error
            self.error = exc
        finally:
            if self.conn is not None:
                try:
                    self.conn.close()
                except OSError:
                    pass
            self.done.set()

    @staticmethod
    def _read_request(conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                raise EOFError("EOF in the HTTP request")
            data += chunk
        return data

    def _response(self, request: bytes) -> bytes:
        if self.response is not None:
            return self.response
        key = ""
        for line in request.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-key":
                key = value.strip()
        accept = self.accept if self.accept is not None else accept_for(key)
        return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\n{self.extra_headers}\r\n").encode("latin-1") \
            + self.after_101

    def close(self) -> None:
        self.stop.set()
        for s in (self.conn, self.listener):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        self.thread.join(5)


@pytest.fixture
def raw_server():
    """Factory: ``raw_server(script, handshake=True, response=None, extra_headers="",
    accept=None, after_101=b"")``."""
    servers = []

    def start(script: Optional[Callable] = None, **kwargs) -> RawServer:
        srv = RawServer(script, **kwargs)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.close()


# ---------------------------------------------------------------------- a black hole

@pytest.fixture
def black_hole():
    """A port whose SYNs go unanswered: a listener with a full accept queue (Linux drops
    the SYN instead of refusing)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(c)
        time.sleep(0.1)
        probe = socket.socket()
        probe.settimeout(0.3)
        try:
            probe.connect(("127.0.0.1", port))
        except socket.timeout:
            pass
        except OSError:
            pytest.skip("this kernel refuses instead of dropping: no black hole to test with")
        else:
            pytest.skip("the accept queue did not fill: no black hole to test with")
        finally:
            probe.close()
        yield port
    finally:
        for c in fillers:
            c.close()
        listener.close()


# ---------------------------------------------------------------------- threads

def reader_threads(name_part: str = "") -> list:
    return [t for t in threading.enumerate()
            if t.name.startswith("wsfast-reader") and name_part in t.name and t.is_alive()]


def wait_no_readers(name_part: str = "", timeout: float = 2.0) -> list:
    """Wait until no ``wsfast-reader`` thread (whose name contains ``name_part``) is alive;
    returns the ones still alive after ``timeout``."""
    end = time.monotonic() + timeout
    while True:
        alive = reader_threads(name_part)
        if not alive or time.monotonic() >= end:
            return alive
        time.sleep(0.01)


@pytest.fixture(params=["sync", pytest.param("asyncio", marks=pytest.mark.asyncio_twin)])
def front(request):
    """The front end a test runs on, behind the sync API (tests/frontends.py): the sync
    client, or wsfast.asyncio on a loop thread of its own. For uvloop as a third case:
    ``@pytest.mark.parametrize("front", frontends.ALL_LOOPS, indirect=True)``.

    The asyncio runs carry the ``asyncio_twin`` mark: ``make test`` runs them on both codec
    paths, ``make test-fast`` leaves them out (tests/test_async_*.py cover that front end
    there)."""
    import frontends

    if request.param == "uvloop" and frontends.uvloop is None:
        pytest.skip("uvloop is not installed")
    fe = frontends.make(request.param)
    yield fe
    fe.close()
