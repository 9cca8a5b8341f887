"""The frame codec, against both implementations: the compiled ``_codec`` and ``_codec_py``.

Every test takes the ``codec`` fixture (one run per implementation; the compiled one is
skipped when the extension is not built). The permessage-deflate tests also run the
compiled codec on its fallback, Python's zlib module instead of zlib's C API. The
hypothesis tests at the end check that the paths give identical results and identical
errors on random, valid and invalid, streams.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import random
import tracemalloc
import zlib
from typing import List, NamedTuple, Optional, Sequence, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsfast import _codec_py
from wsfast.errors import InvalidOption, ProtocolError

try:
    from wsfast import _codec as _codec_c
except ImportError:  # the extension is not built: only the pure-Python path runs
    _codec_c = None

# The hypothesis profile in force (tests/conftest.py: "ci" has hypothesis' default of 100
# examples, "fast" a quarter of them, "deep" 20 times more) scales every test's example
# count, and so its time limit; WSFAST_CODEC_EXAMPLES_SCALE multiplies on top.
_SCALE = settings.default.max_examples / 100 * float(os.environ.get("WSFAST_CODEC_EXAMPLES_SCALE", "1"))

pytestmark = pytest.mark.timeout(int(120 * max(1.0, _SCALE)))

KiB = 1024
MiB = 1024 * 1024
TAIL = b"\x00\x00\xff\xff"
RFC_KEY = bytes.fromhex("37fa213d")

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

needs_compiled = pytest.mark.skipif(_codec_c is None, reason="the compiled codec is not built")

IMPLS = [
    pytest.param(_codec_py, id="pure"),
    pytest.param(_codec_c, id="compiled", marks=needs_compiled),
]


@contextlib.contextmanager
def python_zlib():
    """The compiled codec inflating with Python's zlib module, as when it is built without
    zlib.h (Windows), instead of zlib's C API."""
    prev = _codec_c._use_c_zlib(False)
    try:
        yield _codec_c
    finally:
        _codec_c._use_c_zlib(prev)


@pytest.fixture(params=IMPLS)
def codec(request):
    if request.param == "compiled-pyzlib":
        with python_zlib() as compiled:
            yield compiled
    else:
        yield request.param


# The inflate tests run on a third path too: the compiled codec with Python's zlib.
DEFLATE_IMPLS = IMPLS + [pytest.param("compiled-pyzlib", id="compiled-pyzlib", marks=needs_compiled)]
deflate_paths = pytest.mark.parametrize("codec", DEFLATE_IMPLS, indirect=True)


def c_zlib(codec) -> bool:
    """True when parsers of ``codec`` made now inflate with zlib's C API."""
    return codec is _codec_c and _codec_c._use_c_zlib()


def hsettings(examples: int):
    """Settings for a hypothesis test worth ``examples`` examples under the "ci" profile
    (tests/conftest.py). Seeds and the example database come from the profile in force;
    the count is scaled by it (and by WSFAST_CODEC_EXAMPLES_SCALE)."""
    return settings(
        max_examples=max(1, int(examples * _SCALE)),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.data_too_large],
    )


# ---------------------------------------------------------------- helpers


def xor_ref(data: bytes, key: bytes) -> bytes:
    """The textbook byte-by-byte masking, to check the fast implementations against."""
    return bytes(b ^ key[i & 3] for i, b in enumerate(data))


def xor_fast(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if not n:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False,
          rsv2: bool = False, rsv3: bool = False, mask: Optional[bytes] = None,
          length: Optional[int] = None, form: Optional[int] = None) -> bytes:
    """A frame as a server sends it (unmasked unless ``mask``); ``length``/``form`` forge the header."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0) | (0x10 if rsv3 else 0)
    b0 |= opcode
    n = len(payload) if length is None else length
    mbit = 0x80 if mask is not None else 0
    if form is None:
        form = 7 if n < 126 else (16 if n < 65536 else 64)
    if form == 7:
        head = bytes([b0, mbit | n])
    elif form == 16:
        head = bytes([b0, mbit | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, mbit | 127]) + n.to_bytes(8, "big")
    if mask is not None:
        return head + mask + xor_fast(payload, mask)
    return head + payload


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def fragments(opcode: int, parts: Sequence[bytes], rsv1: bool = False) -> bytes:
    """One message as len(parts) frames (the first carries the opcode and RSV1)."""
    out = []
    for i, part in enumerate(parts):
        out.append(frame(opcode if i == 0 else OP_CONT, part, fin=i == len(parts) - 1,
                         rsv1=rsv1 and i == 0))
    return b"".join(out)


class ClientFrame(NamedTuple):
    fin: bool
    rsv1: bool
    opcode: int
    key: bytes
    payload: bytes     # unmasked


def read_client_frames(data: bytes) -> List[ClientFrame]:
    """Parse frames built by FrameEncoder (client frames: always masked)."""
    out = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        assert b1 & 0x80, "client frames must be masked"
        assert not b0 & 0x30
        n = b1 & 0x7F
        h = 2
        if n == 126:
            n = int.from_bytes(data[pos + 2:pos + 4], "big")
            h = 4
            assert n >= 126
        elif n == 127:
            n = int.from_bytes(data[pos + 2:pos + 10], "big")
            h = 10
            assert n >= 65536
        key = data[pos + h:pos + h + 4]
        body = data[pos + h + 4:pos + h + 4 + n]
        assert len(body) == n
        out.append(ClientFrame(bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, key, xor_fast(body, key)))
        pos += h + 4 + n
    return out


def unmask_stream(data: bytes) -> bytes:
    """Client frames turned into the same frames as a server would send them (unmasked)."""
    return b"".join(frame(f.opcode, f.payload, fin=f.fin, rsv1=f.rsv1) for f in read_client_frames(data))


class ServerDeflater:
    """permessage-deflate as a server does it: raw deflate, sync flush, tail stripped."""

    def __init__(self, wbits: int = 15, takeover: bool = True, level: int = 6) -> None:
        self.wbits, self.takeover, self.level = wbits, takeover, level
        self._c = self._new()

    def _new(self):
        return zlib.compressobj(self.level, zlib.DEFLATED, -self.wbits)

    def compress(self, data: bytes, final: bool = False) -> bytes:
        """``final``: end with a BFINAL block (RFC 7692 §7.2.3.3) and start afresh after it."""
        if final:
            out = self._c.compress(data) + self._c.flush(zlib.Z_FINISH)
            self._c = self._new()
            return out
        out = self._c.compress(data) + self._c.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(TAIL)
        if not self.takeover:
            self._c = self._new()
        return out[:-4]


def split(data: bytes, cuts: Sequence[int]) -> List[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(data)})
    out, prev = [], 0
    for p in points:
        out.append(data[prev:p])
        prev = p
    out.append(data[prev:])
    return out


def ctl(c) -> tuple:
    if c.type == "close":
        return ("close", c.code, c.reason)
    return (c.type, c.data)


class Result(NamedTuple):
    messages: list
    control: list
    error: Optional[Tuple[str, int, str]]
    closed: bool
    buffered: int


def summary(parser, messages) -> Result:
    err = parser.error
    error = None if err is None else (type(err).__name__, err.close_code, str(err))
    return Result([(m.type, m.data) for m in messages], [ctl(c) for c in parser.control],
                  error, parser.closed, parser.buffered)


def run(codec, chunks, **kw) -> Result:
    parser = codec.FrameParser(**kw)
    messages = []
    for chunk in chunks:
        messages.extend(parser.feed(chunk))
    return summary(parser, messages)


def run_bytes(codec, stream: bytes, step: int = 0, **kw) -> Result:
    if step:
        return run(codec, [stream[i:i + step] for i in range(0, len(stream), step)], **kw)
    return run(codec, [stream], **kw)


def error_code(result: Result) -> Optional[int]:
    return None if result.error is None else result.error[1]


def feed_until_error(codec, chunks, **kw) -> Tuple[object, Optional[int], list]:
    """Feed chunk by chunk; the index of the feed that set ``error`` (None if none did)."""
    parser = codec.FrameParser(**kw)
    messages = []
    for i, chunk in enumerate(chunks):
        messages.extend(parser.feed(chunk))
        if parser.error is not None:
            return parser, i, messages
    return parser, None, messages


# ---------------------------------------------------------------- RFC 6455 §5.7 examples


def test_rfc_single_frame_unmasked_text(codec):
    stream = bytes.fromhex("810548656c6c6f")
    assert frame(OP_TEXT, b"Hello") == stream
    p = codec.FrameParser()
    msgs = p.feed(stream)
    assert [(m.type, m.data) for m in msgs] == [("text", "Hello")]
    assert p.error is None and p.control == [] and p.buffered == 0


def test_rfc_single_frame_masked_text_is_what_the_encoder_sends(codec):
    rfc = bytes.fromhex("818537fa213d7f9f4d5158")
    assert codec.apply_mask(b"Hello", RFC_KEY) == rfc[6:]
    assert codec.apply_mask(rfc[6:], RFC_KEY) == b"Hello"
    sent = codec.FrameEncoder().encode_message("Hello")
    assert sent[:2] == rfc[:2] and len(sent) == len(rfc)
    assert codec.apply_mask(sent[6:], sent[2:6]) == b"Hello"
    # a server must not send it: masked server frames are a protocol error
    assert error_code(run_bytes(codec, rfc)) == 1002


def test_rfc_fragmented_unmasked_text(codec):
    first, second = bytes.fromhex("010348656c"), bytes.fromhex("80026c6f")
    assert fragments(OP_TEXT, [b"Hel", b"lo"]) == first + second
    p = codec.FrameParser()
    assert p.feed(first) == []
    msgs = p.feed(second)
    assert [(m.type, m.data) for m in msgs] == [("text", "Hello")]


def test_rfc_ping_and_masked_pong(codec):
    ping = bytes.fromhex("890548656c6c6f")
    p = codec.FrameParser()
    assert p.feed(ping) == []
    control = p.take_control()
    assert [ctl(c) for c in control] == [("ping", b"Hello")]
    assert control[0] == _codec_py.Ping(b"Hello")
    assert p.control == [] and p.take_control() == []
    pong = codec.FrameEncoder().encode_frame(OP_PONG, b"Hello")
    assert pong[:2] == bytes.fromhex("8a85")
    assert codec.apply_mask(pong[6:], pong[2:6]) == b"Hello"
    assert codec.apply_mask(b"Hello", RFC_KEY) == bytes.fromhex("7f9f4d5158")


def test_rfc_256_bytes_binary_16_bit_length(codec):
    payload = bytes(range(256))
    stream = bytes.fromhex("827e0100") + payload
    assert frame(OP_BINARY, payload) == stream
    assert run_bytes(codec, stream).messages == [("binary", payload)]
    sent = codec.FrameEncoder().encode_message(payload)
    assert sent[:4] == bytes.fromhex("82fe0100") and len(sent) == 8 + 256
    assert codec.apply_mask(sent[8:], sent[4:8]) == payload


def test_rfc_64kib_binary_64_bit_length(codec):
    payload = os.urandom(65536)
    stream = bytes.fromhex("827f0000000000010000") + payload
    assert frame(OP_BINARY, payload) == stream
    assert run_bytes(codec, stream).messages == [("binary", payload)]
    assert run_bytes(codec, stream, step=4096).messages == [("binary", payload)]
    sent = codec.FrameEncoder().encode_message(payload)
    assert sent[:10] == bytes.fromhex("82ff0000000000010000") and len(sent) == 14 + 65536
    assert codec.apply_mask(sent[14:], sent[10:14]) == payload


@pytest.mark.parametrize("n", [0, 1, 125, 126, 65535, 65536, 70000])
def test_length_forms_at_the_boundaries(codec, n):
    payload = bytes([n & 0xFF]) * n
    stream = frame(OP_BINARY, payload)
    assert run_bytes(codec, stream).messages == [("binary", payload)]
    f = read_client_frames(codec.FrameEncoder().encode_message(payload))
    assert f == [ClientFrame(True, False, OP_BINARY, f[0].key, payload)]


def test_non_minimal_length_forms_are_accepted(codec):
    stream = frame(OP_TEXT, b"hi", form=16) + frame(OP_TEXT, b"yo", form=64)
    assert run_bytes(codec, stream).messages == [("text", "hi"), ("text", "yo")]


# ---------------------------------------------------------------- protocol errors (1002)


@pytest.mark.parametrize("bits", [(True, False, False), (False, True, False), (False, False, True)],
                         ids=["rsv1", "rsv2", "rsv3"])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_PING, OP_CLOSE])
def test_reserved_bits_without_an_extension(codec, bits, opcode):
    rsv1, rsv2, rsv3 = bits
    stream = frame(OP_TEXT, b"ok") + frame(opcode, b"", rsv1=rsv1, rsv2=rsv2, rsv3=rsv3)
    r = run_bytes(codec, stream)
    assert r.messages == [("text", "ok")]
    assert r.error[:2] == ("ProtocolError", 1002)


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_PING, OP_PONG, OP_CLOSE, OP_CONT])
def test_rsv2_rsv3_fail_even_with_deflate(codec, opcode):
    for kw in ({"rsv2": True}, {"rsv3": True}):
        stream = frame(OP_TEXT, b"a", fin=False) + frame(opcode, b"", **kw)
        assert error_code(run_bytes(codec, stream, compressed=True)) == 1002


def test_rsv1_on_control_or_continuation_fails_with_deflate(codec):
    assert error_code(run_bytes(codec, frame(OP_PING, b"", rsv1=True), compressed=True)) == 1002
    stream = frame(OP_TEXT, b"a", fin=False) + frame(OP_CONT, b"b", rsv1=True)
    assert error_code(run_bytes(codec, stream, compressed=True)) == 1002


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_unknown_opcodes(codec, opcode):
    assert error_code(run_bytes(codec, frame(opcode, b"x"))) == 1002
    assert error_code(run_bytes(codec, frame(opcode, b"", fin=False))) == 1002
    # the header alone is enough
    assert error_code(run_bytes(codec, frame(opcode, b"")[:2])) == 1002
    # inside a fragmented message too
    stream = frame(OP_TEXT, b"a", fin=False) + frame(opcode, b"x")
    assert error_code(run_bytes(codec, stream)) == 1002


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_PING, OP_PONG, OP_CLOSE])
def test_masked_server_frames(codec, opcode):
    stream = frame(opcode, b"\x03\xe8", mask=b"\x01\x02\x03\x04")
    assert error_code(run_bytes(codec, stream)) == 1002
    assert error_code(run_bytes(codec, stream[:2])) == 1002


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_control_frame_over_125_bytes(codec, opcode):
    payload = close_payload(1000, b"x" * 124)
    assert len(payload) == 126
    assert error_code(run_bytes(codec, frame(opcode, payload))) == 1002
    assert error_code(run_bytes(codec, frame(opcode, payload)[:2])) == 1002   # header is enough
    assert error_code(run_bytes(codec, frame(opcode, b"\x03\xe8", length=2, form=16))) == 1002
    assert error_code(run_bytes(codec, frame(opcode, b"\x03\xe8", length=2, form=64))) == 1002
    ok = close_payload(1000, b"x" * 123)
    r = run_bytes(codec, frame(opcode, ok))
    assert r.error is None and len(r.control) == 1


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_fragmented_control_frame(codec, opcode):
    assert error_code(run_bytes(codec, frame(opcode, b"", fin=False))) == 1002
    stream = frame(OP_TEXT, b"a", fin=False) + frame(opcode, b"", fin=False)
    assert error_code(run_bytes(codec, stream)) == 1002


def test_continuation_with_no_message_open(codec):
    assert error_code(run_bytes(codec, frame(OP_CONT, b"x"))) == 1002
    assert error_code(run_bytes(codec, frame(OP_CONT, b"x", fin=False))) == 1002
    stream = frame(OP_TEXT, b"done") + frame(OP_CONT, b"more")
    r = run_bytes(codec, stream)
    assert r.messages == [("text", "done")] and error_code(r) == 1002


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_new_data_frame_inside_a_fragmented_message(codec, opcode):
    stream = frame(OP_BINARY, b"a", fin=False) + frame(opcode, b"b")
    assert error_code(run_bytes(codec, stream)) == 1002
    assert error_code(run_bytes(codec, stream, compressed=True)) == 1002


def test_64_bit_length_with_the_top_bit_set(codec):
    header = bytes([0x82, 127]) + (1 << 63 | 5).to_bytes(8, "big")
    assert error_code(run_bytes(codec, header)) == 1002
    assert error_code(run_bytes(codec, header, step=1)) == 1002
    header = bytes([0x82, 127]) + (2 ** 64 - 1).to_bytes(8, "big")
    assert error_code(run_bytes(codec, header)) == 1002
    # the largest legal length is not a 1002 but over any read limit: 1009
    header = bytes([0x82, 127]) + (2 ** 63 - 1).to_bytes(8, "big")
    assert error_code(run_bytes(codec, header)) == 1009


def test_messages_before_the_error_are_returned_and_then_nothing(codec):
    stream = frame(OP_TEXT, b"one") + frame(OP_PING, b"p") + frame(OP_BINARY, b"two") + frame(5, b"")
    p = codec.FrameParser()
    msgs = p.feed(stream + frame(OP_TEXT, b"never"))
    assert [(m.type, m.data) for m in msgs] == [("text", "one"), ("binary", b"two")]
    assert [ctl(c) for c in p.control] == [("ping", b"p")]
    assert isinstance(p.error, ProtocolError) and p.error.close_code == 1002
    assert p.error.retryable is True
    assert p.feed(frame(OP_TEXT, b"later")) == []
    assert p.buffered == 0


# ---------------------------------------------------------------- close frames


VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
               3000, 3999, 4000, 4999]
INVALID_CODES = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@pytest.mark.parametrize("code", VALID_CODES)
def test_valid_close_codes(codec, code):
    assert codec.is_valid_close_code(code)
    r = run_bytes(codec, frame(OP_CLOSE, close_payload(code, "bye ✓".encode())))
    assert r.control == [("close", code, "bye ✓")] and r.closed and r.error is None


@pytest.mark.parametrize("code", INVALID_CODES)
def test_invalid_close_codes(codec, code):
    assert not codec.is_valid_close_code(code)
    r = run_bytes(codec, frame(OP_CLOSE, close_payload(code)))
    assert error_code(r) == 1002 and r.control == []


def test_close_without_code_is_1005(codec):
    r = run_bytes(codec, frame(OP_CLOSE))
    assert r.control == [("close", 1005, "")] and r.closed
    assert r.control[0] == ("close", 1005, "")


def test_close_with_a_1_byte_payload(codec):
    assert error_code(run_bytes(codec, frame(OP_CLOSE, b"\x03"))) == 1002


@pytest.mark.parametrize("reason", [b"\xff", b"ok\xc3", b"\xed\xa0\x80", b"\xc0\xaf"])
def test_close_reason_invalid_utf8(codec, reason):
    r = run_bytes(codec, frame(OP_CLOSE, close_payload(1000, reason)))
    assert error_code(r) == 1007 and not r.closed


def test_after_close_the_rest_is_ignored(codec):
    stream = (frame(OP_TEXT, b"a") + frame(OP_CLOSE, close_payload(1001, b"away"))
              + frame(OP_TEXT, b"b") + frame(5, b"junk"))
    p = codec.FrameParser()
    msgs = p.feed(stream)
    assert [(m.type, m.data) for m in msgs] == [("text", "a")]
    assert [ctl(c) for c in p.control] == [("close", 1001, "away")]
    assert p.closed and p.error is None and p.buffered == 0
    assert p.feed(frame(OP_TEXT, b"c")) == []


def test_close_inside_a_fragmented_message(codec):
    stream = frame(OP_TEXT, b"part", fin=False) + frame(OP_CLOSE, close_payload(1000))
    r = run_bytes(codec, stream)
    assert r.messages == [] and r.control == [("close", 1000, "")] and r.closed


# ---------------------------------------------------------------- UTF-8 (1007)


@pytest.mark.parametrize("payload", [b"\xff", b"abc\x80", b"\xc0\xaf", b"\xe0\x80\x80",
                                     b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80",
                                     b"ok\xe2\x82", b"\xf0\x9f\x98"])
def test_invalid_utf8_single_frame(codec, payload):
    r = run_bytes(codec, frame(OP_TEXT, b"fine") + frame(OP_TEXT, payload))
    assert r.messages == [("text", "fine")] and error_code(r) == 1007
    big = b"x" * 70000 + payload     # the GIL-free validator of large payloads
    assert error_code(run_bytes(codec, frame(OP_TEXT, big))) == 1007
    assert not codec.validate_utf8(payload) and not codec.validate_utf8(big)


# (fragments, index of the fragment where the bytes become impossible)
FAIL_FAST = [
    ([b"caf\xc3", b"\xa9 ok ", b"\xff"], 2),
    ([b"\xe0", b"\x80"], 1),
    ([b"\xe0", b"\x9f"], 1),
    ([b"ab\xed", b"\xa0", b"\x80"], 1),          # a UTF-16 surrogate half
    ([b"ab\xed\xbf"], 0),
    ([b"\xf0", b"\x8f"], 1),
    ([b"\xf4", b"\x90"], 1),
    ([b"\xf0\x90", b"\x80", b"\x7f"], 2),
    ([b"x", b"\xc0"], 1),
    ([b"x", b"\xc1"], 1),
    ([b"\xf5"], 0),
    ([b"fine", b"\xe2\x82", b"f"], 2),
    ([b"fine", b"still fine", b"\x80"], 2),
    ([b"\xf0\x9f", b"\x98", b"\x80\x80"], 2),
]


@pytest.mark.parametrize("parts, bad", FAIL_FAST)
def test_invalid_utf8_fails_fast_across_fragments(codec, parts, bad):
    # every fragment is a non-final frame: the error must come before the message ends
    frames = [frame(OP_TEXT if i == 0 else OP_CONT, part, fin=False) for i, part in enumerate(parts)]
    parser, at, msgs = feed_until_error(codec, frames)
    assert at == bad and parser.error.close_code == 1007 and msgs == []
    # and inside one feed, with frames that complete earlier messages first
    stream = frame(OP_TEXT, b"before") + b"".join(frames)
    r = run_bytes(codec, stream)
    assert r.messages == [("text", "before")] and error_code(r) == 1007
    # compressed fragments fail as fast (the check runs on the inflated bytes)
    d = zlib.compressobj(6, zlib.DEFLATED, -15)
    cframes = []
    for i, part in enumerate(parts):
        data = d.compress(part) + d.flush(zlib.Z_SYNC_FLUSH)
        cframes.append(frame(OP_TEXT if i == 0 else OP_CONT, data, fin=False, rsv1=i == 0))
    parser, at, msgs = feed_until_error(codec, cframes, compressed=True)
    assert at == bad and parser.error.close_code == 1007


def test_incomplete_utf8_at_the_end_of_a_fragmented_message(codec):
    frames = [frame(OP_TEXT, b"ab", fin=False), frame(OP_CONT, b"\xe2\x82", fin=False),
              frame(OP_CONT, b"")]
    parser, at, _ = feed_until_error(codec, frames)
    assert at == 2 and parser.error.close_code == 1007


@pytest.mark.parametrize("unit", ["plain ascii ", "latin-1 é ", "кириллица ", "日本語 ", "emoji 😀 ",
                                  "mix é ж 語 😀 "])
@pytest.mark.parametrize("step", [997, 4096])
def test_fragmented_text_across_the_decode_threshold(codec, unit, step):
    # Up to 64 KiB, fragmented text is decoded as it arrives; past that the parser only
    # validates and decodes the bytes at the end. The switch lands inside sequences.
    text = unit * (100_000 // len(unit.encode()))
    data = text.encode()
    parts = [data[i:i + step] for i in range(0, len(data), step)]
    r = run_bytes(codec, fragments(OP_TEXT, parts))
    assert r.error is None and r.messages == [("text", text)]
    for small in (text[:50], text[:3000]):   # and the narrowest kind when decoded whole
        raw = small.encode()
        r = run_bytes(codec, fragments(OP_TEXT, [raw[:7], raw[7:]]))
        assert r.messages == [("text", small)]
        assert r.messages[0][1].encode() == raw and len(r.messages[0][1]) == len(small)
    # an invalid byte before and after the switch still fails at its own fragment
    for at in (10_000, 90_000):
        bad = bytearray(data)
        bad[at] = 0xFF
        frames = [frame(OP_TEXT if i == 0 else OP_CONT, bytes(bad[i:i + step]), fin=False)
                  for i in range(0, len(bad), step)]
        parser, index, msgs = feed_until_error(codec, frames)
        assert index == at // step and parser.error.close_code == 1007 and msgs == []


@pytest.mark.parametrize("text", ["€uro", "😀 emoji", "ascii only", "ünïcödé", "日本語テキスト", ""])
def test_valid_utf8_split_everywhere(codec, text):
    data = text.encode()
    for i in range(len(data) + 1):
        for j in range(i, len(data) + 1):
            stream = fragments(OP_TEXT, [data[:i], data[i:j], data[j:]])
            r = run_bytes(codec, stream)
            assert r.messages == [("text", text)] and r.error is None, (i, j)


# ---------------------------------------------------------------- read limit (1009)


def test_read_limit_from_the_header_alone(codec):
    header = frame(OP_BINARY, b"", length=2 * MiB)
    assert len(header) == 10
    p = codec.FrameParser(read_limit=MiB)
    assert p.feed(header) == []
    assert p.error.close_code == 1009
    r = run_bytes(codec, frame(OP_TEXT, b"", length=101)[:4], read_limit=100)
    assert error_code(r) == 1009


def test_read_limit_boundary(codec):
    r = run_bytes(codec, frame(OP_TEXT, b"x" * 100), read_limit=100)
    assert r.messages == [("text", "x" * 100)] and r.error is None
    assert error_code(run_bytes(codec, frame(OP_TEXT, b"x" * 101), read_limit=100)) == 1009
    assert codec.FrameParser(read_limit=0).read_limit == 16 * MiB
    assert codec.FrameParser(read_limit=-5).read_limit == 16 * MiB


def test_read_limit_accumulated_across_fragments(codec):
    p = codec.FrameParser(read_limit=MiB)
    assert p.feed(frame(OP_BINARY, bytes(600 * KiB), fin=False)) == []
    assert p.error is None
    assert p.feed(frame(OP_CONT, bytes(400 * KiB), fin=False)) == []
    assert p.error is None
    # the continuation that crosses the limit fails at its header
    assert p.feed(frame(OP_CONT, b"", length=25 * KiB)) == []
    assert p.error.close_code == 1009
    ok = fragments(OP_BINARY, [bytes(600 * KiB), bytes(424 * KiB)])
    assert run_bytes(codec, ok, read_limit=MiB).messages == [("binary", bytes(MiB))]


@functools.lru_cache(maxsize=None)  # noqa: UP033 (3.9)
def zero_bomb(mib: int = 100) -> bytes:
    """``mib`` MiB of zeros, deflated (about 100 KiB), without building the zeros at once."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(MiB)
    parts = [c.compress(block) for _ in range(mib)]
    parts.append(c.flush(zlib.Z_SYNC_FLUSH))
    data = b"".join(parts)
    assert data.endswith(TAIL)
    return data[:-4]


def _peak_while(fn):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak


@deflate_paths
@pytest.mark.parametrize("opcode", [OP_BINARY, OP_TEXT])
def test_decompression_bomb_single_frame(codec, opcode):
    bomb = zero_bomb()
    assert len(bomb) < 200 * KiB
    stream = frame(opcode, bomb, rsv1=True)
    parser = codec.FrameParser(read_limit=MiB, compressed=True)
    msgs, peak = _peak_while(lambda: parser.feed(stream))
    assert msgs == [] and parser.error.close_code == 1009
    assert peak < 6 * MiB, f"peak {peak / MiB:.1f} MiB while inflating a 100 MiB bomb"
    if c_zlib(codec):   # inflated into one buffer of at most read_limit + 1 bytes
        assert peak < MiB + 64 * KiB, f"peak {peak / MiB:.2f} MiB"


@deflate_paths
def test_decompression_bomb_fragmented(codec):
    bomb = zero_bomb()
    n = len(bomb) // 10 + 1
    parts = [bomb[i:i + n] for i in range(0, len(bomb), n)]
    stream = fragments(OP_BINARY, parts, rsv1=True)
    chunks = [stream[i:i + 64 * KiB] for i in range(0, len(stream), 64 * KiB)]

    def feed_all():
        parser = codec.FrameParser(read_limit=MiB, compressed=True)
        for chunk in chunks:
            assert parser.feed(chunk) == []
        return parser

    parser, peak = _peak_while(feed_all)
    assert parser.error.close_code == 1009
    assert peak < 6 * MiB, f"peak {peak / MiB:.1f} MiB while inflating a 100 MiB bomb"
    if c_zlib(codec):   # plus a partial frame of the chunk being fed
        assert peak < MiB + 128 * KiB, f"peak {peak / MiB:.2f} MiB"


@deflate_paths
def test_inflated_size_exactly_at_the_limit(codec):
    data = b"abc" * 1000
    payload = ServerDeflater().compress(data)
    r = run_bytes(codec, frame(OP_BINARY, payload, rsv1=True), read_limit=3000, compressed=True)
    assert r.messages == [("binary", data)]
    r = run_bytes(codec, frame(OP_BINARY, payload, rsv1=True), read_limit=2999, compressed=True)
    assert error_code(r) == 1009


def test_compressed_wire_size_over_the_limit_fails_at_the_header(codec):
    header = frame(OP_BINARY, b"", rsv1=True, length=4 * MiB)
    assert error_code(run_bytes(codec, header, read_limit=MiB, compressed=True)) == 1009
    # while a compressed frame a little over read_limit passes its header (it may inflate to less)
    parser = codec.FrameParser(read_limit=MiB, compressed=True)
    assert parser.feed(frame(OP_BINARY, b"", rsv1=True, length=MiB + 1)[:10]) == []
    assert parser.error is None


def test_sixteen_mib_messages(codec):
    big = bytes(range(256)) * (64 * KiB)
    assert len(big) == 16 * MiB
    stream = frame(OP_BINARY, big)
    r = run_bytes(codec, stream, step=64 * KiB)
    assert r.error is None and len(r.messages) == 1 and r.messages[0][1] == big
    unit = "price ✓ ".encode()
    data = unit * (16 * MiB // len(unit))
    data += b"z" * (16 * MiB - len(data))
    parts = [data[i:i + 3 * MiB + 1] for i in range(0, len(data), 3 * MiB + 1)]
    r = run_bytes(codec, fragments(OP_TEXT, parts), step=256 * KiB)
    assert r.error is None and r.messages[0][1] == data.decode()
    # one byte more: 1009, from the header
    r = run_bytes(codec, frame(OP_BINARY, b"", length=16 * MiB + 1))
    assert error_code(r) == 1009
    # the encoder side: 16 MiB round trip
    sent = codec.FrameEncoder().encode_message(big)
    assert run_bytes(codec, unmask_stream(sent), step=MiB).messages == [("binary", big)]


# ---------------------------------------------------------------- streaming


def mixed_stream() -> Tuple[bytes, list, list]:
    """A stream with every kind of frame; its messages and control frames."""
    euro = "price: 12€ 😀".encode()
    stream = b"".join([
        frame(OP_TEXT, b"hello"),
        frame(OP_PING, b"p1"),
        fragments(OP_TEXT, [euro[:8], euro[8:10], euro[10:]]),
        frame(OP_BINARY, bytes(range(200))),
        frame(OP_TEXT, b"x" * 300, fin=False),
        frame(OP_PONG, b""),
        frame(OP_CONT, b"y" * 70000, fin=False),
        frame(OP_PING, b"p2" * 60),
        frame(OP_CONT, b"z"),
        frame(OP_BINARY, b""),
        frame(OP_TEXT, b""),
        frame(OP_CLOSE, close_payload(1000, b"done")),
        frame(OP_TEXT, b"ignored"),
    ])
    messages = [("text", "hello"), ("text", euro.decode()), ("binary", bytes(range(200))),
                ("text", "x" * 300 + "y" * 70000 + "z"), ("binary", b""), ("text", "")]
    control = [("ping", b"p1"), ("pong", b""), ("ping", b"p2" * 60), ("close", 1000, "done")]
    return stream, messages, control


def test_stream_fed_one_byte_at_a_time(codec):
    stream, messages, control = mixed_stream()
    whole = run_bytes(codec, stream)
    assert whole == Result(messages, control, None, True, 0)
    assert run_bytes(codec, stream, step=1) == whole
    assert run_bytes(codec, stream, step=7) == whole


def test_control_frames_interleaved_in_a_fragmented_message(codec):
    stream = b"".join([
        frame(OP_BINARY, b"ab", fin=False), frame(OP_PING, b"1"), frame(OP_CONT, b"cd", fin=False),
        frame(OP_PONG, b"2"), frame(OP_PING, b""), frame(OP_CONT, b"ef"),
    ])
    p = codec.FrameParser()
    msgs = p.feed(stream)
    assert [(m.type, m.data) for m in msgs] == [("binary", b"abcdef")]
    assert [ctl(c) for c in p.take_control()] == [("ping", b"1"), ("pong", b"2"), ("ping", b"")]


def test_feed_accepts_any_bytes_like(codec):
    stream = frame(OP_TEXT, b"abc") + frame(OP_BINARY, b"def")
    for data in (stream, bytearray(stream), memoryview(stream), memoryview(bytearray(b"??" + stream))[2:]):
        p = codec.FrameParser()
        assert [(m.type, m.data) for m in p.feed(data)] == [("text", "abc"), ("binary", b"def")]
    p = codec.FrameParser()
    assert p.feed(b"") == [] and p.buffered == 0


def test_partial_frame_is_buffered_and_reused_buffer_is_safe(codec):
    stream = frame(OP_BINARY, b"0123456789")
    buf = bytearray(8)
    p = codec.FrameParser()
    buf[:5] = stream[:5]
    assert p.feed(memoryview(buf)[:5]) == [] and p.buffered == 5
    buf[:] = b"\xee" * 8          # the caller reuses its receive buffer
    buf[:7] = stream[5:]
    msgs = p.feed(memoryview(buf)[:7])
    assert [(m.type, m.data) for m in msgs] == [("binary", b"0123456789")]
    assert p.buffered == 0


def test_message_objects(codec):
    p = codec.FrameParser()
    m, = p.feed(frame(OP_TEXT, b"hi"))
    assert m.type == "text" and m.data == "hi"
    assert m == _codec_py.Message("text", "hi") and m != _codec_py.Message("binary", b"hi")
    assert "hi" in repr(m)


def test_compiled_messages_stay_out_of_the_cyclic_gc():
    # A stream makes one Message per frame; tracked, they would trigger a collection
    # every 700 messages. Untracked is safe only while data cannot hold a reference.
    compiled = pytest.importorskip("wsfast._codec")
    m, = compiled.FrameParser().feed(frame(OP_TEXT, b"hi"))
    assert not gc.is_tracked(m)
    assert compiled.Message("binary", b"x").data == b"x"
    for bad in ([], bytearray(b"x"), None):
        with pytest.raises(TypeError):
            compiled.Message("binary", bad)


# ---------------------------------------------------------------- permessage-deflate (inflate)


TICKS = [f'{{"type":"ticker","symbol":"BTC-USD","price":"{43000 + i * 7}.{i % 100:02d}",'
         f'"size":"0.0{i % 9}","seq":{1000 + i}}}' for i in range(40)]


@deflate_paths
@pytest.mark.parametrize("takeover", [True, False], ids=["takeover", "no-takeover"])
def test_inflate_messages(codec, takeover):
    d = ServerDeflater(takeover=takeover)
    stream = b"".join(frame(OP_TEXT, d.compress(t.encode()), rsv1=True) for t in TICKS)
    r = run_bytes(codec, stream, compressed=True, no_context_takeover=not takeover)
    assert r.error is None and r.messages == [("text", t) for t in TICKS]
    assert run_bytes(codec, stream, step=5, compressed=True, no_context_takeover=not takeover) == r
    if takeover:
        # with the server's context carried over, later messages are tiny back-references
        fresh = ServerDeflater()
        sizes = [len(fresh.compress(TICKS[0].encode())) for _ in range(3)]
        assert sizes[1] < sizes[0] // 2
        # and a parser that resets its context cannot read them
        r = run_bytes(codec, stream, compressed=True, no_context_takeover=True)
        assert error_code(r) == 1007 and r.messages[0] == ("text", TICKS[0])


@deflate_paths
def test_inflate_fragmented_compressed_messages(codec):
    d = ServerDeflater()
    messages, frames = [], []
    for i, t in enumerate(TICKS[:10]):
        data = (t * (i + 1)).encode()
        payload = d.compress(data)
        cut1, cut2 = len(payload) // 3, 2 * len(payload) // 3
        frames.append(fragments(OP_BINARY if i % 2 else OP_TEXT,
                                [payload[:cut1], payload[cut1:cut2], b"", payload[cut2:]], rsv1=True))
        frames.append(frame(OP_PING, str(i).encode()))
        messages.append(("binary", data) if i % 2 else ("text", data.decode()))
    stream = b"".join(frames)
    r = run_bytes(codec, stream, compressed=True)
    assert r.error is None and r.messages == messages and len(r.control) == 10
    assert run_bytes(codec, stream, step=1, compressed=True) == r


@deflate_paths
def test_uncompressed_messages_mixed_with_compressed(codec):
    d = ServerDeflater()
    stream = b"".join([
        frame(OP_TEXT, d.compress(TICKS[0].encode()), rsv1=True),
        frame(OP_TEXT, TICKS[1].encode()),             # RSV1 clear: sent as is
        fragments(OP_BINARY, [b"raw", b"bytes"]),
        frame(OP_TEXT, d.compress(TICKS[2].encode()), rsv1=True),
    ])
    r = run_bytes(codec, stream, compressed=True)
    assert r.messages == [("text", TICKS[0]), ("text", TICKS[1]), ("binary", b"rawbytes"),
                          ("text", TICKS[2])]


@deflate_paths
@pytest.mark.parametrize("wbits", [9, 10, 12, 15])
def test_server_max_window_bits(codec, wbits):
    d = ServerDeflater(wbits=wbits)
    # repeats at distances of 400 and 3000 bytes: inside or beyond the window
    rnd = random.Random(wbits)
    block = bytes(rnd.getrandbits(8) for _ in range(400))
    far = bytes(rnd.getrandbits(8) for _ in range(3000))
    data = [block * 5, far * 3, block + far]
    stream = b"".join(frame(OP_BINARY, d.compress(x), rsv1=True) for x in data)
    for parser_bits in sorted({wbits, 15}):
        r = run_bytes(codec, stream, compressed=True, max_window_bits=parser_bits)
        assert r.error is None and r.messages == [("binary", x) for x in data]


@deflate_paths
def test_invalid_compressed_data_is_1007(codec):
    r = run_bytes(codec, frame(OP_BINARY, b"\xff\xff\xff\xff", rsv1=True), compressed=True)
    assert error_code(r) == 1007
    assert r.error[2] == "invalid compressed data: Error -3 while decompressing data: invalid block type"
    # in the last fragment of a message, after a good one: LEN and NLEN of the sync flush's
    # empty stored block do not match
    d = ServerDeflater()
    good, ok = d.compress(TICKS[0].encode()), d.compress(TICKS[1].encode())
    stream = frame(OP_TEXT, good, rsv1=True) + fragments(OP_TEXT, [ok, b"\x01\x00\x00\x00"], rsv1=True)
    for step in (0, 1):
        r = run_bytes(codec, stream, step=step, compressed=True)
        assert r.messages == [("text", TICKS[0])] and error_code(r) == 1007
        assert r.error[2] == ("invalid compressed data: Error -3 while decompressing data: "
                              "invalid stored block lengths")


@deflate_paths
def test_final_deflate_block_resets_the_context(codec):
    # a server may end each message with a final block: the parser starts afresh after it
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    first = c.compress(b"hello hello") + c.flush(zlib.Z_FINISH)
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    second = c.compress(b"world") + c.flush(zlib.Z_SYNC_FLUSH)
    stream = frame(OP_TEXT, first, rsv1=True) + frame(OP_TEXT, second[:-4], rsv1=True)
    r = run_bytes(codec, stream, compressed=True)
    assert r.messages == [("text", "hello hello"), ("text", "world")]


@deflate_paths
@pytest.mark.parametrize("takeover", [True, False], ids=["takeover", "no-takeover"])
def test_final_blocks_between_messages(codec, takeover):
    # every third message ends the stream; the server starts a new one for the next
    d = ServerDeflater(takeover=takeover)
    texts = [TICKS[i % len(TICKS)] * (1 + i % 3) for i in range(60)]
    payloads = [d.compress(t.encode(), final=i % 3 == 1) for i, t in enumerate(texts)]
    stream = b"".join(frame(OP_TEXT, p, rsv1=True) for p in payloads)
    want = [("text", t) for t in texts]
    for step in (0, 1, 9):
        r = run_bytes(codec, stream, step=step, compressed=True, no_context_takeover=not takeover)
        assert r.error is None and r.messages == want
    # a final message cut anywhere: the tail comes after the end of the stream
    final = payloads[1]
    for cut in range(len(final) + 1):
        stream = b"".join([frame(OP_TEXT, payloads[0], rsv1=True),
                           fragments(OP_TEXT, [final[:cut], final[cut:]], rsv1=True),
                           frame(OP_TEXT, payloads[2], rsv1=True)])
        r = run_bytes(codec, stream, compressed=True, no_context_takeover=not takeover)
        assert r.error is None and r.messages == want[:3], cut


@deflate_paths
def test_bytes_after_the_final_block_are_ignored(codec):
    # as Python's zlib keeps them aside (unused_data): the message ends at the final block
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    first = c.compress(b"hello hello") + c.flush(zlib.Z_FINISH)
    second = ServerDeflater().compress(b"world")
    stream = (fragments(OP_TEXT, [first + b"junk", b"\xff\xff"], rsv1=True)
              + frame(OP_TEXT, second, rsv1=True))
    r = run_bytes(codec, stream, compressed=True)
    assert r.error is None and r.messages == [("text", "hello hello"), ("text", "world")]


@deflate_paths
@pytest.mark.parametrize("takeover", [True, False], ids=["takeover", "no-takeover"])
def test_many_compressed_messages(codec, takeover):
    # many times the 32 KiB window: back-references reach across messages, the window wraps
    rnd = random.Random(11)
    d = ServerDeflater(takeover=takeover)
    messages, frames = [], []
    for i in range(3000):
        if i % 7 == 3:
            data = rnd.randbytes(rnd.randrange(0, 400)) + bytes(rnd.randrange(0, 400))
            messages.append(("binary", data))
        elif i % 500 == 250:      # large: inflated with the GIL released
            data = (TICKS[i % len(TICKS)] * 2000).encode()
            messages.append(("text", data.decode()))
        else:
            text = TICKS[i % len(TICKS)].replace("seq", f"seq{i}é")
            data = text.encode()
            messages.append(("text", text))
        frames.append(frame(OP_BINARY if i % 7 == 3 else OP_TEXT, d.compress(data), rsv1=True))
    stream = b"".join(frames)
    chunks = split(stream, [rnd.randrange(len(stream)) for _ in range(300)])
    r = run(codec, chunks, compressed=True, no_context_takeover=not takeover)
    assert r.error is None and r.messages == messages


@deflate_paths
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_compressed_message_split_at_every_offset(codec, opcode):
    # between two other messages (the context carries over), in two fragments cut at every
    # byte, then in three; cuts fall inside what inflates to UTF-8 sequences too
    rnd = random.Random(3)
    text = "".join(rnd.choice("abcdefgh €😀é{}:,0123456789") for _ in range(900))
    d = ServerDeflater()
    before, middle, after = (d.compress(x.encode()) for x in (TICKS[0], text, TICKS[1]))
    assert len(middle) > 600      # last fragments both under and over 512 bytes
    want = [("text", TICKS[0]), ("text", text) if opcode == OP_TEXT else ("binary", text.encode()),
            ("text", TICKS[1])]
    head, tail = frame(OP_TEXT, before, rsv1=True), frame(OP_TEXT, after, rsv1=True)
    for cut in range(len(middle) + 1):
        stream = head + fragments(opcode, [middle[:cut], middle[cut:]], rsv1=True) + tail
        r = run_bytes(codec, stream, compressed=True)
        assert r.error is None and r.messages == want, cut
    for cut in range(0, len(middle) + 1, 5):
        parts = [middle[:cut // 3], middle[cut // 3:cut], b"", middle[cut:]]
        r = run_bytes(codec, head + fragments(opcode, parts, rsv1=True) + tail, compressed=True)
        assert r.error is None and r.messages == want, cut


@deflate_paths
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_inflated_size_exactly_at_the_limit_fragmented(codec, opcode):
    data = ("".join(TICKS) * 40).encode()[:100 * KiB]
    payload = ServerDeflater().compress(data)
    stream = fragments(opcode, split(payload, [len(payload) // 3, 2 * len(payload) // 3]), rsv1=True)
    r = run_bytes(codec, stream, compressed=True, read_limit=len(data))
    assert r.error is None and len(r.messages) == 1 and len(r.messages[0][1]) == len(data)
    r = run_bytes(codec, stream, compressed=True, read_limit=len(data) - 1)
    assert error_code(r) == 1009 and "after inflate" in r.error[2]
    # an uncompressed message first grew the buffer past the limit: still 3000 bytes, not 3001
    first = fragments(OP_BINARY, [b"x" * 1000, b"y" * 2000])
    for size, code in ((3000, None), (3001, 1009)):
        stream = first + frame(opcode, ServerDeflater().compress(b"z" * size), rsv1=True)
        r = run_bytes(codec, stream, compressed=True, read_limit=3000)
        assert error_code(r) == code and r.messages[0] == ("binary", b"x" * 1000 + b"y" * 2000)


@needs_compiled
def test_c_zlib_switch():
    assert isinstance(_codec_c.CZLIB, bool)
    before = _codec_c._use_c_zlib()
    assert before is (_codec_c.CZLIB and os.environ.get("WSFAST_PY_ZLIB", "") in ("", "0"))
    with python_zlib():
        assert _codec_c._use_c_zlib() is False
    assert _codec_c._use_c_zlib() is before


# ---------------------------------------------------------------- encoder


def roundtrip(codec, encoder, items, **parser_kw) -> list:
    wire = b"".join(encoder.encode_message(x) for x in items)
    r = run_bytes(codec, unmask_stream(wire), **parser_kw)
    assert r.error is None
    return r.messages


def expected(items) -> list:
    return [("text", x) if isinstance(x, str) else ("binary", bytes(x)) for x in items]


ITEMS = ["", "a", "hello ✓", TICKS[0], TICKS[1] * 20, b"", b"\x00" * 126, bytes(range(256)) * 300,
         bytearray(b"mutable"), memoryview(b"view")]


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("fragment_size", [0, 1, 100, 65536])
def test_encoder_round_trip(codec, compressed, fragment_size):
    enc = codec.FrameEncoder(compressed=compressed, threshold=0, fragment_size=fragment_size)
    assert roundtrip(codec, enc, ITEMS, compressed=True) == expected(ITEMS)


def test_encoder_fragments(codec):
    enc = codec.FrameEncoder(fragment_size=4)
    frames = read_client_frames(enc.encode_message("abcdefghij"))
    assert [(f.fin, f.opcode, f.payload) for f in frames] == [
        (False, OP_TEXT, b"abcd"), (False, OP_CONT, b"efgh"), (True, OP_CONT, b"ij")]
    frames = read_client_frames(enc.encode_message(b"abcd"))
    assert [(f.fin, f.opcode, f.payload) for f in frames] == [(True, OP_BINARY, b"abcd")]
    enc = codec.FrameEncoder(compressed=True, threshold=0, fragment_size=3)
    frames = read_client_frames(enc.encode_message("x" * 100))
    assert len(frames) > 1 and frames[0].rsv1 and not any(f.rsv1 for f in frames[1:])
    assert [f.opcode for f in frames] == [OP_TEXT] + [OP_CONT] * (len(frames) - 1)


def test_encoder_opcode_override_and_types(codec):
    enc = codec.FrameEncoder()
    f, = read_client_frames(enc.encode_message(b"bytes as text", OP_TEXT))
    assert (f.opcode, f.payload) == (OP_TEXT, b"bytes as text")
    f, = read_client_frames(enc.encode_message("str as binary", OP_BINARY))
    assert (f.opcode, f.payload) == (OP_BINARY, b"str as binary")


def test_encoder_masks_with_fresh_keys(codec):
    enc = codec.FrameEncoder()
    keys = [read_client_frames(enc.encode_message("same"))[0].key for _ in range(2000)]
    assert len(set(keys)) > 1990          # 2000 random 32-bit keys: collisions are rare


@pytest.mark.parametrize("no_ctx", [False, True], ids=["takeover", "no-takeover"])
def test_encoder_context_takeover(codec, no_ctx):
    enc = codec.FrameEncoder(compressed=True, no_context_takeover=no_ctx, threshold=0)
    a, b = (read_client_frames(enc.encode_message(TICKS[0]))[0] for _ in range(2))
    assert a.rsv1 and b.rsv1
    if no_ctx:
        assert a.payload == b.payload     # the context is reset for every message
    else:
        assert len(b.payload) < len(a.payload) // 2
    items = [TICKS[0], TICKS[0], TICKS[1], "short", TICKS[2] * 3]
    enc = codec.FrameEncoder(compressed=True, no_context_takeover=no_ctx)
    assert roundtrip(codec, enc, items, compressed=True) == expected(items)
    if no_ctx:
        enc = codec.FrameEncoder(compressed=True, no_context_takeover=True)
        # a server that resets its inflater for every message reads it too
        assert roundtrip(codec, enc, items, compressed=True, no_context_takeover=True) == expected(items)


def test_encoder_threshold(codec):
    enc = codec.FrameEncoder(compressed=True, threshold=50)
    below, at = "x" * 49, "x" * 50
    f, = read_client_frames(enc.encode_message(below))
    assert not f.rsv1 and f.payload == below.encode()
    f, = read_client_frames(enc.encode_message(at))
    assert f.rsv1 and len(f.payload) < 50
    assert zlib.decompressobj(-15).decompress(f.payload + TAIL) == at.encode()
    # the threshold counts UTF-8 bytes: 25 two-byte characters are 50 bytes
    f, = read_client_frames(enc.encode_message("é" * 25))
    assert f.rsv1
    enc = codec.FrameEncoder(compressed=True)
    assert enc.threshold == 128
    f, = read_client_frames(enc.encode_message("y" * 127))
    assert not f.rsv1
    f, = read_client_frames(enc.encode_message("y" * 128))
    assert f.rsv1
    enc = codec.FrameEncoder(compressed=True, threshold=0)
    f, = read_client_frames(enc.encode_message(""))
    assert f.rsv1
    assert roundtrip(codec, enc, ["", b""], compressed=True) == [("text", ""), ("binary", b"")]


def test_encoder_max_window_bits_8_sends_uncompressed(codec):
    enc = codec.FrameEncoder(compressed=True, max_window_bits=8, threshold=0)
    assert not enc.compressed
    f, = read_client_frames(enc.encode_message(TICKS[0] * 10))
    assert not f.rsv1 and f.payload == (TICKS[0] * 10).encode()


@pytest.mark.parametrize("wbits", [9, 10, 11, 15])
def test_encoder_window_bits(codec, wbits):
    enc = codec.FrameEncoder(compressed=True, max_window_bits=wbits, threshold=0)
    assert enc.compressed
    rnd = random.Random(wbits)
    items = [bytes(rnd.getrandbits(8) for _ in range(3000)) * 3, TICKS[3] * 50, "end"]
    assert roundtrip(codec, enc, items, compressed=True, max_window_bits=wbits) == expected(items)


def test_encode_close(codec):
    enc = codec.FrameEncoder()
    f, = read_client_frames(enc.encode_close())
    assert (f.opcode, f.fin, f.payload) == (OP_CLOSE, True, b"\x03\xe8")
    f, = read_client_frames(enc.encode_close(1001, "going ✓"))
    assert f.payload == b"\x03\xe9" + "going ✓".encode()
    f, = read_client_frames(enc.encode_close(None))
    assert f.payload == b""
    r = run_bytes(codec, unmask_stream(enc.encode_close(4000, "x")))
    assert r.control == [("close", 4000, "x")]


def test_encode_frame_bits(codec):
    enc = codec.FrameEncoder()
    f, = read_client_frames(enc.encode_frame(OP_BINARY, b"abc", fin=False, rsv1=True))
    assert (f.fin, f.rsv1, f.opcode, f.payload) == (False, True, OP_BINARY, b"abc")
    f, = read_client_frames(enc.encode_frame(OP_PING))
    assert (f.opcode, f.payload) == (OP_PING, b"")


# ---------------------------------------------------------------- masking and UTF-8 helpers


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 64, 1000, 65535, 65536, 65537])
def test_apply_mask(codec, n):
    data = os.urandom(n)
    key = os.urandom(4)
    assert codec.apply_mask(data, key) == xor_ref(data, key)
    assert codec.apply_mask(codec.apply_mask(data, key), key) == data
    # unaligned views and other bytes-likes
    buf = bytearray(b"?" + data)
    assert codec.apply_mask(memoryview(buf)[1:], bytearray(key)) == xor_ref(data, key)


def test_apply_mask_rejects_bad_keys(codec):
    for key in (b"", b"abc", b"abcde"):
        with pytest.raises(InvalidOption):
            codec.apply_mask(b"data", key)


UTF8_CASES = [b"", b"ascii", "€".encode(), "😀".encode(), b"\xc2\x80", b"\xdf\xbf", b"\xe0\xa0\x80",
              b"\xef\xbf\xbf", b"\xf0\x90\x80\x80", b"\xf4\x8f\xbf\xbf", b"\xed\x9f\xbf", b"\xee\x80\x80",
              b"\x80", b"\xbf", b"\xc0\x80", b"\xc1\xbf", b"\xe0\x9f\xbf", b"\xed\xa0\x80",
              b"\xed\xbf\xbf", b"\xf0\x8f\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xff",
              b"\xe2\x82", b"\xf0\x9f\x98", b"a" * 7 + b"\xe2\x82\xac" + b"b" * 9, b"a" * 16 + b"\x80"]


@pytest.mark.parametrize("data", UTF8_CASES)
def test_validate_utf8(codec, data):
    try:
        data.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    assert codec.validate_utf8(data) is valid
    assert codec.validate_utf8(bytearray(data)) is valid
    assert codec.validate_utf8(memoryview(b"x" * 70000 + data)) is valid


def test_validate_utf8_every_two_byte_start(codec):
    """Every (lead, second) pair, completed by continuation bytes, at every position the
    validator may see it: alone, after ASCII, before ASCII, and cut between two feeds."""
    bad = []
    for lead in range(0x80, 0x100):
        for second in range(0x00, 0x100):
            for tail in (b"", b"\x80", b"\x80\x80", b"\xbf\xbf"):
                seq = bytes([lead, second]) + tail
                valid = _utf8_ok(seq)
                for data in (seq, b"abcde" + seq, seq + b"abcde", b"xy" + seq + b"z" * 9):
                    if codec.validate_utf8(data) is not valid:
                        bad.append(data)
    assert bad == []


@pytest.mark.parametrize("lead", [0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4])
def test_utf8_sequences_cut_between_fragments(codec, lead):
    """A sequence cut at every point between two fragments of a text message."""
    for second in range(0x80, 0xC0):
        for third in (0x7F, 0x80, 0xBF, 0xC0):
            seq = bytes([lead, second, third, 0x80])[: 2 if lead < 0xE0 else (3 if lead < 0xF0 else 4)]
            data = b"ab" + seq + b"cdefgh"
            for cut in range(1, len(data)):
                r = run_bytes(codec, fragments(OP_TEXT, [data[:cut], data[cut:]]))
                assert error_code(r) == (None if _utf8_ok(data) else 1007), (data, cut)


def test_module_surface(codec):
    assert codec.COMPILED is (codec is _codec_c)
    assert (codec.OP_CONT, codec.OP_TEXT, codec.OP_BINARY) == (0, 1, 2)
    assert (codec.OP_CLOSE, codec.OP_PING, codec.OP_PONG) == (8, 9, 10)
    assert codec.DEFAULT_READ_LIMIT == 16 * MiB
    assert set(codec.__all__) == set(_codec_py.__all__)


# ---------------------------------------------------------------- hypothesis: the two paths agree


def _rare(n: int):
    """True about one time in n."""
    return st.integers(0, n - 1).map(lambda x: x == 0)


CLOSE_CODES = st.sampled_from(VALID_CODES + INVALID_CODES)


@st.composite
def close_payloads(draw) -> bytes:
    kind = draw(st.sampled_from(["code", "empty", "one", "bad-reason", "long", "one", "code"]))
    if kind == "empty":
        return b""
    if kind == "one":
        return b"\x03"
    reason = draw(st.text(max_size=20)).encode()
    if kind == "bad-reason":
        reason += draw(st.sampled_from([b"\xff", b"\xed\xa0\x80", b"\xc3"]))
    elif kind == "long":
        reason = b"r" * draw(st.sampled_from([123, 124]))
    return close_payload(draw(CLOSE_CODES), reason)


_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 {}[]:,.-_\"'éü€😀"


@st.composite
def message_bodies(draw, is_text: bool):
    size = draw(st.sampled_from(["small"] * 6 + ["big", "random", "random"]))
    if size == "small":
        if is_text:
            return draw(st.text(max_size=60)) * draw(st.integers(1, 4))
        return draw(st.binary(max_size=60)) * draw(st.integers(1, 4))
    if size == "big":
        n = draw(st.sampled_from([126, 300, 65536, 70000]))
        return "L" * n if is_text else b"L" * n
    # hardly compressible: the compressed size can pass a small read limit
    rnd = random.Random(draw(st.integers(0, 99)))
    n = draw(st.sampled_from([1000, 1100, 3000]))
    return "".join(rnd.choices(_ALPHABET, k=n)) if is_text else rnd.randbytes(n)


MUTATIONS = ["rsv1", "rsv2", "rsv3", "mask", "opcode", "top-bit", "non-minimal", "fin", "orphan-cont",
             "new-data", "long-control", "fragmented-control", "close", "bad-utf8", "bad-byte", "drop",
             "truncate", "close"]


class StreamCase(NamedTuple):
    stream: bytes
    options: dict
    expected: Optional[Result]      # None when a mutation or the read limit makes it unknown
    mutations: tuple


@st.composite
def frame_streams(draw) -> StreamCase:
    """A valid server stream (messages, fragments, deflate, control frames between fragments),
    then, often, one or two mutations drawn evenly from every way a stream can break."""
    compressed = draw(st.integers(0, 3).map(bool))
    no_ctx = draw(st.booleans())
    wbits = draw(st.sampled_from([9, 15]))
    deflater = ServerDeflater(wbits=wbits, takeover=not no_ctx)
    frames: List[dict] = []
    messages: list = []
    control: list = []
    sizes = [0]

    def add_control(opcode: int, payload: bytes) -> None:
        frames.append({"op": opcode, "payload": payload})
        control.append(("ping" if opcode == OP_PING else "pong", payload))

    for _ in range(draw(st.integers(0, 6))):
        if draw(_rare(4)):
            add_control(draw(st.sampled_from([OP_PING, OP_PONG])), draw(st.binary(max_size=125)))
            continue
        is_text = draw(st.booleans())
        body = draw(message_bodies(is_text))
        raw = body.encode() if is_text else body
        deflate = compressed and not draw(_rare(5))
        payload = deflater.compress(raw) if deflate else raw
        parts = split(payload, draw(st.lists(st.integers(0, len(payload)), max_size=3)))
        for i, part in enumerate(parts):
            if i and draw(_rare(4)):
                add_control(OP_PING, b"%d" % i)
            frames.append({"op": (OP_TEXT if is_text else OP_BINARY) if i == 0 else OP_CONT,
                           "payload": part, "fin": i == len(parts) - 1, "rsv1": deflate and i == 0})
        messages.append(("text" if is_text else "binary", body))
        sizes.append(len(raw))
    closed = draw(st.integers(0, 9)) in (3, 7)
    odd_close = closed and draw(st.booleans())
    if odd_close:       # any close payload, valid or not, where nothing before it broke
        frames.append({"op": OP_CLOSE, "payload": draw(close_payloads())})
    elif closed:
        code, reason = draw(st.sampled_from(VALID_CODES)), draw(st.text(max_size=10))
        frames.append({"op": OP_CLOSE, "payload": close_payload(code, reason.encode())})
        control.append(("close", code, reason))

    how = draw(st.sampled_from(["default"] * 3 + [16, 100, "exact", "exact-1"]))
    if how == "default":
        limit = 0
    elif how == "exact":
        limit = max(sizes)
    elif how == "exact-1":
        limit = max(sizes) - 1
    else:
        limit = how
    options = {"read_limit": limit, "compressed": compressed, "no_context_takeover": no_ctx,
               "max_window_bits": wbits}

    count = draw(st.sampled_from([0, 1, 1, 2]))
    mutations = tuple(draw(st.lists(st.sampled_from(MUTATIONS), min_size=count, max_size=count)))
    truncate = False
    for kind in mutations:
        i = draw(st.integers(0, max(0, len(frames) - 1)))
        f = frames[i] if frames else None
        if kind == "truncate":
            truncate = True
        elif kind == "orphan-cont":
            frames.insert(i, {"op": OP_CONT, "payload": b"c", "fin": draw(st.booleans())})
        elif kind == "new-data":
            frames.insert(i, {"op": draw(st.sampled_from([OP_TEXT, OP_BINARY])), "payload": b"d",
                              "fin": draw(st.booleans())})
        elif kind == "long-control":
            frames.insert(i, {"op": draw(st.sampled_from([OP_PING, OP_PONG, OP_CLOSE])),
                              "payload": close_payload(1000, b"x" * draw(st.sampled_from([124, 200])))})
        elif kind == "fragmented-control":
            frames.insert(i, {"op": draw(st.sampled_from([OP_PING, OP_PONG, OP_CLOSE])), "payload": b"",
                              "fin": False})
        elif kind == "close":
            frames.insert(i, {"op": OP_CLOSE, "payload": draw(close_payloads())})
        elif f is None:
            continue
        elif kind in ("rsv1", "rsv2", "rsv3", "mask"):
            f[kind] = True
        elif kind == "opcode":
            f["op"] = draw(st.sampled_from([3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]))
        elif kind == "top-bit":
            f["form"] = -1
        elif kind == "non-minimal":
            f["form"] = draw(st.sampled_from([16, 64]))
        elif kind == "fin":
            f["fin"] = not f.get("fin", True)
        elif kind == "drop":
            del frames[i]
        elif kind in ("bad-utf8", "bad-byte"):
            data = f["payload"]
            pos = draw(st.integers(0, len(data)))
            if kind == "bad-utf8":
                f["payload"] = data[:pos] + draw(st.sampled_from(INTERESTING)) + data[pos:]
            else:
                f["payload"] = data[:pos] + bytes([draw(st.integers(0, 255))]) + data[pos + 1:]

    out = []
    for f in frames:
        payload = f["payload"]
        form = f.get("form")
        if form == -1:
            b0 = (0x80 if f.get("fin", True) else 0) | f["op"]
            out.append(bytes([b0, 127]) + (1 << 63 | len(payload)).to_bytes(8, "big") + payload)
            continue
        if form is not None and len(payload) >= (1 << form):
            form = None
        out.append(frame(f["op"], payload, fin=f.get("fin", True), rsv1=f.get("rsv1", False),
                         rsv2=f.get("rsv2", False), rsv3=f.get("rsv3", False),
                         mask=b"\x01\x02\x03\x04" if f.get("mask") else None, form=form))
    stream = b"".join(out)
    if truncate:
        stream = stream[:draw(st.integers(0, len(stream)))]
    expected = None
    if not mutations and not odd_close and max(sizes) <= (limit or 16 * MiB):
        expected = Result(messages, control, None, closed, 0)
    return StreamCase(stream, options, expected, mutations)


def chunked(draw, stream: bytes) -> List[bytes]:
    cuts = draw(st.lists(st.integers(0, max(0, len(stream))), max_size=12))
    return split(stream, cuts)


@hsettings(200)
@given(case=frame_streams(), data=st.data())
def test_random_frame_streams(codec, case, data):
    whole = run(codec, [case.stream], **case.options)
    if case.expected is not None:
        assert whole == case.expected
    # the compiled path as the pure one: any split of the stream gives the same result
    assert run(codec, chunked(data.draw, case.stream), **case.options) == whole


@needs_compiled
@hsettings(600)
@given(case=frame_streams(), data=st.data())
def test_paths_agree_on_random_frame_streams(case, data):
    chunks = chunked(data.draw, case.stream)
    pure = run(_codec_py, chunks, **case.options)
    assert run(_codec_c, chunks, **case.options) == pure
    assert run(_codec_c, [case.stream], **case.options) == pure
    if case.expected is not None:
        assert pure == case.expected


def _utf8_ok(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


_COMPLETIONS = [b""] + [lead + b"\x80" * k for lead in (b"\x80", b"\x90", b"\xa0") for k in range(3)]


def extendable(data: bytes) -> bool:
    """Reference: ``data`` is UTF-8 text, maybe cut inside its last character."""
    return any(_utf8_ok(data + c) for c in _COMPLETIONS)


INTERESTING = [b"\x80", b"\xbf", b"\xc0", b"\xc1", b"\xc2", b"\xdf", b"\xe0", b"\xe0\xa0", b"\xed",
               b"\xed\xa0", b"\xed\x9f", b"\xef\xbf", b"\xf0", b"\xf0\x90", b"\xf0\x8f", b"\xf4",
               b"\xf4\x8f", b"\xf4\x90", b"\xf5", b"\xff", b"\xe2\x82", b"\x9f", b"\xa0"]


@st.composite
def utf8ish(draw) -> Tuple[bytes, List[int]]:
    """Text with, now and then, bad or cut sequences; and cut points: the pieces' edges, and random."""
    text = st.text(max_size=10).map(str.encode)
    pieces = draw(st.lists(st.one_of(text, text, st.sampled_from(INTERESTING)), max_size=8))
    payload = b"".join(pieces)
    edges, pos = [], 0
    for piece in pieces:
        pos += len(piece)
        edges.append(pos)
    if draw(st.booleans()):
        cuts = edges       # one piece per fragment: every odd sequence ends a fragment
    else:
        cuts = draw(st.lists(st.sampled_from(edges), max_size=4)) if edges else []
    cuts += draw(st.lists(st.integers(0, len(payload)), max_size=3))
    return payload, cuts


@hsettings(300)
@given(case=utf8ish())
def test_utf8_fail_fast_matches_the_reference(codec, case):
    payload, cuts = case
    valid = _utf8_ok(payload)
    assert codec.validate_utf8(payload) is valid
    r = run_bytes(codec, frame(OP_TEXT, payload))
    assert error_code(r) == (None if valid else 1007)
    # fragmented: each fragment its own feed; the error must come with the first fragment
    # after which the bytes received can no longer be UTF-8
    parts = split(payload, cuts)
    frames = [frame(OP_TEXT if i == 0 else OP_CONT, p, fin=i == len(parts) - 1) for i, p in enumerate(parts)]
    parser, at, msgs = feed_until_error(codec, frames)
    want = None
    for i in range(len(parts)):
        prefix = b"".join(parts[:i + 1])
        if not (_utf8_ok(prefix) if i == len(parts) - 1 else extendable(prefix)):
            want = i
            break
    assert at == want
    if want is None:
        assert [(m.type, m.data) for m in msgs] == [("text", payload.decode())]
    else:
        assert parser.error.close_code == 1007 and msgs == []


@needs_compiled
@hsettings(300)
@given(case=utf8ish(), data=st.data())
def test_paths_agree_on_utf8(case, data):
    payload, cuts = case
    assert _codec_c.validate_utf8(payload) is _codec_py.validate_utf8(payload)
    parts = split(payload, cuts)
    # a ping after every fragment: the control list shows at which fragment the error came
    stream = b"".join(frame(OP_TEXT if i == 0 else OP_CONT, p, fin=i == len(parts) - 1)
                      + frame(OP_PING, b"%d" % i) for i, p in enumerate(parts))
    stream = frame(OP_BINARY, b"first") + stream + frame(OP_PING, b"after")
    chunks = chunked(data.draw, stream)
    assert run(_codec_c, chunks) == run(_codec_py, chunks)


@st.composite
def compressed_streams(draw, valid_only: bool = False):
    """Messages deflated as a server would, fragmented, with pings between the frames; unless
    ``valid_only``, now and then a corrupted payload (its message is then None) and a small
    read limit."""
    takeover = draw(st.booleans())
    wbits = draw(st.sampled_from([9, 10, 15]))
    d = ServerDeflater(wbits=wbits, takeover=takeover, level=draw(st.sampled_from([1, 6, 9])))
    out, messages = [], []
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.booleans()):
            text = draw(st.text(max_size=60)) * draw(st.integers(1, 4))
            opcode, raw, msg = OP_TEXT, text.encode(), ("text", text)
        else:
            raw = draw(st.binary(max_size=100)) * draw(st.integers(1, 4))
            opcode, msg = OP_BINARY, ("binary", raw)
        deflate = not draw(_rare(5))
        payload = d.compress(raw, final=draw(_rare(6))) if deflate else raw
        if not valid_only and draw(_rare(8)):   # corruption: only the agreement is checked
            pos = draw(st.integers(0, max(0, len(payload) - 1)))
            payload = payload[:pos] + bytes([draw(st.integers(0, 255))]) + payload[pos + 1:]
            msg = None
        parts = split(payload, draw(st.lists(st.integers(0, len(payload)), max_size=3)))
        for i, part in enumerate(parts):
            out.append(frame(opcode if i == 0 else OP_CONT, part, fin=i == len(parts) - 1,
                             rsv1=deflate and i == 0))
            if draw(_rare(4)):
                out.append(frame(OP_PING, b"%d" % i))
        messages.append(msg)
    limits = ["default"] if valid_only else ["default", "default", "default", 64, 200, "exact", "exact-1"]
    how = draw(st.sampled_from(limits))
    if how == "default":
        limit = 0
    elif how in ("exact", "exact-1"):      # the largest message exactly fits, or by one byte not
        sizes = [len(m[1].encode() if m[0] == "text" else m[1]) for m in messages if m]
        limit = max(sizes, default=0)
        if limit and how == "exact-1":
            limit = max(1, limit - 1)
    else:
        limit = how
    options = {"compressed": True, "no_context_takeover": not takeover, "max_window_bits": wbits,
               "read_limit": limit}
    return b"".join(out), messages, options


@deflate_paths
@hsettings(150)
@given(case=compressed_streams(valid_only=True), data=st.data())
def test_compressed_streams_inflate(codec, case, data):
    # valid streams under the default limit only: corruption and small limits are
    # covered by the agreement test below
    stream, messages, options = case
    r = run(codec, chunked(data.draw, stream), **options)
    assert r.error is None and r.messages == messages


@needs_compiled
@hsettings(300)
@given(case=compressed_streams(), data=st.data())
def test_paths_agree_on_compressed_streams(case, data):
    stream, _, options = case
    chunks = chunked(data.draw, stream)
    pure = run(_codec_py, chunks, **options)
    assert run(_codec_c, chunks, **options) == pure
    assert run(_codec_c, [stream], **options) == pure
    with python_zlib():
        assert run(_codec_c, chunks, **options) == pure


ENCODER_OPTIONS = st.fixed_dictionaries({
    "compressed": st.booleans(),
    "no_context_takeover": st.booleans(),
    "max_window_bits": st.integers(8, 15),
    "threshold": st.sampled_from([0, 1, 20, 128]),
    "level": st.sampled_from([1, 6, 9]),
    "fragment_size": st.sampled_from([0, 0, 1, 7, 64]),
})

MESSAGES = st.lists(st.one_of(st.text(max_size=80), st.binary(max_size=120)).map(lambda x: x * 2),
                    max_size=6)


@deflate_paths
@hsettings(150)
@given(items=MESSAGES, options=ENCODER_OPTIONS)
def test_encoder_round_trips_through_the_parser(codec, items, options):
    enc = codec.FrameEncoder(**options)
    assert roundtrip(codec, enc, items, compressed=True,
                     no_context_takeover=options["no_context_takeover"],
                     max_window_bits=max(9, options["max_window_bits"])) == expected(items)


@needs_compiled
@hsettings(200)
@given(items=MESSAGES, options=ENCODER_OPTIONS)
def test_paths_agree_on_encoding(items, options):
    a, b = _codec_c.FrameEncoder(**options), _codec_py.FrameEncoder(**options)
    for item in items:
        fa = read_client_frames(a.encode_message(item))
        fb = read_client_frames(b.encode_message(item))
        assert [f[:3] + f[4:] for f in fa] == [f[:3] + f[4:] for f in fb]


# ---------------------------------------------------------------- large messages read in place

@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_large_message_split_anywhere_then_a_small_one(codec, opcode):
    payload = (b"0123456789abcdef\xc3\xa9" * 60000)[:1 * MiB]  # cut inside no sequence
    stream = frame(opcode, payload) + frame(OP_TEXT, b"after")
    expected = payload.decode() if opcode == OP_TEXT else payload
    for step in (1000, 65536, 100_000, len(stream) - 3):
        r = run_bytes(codec, stream, step)
        assert r.error is None
        assert r.messages == [("text" if opcode == OP_TEXT else "binary", expected), ("text", "after")]
        assert r.buffered == 0


def test_large_text_with_invalid_utf8_at_the_end_fails_1007(codec):
    payload = b"a" * (200 * KiB) + b"\xff"
    r = run_bytes(codec, frame(OP_TEXT, payload) + frame(OP_TEXT, b"never"), 50_000)
    assert error_code(r) == 1007
    assert r.messages == []


def test_large_frame_partly_received_counts_as_buffered(codec):
    data = frame(OP_BINARY, b"x" * (100 * KiB))
    r = run_bytes(codec, data[:70_000])
    assert r.messages == [] and r.error is None
    assert r.buffered == 70_000


def test_read_target_lets_the_caller_read_a_large_message_in_place(codec):
    payload = bytes(range(256)) * 1024   # 256 KiB
    data = frame(OP_BINARY, payload) + frame(OP_TEXT, b"next")
    parser = codec.FrameParser()
    assert parser.feed(data[:10_000]) == []
    got = []
    pos = 10_000
    while True:
        target = parser.read_target()
        if target is None:
            break
        n = min(len(target), 30_000)
        target[:n] = data[pos:pos + n]
        target.release()
        pos += n
        got += parser.advance(n)
    got += parser.feed(data[pos:])
    assert [(m.type, m.data) for m in got] == [("binary", payload), ("text", "next")]
    assert pos == len(payload) + 10   # the whole payload was read in place, then feed took the rest


# ---------------------------------------------------------------- what fuzzing and the sanitizers found
# (docs/reliability.md). Each of these failed, on the path named, before its fix.


@pytest.mark.timeout(10)
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
@pytest.mark.parametrize("parts", [[b"", b"ab"], [b"", b"", b""], [b"a", b"", b"b"], [b"", b"", b"\xc3\xa9"]])
def test_empty_fragments(codec, opcode, parts):
    # make test-asan (UBSan) on the compiled path: an empty first fragment appended 0 bytes
    # to the still unallocated reassembly buffer: memcpy(NULL, src, 0), undefined behaviour.
    # Bound: no error, the message whole, well within the test's 10 s.
    data = b"".join(parts)
    r = run_bytes(codec, fragments(opcode, parts) + frame(OP_TEXT, b"next"))
    want = data.decode() if opcode == OP_TEXT else data
    assert r.error is None
    assert r.messages == [("text" if opcode == OP_TEXT else "binary", want), ("text", "next")]


@pytest.mark.timeout(10)
@deflate_paths
def test_empty_compressed_fragments(codec):
    # the same through inflate: an empty deflated first fragment, and an empty message
    c = ServerDeflater()
    packed = c.compress(b"hello")
    stream = (fragments(OP_BINARY, [b"", packed[:3], b"", packed[3:]], rsv1=True)
              + frame(OP_TEXT, c.compress(b""), rsv1=True))
    r = run_bytes(codec, stream, compressed=True)
    assert r.error is None
    assert r.messages == [("binary", b"hello"), ("text", "")]
