"""Codec micro-benchmarks: the compiled codec against the pure-Python twin, and masking and
UTF-8 validation against websockets' and wsaccel's C helpers.

    taskset -c 1 .venv/bin/python -m pytest benchmarks/test_codec_bench.py --benchmark-only \
        --benchmark-columns=min,median,max,rounds

One benchmark group per scenario, so the implementations show side by side.
"""

from __future__ import annotations

import os

import pytest

from .conftest import N_MEDIUM, N_TICKS

pytest.importorskip("pytest_benchmark")

try:
    from websockets.speedups import apply_mask as ws_apply_mask
except ImportError:  # websockets without its C extension
    ws_apply_mask = None

try:
    from wsaccel.utf8validator import Utf8Validator
    from wsaccel.xormask import XorMaskerSimple
except ImportError:  # no wheel for this Python
    Utf8Validator = XorMaskerSimple = None

MiB = 1024 * 1024
MASK = b"\x37\xfa\x21\x3d"
ONE_MIB = os.urandom(MiB)
ASCII_MIB = (b'{"type":"ticker","symbol":"BTC-USD","price":"43251.17"} ' * (MiB // 56 + 1))[:MiB]
_MIXED_UNIT = "price ✓ 43251.17 € — 日本語 😀 ok; ".encode()
MIXED_MIB = _MIXED_UNIT * (MiB // len(_MIXED_UNIT))      # whole characters, about 1 MiB
needs_ws = pytest.mark.skipif(ws_apply_mask is None, reason="websockets.speedups is not available")
needs_wsaccel = pytest.mark.skipif(XorMaskerSimple is None, reason="wsaccel is not installed")


def parse_all(codec, chunks, **kw) -> int:
    parser = codec.FrameParser(**kw)
    n = 0
    for chunk in chunks:
        n += len(parser.feed(chunk))
    assert parser.error is None
    return n


@pytest.mark.benchmark(group="parse 100k text frames (64 KiB reads)")
def test_parse_ticks(benchmark, codec, tick_chunks):
    assert benchmark(parse_all, codec, tick_chunks) == N_TICKS


@pytest.mark.benchmark(group="parse 20k 4 KiB binary frames (128 KiB reads)")
def test_parse_medium(benchmark, codec, medium_chunks):
    # Reads that end inside a frame, as on a socket: the parser must finish that frame
    # without copying the rest of the read again.
    assert benchmark(parse_all, codec, medium_chunks) == N_MEDIUM


@pytest.mark.benchmark(group="inflate 100k ticks (context takeover)")
def test_inflate_ticks(benchmark, codec, deflated_tick_chunks, ticks):
    parser = codec.FrameParser(compressed=True)
    got = [m.data for chunk in deflated_tick_chunks for m in parser.feed(chunk)]
    assert got == ticks
    assert benchmark(parse_all, codec, deflated_tick_chunks, compressed=True) == N_TICKS


def encode_all(codec, ticks) -> int:
    encode = codec.FrameEncoder().encode_message
    n = 0
    for t in ticks:
        n += len(encode(t))
    return n


@pytest.mark.benchmark(group="encode + mask 100k text frames")
def test_encode_ticks(benchmark, codec, ticks):
    assert benchmark(encode_all, codec, ticks) == sum(len(t) + 6 for t in ticks)


# ---------------------------------------------------------------- masking


@pytest.mark.benchmark(group="unmask 1 MiB")
def test_unmask(benchmark, codec):
    out = benchmark(codec.apply_mask, ONE_MIB, MASK)
    assert len(out) == MiB and out[:4] == bytes(a ^ b for a, b in zip(ONE_MIB[:4], MASK))


@needs_ws
@pytest.mark.benchmark(group="unmask 1 MiB")
def test_unmask_websockets(benchmark):
    out = benchmark(ws_apply_mask, ONE_MIB, MASK)
    assert len(out) == MiB and out[:4] == bytes(a ^ b for a, b in zip(ONE_MIB[:4], MASK))


@needs_wsaccel
@pytest.mark.benchmark(group="unmask 1 MiB")
def test_unmask_wsaccel(benchmark):
    out = benchmark(lambda: XorMaskerSimple(MASK).process(ONE_MIB))
    assert len(out) == MiB and out[:4] == bytes(a ^ b for a, b in zip(ONE_MIB[:4], MASK))


# ---------------------------------------------------------------- UTF-8 validation


@pytest.mark.parametrize("data", [ASCII_MIB, MIXED_MIB], ids=["ascii", "mixed"])
def test_validate_utf8(benchmark, codec, data, request):
    benchmark.group = f"validate 1 MiB UTF-8 ({request.node.callspec.id.split('-')[-1]})"
    assert benchmark(codec.validate_utf8, data) is True


@needs_wsaccel
@pytest.mark.parametrize("data", [ASCII_MIB, MIXED_MIB], ids=["ascii", "mixed"])
def test_validate_utf8_wsaccel(benchmark, data, request):
    benchmark.group = f"validate 1 MiB UTF-8 ({request.node.callspec.id.split('-')[-1]})"
    assert benchmark(lambda: Utf8Validator().validate(data)[0]) is True
