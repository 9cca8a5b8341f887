"""The demo price-stream server, run in its own process by ``python -m wsfast demo``.

Nothing in wsfast imports this module: :mod:`wsfast.demo` starts it as a separate
program (``python -I path/to/_demo_server.py --port 0 --exit-on-eof``), so the server
neither shares the client's process and GIL nor loads into a program that only uses the
client. It needs the standard library only (no relative imports: it runs as a script):
raw sockets, the HTTP upgrade, unmasked server frames written by hand, optional
permessage-deflate (``zlib`` raw deflate, ``Z_SYNC_FLUSH`` with the ``00 00 ff ff``
tail stripped). It streams JSON price ticks of about 100 bytes whose ``ts`` field is
the send time, ``time.time()`` in milliseconds with microsecond precision: the wall
clock, which every process on the machine (and an NTP-synced remote server) shares, so
the client can measure latency. Ticks are encoded in batches and written with one
``sendall`` per batch.

As a program (``python -m wsfast._demo_server [--host H] [--port P] [--rate N]``):

- stdout, first line: the stream's URL (``ws://127.0.0.1:PORT/prices``); then one line
  per session event: ``session N: subscribed`` and ``session N: closed CODE`` (the code
  of the client's close frame, once the closing handshake is done).
- ``--exit-on-eof``: stop when stdin reaches EOF, i.e. when the parent closes the pipe
  or dies however it dies, so the server cannot outlive the demo. Otherwise it serves
  until SIGINT (Ctrl-C) or SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import os
import random
import socket
import struct
import sys
import threading
import time
import zlib
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["PriceServer", "main"]

DEFAULT_SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD", "XRP-USD", "ADA-USD", "DOGE-USD")
_START_PRICES = {"BTC-USD": 64000.0, "ETH-USD": 3400.0, "SOL-USD": 150.0, "XRP-USD": 0.52,
                 "ADA-USD": 0.45, "DOGE-USD": 0.16}
_TICK = b'{"type":"ticker","symbol":"%s","price":%.2f,"size":%.4f,"ts":%.3f,"seq":%d}'

_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_TAIL = b"\x00\x00\xff\xff"
_MAX_REQUEST = 16384
_MAX_CLIENT_FRAME = 1 << 20
_BATCH_BYTES = 256 * 1024     # at most this much per sendall, so pongs are not held up long
_PACE = 0.002                 # rate-limited mode: one batch every 2 ms at most
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _accept_value(key: str) -> str:
    """Sec-WebSocket-Accept for ``key``: base64(sha1(key + GUID)) (RFC 6455 section 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("latin-1") + _GUID).digest()).decode("ascii")


def _header(first: int, n: int) -> bytes:
    """An unmasked frame header: ``first`` is FIN|RSV1|opcode, ``n`` the payload length."""
    if n < 126:
        return bytes((first, n))
    if n < 65536:
        return struct.pack("!BBH", first, 126, n)
    return struct.pack("!BBQ", first, 127, n)


def _frame(opcode: int, payload: bytes = b"") -> bytes:
    return _header(0x80 | opcode, len(payload)) + payload


def _unmask(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    if not n:
        return b""
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")


class _Deflate:
    """Server side of a negotiated permessage-deflate: compress ticks, inflate client messages."""

    def __init__(self, no_context_takeover: bool, window_bits: int) -> None:
        self.no_context_takeover = no_context_takeover
        self._deflater = zlib.compressobj(6, zlib.DEFLATED, -window_bits)
        # Z_FULL_FLUSH also resets the history: each message stands alone.
        self._flush = zlib.Z_FULL_FLUSH if no_context_takeover else zlib.Z_SYNC_FLUSH
        self._inflater = zlib.decompressobj(-15)

    def compress(self, payload: bytes) -> Optional[bytes]:
        """The compressed payload (tail stripped), or None to send this one uncompressed."""
        d = self._deflater
        out = d.compress(payload) + d.flush(self._flush)
        if out.endswith(_TAIL):
            out = out[:-4]
        # With context takeover the client's window must see every message, so every
        # message goes compressed; without it, whichever form is smaller.
        if self.no_context_takeover and len(out) >= len(payload):
            return None
        return out

    def inflate(self, payload: bytes) -> bytes:
        return self._inflater.decompress(payload + _TAIL, _MAX_CLIENT_FRAME)


def _negotiate(offers: Optional[str]) -> Tuple[Optional[str], Optional[_Deflate]]:
    """Pick the first acceptable permessage-deflate offer; (response value, deflater)."""
    if not offers:
        return None, None
    for offer in offers.split(","):
        parts = [p.strip() for p in offer.split(";")]
        if parts[0].lower() != "permessage-deflate":
            continue
        params: Dict[str, Optional[str]] = {}
        for p in parts[1:]:
            name, _, value = p.partition("=")
            params[name.strip().lower()] = value.strip().strip('"') or None
        unknown = set(params) - {"server_no_context_takeover", "client_no_context_takeover",
                                 "server_max_window_bits", "client_max_window_bits"}
        if unknown:
            continue
        bits = 15
        if params.get("server_max_window_bits"):
            try:
                bits = int(params["server_max_window_bits"] or "")
            except ValueError:
                continue
            if not 9 <= bits <= 15:   # zlib cannot deflate with an 8-bit window
                continue
        no_context = "server_no_context_takeover" in params
        response = "permessage-deflate"
        if no_context:
            response += "; server_no_context_takeover"
        if "server_max_window_bits" in params:
            response += f"; server_max_window_bits={bits}"
        return response, _Deflate(no_context, bits)
    return None, None


class _Session:
    """One client connection: a reader (this thread) and, once subscribed, a tick writer."""

    def __init__(self, server: PriceServer, sock: socket.socket, number: int) -> None:
        self.server = server
        self.number = number
        self.sock = sock
        self.wlock = threading.Lock()
        self.stop = threading.Event()
        self.deflate: Optional[_Deflate] = None
        self.writer: Optional[threading.Thread] = None
        self.close_code: Optional[int] = None
        self.pending = b""     # bytes read past the HTTP request

    # -- handshake -------------------------------------------------------------------

    def handshake(self) -> bool:
        sock = self.sock
        sock.settimeout(10.0)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk or len(data) > _MAX_REQUEST:
                return False
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        request_line = lines[0].split(" ")
        headers: Dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                key = name.strip().lower()
                value = value.strip()
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
        key = headers.get("sec-websocket-key", "")
        if self.server.restarting():
            body = b"the stream is restarting\n"
            sock.sendall(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                         b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            self.server.event(f"session {self.number}: refused (restarting)")
            return False
        if (len(request_line) != 3 or request_line[0] != "GET"
                or "websocket" not in headers.get("upgrade", "").lower()
                or "upgrade" not in headers.get("connection", "").lower()
                or headers.get("sec-websocket-version") != "13" or not key):
            body = b"this is a WebSocket price stream: connect with a WebSocket client\n"
            sock.sendall(b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\n"
                         b"Sec-WebSocket-Version: 13\r\nConnection: close\r\n"
                         b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            return False
        extension, self.deflate = _negotiate(headers.get("sec-websocket-extensions"))
        response = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
                    f"Sec-WebSocket-Accept: {_accept_value(key)}", "Server: wsfast-demo"]
        if extension:
            response.append(f"Sec-WebSocket-Extensions: {extension}")
        sock.sendall(("\r\n".join(response) + "\r\n\r\n").encode("latin-1"))
        self.pending = rest
        sock.settimeout(None)
        return True

    # -- reading the client's frames ---------------------------------------------------

    def run(self) -> None:
        try:
            if self.handshake():
                self._read_loop()
        except (OSError, ValueError, zlib.error):
            pass   # a broken or misbehaving client: drop it
        finally:
            self.stop.set()
            if self.writer is not None:
                self.writer.join(5.0)
            try:
                self.sock.close()
            except OSError:
                pass

    def _read_loop(self) -> None:
        buf = bytearray(self.pending)
        parts: List[bytes] = []
        first_op, compressed = 0, False
        while True:
            frame = self._next_frame(buf)
            if frame is None:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return   # EOF without a close frame
                buf += chunk
                continue
            fin, rsv1, opcode, payload = frame
            if opcode >= 0x8:
                if opcode == _OP_PING:
                    self._send_control(_OP_PONG, payload)
                elif opcode == _OP_CLOSE:
                    self._closing_handshake(payload)
                    return
                continue
            if opcode != _OP_CONT:
                first_op, compressed, parts = opcode, rsv1, []
            parts.append(payload)
            if sum(map(len, parts)) > _MAX_CLIENT_FRAME:
                raise ValueError("client message too large")
            if fin:
                message = b"".join(parts)
                if compressed and self.deflate is not None:
                    message = self.deflate.inflate(message)
                self._on_message(first_op, message)

    def _next_frame(self, buf: bytearray) -> Optional[Tuple[bool, bool, int, bytes]]:
        """Take one complete frame off ``buf``; None when more bytes are needed."""
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            if len(buf) < 4:
                return None
            n = struct.unpack_from("!H", buf, 2)[0]
            pos = 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n = struct.unpack_from("!Q", buf, 2)[0]
            pos = 10
        if not b1 & 0x80 or n > _MAX_CLIENT_FRAME:
            raise OSError("protocol error: unmasked or oversized client frame")
        if len(buf) < pos + 4 + n:
            return None
        mask = bytes(buf[pos:pos + 4])
        payload = _unmask(bytes(buf[pos + 4:pos + 4 + n]), mask)
        del buf[:pos + 4 + n]
        return bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, payload

    def _on_message(self, opcode: int, message: bytes) -> None:
        if self.writer is not None:
            return
        try:
            request = json.loads(message)
        except ValueError:
            return
        if not isinstance(request, dict) or request.get("action") != "subscribe":
            return
        symbols = [s for s in request.get("symbols") or () if isinstance(s, str) and s.isprintable()
                   and '"' not in s and "\\" not in s and len(s) <= 16] or list(DEFAULT_SYMBOLS)
        rate = self.server.rate
        if isinstance(request.get("rate"), (int, float)) and request["rate"] >= 0:
            rate = float(request["rate"])
        self.writer = threading.Thread(target=self._write_loop, args=(symbols, rate),
                                       name="wsfast-demo-writer", daemon=True)
        self.writer.start()
        self.server.event(f"session {self.number}: subscribed")
        self.server.subscribed()

    def restart(self) -> None:
        """The stream restarts: close 1012 "service restart", then end the TCP connection."""
        self.stop.set()
        try:
            with self.wlock:
                self.sock.sendall(_frame(_OP_CLOSE, struct.pack("!H", 1012) + b"service restart"))
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.server.event(f"session {self.number}: restarted (1012)")

    def _send_control(self, opcode: int, payload: bytes) -> None:
        with self.wlock:
            self.sock.sendall(_frame(opcode, payload))

    def _closing_handshake(self, payload: bytes) -> None:
        """Echo the client's close, then close TCP (the server closes first, RFC 6455 §7.1.1)."""
        self.stop.set()
        self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        with self.wlock:
            self.sock.sendall(_frame(_OP_CLOSE, payload[:2]))
        self.server.event(f"session {self.number}: closed {self.close_code}")
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(2.0)
            while self.sock.recv(65536):   # let the client's FIN arrive: no RST
                pass
        except OSError:
            pass

    # -- writing ticks -----------------------------------------------------------------

    def _write_loop(self, symbols: Sequence[str], rate: float) -> None:
        ticks = _TickSource(symbols, self.deflate)
        stop = self.stop
        sock = self.sock
        per_batch = max(1, _BATCH_BYTES // 128)
        start = time.monotonic()
        sent = 0
        try:
            while not stop.is_set():
                if rate > 0:
                    now = time.monotonic()
                    due = int((now - start) * rate) - sent
                    if due > rate * 0.25:        # a slow reader: forget the backlog
                        start = now - sent / rate
                        due = int(rate * 0.25)
                    if due <= 0:
                        time.sleep(max(_PACE, (sent + 1) / rate - (now - start)))
                        continue
                    count = min(due, per_batch)
                else:
                    count = per_batch
                data = ticks.batch(count)
                with self.wlock:
                    if stop.is_set():
                        return
                    sock.sendall(data)
                sent += count
        except OSError:
            stop.set()


class _TickSource:
    """Encodes batches of tick frames: random-walk prices, ``ts`` = now in ms (µs precision)."""

    def __init__(self, symbols: Sequence[str], deflate: Optional[_Deflate]) -> None:
        self.symbols = [s.encode("ascii", "replace") for s in symbols]
        self.prices = [_START_PRICES.get(s, 100.0 + 7.0 * i) for i, s in enumerate(symbols)]
        rnd = random.Random(20240521)
        logs = [rnd.gauss(0.0, 0.0004) for _ in range(4093)]
        mean = sum(logs) / len(logs)     # centred: the walk returns to its start every cycle
        self.steps = [math.exp(x - mean) for x in logs]
        self.sizes = [round(rnd.expovariate(4.0), 4) + 0.0001 for _ in range(1021)]
        self.deflate = deflate
        self.seq = 0

    def batch(self, count: int) -> bytes:
        out: List[bytes] = []
        append = out.append
        symbols, prices, steps, sizes = self.symbols, self.prices, self.steps, self.sizes
        nsym, nsteps, nsizes = len(symbols), len(steps), len(sizes)
        compress = self.deflate.compress if self.deflate is not None else None
        seq = self.seq
        ts = time.time() * 1000.0
        for _ in range(count):
            seq += 1
            i = seq % nsym
            price = prices[i] = prices[i] * steps[seq % nsteps]
            payload = _TICK % (symbols[i], price, sizes[seq % nsizes], ts, seq)
            if compress is not None:
                packed = compress(payload)
                if packed is not None:
                    append(_header(0xC1, len(packed)))   # FIN | RSV1 | TEXT
                    append(packed)
                    continue
            append(_header(0x81, len(payload)))
            append(payload)
        self.seq = seq
        return b"".join(out)


class PriceServer:
    """A local WebSocket price stream on 127.0.0.1, standard library only.

    A client connects (any path), sends ``{"action": "subscribe", "symbols": [...]}``
    (optionally ``"rate"``: messages per second, 0 = as fast as TCP takes them), and
    receives ticker messages until it closes. Pings are answered, the closing
    handshake is echoed and then the server closes the TCP connection. ``on_event``,
    if given, is called (from the session's thread) with ``"session N: subscribed"``
    and ``"session N: closed CODE"``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, rate: float = 100_000,
                 on_event: Optional[Callable[[str], None]] = None,
                 restart_after: Optional[float] = None, restart_gap: float = 0.3) -> None:
        self.rate = rate
        self.on_event = on_event
        # The stream restarts once, ``restart_after`` seconds after the first
        # subscription: open sessions get close 1012, and for ``restart_gap`` seconds
        # new connections are answered 503 (what an exchange's gateway does).
        self.restart_after = restart_after
        self.restart_gap = restart_gap
        self._restart_lock = threading.Lock()   # guards _restart_timer and _restarting_until
        self._restart_timer: Optional[threading.Timer] = None
        self._restarting_until = 0.0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(16)
        self.host, self.port = self._listener.getsockname()[:2]
        self.sessions: List[_Session] = []
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        """The stream's URL, ``ws://127.0.0.1:PORT/prices``."""
        return f"ws://{self.host}:{self.port}/prices"

    def start(self) -> str:
        """Serve in a daemon thread; returns :attr:`url`."""
        self._thread = threading.Thread(target=self._accept_loop, name="wsfast-demo-server",
                                        daemon=True)
        self._thread.start()
        return self.url

    def _accept_loop(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return   # stopped
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            session = _Session(self, sock, len(self.sessions) + 1)
            self.sessions.append(session)
            threading.Thread(target=session.run, name="wsfast-demo-session", daemon=True).start()

    def subscribed(self) -> None:
        with self._restart_lock:
            if self.restart_after is None or self._restart_timer is not None:
                return
            self._restart_timer = threading.Timer(self.restart_after, self._restart)
            self._restart_timer.daemon = True
        self._restart_timer.start()

    def restarting(self) -> bool:
        with self._restart_lock:
            return time.monotonic() < self._restarting_until

    def _restart(self) -> None:
        with self._restart_lock:
            self._restarting_until = time.monotonic() + self.restart_gap
        for session in list(self.sessions):
            if not session.stop.is_set():
                session.restart()

    def event(self, text: str) -> None:
        if self.on_event is not None:
            self.on_event(text)

    def stop(self) -> None:
        """Stop accepting and drop every connection still open."""
        try:
            self._listener.shutdown(socket.SHUT_RDWR)   # wakes a blocked accept() on Linux
        except OSError:
            pass
        try:
            self._listener.close()
        except OSError:
            pass
        with self._restart_lock:
            timer = self._restart_timer
        if timer is not None:
            timer.cancel()
        for session in self.sessions:
            session.stop.set()
            try:
                session.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> PriceServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# ---------------------------------------------------------------------- as a program

class _Out:
    """Line-at-a-time stdout shared by the session threads; a vanished reader is ignored."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self._lock:
            try:
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
            except (OSError, ValueError):
                pass   # the parent is gone: with --exit-on-eof, stdin's EOF ends us too


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m wsfast._demo_server",
        description="The price-stream server of 'python -m wsfast demo'. Prints its URL on the "
                    "first line of stdout, then one line per session event.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: an ephemeral one)")
    p.add_argument("--rate", type=float, default=100_000,
                   help="messages per second per client unless its subscribe says otherwise; "
                        "0 = as fast as TCP takes them (default 100000)")
    p.add_argument("--restart-after", type=float, default=None, metavar="SECONDS",
                   help="restart the stream once, this long after the first subscription: "
                        "close 1012, then answer 503 for --restart-gap seconds")
    p.add_argument("--restart-gap", type=float, default=0.3, metavar="SECONDS",
                   help="how long the restart refuses new connections (default 0.3)")
    p.add_argument("--exit-on-eof", action="store_true",
                   help="stop when stdin reaches EOF (the parent closed the pipe or died)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    out = _Out()
    try:
        server = PriceServer(args.host, args.port, args.rate, on_event=out,
                             restart_after=args.restart_after, restart_gap=args.restart_gap)
    except OSError as exc:
        print(f"wsfast demo server: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    server.start()
    out(server.url)
    try:
        if args.exit_on_eof:
            while os.read(0, 4096):   # nothing is expected on stdin: only its EOF matters
                pass
        else:
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
