"""Differential target: the compiled frame parser against the pure-Python twin.

The input chooses the parser's settings (permessage-deflate on or off, context
takeover, window bits, a read limit down to 1 byte), where the stream is cut, whether
large messages are read through ``read_target()``/``advance()``, and the stream
itself: raw bytes, or frames built from a description (deflated with the negotiated
settings, fragmented, with control frames between, then maybe corrupted), so that the
fuzzer reaches the inflate and reassembly paths as well as the header checks.

Every variant (pure Python; compiled with zlib's C API; compiled with Python's zlib)
gets the same chunks; after every step the messages, control frames, error (class,
close code, message), ``closed``, ``buffered`` and ``read_target()`` size must be the
same. ``feed`` must never raise: a protocol violation goes to ``error``.
"""

from __future__ import annotations

import struct
import zlib

import atheris

from wsfast import _codec_py
from wsfast.errors import Error

try:
    from wsfast import _codec as _codec_c
except ImportError:   # not built: the target checks the pure-Python twin alone
    _codec_c = None

LIMITS = (1, 2, 3, 7, 125, 126, 127, 128, 1000, 4096, 65535, 65536, 65537, 70000, 0, 0)
TAIL = b"\x00\x00\xff\xff"
MAX_STREAM = 400_000   # bytes a built stream may reach (large messages, bounded)


class Finding(AssertionError):
    """The paths disagree, or an invariant does not hold."""


def _variants():
    out = [("pure", _codec_py, None)]
    if _codec_c is not None:
        out.append(("compiled", _codec_c, True))
        if _codec_c.CZLIB:
            out.append(("compiled-pyzlib", _codec_c, False))
    return out


VARIANTS = _variants()


def _event(e) -> tuple:
    if e.type == "close":
        return ("close", e.code, e.reason)
    return (e.type, bytes(e.data))


def _error(err) -> tuple | None:
    if err is None:
        return None
    return (type(err).__name__, err.close_code, str(err))


def _header(b0: int, n: int, form: int) -> bytes:
    """A frame header for payload length n: minimal form, or 16/64-bit when ``form`` says."""
    if n < 126 and form == 0:
        return bytes((b0, n))
    if n < 65536 and form <= 1:
        return struct.pack("!BBH", b0, 126, n)
    return struct.pack("!BBQ", b0, 127, n)


def _build(fdp: atheris.FuzzedDataProvider, compressed: bool, nct: bool, wbits: int) -> bytes:
    """A stream of frames from the fuzzer's description."""
    out = bytearray()
    deflater = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    while fdp.remaining_bytes() and len(out) < MAX_STREAM:
        op = fdp.ConsumeInt(1)
        kind = op & 7
        if kind == 7:   # raw bytes in between: anything
            out += fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
            continue
        n = fdp.ConsumeIntInRange(0, 200)
        rep = fdp.ConsumeInt(1)
        if kind == 0 and op & 0x80:
            payload = fdp.ConsumeUnicodeNoSurrogates(n).encode("utf-8")
        else:
            payload = fdp.ConsumeBytes(n)
        if rep > 200:   # a large payload: 1,300 to 72,800 bytes
            payload = (payload or b"\x00") * ((rep - 200) * 1300 // max(1, len(payload)) + 1)
        form = (op >> 5) & 3
        if kind >= 3:   # control frames: ping, pong, close (code + reason), or a bad opcode
            opcode = {3: 0x9, 4: 0xA, 5: 0x8, 6: 0x3 + (rep & 7) if rep & 8 else 0x8}[kind]
            if kind == 6 and opcode == 0x8:
                payload = struct.pack("!H", 1000 + rep * 17 % 4000) + payload[:121]
            out += _header(0x80 | opcode, len(payload), form) + payload
            continue
        opcode = 0x1 if kind == 0 else 0x2 if kind == 1 else 0x0
        deflate = compressed and bool(op & 0x10) or (op & 0x18 == 0x18)
        if deflate:
            if nct:
                deflater = zlib.compressobj(6, zlib.DEFLATED, -wbits)
            payload = deflater.compress(payload) + deflater.flush(
                zlib.Z_FINISH if rep & 0x40 and rep & 0x20 else zlib.Z_SYNC_FLUSH)
            if payload.endswith(TAIL):
                payload = payload[:-4]
            if rep & 0x40 and rep & 0x20:
                deflater = zlib.compressobj(6, zlib.DEFLATED, -wbits)
        nfrag = fdp.ConsumeIntInRange(1, 4) if op & 0x08 else 1
        cuts = sorted(fdp.ConsumeIntInRange(0, len(payload)) for _ in range(nfrag - 1))
        bounds = [0, *cuts, len(payload)]
        for i in range(nfrag):
            piece = payload[bounds[i]:bounds[i + 1]]
            fin = 0x80 if i == nfrag - 1 else 0
            rsv1 = 0x40 if deflate and i == 0 else 0
            out += _header(fin | rsv1 | (opcode if i == 0 else 0), len(piece), form) + piece
    return bytes(out)


def _corrupt(fdp: atheris.FuzzedDataProvider, stream: bytes, count: int) -> bytes:
    if not stream or not count:
        return stream
    buf = bytearray(stream)
    for _ in range(count):
        buf[fdp.ConsumeIntInRange(0, len(buf) - 1)] ^= fdp.ConsumeIntInRange(1, 255)
    return bytes(buf)


def _run(codec, czlib, config, chunks, direct) -> list:
    read_limit, compressed, nct, wbits = config
    prev = None
    if czlib is not None:
        prev = codec._use_c_zlib(czlib)
    try:
        parser = codec.FrameParser(read_limit, compressed, nct, wbits)
    finally:
        if prev is not None:
            codec._use_c_zlib(prev)
    limit = read_limit if read_limit > 0 else codec.DEFAULT_READ_LIMIT
    trace = []
    for chunk in chunks:
        step = []
        while True:
            target = parser.read_target() if direct else None
            if target is not None and chunk:
                n = min(len(target), len(chunk))
                target[:n] = chunk[:n]
                target.release()
                chunk = chunk[n:]
                try:
                    msgs = parser.advance(n)
                except Error as exc:
                    msgs = None
                    step.append(("raised", _error(exc)))
                step.append(("advance", n))
            else:
                try:
                    msgs = parser.feed(chunk)
                except Error as exc:
                    msgs = None
                    step.append(("raised", _error(exc)))
                chunk = b""
            if msgs:
                for m in msgs:
                    size = len(m.data.encode("utf-8")) if m.type == "text" else len(m.data)
                    if size > limit:
                        raise Finding(f"a {size}-byte message over the read limit {limit}")
                step.append(("msgs", [(m.type, m.data) for m in msgs]))
            if not chunk:
                break
        control = parser.take_control()
        target = parser.read_target()
        step.append(("control", [_event(e) for e in control]))
        step.append(("state", _error(parser.error), parser.closed, parser.buffered,
                     None if target is None else len(target)))
        trace.append(step)
        if parser.error is not None or parser.closed:
            # from here on nothing comes out
            if parser.feed(b"\x81\x01a\x89\x00") or parser.take_control():
                raise Finding("a parser that failed or closed still produced events")
            break
    return trace


def split_input(data: bytes):
    """The input's layout (fuzz/seeds.py writes seeds in it): 2 bytes of flags, 1 byte of
    cut count (mod 9), 3 bytes per cut (big-endian, mod 2^17 + 1), then the stream (raw),
    or the description of one (built, read through a FuzzedDataProvider)."""
    flags = int.from_bytes(data[:2], "big")
    ncuts = data[2] % 9 if len(data) > 2 else 0
    cuts = [int.from_bytes(data[3 + 3 * i:6 + 3 * i], "big") % (2**17 + 1) for i in range(ncuts)]
    return flags, cuts, data[3 + 3 * ncuts:]


def one_input(data: bytes) -> None:
    flags, cuts, rest = split_input(data)
    compressed = bool(flags & 1)
    nct = bool(flags & 2)
    wbits = 9 + ((flags >> 2) & 7) if (flags >> 2) & 7 < 7 else 15
    read_limit = LIMITS[(flags >> 5) & 15]
    direct = bool(flags & 0x200)
    built = bool(flags & 0x400)
    corrupt = (flags >> 11) & 3 if built else 0
    if built:
        fdp = atheris.FuzzedDataProvider(rest)
        stream = _build(fdp, compressed, nct, wbits)
        stream = _corrupt(fdp, stream, corrupt)
    else:
        stream = rest
    chunks = []
    pos = 0
    for cut in cuts:
        chunks.append(stream[pos:pos + cut])
        pos += cut
    chunks.append(stream[pos:])
    config = (read_limit, compressed, nct, wbits)
    traces = [(name, _run(codec, czlib, config, chunks, direct)) for name, codec, czlib in VARIANTS]
    ref_name, ref = traces[0]
    for name, trace in traces[1:]:
        if trace != ref:
            for i, (a, b) in enumerate(zip(ref, trace)):
                if a != b:
                    raise Finding(f"{name} and {ref_name} disagree at chunk {i} "
                                  f"(config {config}, direct={direct}):\n  {ref_name}: {a!r:.2000}"
                                  f"\n  {name}: {b!r:.2000}")
            raise Finding(f"{name} and {ref_name} disagree on the number of steps "
                          f"({len(trace)} and {len(ref)})")
