"""Scenario definitions and the messages they carry, shared by the server and the clients.

Standard library only: the clients also run under a separate Python 3.12 interpreter
(websocket-rs) that has no wsfast installed.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import Optional, Tuple

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str                 # "stream" | "echo" | "send" | "memory"
    count: int                # messages (round trips for echo, connections for memory)
    quick: int                # the --quick count
    unit: str                 # what the report shows
    stream: str = ""          # which server stream ("ticks", "medium", ...)
    mode: str = "text"        # client loop: "text" | "json" | "binary"
    deflate: Optional[str] = None   # None | "takeover" | "nct"
    higher_is_better: bool = True
    about: str = ""


SCENARIOS = {s.name: s for s in [
    Scenario("ticks", "stream", 1_000_000, 100_000, "msg/s", "ticks",
             about="104-byte JSON price ticks (text)"),
    Scenario("ticks+json", "stream", 1_000_000, 100_000, "msg/s", "ticks", mode="json",
             about="the same ticks, orjson.loads of each in the client loop"),
    Scenario("ticks_deflate", "stream", 1_000_000, 100_000, "msg/s", "ticks_deflate",
             deflate="takeover",
             about="ticks, permessage-deflate with context takeover"),
    Scenario("ticks_deflate_nct", "stream", 1_000_000, 100_000, "msg/s", "ticks_deflate_nct",
             deflate="nct",
             about="ticks, permessage-deflate, server_no_context_takeover"),
    Scenario("medium", "stream", 200_000, 20_000, "msg/s", "medium", mode="binary",
             about="4 KiB binary messages"),
    Scenario("large", "stream", 1024, 128, "MB/s", "large", mode="binary",
             about="1 MiB binary messages (1 GiB in all)"),
    Scenario("fragmented", "stream", 200_000, 20_000, "msg/s", "fragmented",
             about="~760-byte non-ASCII text in 4 frames split inside UTF-8 sequences"),
    Scenario("echo", "echo", 50_000, 5_000, "rt/s",
             about="round trips of one 104-byte text message"),
    Scenario("send", "send", 1_000_000, 100_000, "msg/s",
             about="the client sends 104-byte ticks; the server counts them and replies done"),
    Scenario("memory", "memory", 1000, 200, "KiB/conn", higher_is_better=False,
             about="RSS growth per idle connection"),
]}


# ---------------------------------------------------------------- messages

def tick(i: int) -> str:
    """Price tick number ``i``: always 104 bytes (fixed-width fields), seq = 1000000 + i."""
    cents = 4_000_000 + (i * 7919) % 600_000
    size = (i * 31) % 9999 + 1
    return (f'{{"type":"ticker","symbol":"BTC-USD","price":"{cents // 100}.{cents % 100:02d}",'
            f'"size":"0.{size:04d}","ts":{1_700_000_000_000 + 7 * i},"seq":{1_000_000 + i}}}')


TICK_SIZE = len(tick(0))
SEND_POOL = 1024     # the send scenario cycles over tick(0) .. tick(1023)


def send_message(i: int) -> str:
    return tick(i % SEND_POOL)


MEDIUM_SIZE = 4096
LARGE_SIZE = 1 << 20
_FILL = random.Random(6455).randbytes(LARGE_SIZE)


def binary(i: int, size: int) -> bytes:
    """Binary message ``i``: its index as 8 big-endian bytes, then fixed pseudo-random bytes."""
    return struct.pack(">Q", i) + _FILL[8:size]


_FRAG_BASE = (
    "Биржевая сводка: курс растёт, объём торгов высокий. "
    "市场行情：比特币价格上涨，交易量创新高。"
    "🚀📈💹🔥 "
    "Заявки на покупку и продажу сведены, спред узкий. "
    "東京証券取引所の終値は小幅高で引けた。"
    "🌍🪙💰 "
    "Ликвидность в стакане достаточная, волатильность умеренная. "
    "上海证券交易所综合指数收盘上涨。"
    "⚡️🧊🎯 "
    "Индекс доверия потребителей вырос, облигации дешевеют. "
    "香港恒生指数高开低走，科技股承压。"
    "📊🏦🧾✨ "
    "Нефть дорожает. 金价上涨。🥇 "
    "Конец сводки."
)


def frag_text(i: int) -> str:
    """Fragmented-scenario message ``i``: an 8-digit index, then mixed Cyrillic/CJK/emoji."""
    return f"{i:08d} {_FRAG_BASE}"


def _frag_splits() -> Tuple[int, int, int]:
    """Three byte offsets near 1/4, 1/2, 3/4 that fall inside a multi-byte UTF-8 sequence."""
    data = frag_text(0).encode("utf-8")
    cuts = []
    for target in (len(data) // 4, len(data) // 2, 3 * len(data) // 4):
        off = target
        while data[off] & 0xC0 != 0x80:   # move forward to a continuation byte
            off += 1
        cuts.append(off)
    return cuts[0], cuts[1], cuts[2]


FRAG_SPLITS = _frag_splits()
FRAG_SIZE = len(frag_text(0).encode("utf-8"))


def payload_bytes(scenario: Scenario, count: int) -> int:
    """Application payload bytes of the whole scenario (what MB/s is computed from)."""
    per = {"ticks": TICK_SIZE, "ticks_deflate": TICK_SIZE, "ticks_deflate_nct": TICK_SIZE,
           "medium": MEDIUM_SIZE, "large": LARGE_SIZE, "fragmented": FRAG_SIZE}
    if scenario.kind == "stream":
        return per[scenario.stream] * count
    if scenario.kind in ("echo", "send"):
        return TICK_SIZE * count
    return 0


def expected_last(scenario: Scenario, count: int):
    """The last message a client must see (the decoded JSON's seq in json mode)."""
    if scenario.kind == "echo":
        return tick(0)
    if scenario.kind == "send":
        return "done"
    stream = scenario.stream
    if scenario.mode == "json":
        return 1_000_000 + count - 1
    if stream.startswith("ticks"):
        return tick(count - 1)
    if stream == "medium":
        return binary(count - 1, MEDIUM_SIZE)
    if stream == "large":
        return binary(count - 1, LARGE_SIZE)
    if stream == "fragmented":
        return frag_text(count - 1)
    raise ValueError(stream)


# ---------------------------------------------------------------- framing (server side)

def frame_header(opcode: int, length: int, fin: bool = True, rsv1: bool = False) -> bytes:
    """An unmasked (server) frame header."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    if length < 126:
        return bytes((b0, length))
    if length < 65536:
        return struct.pack(">BBH", b0, 126, length)
    return struct.pack(">BBQ", b0, 127, length)


def close_frame(code: int = 1000, masked: bool = False) -> bytes:
    payload = struct.pack(">H", code)
    if not masked:
        return frame_header(8, 2) + payload
    mask = b"\x5a\xa5\x3c\xc3"
    return bytes((0x88, 0x82)) + mask + bytes(p ^ mask[i % 4] for i, p in enumerate(payload))


def mask_frame(opcode: int, payload: bytes, mask: bytes = b"\x37\xfa\x21\x3d") -> bytes:
    """A masked (client) frame, for the raw pseudo-peer."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = struct.pack(">BBH", 0x80 | opcode, 0xFE, n)
    else:
        head = struct.pack(">BBQ", 0x80 | opcode, 0xFF, n)
    return head + mask + unmask(payload, mask)


def unmask(payload, mask: bytes) -> bytes:
    n = len(payload)
    if not n:
        return b""
    key = (bytes(mask) * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")
