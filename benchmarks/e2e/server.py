"""The benchmark server: raw sockets, no WebSocket library, built not to be the bottleneck.

    python -m benchmarks.e2e.server --scenario ticks --count 1000000 [--port 0] [--log FILE]

It prints ``READY <port>`` once the stream is pre-encoded and the socket listens, then
serves connections one after another until killed.

* Handshake by hand: ``Sec-WebSocket-Accept`` from the key and the RFC 6455 GUID;
  permessage-deflate negotiated by hand in the deflate scenarios (``takeover``: an offer
  that lets the server keep its context; ``nct``: answered with
  ``server_no_context_takeover``, plus ``client_no_context_takeover`` when offered). A
  client with no acceptable offer gets HTTP 400.
* Every connection starts when the client sends its first data message ("start:<run>").
* stream: frames pre-encoded once into ~1 MiB chunks sent with ``sendall`` (the binary
  streams patch an 8-byte index into a reused chunk); then a close frame; the server
  reads the client's close reply and closes TCP first.
* echo: unmask each client frame and send it straight back (TCP_NODELAY).
* send: count frames (a stride check over runs of equal-size frames), check the last
  one, reply "done"; then answer the client's close.
* memory: accept, handshake and hold connections (selectors) until the client leaves.
* ``--scale COUNTS`` (ticks): many connections at once in one epoll loop, each streamed
  the ticks after its start message, for benchmarks/e2e/scale.py.

Each connection appends one JSON line to ``--log``: run id, wall and CPU seconds of the
data phase, bytes sent, the client's extension offer, errors.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import resource
import selectors
import socket
import struct
import sys
import time
import zlib
from typing import Dict, Iterator, List, Optional, Tuple

from .payloads import (
    FRAG_SPLITS,
    GUID,
    LARGE_SIZE,
    MEDIUM_SIZE,
    SCENARIOS,
    Scenario,
    binary,
    close_frame,
    frag_text,
    frame_header,
    send_message,
    tick,
    unmask,
)

CHUNK = 1 << 20
RECV = 1 << 18
CLOSE_WAIT = 60.0


class ClientGone(Exception):
    pass


# ---------------------------------------------------------------- pre-encoded streams

class Stream:
    nbytes = 0

    def chunks(self) -> Iterator[bytes]:
        raise NotImplementedError


class Precomputed(Stream):
    """All frames joined into ~1 MiB chunks, once."""

    def __init__(self, frames: Iterator[bytes]) -> None:
        self._chunks: List[bytes] = []
        part: List[bytes] = []
        size = 0
        for f in frames:
            part.append(f)
            size += len(f)
            if size >= CHUNK:
                self._chunks.append(b"".join(part))
                part, size = [], 0
        if part:
            self._chunks.append(b"".join(part))
        self.nbytes = sum(len(c) for c in self._chunks)

    def chunks(self) -> Iterator[bytes]:
        return iter(self._chunks)


class Patched(Stream):
    """Equal-size binary frames; one chunk reused, each message's index patched in."""

    def __init__(self, count: int, size: int) -> None:
        self.count = count
        head = frame_header(2, size)
        self.frame = len(head) + size
        self.per_chunk = max(1, CHUNK // self.frame)
        self.buf = bytearray(b"".join(head + binary(0, size) for _ in range(self.per_chunk)))
        self.offset = len(head)
        self.nbytes = self.frame * count

    def chunks(self) -> Iterator[memoryview]:
        buf, view, frame, off = self.buf, memoryview(self.buf), self.frame, self.offset
        pack = struct.Struct(">Q").pack_into
        i = 0
        while i < self.count:
            k = min(self.per_chunk, self.count - i)
            for j in range(k):
                pack(buf, j * frame + off, i + j)
            yield view[:k * frame]
            i += k


def _tick_frames(count: int) -> Iterator[bytes]:
    for i in range(count):
        data = tick(i).encode()
        yield frame_header(1, len(data)) + data


def _deflate_frames(count: int, takeover: bool) -> Iterator[bytes]:
    comp = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    for i in range(count):
        if not takeover:
            # a fresh context per message; a small memLevel only makes setup cheaper
            # (the compressed bytes of a 104-byte message do not depend on it)
            comp = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15, 1)
        data = comp.compress(tick(i).encode()) + comp.flush(zlib.Z_SYNC_FLUSH)
        assert data[-4:] == b"\x00\x00\xff\xff"
        data = data[:-4]
        yield frame_header(1, len(data), rsv1=True) + data


def _fragmented_frames(count: int) -> Iterator[bytes]:
    a, b, c = FRAG_SPLITS
    for i in range(count):
        d = frag_text(i).encode()
        yield b"".join((frame_header(1, a, fin=False), d[:a],
                        frame_header(0, b - a, fin=False), d[a:b],
                        frame_header(0, c - b, fin=False), d[b:c],
                        frame_header(0, len(d) - c), d[c:]))


def build_stream(name: str, count: int) -> Stream:
    if name == "ticks":
        return Precomputed(_tick_frames(count))
    if name == "ticks_deflate":
        return Precomputed(_deflate_frames(count, True))
    if name == "ticks_deflate_nct":
        return Precomputed(_deflate_frames(count, False))
    if name == "medium":
        return Patched(count, MEDIUM_SIZE)
    if name == "large":
        return Patched(count, LARGE_SIZE)
    if name == "fragmented":
        return Precomputed(_fragmented_frames(count))
    raise ValueError(name)


# ---------------------------------------------------------------- handshake

def read_request(conn: socket.socket) -> Tuple[str, Dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        more = conn.recv(65536)
        if not more:
            raise ClientGone("EOF during the handshake")
        data += more
        if len(data) > 65536:
            raise ClientGone("oversized handshake")
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: Dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return lines[0], headers, rest


def parse_offers(value: str) -> List[Dict[str, Optional[str]]]:
    offers = []
    for offer in value.split(","):
        parts = [p.strip() for p in offer.split(";")]
        if parts[0] != "permessage-deflate":
            continue
        params: Dict[str, Optional[str]] = {}
        for p in parts[1:]:
            if p:
                k, eq, v = p.partition("=")
                params[k.strip()] = v.strip().strip('"') if eq else None
        offers.append(params)
    return offers


def negotiate(mode: Optional[str], offer_header: str) -> Tuple[bool, str]:
    """(accepted, extension response or the reason for refusing)."""
    if mode is None:
        return True, ""
    for params in parse_offers(offer_header):
        smwb = params.get("server_max_window_bits")
        if smwb not in (None, "15"):
            continue   # the pre-encoded stream uses a 32 KiB window
        if mode == "takeover":
            if "server_no_context_takeover" in params:
                continue
            return True, "permessage-deflate"
        response = "permessage-deflate; server_no_context_takeover"
        if "client_no_context_takeover" in params:
            response += "; client_no_context_takeover"
        return True, response
    if not offer_header:
        return False, "the client offered no permessage-deflate"
    return False, f"no acceptable permessage-deflate offer in {offer_header!r}"


def handshake(conn: socket.socket, scenario: Scenario, stream: Optional[Stream]) -> Tuple[bytes, str, str]:
    """Answer the upgrade; return (bytes already read past it, offer, extension response)."""
    _, headers, rest = read_request(conn)
    key = headers.get("sec-websocket-key", "")
    offer = headers.get("sec-websocket-extensions", "")
    ok, ext = negotiate(scenario.deflate, offer)
    if not key or headers.get("upgrade", "").lower() != "websocket" or not ok:
        reason = ext if not ok else "not a WebSocket upgrade"
        body = reason.encode()
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                     b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        raise ClientGone(f"refused: {reason}")
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Accept: {accept}"]
    if ext:
        lines.append(f"Sec-WebSocket-Extensions: {ext}")
    if stream is not None:
        lines.append(f"X-Stream-Bytes: {stream.nbytes}")   # for the raw-socket pseudo-peer
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return rest, offer, ext


# ---------------------------------------------------------------- reading client frames

class FrameReader:
    def __init__(self, conn: socket.socket, data: bytes, inflate: bool) -> None:
        self.conn = conn
        self.buf = bytearray(data)
        self.pos = 0
        self.inflater = zlib.decompressobj(-15) if inflate else None

    def _fill(self) -> None:
        if self.pos:
            del self.buf[:self.pos]
            self.pos = 0
        data = self.conn.recv(RECV)
        if not data:
            raise ClientGone("EOF")
        self.buf += data

    def frame(self) -> Tuple[int, int, bytes]:
        """(first header byte, opcode, unmasked payload) of the next frame."""
        buf = self.buf
        while True:
            avail = len(buf) - self.pos
            if avail >= 2:
                p = self.pos
                b0, b1 = buf[p], buf[p + 1]
                n = b1 & 0x7F
                hl = 2
                if n == 126:
                    hl = 4
                    n = int.from_bytes(buf[p + 2:p + 4], "big") if avail >= 4 else -1
                elif n == 127:
                    hl = 10
                    n = int.from_bytes(buf[p + 2:p + 10], "big") if avail >= 10 else -1
                if b1 & 0x80:
                    hl += 4
                if n >= 0 and avail >= hl + n:
                    payload = bytes(buf[p + hl:p + hl + n])
                    if b1 & 0x80:
                        payload = unmask(payload, buf[p + hl - 4:p + hl])
                    self.pos = p + hl + n
                    return b0, b0 & 0x0F, payload
            self._fill()
            buf = self.buf

    def message(self) -> Tuple[int, bytes]:
        """The next data message (continuations joined, inflated if RSV1); control frames
        other than close are skipped; a close returns opcode 8."""
        parts: List[bytes] = []
        first = 0
        while True:
            b0, op, payload = self.frame()
            if op == 8:
                return 8, payload
            if op >= 8:
                if op == 9:
                    self.conn.sendall(frame_header(10, len(payload)) + payload)
                continue
            if not parts:
                first = b0
            parts.append(payload)
            if b0 & 0x80:
                data = b"".join(parts)
                if first & 0x40 and self.inflater is not None:
                    data = self.inflater.decompress(data + b"\x00\x00\xff\xff")
                return first & 0x0F, data

    def until_close(self) -> bytes:
        while True:
            op, payload = self.message()
            if op == 8:
                return payload

    def count_frames(self, expected: int) -> Tuple[int, bytes]:
        """Count complete data messages up to ``expected``; return (count, last payload)."""
        count = 0
        last = (0, 0, b"")          # (header length, payload length, raw frame bytes)
        while True:
            buf = self.buf
            pos = self.pos
            end_buf = len(buf)
            while end_buf - pos >= 2:
                b0, b1 = buf[pos], buf[pos + 1]
                n = b1 & 0x7F
                hl = 2
                if n == 126:
                    if end_buf - pos < 4:
                        break
                    hl, n = 4, int.from_bytes(buf[pos + 2:pos + 4], "big")
                elif n == 127:
                    if end_buf - pos < 10:
                        break
                    hl, n = 10, int.from_bytes(buf[pos + 2:pos + 10], "big")
                if b1 & 0x80:
                    hl += 4
                size = hl + n
                if end_buf - pos < size:
                    break
                op = b0 & 0x0F
                if op >= 8:
                    self.pos = pos + size
                    if op == 8:
                        raise ClientGone(f"close after {count} messages")
                    if op == 9:
                        payload = unmask(buf[pos + hl:pos + size], buf[pos + hl - 4:pos + hl])
                        self.conn.sendall(frame_header(10, n) + payload)
                    pos = self.pos
                    continue
                if b0 & 0x80:
                    count += 1
                pos += size
                lastpos = pos - size
                # runs of identical small frames: check every header byte in one stride
                k = (end_buf - pos) // size
                if b0 & 0x80 and hl == 6 and k > 1:
                    k = min(k, expected - count)
                    stop = pos + k * size
                    if (buf[pos:stop:size] == bytes((b0,)) * k
                            and buf[pos + 1:stop:size] == bytes((b1,)) * k):
                        count += k
                        pos = stop
                        lastpos = stop - size
                last = (hl, n, bytes(buf[lastpos:lastpos + size]))
                if count >= expected:
                    break
            self.pos = pos
            if count >= expected:
                hl, n, raw = last
                payload = raw[hl:]
                if raw[1] & 0x80:
                    payload = unmask(payload, raw[hl - 4:hl])
                return count, payload
            self._fill()


# ---------------------------------------------------------------- connection handlers

def serve_stream(conn: socket.socket, reader: FrameReader, stream: Stream, log: dict) -> None:
    w0, c0 = time.perf_counter(), time.process_time()
    sendall = conn.sendall
    for chunk in stream.chunks():
        sendall(chunk)
    sendall(close_frame(1000))
    log["wall"], log["cpu"] = time.perf_counter() - w0, time.process_time() - c0
    log["bytes_sent"] = stream.nbytes
    conn.settimeout(CLOSE_WAIT)
    try:
        reader.until_close()
    except socket.timeout:
        log["error"] = f"no close reply within {CLOSE_WAIT:g} s"


def serve_echo(conn: socket.socket, reader: FrameReader, log: dict) -> None:
    w0, c0 = time.perf_counter(), time.process_time()
    sendall = conn.sendall
    n = 0
    # fast path: one masked small frame per read, the common case of a ping-pong client
    while True:
        if len(reader.buf) - reader.pos == 0:
            data = conn.recv(RECV)
            if not data:
                raise ClientGone("EOF")
            b1 = data[1] if len(data) > 1 else 0
            size = (b1 & 0x7F) + 6
            if len(data) == size and b1 & 0x80 and b1 & 0x7F < 126 and data[0] & 0x0F in (1, 2):
                sendall(bytes((data[0], b1 & 0x7F)) + unmask(data[6:], data[2:6]))
                n += 1
                continue
            reader.buf = bytearray(data)
            reader.pos = 0
        b0, op, payload = reader.frame()
        if op == 8:
            break
        if op == 9:
            sendall(frame_header(10, len(payload)) + payload)
        elif op < 8:
            sendall(frame_header(op, len(payload), fin=bool(b0 & 0x80), rsv1=bool(b0 & 0x40))
                    + payload)
            n += 1
    log["wall"], log["cpu"] = time.perf_counter() - w0, time.process_time() - c0
    log["echoed"] = n
    sendall(close_frame(1000))


def serve_send(conn: socket.socket, reader: FrameReader, count: int, log: dict) -> None:
    w0, c0 = time.perf_counter(), time.process_time()
    got, last = reader.count_frames(count)
    want = send_message(count - 1).encode()
    reply = b"done" if last == want else b"bad: last message " + last[:60]
    conn.sendall(frame_header(1, len(reply)) + reply)
    log["wall"], log["cpu"] = time.perf_counter() - w0, time.process_time() - c0
    log["counted"] = got
    if reply != b"done":
        log["error"] = reply.decode(errors="replace")
    conn.settimeout(CLOSE_WAIT)
    reader.until_close()
    conn.sendall(close_frame(1000))


def handle(conn: socket.socket, scenario: Scenario, count: int, stream: Optional[Stream],
           logf) -> None:
    log: dict = {"t": time.time()}
    try:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(CLOSE_WAIT)
        rest, offer, ext = handshake(conn, scenario, stream)
        log["offer"], log["extension"] = offer, ext
        reader = FrameReader(conn, rest, inflate=bool(ext))
        op, start = reader.message()
        if op == 8:
            raise ClientGone("close before start")
        log["run"] = start.decode(errors="replace")
        conn.settimeout(None)
        if scenario.kind == "stream":
            serve_stream(conn, reader, stream, log)
        elif scenario.kind == "echo":
            serve_echo(conn, reader, log)
        elif scenario.kind == "send":
            serve_send(conn, reader, count, log)
    except (ClientGone, OSError, zlib.error, ValueError) as exc:
        log["error"] = f"{exc.__class__.__name__}: {exc}"
    finally:
        try:
            conn.close()   # the server closes TCP first
        except OSError:
            pass
        logf.write(json.dumps(log) + "\n")
        logf.flush()


def serve_memory(lsock: socket.socket, scenario: Scenario) -> None:
    """Accept, handshake and hold connections until each client closes them."""
    sel = selectors.DefaultSelector()
    lsock.setblocking(False)
    sel.register(lsock, selectors.EVENT_READ, None)
    pending: Dict[socket.socket, bytes] = {}
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            if sock is lsock:
                while True:
                    try:
                        conn, _ = lsock.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    pending[conn] = b""
                    sel.register(conn, selectors.EVENT_READ, None)
                continue
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(sock)
                pending.pop(sock, None)
                sock.close()
                continue
            if sock not in pending:
                continue   # held: ignore what the client sends
            buf = pending[sock] + data
            if b"\r\n\r\n" not in buf:
                pending[sock] = buf
                continue
            del pending[sock]
            key_line = [ln for ln in buf.split(b"\r\n") if ln.lower().startswith(b"sec-websocket-key:")]
            wskey = key_line[0].split(b":", 1)[1].strip().decode() if key_line else ""
            accept = base64.b64encode(hashlib.sha1((wskey + GUID).encode()).digest()).decode()
            sock.setblocking(True)
            sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode())
            sock.setblocking(False)


class _ScaleConn:
    __slots__ = ("sock", "phase", "rbuf", "chunks", "idx", "off")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.phase = "handshake"
        self.rbuf = b""
        self.chunks: List[bytes] = []
        self.idx = 0
        self.off = 0


def _client_frame(buf: bytes) -> Tuple[int, int]:
    """(opcode, size) of the first whole client frame in ``buf``, or (-1, 0)."""
    if len(buf) < 2:
        return -1, 0
    n = buf[1] & 0x7F
    hl = 2
    if n == 126:
        if len(buf) < 4:
            return -1, 0
        hl, n = 4, int.from_bytes(buf[2:4], "big")
    elif n == 127:
        if len(buf) < 10:
            return -1, 0
        hl, n = 10, int.from_bytes(buf[2:10], "big")
    if buf[1] & 0x80:
        hl += 4
    if len(buf) < hl + n:
        return -1, 0
    return buf[0] & 0x0F, hl + n


def serve_scale(lsock: socket.socket, streams: Dict[int, Stream]) -> None:
    """Many connections at once (benchmarks/e2e/scale.py): one epoll loop, non-blocking.

    The request path ``/n/<count>`` picks one of the pre-encoded tick streams; after the
    client's start message the connection gets that stream (every connection the same
    bytes, sent as each socket takes them) and a close frame; the server closes TCP once
    the client's close reply is in (pings on the way are answered).
    """
    sel = selectors.DefaultSelector()
    lsock.setblocking(False)
    sel.register(lsock, selectors.EVENT_READ, None)
    chunks = {n: [bytes(c) for c in st.chunks()] + [close_frame(1000)] for n, st in streams.items()}

    def drop(c: _ScaleConn) -> None:
        sel.unregister(c.sock)
        c.sock.close()

    def push(c: _ScaleConn) -> None:
        send = c.sock.send
        while c.idx < len(c.chunks):
            chunk = c.chunks[c.idx]
            try:
                k = send(memoryview(chunk)[c.off:])
            except (BlockingIOError, InterruptedError):
                return
            c.off += k
            if c.off == len(chunk):
                c.idx += 1
                c.off = 0
        c.phase = "closing"
        sel.modify(c.sock, selectors.EVENT_READ, c)

    while True:
        for key, _ in sel.select():
            c = key.data
            if c is None:
                while True:
                    try:
                        conn, _ = lsock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    conn.setblocking(False)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    sel.register(conn, selectors.EVENT_READ, _ScaleConn(conn))
                continue
            if c.phase == "sending":
                try:
                    push(c)
                except OSError:
                    drop(c)
                continue
            try:
                data = c.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                drop(c)
                continue
            c.rbuf += data
            if c.phase == "handshake":
                if b"\r\n\r\n" not in c.rbuf:
                    continue
                head, _, c.rbuf = c.rbuf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1] if " " in lines[0] else ""
                count = int(path.rsplit("/", 1)[-1]) if path.startswith("/n/") else -1
                wskey = ""
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "sec-websocket-key":
                        wskey = value.strip()
                if count not in chunks:
                    c.sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    drop(c)
                    continue
                accept = base64.b64encode(hashlib.sha1((wskey + GUID).encode()).digest()).decode()
                c.sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                                ).encode())
                c.chunks = chunks[count]
                c.phase = "start"
            while True:
                op, size = _client_frame(c.rbuf)
                if op < 0:
                    break
                payload = c.rbuf[:size]
                c.rbuf = c.rbuf[size:]
                if op == 9:
                    hl = size - (payload[1] & 0x7F) if payload[1] & 0x7F < 126 else 0
                    if hl:
                        body = unmask(payload[hl:], payload[hl - 4:hl])
                        c.sock.sendall(frame_header(10, len(body)) + body)
                elif op == 8 and c.phase == "closing":
                    drop(c)
                    break
                elif op < 8 and c.phase == "start":
                    c.phase = "sending"
                    sel.modify(c.sock, selectors.EVENT_WRITE, c)
                    try:
                        push(c)
                    except OSError:
                        drop(c)
                    break


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    ap.add_argument("--count", type=int, default=None)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log", default=os.devnull)
    ap.add_argument("--scale", default="", metavar="COUNTS",
                    help="serve many connections at once (ticks only): comma-separated "
                         "per-connection message counts, chosen by the request path /n/<count>")
    args = ap.parse_args(argv)
    scenario = SCENARIOS[args.scenario]
    count = args.count or scenario.count
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.scale:
        if scenario.stream != "ticks":
            ap.error("--scale serves the ticks stream only")
        scale = {int(n): build_stream("ticks", int(n)) for n in args.scale.split(",")}
    stream = (build_stream(scenario.stream, count)
              if scenario.kind == "stream" and not args.scale else None)
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((args.host, args.port))
    lsock.listen(4096)
    print(f"READY {lsock.getsockname()[1]}", flush=True)
    if args.scale:
        serve_scale(lsock, scale)
        return
    if scenario.kind == "memory":
        serve_memory(lsock, scenario)
        return
    with open(args.log, "a") as logf:
        while True:
            conn, _ = lsock.accept()
            handle(conn, scenario, count, stream, logf)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
