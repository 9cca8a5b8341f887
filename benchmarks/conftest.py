"""Shared data for the codec micro-benchmarks: a stream of ~110-byte JSON price ticks."""

from __future__ import annotations

import zlib
from typing import List

import pytest

from wsfast import _codec_py

try:
    from wsfast import _codec as _codec_c
except ImportError:  # the extension is not built
    _codec_c = None

N_TICKS = 100_000
CHUNK = 64 * 1024
N_MEDIUM = 20_000


def make_ticks(n: int = N_TICKS) -> List[str]:
    """``n`` distinct ticker messages like an exchange's price feed sends them."""
    out = []
    for i in range(n):
        cents = 4_325_117 + (i * 7919) % 50_000
        side = "buy" if i % 3 else "sell"
        out.append(f'{{"type":"ticker","symbol":"BTC-USD","price":"{cents // 100}.{cents % 100:02d}",'
                   f'"size":"0.{(i * 31) % 10_000:04d}","side":"{side}","ts":{1_700_000_000_123 + i * 37},'
                   f'"seq":{123_456 + i}}}')
    return out


def server_frame(opcode: int, payload: bytes, rsv1: bool = False) -> bytes:
    """An unmasked, final frame as a server sends it."""
    b0 = 0x80 | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        return bytes([b0, n]) + payload
    if n < 65536:
        return bytes([b0, 126]) + n.to_bytes(2, "big") + payload
    return bytes([b0, 127]) + n.to_bytes(8, "big") + payload


def chunks_of(data: bytes, size: int = CHUNK) -> List[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.fixture(scope="session")
def ticks() -> List[str]:
    return make_ticks()


@pytest.fixture(scope="session")
def tick_chunks(ticks) -> List[bytes]:
    """The ticks as one server stream of text frames, cut into 64 KiB reads."""
    return chunks_of(b"".join(server_frame(0x1, t.encode()) for t in ticks))


@pytest.fixture(scope="session")
def medium_chunks() -> List[bytes]:
    """N_MEDIUM 4 KiB binary frames (the e2e medium scenario) cut into 128 KiB reads: a
    read ends inside a frame every time."""
    frames = b"".join(server_frame(0x2, i.to_bytes(8, "big") * 512) for i in range(N_MEDIUM))
    return chunks_of(frames, 128 * 1024)


@pytest.fixture(scope="session")
def deflated_tick_chunks(ticks) -> List[bytes]:
    """The same stream with permessage-deflate (context takeover), as a server compresses it."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    frames = []
    for t in ticks:
        data = c.compress(t.encode()) + c.flush(zlib.Z_SYNC_FLUSH)
        frames.append(server_frame(0x1, data[:-4], rsv1=True))
    return chunks_of(b"".join(frames))


CODECS = [pytest.param(_codec_c, id="compiled",
                       marks=pytest.mark.skipif(_codec_c is None, reason="compiled codec not built")),
          pytest.param(_codec_py, id="pure")]


@pytest.fixture(params=CODECS)
def codec(request):
    return request.param
