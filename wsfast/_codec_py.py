"""The pure-Python frame codec: the reference twin of ``_codec.pyx``.

Same classes, same results, same errors as the compiled codec; ``tests/test_codec.py``
runs every test against both and checks them against each other with hypothesis.
"""

from __future__ import annotations

import codecs
import os
import struct
import zlib
from typing import List, Optional, Union

from .errors import InvalidOption, ProtocolError

__all__ = [
    "COMPILED", "Message", "Ping", "Pong", "Close", "FrameParser", "FrameEncoder",
    "apply_mask", "validate_utf8", "is_valid_close_code",
    "OP_CONT", "OP_TEXT", "OP_BINARY", "OP_CLOSE", "OP_PING", "OP_PONG",
    "DEFAULT_READ_LIMIT",
]

COMPILED = False

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

DEFAULT_READ_LIMIT = 16 * 1024 * 1024
_DEFLATE_TAIL = b"\x00\x00\xff\xff"
_MASK_POOL_SIZE = 4096
_DIRECT_MIN = 65536   # payloads this large are read straight into their message
_JOIN_PARTS = 1024    # the fragments of a message kept as separate parts before they are joined

_pack_h = struct.Struct("!BB").pack
_pack_h16 = struct.Struct("!BBH").pack
_pack_h64 = struct.Struct("!BBQ").pack
_unpack16 = struct.Struct("!H").unpack_from
_unpack64 = struct.Struct("!Q").unpack_from
_utf8_decoder = codecs.getincrementaldecoder("utf-8")


class Message:
    """A data message: ``type`` is "text" (``data`` a str) or "binary" (``data`` bytes)."""

    __slots__ = ("type", "data")

    def __init__(self, type: str, data: Union[str, bytes]) -> None:
        self.type = type
        self.data = data

    def __eq__(self, other: object) -> bool:
        return (getattr(other, "type", None) == self.type
                and getattr(other, "data", None) == self.data
                and type(other).__name__ == "Message")

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Message(type={self.type!r}, data={self.data[:60]!r}, size={len(self.data)})"


class Ping:
    """A ping control frame received from the server."""

    __slots__ = ("data",)
    type = "ping"

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __eq__(self, other: object) -> bool:
        return type(other).__name__ == "Ping" and other.data == self.data  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Ping({self.data!r})"


class Pong(Ping):
    """A pong control frame received from the server."""

    __slots__ = ()
    type = "pong"

    def __eq__(self, other: object) -> bool:
        return type(other).__name__ == "Pong" and other.data == self.data  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"Pong({self.data!r})"


class Close:
    """A close frame received from the server; ``code`` is 1005 when it carried none."""

    __slots__ = ("code", "reason")
    type = "close"

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason

    def __eq__(self, other: object) -> bool:
        return (type(other).__name__ == "Close" and other.code == self.code  # type: ignore[attr-defined]
                and other.reason == self.reason)  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Close({self.code}, {self.reason!r})"


def is_valid_close_code(code: int) -> bool:
    """True for a code an endpoint may put in a close frame (RFC 6455 §7.4, IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def validate_utf8(data) -> bool:
    """True when ``data`` (bytes-like) is valid UTF-8."""
    try:
        codecs.utf_8_decode(data, "strict", True)
    except UnicodeDecodeError:
        return False
    return True


def _utf8_prefix_ok(tail: bytes) -> bool:
    """True when ``tail`` (the 1-3 bytes of an unfinished sequence) can still become a character.

    CPython's incremental decoder holds ``ED A0..BF`` (the start of a UTF-16 surrogate)
    as merely incomplete; the compiled DFA rejects it at once, and so must we (fail fast).
    """
    lead = tail[0]
    if not 0xC2 <= lead <= 0xF4:
        return False
    if len(tail) == 1:
        return True
    lo, hi = 0x80, 0xBF
    if lead == 0xE0:
        lo = 0xA0
    elif lead == 0xED:
        hi = 0x9F
    elif lead == 0xF0:
        lo = 0x90
    elif lead == 0xF4:
        hi = 0x8F
    if not lo <= tail[1] <= hi:
        return False
    return len(tail) == 2 or 0x80 <= tail[2] <= 0xBF


def apply_mask(data, mask) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` (RFC 6455 §5.3); the operation is its own inverse."""
    n = len(data)
    if len(mask) != 4:
        raise InvalidOption("mask must be 4 bytes")
    if n == 0:
        return b""
    # One big-integer XOR does the whole buffer word-wide at C speed.
    key = bytes(mask) * ((n >> 2) + 1)
    return (int.from_bytes(data, "little") ^ int.from_bytes(key[:n], "little")).to_bytes(n, "little")


def _fail(message: str, code: int = 1002) -> ProtocolError:
    return ProtocolError(message, close_code=code)


class FrameParser:
    """Incremental parser of server-to-client frames.

    ``feed(chunk)`` returns the data messages completed by the chunk, in order;
    control frames (Ping, Pong, Close) collect in ``control`` until ``take_control()``.
    On a protocol violation parsing stops: ``error`` holds the ``ProtocolError``
    (with the close code to send) and the messages completed before it are still
    returned. After a Close frame the rest of the stream is ignored.
    """

    def __init__(self, read_limit: int = DEFAULT_READ_LIMIT, compressed: bool = False,
                 no_context_takeover: bool = False, max_window_bits: int = 15) -> None:
        if read_limit <= 0:
            read_limit = DEFAULT_READ_LIMIT
        self.read_limit = read_limit
        self._wire_limit = read_limit + (read_limit >> 6) + 1024
        self.compressed = compressed
        self._no_context_takeover = no_context_takeover
        self._wbits = -max(9, min(15, max_window_bits))
        self._inflater = zlib.decompressobj(self._wbits) if compressed else None
        self._buf = bytearray()
        self._direct: Optional[bytearray] = None   # a large single-frame message being read
        self._direct_pos = 0
        self._direct_hlen = 0
        self._direct_text = False
        self.control: List[object] = []
        self.error: Optional[ProtocolError] = None
        self.closed = False
        # the message being reassembled from fragments
        self._msg_open = False
        self._msg_text = False
        self._msg_deflated = False
        self._msg_size = 0
        self._msg_wire = 0
        self._parts: list = []
        self._joined = 0   # the first _joined parts are joined runs of _JOIN_PARTS fragments
        self._decoder = None

    def take_control(self) -> list:
        """Return and clear the control frames received so far."""
        control = self.control
        self.control = []
        return control

    def read_target(self):
        """Internal: while a large single-frame message arrives, a writable view of the
        rest of its buffer that the caller may ``recv_into`` (then ``advance(n)``); else None."""
        if self._direct is None:
            return None
        return memoryview(self._direct)[self._direct_pos:]

    def advance(self, n: int) -> List[Message]:
        """Internal: ``n`` bytes were written into ``read_target()``; return completed messages."""
        out: List[Message] = []
        if self._direct is None or not 0 <= n <= len(self._direct) - self._direct_pos:
            raise ValueError("advance() without a matching read_target()")
        self._direct_pos += n
        if self._direct_pos == len(self._direct):
            self._direct_done(out)
        return out

    def _direct_done(self, out: list) -> None:
        data = bytes(self._direct)
        self._direct = None
        if self._direct_text:
            try:
                out.append(Message("text", data.decode("utf-8")))
            except UnicodeDecodeError:
                self.error = _fail("invalid UTF-8 in text message", 1007)
        else:
            out.append(Message("binary", data))

    @property
    def buffered(self) -> int:
        """Bytes held of a frame not yet complete."""
        if self._direct is not None:
            return self._direct_hlen + self._direct_pos
        return len(self._buf)

    def feed(self, data) -> List[Message]:
        """Parse a chunk of bytes (any size, any split); return the completed messages."""
        out: List[Message] = []
        if self.error is not None or self.closed or not len(data):
            return out
        if not isinstance(data, (bytes, bytearray)):
            data = bytes(data)
        if self._direct is not None:
            take = min(len(data), len(self._direct) - self._direct_pos)
            self._direct[self._direct_pos:self._direct_pos + take] = data[:take]
            self._direct_pos += take
            if self._direct_pos == len(self._direct):
                self._direct_done(out)
            if self.error is not None or take == len(data):
                return out
            data = data[take:]
        if self._buf:
            self._buf += data
            buf = self._buf
        else:
            buf = data
        try:
            pos = self._parse(buf, out)
        except ProtocolError as exc:
            self.error = exc
            self._buf = bytearray()
            return out
        if self.closed or self._direct is not None:
            self._buf = bytearray()
        elif buf is self._buf:
            del self._buf[:pos]
        else:
            self._buf = bytearray(data[pos:])
        return out

    def _parse(self, buf, out: list) -> int:
        end = len(buf)
        pos = 0
        small = min(125, self.read_limit)
        while end - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            # The common frame (FIN text/binary, no RSV, unmasked, short, nothing open) skips the checks.
            if b1 <= small and (b0 == 0x81 or b0 == 0x82) and not self._msg_open:
                start = pos + 2
                if end - start < b1:
                    break
                pos = start + b1
                if b0 == 0x81:
                    try:
                        out.append(Message("text", buf[start:pos].decode("utf-8")))
                    except UnicodeDecodeError:
                        raise _fail("invalid UTF-8 in text message", 1007) from None
                else:
                    out.append(Message("binary", bytes(buf[start:pos])))
                continue
            fin = b0 & 0x80
            opcode = b0 & 0x0F
            self._check_header(b0, b1)
            length = b1 & 0x7F
            hlen = 2
            if length == 126:
                if end - pos < 4:
                    break
                length = _unpack16(buf, pos + 2)[0]
                hlen = 4
            elif length == 127:
                if end - pos < 10:
                    break
                length = _unpack64(buf, pos + 2)[0]
                if length >> 63:
                    raise _fail("frame length has the most significant bit set")
                hlen = 10
            if opcode < 8:
                self._check_length(opcode, b0 & 0x40, length)
            if end - pos - hlen < length:
                if length >= _DIRECT_MIN and fin and opcode in (OP_TEXT, OP_BINARY) and not b0 & 0x40:
                    # a large whole message: allocate it once and read into it
                    start = pos + hlen
                    self._direct = bytearray(length)
                    self._direct[:end - start] = buf[start:end]
                    self._direct_pos = end - start
                    self._direct_hlen = hlen
                    self._direct_text = opcode == OP_TEXT
                    return end
                break
            start = pos + hlen
            pos = start + length
            payload = buf[start:pos]
            if opcode >= 8:
                self._control(opcode, payload)
                if self.closed:
                    return pos
            elif opcode != OP_CONT:
                if fin and not (b0 & 0x40):
                    if opcode == OP_TEXT:
                        try:
                            text = payload.decode("utf-8")
                        except UnicodeDecodeError:
                            raise _fail("invalid UTF-8 in text message", 1007) from None
                        out.append(Message("text", text))
                    else:
                        out.append(Message("binary", bytes(payload)))
                else:
                    self._start_message(opcode, b0 & 0x40)
                    self._fragment(payload, fin, out)
            else:
                self._fragment(payload, fin, out)
        return pos

    def _check_header(self, b0: int, b1: int) -> None:
        opcode = b0 & 0x0F
        if b1 & 0x80:
            raise _fail("server frames must not be masked")
        if b0 & 0x30:
            raise _fail("reserved bits RSV2/RSV3 set")
        if opcode >= 8:
            if opcode > OP_PONG:
                raise _fail(f"unknown opcode {opcode:#x}")
            if b0 & 0x40:
                raise _fail("reserved bit RSV1 set on a control frame")
            if not b0 & 0x80:
                raise _fail("fragmented control frame")
            if (b1 & 0x7F) > 125:
                raise _fail("control frame payload over 125 bytes")
        elif opcode == OP_CONT:
            if not self._msg_open:
                raise _fail("continuation frame with no message open")
            if b0 & 0x40:
                raise _fail("reserved bit RSV1 set on a continuation frame")
        elif opcode <= OP_BINARY:
            if self._msg_open:
                raise _fail("new data frame inside a fragmented message")
            if b0 & 0x40 and not self.compressed:
                raise _fail("reserved bit RSV1 set without a negotiated extension")
        else:
            raise _fail(f"unknown opcode {opcode:#x}")

    def _check_length(self, opcode: int, rsv1: int, length: int) -> None:
        deflated = self._msg_deflated if opcode == OP_CONT else bool(rsv1)
        if deflated:
            wire = (self._msg_wire if opcode == OP_CONT else 0) + length
            if wire > self._wire_limit:
                raise _fail(f"compressed message over the read limit ({self.read_limit} bytes)", 1009)
        else:
            size = (self._msg_size if opcode == OP_CONT else 0) + length
            if size > self.read_limit:
                raise _fail(f"message over the read limit ({self.read_limit} bytes)", 1009)

    def _control(self, opcode: int, payload) -> None:
        if opcode == OP_PING:
            self.control.append(Ping(bytes(payload)))
        elif opcode == OP_PONG:
            self.control.append(Pong(bytes(payload)))
        else:
            n = len(payload)
            if n == 0:
                code, reason = 1005, ""
            elif n == 1:
                raise _fail("close frame with a 1-byte payload")
            else:
                code = (payload[0] << 8) | payload[1]
                if not is_valid_close_code(code):
                    raise _fail(f"invalid close code {code}")
                try:
                    reason = codecs.utf_8_decode(payload[2:], "strict", True)[0]
                except UnicodeDecodeError:
                    raise _fail("invalid UTF-8 in close reason", 1007) from None
            self.control.append(Close(code, reason))
            self.closed = True

    def _start_message(self, opcode: int, rsv1: int) -> None:
        self._msg_open = True
        self._msg_text = opcode == OP_TEXT
        self._msg_deflated = bool(rsv1)
        self._msg_size = 0
        self._msg_wire = 0
        self._parts = []
        self._joined = 0
        self._decoder = _utf8_decoder() if self._msg_text else None

    def _fragment(self, payload, fin, out: list) -> None:
        if self._msg_deflated:
            self._msg_wire += len(payload)
            # the tail goes in with the last fragment: one inflate call, one limit, as in _codec.pyx
            chunk = self._inflate(bytes(payload) + _DEFLATE_TAIL if fin else payload)
        else:
            chunk = payload
        self._msg_size += len(chunk)
        if self._msg_size > self.read_limit:  # an uncompressed one was caught at its header
            raise _fail(f"message over the read limit ({self.read_limit} bytes)", 1009)
        if self._msg_text:
            decoder = self._decoder
            try:
                part = decoder.decode(chunk, bool(fin))
            except UnicodeDecodeError:
                raise _fail("invalid UTF-8 in text message", 1007) from None
            if not fin:
                pending = decoder.getstate()[0]
                if pending and not _utf8_prefix_ok(pending):
                    raise _fail("invalid UTF-8 in text message", 1007)
        else:
            part = bytes(chunk)
        if part:   # (an empty fragment adds nothing: a stream of them does not grow the message)
            parts = self._parts
            parts.append(part)
            if len(parts) - self._joined >= _JOIN_PARTS:
                self._join_parts()
        if fin:
            if self._msg_text:
                out.append(Message("text", "".join(self._parts)))
            else:
                out.append(Message("binary", b"".join(self._parts)))
            self._msg_open = False
            self._parts = []
            self._decoder = None
            if self._msg_deflated and (self._no_context_takeover or self._inflater.eof):
                self._inflater = zlib.decompressobj(self._wbits)

    def _join_parts(self) -> None:
        # A message in many small fragments must cost about its payload, as in _codec.pyx
        # (one buffer), not an object per fragment: the parts after those already joined
        # become one (so each byte is copied once more at most).
        parts = self._parts
        empty = "" if self._msg_text else b""
        parts[self._joined:] = [empty.join(parts[self._joined:])]
        self._joined += 1

    def _inflate(self, data) -> bytes:
        remaining = self.read_limit - self._msg_size
        try:
            chunk = self._inflater.decompress(data, remaining + 1)
        except zlib.error as exc:
            raise _fail(f"invalid compressed data: {exc}", 1007) from None
        if len(chunk) > remaining:
            raise _fail(f"message over the read limit ({self.read_limit} bytes) after inflate", 1009)
        return chunk


class FrameEncoder:
    """Builds masked client-to-server frames, compressing messages when negotiated.

    ``threshold``: messages of this many bytes or more are compressed (0 = all).
    ``fragment_size``: when > 0, longer messages are split into frames of that size.
    """

    def __init__(self, compressed: bool = False, no_context_takeover: bool = False,
                 max_window_bits: int = 15, threshold: int = 128, level: int = 6,
                 fragment_size: int = 0) -> None:
        # zlib cannot deflate with a 256-byte window: if the server asked for one we
        # send every message uncompressed, which RFC 7692 allows.
        self.compressed = compressed and max_window_bits >= 9
        self._no_context_takeover = no_context_takeover
        self._wbits = -min(15, max_window_bits)
        self._level = level
        self._deflater = self._new_deflater() if self.compressed else None
        self.threshold = threshold
        self.fragment_size = fragment_size
        self._pool = b""
        self._pool_pos = 0

    def _new_deflater(self):
        return zlib.compressobj(self._level, zlib.DEFLATED, self._wbits)

    def _mask_key(self) -> bytes:
        pos = self._pool_pos
        if pos + 4 > len(self._pool):
            self._pool = os.urandom(_MASK_POOL_SIZE)
            pos = 0
        self._pool_pos = pos + 4
        return self._pool[pos:pos + 4]

    def encode_frame(self, opcode: int, payload=b"", fin: bool = True, rsv1: bool = False) -> bytes:
        """One masked frame with the given opcode and payload, header and payload in one buffer."""
        n = len(payload)
        b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
        if n < 126:
            header = _pack_h(b0, 0x80 | n)
        elif n < 65536:
            header = _pack_h16(b0, 0x80 | 126, n)
        else:
            header = _pack_h64(b0, 0x80 | 127, n)
        key = self._mask_key()
        return b"".join((header, key, apply_mask(payload, key)))

    def encode_message(self, data, opcode: Optional[int] = None) -> bytes:
        """The frames of one data message; ``str`` is TEXT, bytes-like BINARY unless ``opcode`` says."""
        if isinstance(data, str):
            payload = data.encode("utf-8")
            if opcode is None:
                opcode = OP_TEXT
        else:
            payload = data
            if opcode is None:
                opcode = OP_BINARY
        rsv1 = False
        if self.compressed and len(payload) >= self.threshold:
            payload = self._deflate(payload)
            rsv1 = True
        size = self.fragment_size
        if size <= 0 or len(payload) <= size:
            return self.encode_frame(opcode, payload, True, rsv1)
        view = memoryview(payload)
        frames = [self.encode_frame(opcode, view[:size], False, rsv1)]
        pos = size
        n = len(payload)
        while pos < n:
            frames.append(self.encode_frame(OP_CONT, view[pos:pos + size], pos + size >= n))
            pos += size
        return b"".join(frames)

    def encode_close(self, code: Optional[int] = 1000, reason: str = "") -> bytes:
        """A close frame; ``code`` None sends an empty payload."""
        if code is None:
            return self.encode_frame(OP_CLOSE, b"")
        return self.encode_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode("utf-8"))

    def _deflate(self, payload) -> bytes:
        d = self._deflater
        out = d.compress(payload) + d.flush(zlib.Z_SYNC_FLUSH)
        if self._no_context_takeover:
            self._deflater = self._new_deflater()
        if out.endswith(_DEFLATE_TAIL):
            out = out[:-4]
        return out
