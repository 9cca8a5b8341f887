"""``python -m wsfast demo``: an embedded price-stream server and the Lua spec's price loop.

The server (:class:`PriceServer`) needs nothing but the standard library: raw
sockets, the HTTP upgrade, unmasked server frames written by hand, optional
permessage-deflate (``zlib`` raw deflate, ``Z_SYNC_FLUSH`` with the ``00 00 ff ff``
tail stripped). It streams JSON price ticks of about 100 bytes whose ``ts`` field is
the send time in milliseconds (microsecond precision), so the client can measure
latency. Ticks are encoded in batches and written with one ``sendall`` per batch.

:func:`run` is the client side: the Lua spec's "price stream with keep-alive"
example translated to Python (``connect``, subscribe, ``select`` over the receive
channel and an ``after`` timer that pings and re-arms), plus a live status line.
"""

from __future__ import annotations

import json
import math
import random
import signal
import socket
import struct
import sys
import threading
import time
import zlib
from typing import Any, Dict, List, Optional, Sequence, TextIO, Tuple

from . import __version__
from .channels import after, select
from .client import connect
from .codec import COMPILED
from .constants import COMPRESSION
from .errors import ConnectionClosed, Error
from .handshake import accept_value

__all__ = ["PriceServer", "run"]

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

    def __init__(self, server: PriceServer, sock: socket.socket) -> None:
        self.server = server
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
                    f"Sec-WebSocket-Accept: {accept_value(key)}", "Server: wsfast-demo"]
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

    def _send_control(self, opcode: int, payload: bytes) -> None:
        with self.wlock:
            self.sock.sendall(_frame(opcode, payload))

    def _closing_handshake(self, payload: bytes) -> None:
        """Echo the client's close, then close TCP (the server closes first, RFC 6455 §7.1.1)."""
        self.stop.set()
        self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        with self.wlock:
            self.sock.sendall(_frame(_OP_CLOSE, payload[:2]))
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
    handshake is echoed and then the server closes the TCP connection.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, rate: float = 100_000) -> None:
        self.rate = rate
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
            session = _Session(self, sock)
            self.sessions.append(session)
            threading.Thread(target=session.run, name="wsfast-demo-session", daemon=True).start()

    def stop(self) -> None:
        """Stop accepting and drop every connection still open."""
        try:
            self._listener.close()
        except OSError:
            pass
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


# ---------------------------------------------------------------------- the client side

class CtrlC:
    """Turns the first Ctrl-C into a flag (``hit``); a second one raises KeyboardInterrupt.

    Raising KeyboardInterrupt at an arbitrary point of the main thread could land inside
    a library call (a half-written frame, a lock round); with the flag the main loop
    notices the interrupt between calls and closes cleanly. Only in the main thread.
    """

    def __init__(self) -> None:
        self.hit = False
        self._previous: Any = None
        self._installed = False

    def _handler(self, signum: int, frame: Any) -> None:
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)



def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    k = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[k]


def _ms(value: float) -> str:
    return "   n/a" if math.isnan(value) else f"{value:6.2f}"


class _Stats:
    """Counts for the status line and the summary."""

    _MAX_SAMPLES = 200_000   # latency samples kept for the summary (evenly thinned beyond)

    def __init__(self) -> None:
        self.messages = 0
        self.payload_bytes = 0
        self.latencies: List[float] = []     # this interval, ms
        self.all_latencies: List[float] = []
        self.prices: Dict[str, float] = {}
        self.interval_messages = 0
        self.interval_bytes = 0

    def update_price(self, symbol: str, value: float) -> None:
        """The Lua example's ``update_price``: keep the last price per symbol."""
        self.prices[symbol] = value

    def take_interval(self) -> Tuple[int, int, List[float]]:
        lat = sorted(self.latencies)
        counts = (self.interval_messages, self.interval_bytes, lat)
        self.all_latencies.extend(lat[::max(1, len(lat) // 20_000)])
        if len(self.all_latencies) > self._MAX_SAMPLES:
            self.all_latencies = self.all_latencies[::2]
        self.latencies = []
        self.interval_messages = self.interval_bytes = 0
        return counts


def run(*, url: Optional[str] = None, duration: float = 5.0, rate: float = 100_000,
        compression: int = 0, out: TextIO = sys.stdout, live: Optional[bool] = None) -> int:
    """Stream prices for ``duration`` seconds and print a live status line and a summary.

    Without ``url`` an embedded :class:`PriceServer` serves on 127.0.0.1. ``rate`` is
    messages per second (0: as fast as possible). Returns the exit status (0 = success).
    """
    if live is None:
        live = out.isatty()
    server: Optional[PriceServer] = None
    if url is None:
        server = PriceServer(rate=rate)
        url = server.start()
    codec = "compiled" if COMPILED else "pure-Python"
    mode = COMPRESSION(compression).name
    rate_text = "as fast as possible" if rate == 0 else f"{rate:,.0f} msg/s"
    print(f"wsfast {__version__} ({codec} codec) <- {url}  compression={mode}  "
          f"rate={rate_text}  duration={duration:g}s", file=out, flush=True)
    try:
        return _stream(url, duration, rate, compression, out, live)
    except Error as err:
        retry = "retryable" if err.retryable else "not retryable"
        print(f"error: {type(err).__name__} ({err.kind}, {retry}): {err}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.stop()


def _stream(url: str, duration: float, rate: float, compression: int, out: TextIO, live: bool) -> int:
    stats = _Stats()
    client = connect(url, dial_timeout="10s", compression=compression)
    if compression and not client.extensions:
        print("note: the server declined permessage-deflate", file=out)
    client.send(json.dumps({"action": "subscribe", "symbols": list(DEFAULT_SYMBOLS), "rate": rate}))

    ch = client.channel()
    heartbeat = after("1s")                 # the Lua example uses 30s; 1s shows it working
    clock = after("1s")                     # status line, and the end of the run
    pings = 0
    started = last = time.monotonic()
    stopped: Optional[float] = None
    last_wire = 0
    wire_at_close: Optional[int] = None
    with CtrlC() as ctrl_c:
        while True:
            if ctrl_c.hit and stopped is None:
                stopped, wire_at_close = time.monotonic(), client.stats["bytes_in"]
                if live:
                    out.write("\n")
                print("interrupted: closing", file=out, flush=True)
                client.close()
            r = select(ch.case_receive(), heartbeat.case_receive(), clock.case_receive())
            if r.channel is ch:
                if not r.ok:
                    break                   # connection closed
                _on_tick(stats, r.value)
                # Take what is already buffered without another select: the timers are
                # looked at again after at most channel_capacity messages.
                for _ in range(len(ch)):
                    msg, ok = ch.receive()
                    if not ok:
                        break
                    _on_tick(stats, msg)
            elif r.channel is heartbeat:
                if stopped is None:
                    try:
                        client.ping()       # keep-alive
                        pings += 1
                    except ConnectionClosed:
                        pass                # the server ended it: the channel tells the loop
                heartbeat = after("1s")
            else:
                now = time.monotonic()
                wire = client.stats["bytes_in"]
                _status(out, live, now - started, now - last, stats, wire - last_wire, wire)
                last, last_wire = now, wire
                if now - started >= duration and stopped is None:
                    stopped, wire_at_close = now, wire
                    client.close()          # what is buffered drains; the loop ends when ch closes
                clock = after(min(1.0, max(0.0, started + duration - now)) * 1000.0 or 1000.0)
    elapsed = (stopped or time.monotonic()) - started
    if live:
        out.write("\n")
    if wire_at_close is None:
        wire_at_close = client.stats["bytes_in"]
    _summary(out, client, stats, elapsed, pings, wire_at_close)
    if ctrl_c.hit:
        return 130
    ok = stats.messages > 0 and client.error is None and client.close_code == 1000
    return 0 if ok else 1


def _on_tick(stats: _Stats, msg: Any) -> None:
    """One received message: count it, decode the tick, measure its latency."""
    data = msg.data
    now_ms = time.time() * 1000.0
    size = len(data) if type(data) is bytes or data.isascii() else len(data.encode())
    stats.messages += 1
    stats.interval_messages += 1
    stats.interval_bytes += size
    stats.payload_bytes += size
    try:
        price = json.loads(data)
        stats.update_price(price["symbol"], price["price"])   # the Lua example's update_price
        stats.latencies.append(now_ms - price["ts"])
    except (ValueError, KeyError, TypeError):
        pass   # not one of our ticks (an external server)


def _status(out: TextIO, live: bool, t: float, dt: float, stats: _Stats, wire_delta: int,
            wire_total: int) -> None:
    msgs, nbytes, lat = stats.take_interval()
    dt = max(dt, 1e-6)
    ratio = wire_total / stats.payload_bytes if stats.payload_bytes else math.nan
    line = (f"t={t:4.1f}s  {msgs / dt:>9,.0f} msg/s  {nbytes / dt / 1e6:6.2f} MB/s  "
            f"latency ms p50 {_ms(_percentile(lat, 0.5))} p99 {_ms(_percentile(lat, 0.99))}  "
            f"wire/payload {ratio:5.3f}")
    if live:
        out.write("\r\x1b[K" + line)
    else:
        out.write(line + "\n")
    out.flush()


def _summary(out: TextIO, client: Any, stats: _Stats, elapsed: float, pings: int, wire: int) -> None:
    lat = sorted(stats.all_latencies + stats.latencies)
    ratio = wire / stats.payload_bytes if stats.payload_bytes else math.nan
    elapsed = max(elapsed, 1e-6)
    print(f"summary: {stats.messages:,} messages in {elapsed:.2f} s = {stats.messages / elapsed:,.0f} msg/s, "
          f"{stats.payload_bytes / elapsed / 1e6:.2f} MB/s payload", file=out)
    print(f"  latency (server send -> client receive) ms: p50 {_percentile(lat, 0.5):.3f}  "
          f"p99 {_percentile(lat, 0.99):.3f}  max {lat[-1] if lat else math.nan:.3f}", file=out)
    print(f"  compression ratio (wire bytes / payload bytes): {ratio:.3f}  "
          f"[{wire:,} / {stats.payload_bytes:,}]  extensions: {client.extensions or 'none'}",
          file=out)
    last = ", ".join(f"{k} {v:,.2f}" for k, v in sorted(stats.prices.items()))
    print(f"  last prices: {last or 'none'}", file=out)
    print(f"  keep-alive pings sent: {pings}; closed with {client.close_code} "
          f"{client.close_reason or ''}".rstrip(), file=out)
    if client.error is not None:
        print(f"  connection error: {client.error!r}", file=out)
    out.flush()

