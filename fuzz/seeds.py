"""Writes the seed corpora (``fuzz/corpus/TARGET/``, checked in; a few KB each):
``python -m fuzz.seeds``. The seeds are the cases of the tests and of the Autobahn
suite's categories, in each target's input layout (see ``split_input`` and the
``one_input`` docstrings)."""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from pathlib import Path

from wsfast.handshake import accept_value

ROOT = Path(__file__).resolve().parent / "corpus"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv1: bool = False) -> bytes:
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        return bytes((b0, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", b0, 126, n) + payload
    return struct.pack("!BBQ", b0, 127, n) + payload


def deflate(messages, nct=False, wbits=15):
    d = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = []
    for m in messages:
        if nct:
            d = zlib.compressobj(6, zlib.DEFLATED, -wbits)
        data = d.compress(m) + d.flush(zlib.Z_SYNC_FLUSH)
        out.append(data[:-4] if data.endswith(b"\x00\x00\xff\xff") else data)
    return out


def frames_seeds():
    def seed(stream, compressed=False, nct=False, limit=14, wbits=7, cuts=(), direct=False):
        flags = int(compressed) | int(nct) << 1 | wbits << 2 | limit << 5 | int(direct) << 9
        head = struct.pack("!HB", flags, len(cuts)) + b"".join(c.to_bytes(3, "big") for c in cuts)
        return head + stream

    hello = [frame(1, b"Hello"), frame(1, b"Hel", fin=False) + frame(0, b"lo"),
             frame(9, b"Hello"), frame(0xA, b"Hello"), frame(2, bytes(range(256))),
             frame(2, b"x" * 300, fin=False) + frame(9) + frame(0, b"y" * 200),
             frame(8, b"\x03\xe8bye"), frame(8), frame(8, b"\x03"), frame(8, b"\x03\xedno"),
             frame(8, b"\x03\xe8\xff"), frame(1, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"),
             frame(1, b"\xce\xba\xe1", fin=False) + frame(0, b"\xbd\xb9"),
             frame(1, b"\xed\xa0\x80"), frame(1, b"\xf4\x90\x80\x80"), frame(3), frame(0xB),
             frame(0, b"x"), frame(1, b"a", fin=False) + frame(1, b"b"), frame(9, fin=False),
             bytes((0x81, 0x85)) + b"\x37\xfa\x21\x3d" + b"\x7f\x9f\x4d\x51\x58",
             bytes((0xF1, 0)), struct.pack("!BBQ", 0x82, 127, 1 << 63),
             struct.pack("!BBH", 0x81, 126, 5) + b"Hello",
             struct.pack("!BBQ", 0x82, 127, 70000) + b"z" * 1000,
             frame(1, b"a") + frame(8, b"\x03\xe8") + frame(1, b"after")]
    out = {}
    for i, s in enumerate(hello):
        out[f"rfc-{i}"] = seed(s)
    out["limit-1"] = seed(frame(1, b"ab"), limit=0)
    out["limit-125"] = seed(frame(2, b"q" * 126), limit=4)
    out["split-bytes"] = seed(frame(1, b"Hel", fin=False) + frame(0, b"lo"), cuts=(1, 1, 1, 2, 1, 3))
    out["direct"] = seed(struct.pack("!BBQ", 0x82, 127, 65536) + b"d" * 2000, cuts=(4, 500), direct=True)
    c = deflate([b"Hello", b"Hello"])
    out["deflate-rfc"] = seed(frame(1, c[0], rsv1=True) + frame(1, c[1], rsv1=True), compressed=True)
    c = deflate([b"Hello", b"Hello"], nct=True)
    out["deflate-nct"] = seed(frame(1, c[0], rsv1=True) + frame(1, c[1], rsv1=True),
                              compressed=True, nct=True)
    c = deflate([b"abc" * 300])
    out["deflate-frag"] = seed(frame(2, c[0][:5], fin=False, rsv1=True) + frame(9, b"p")
                               + frame(0, c[0][5:]), compressed=True)
    c = deflate([b"window" * 100], wbits=9)
    out["deflate-w9"] = seed(frame(2, c[0], rsv1=True), compressed=True, wbits=0)
    bomb = deflate([b"\x00" * 200000])[0]
    out["deflate-bomb"] = seed(frame(2, bomb, rsv1=True), compressed=True, limit=8)
    final = zlib.compressobj(6, zlib.DEFLATED, -15)
    out["deflate-final"] = seed(frame(1, final.compress(b"end") + final.flush(), rsv1=True)
                                + frame(1, deflate([b"next"])[0], rsv1=True), compressed=True)
    out["deflate-bad"] = seed(frame(1, b"\xff\xff\xff", rsv1=True), compressed=True)
    out["deflate-mixed"] = seed(frame(1, b"plain") + frame(1, deflate([b"packed"])[0], rsv1=True),
                                compressed=True)
    # built streams: flags 0x400, a description read through a FuzzedDataProvider
    for i, flags in enumerate((0x400, 0x401, 0x403, 0x600, 0x401 | 8 << 5, 0x1c01)):
        body = hashlib.sha256(str(i).encode()).digest() * 4
        out[f"built-{i}"] = struct.pack("!HB", flags, 0) + body
    return out


def http_seeds():
    accept = accept_value(KEY)
    ok = (f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          f"Sec-WebSocket-Accept: {accept}\r\n")

    def seed(text, flags=3, cuts=()):
        raw = text.encode("latin-1") if isinstance(text, str) else text
        return bytes((flags, len(cuts))) + b"".join(c.to_bytes(2, "big") for c in cuts) + raw

    return {
        "101": seed(ok + "\r\n"),
        "101-frames": seed((ok + "\r\n").encode() + b"\x81\x05Hello\x88\x02\x03\xe8"),
        "101-chat": seed(ok + "Sec-WebSocket-Protocol: chat\r\n\r\n", flags=0x43),
        "101-deflate": seed(ok + "Sec-WebSocket-Extensions: permessage-deflate; "
                            "server_no_context_takeover; client_max_window_bits=10\r\n\r\n", flags=0x13),
        "101-deflate-nct": seed(ok + "Sec-WebSocket-Extensions: permessage-deflate; "
                                "server_no_context_takeover; client_no_context_takeover\r\n\r\n",
                                flags=0x23),
        "101-quoted": seed(ok + 'Sec-WebSocket-Extensions: permessage-deflate; '
                           'server_max_window_bits="12"\r\n\r\n', flags=0x13),
        "101-lf": seed((ok + "\r\n").replace("\r\n", "\n"), cuts=(3, 20)),
        "302": seed("HTTP/1.1 302 Found\r\nLocation: /other?x=1\r\nContent-Length: 5\r\n\r\nmoved"),
        "301-abs": seed("HTTP/1.1 301 Moved\r\nLocation: https://example.org:8443/a/../b\r\n\r\n"),
        "503": seed("HTTP/1.1 503 Busy\r\nRetry-After: 2\r\nContent-Length: 12, 12\r\n\r\ncome back...",
                    cuts=(10,)),
        "407": seed("HTTP/1.0 407 Proxy Authentication Required\r\n"
                    "Proxy-Authenticate: Basic realm=\"p\"\r\n\r\n"),
        "200-tunnel": seed(b"HTTP/1.0 200 Connection established\r\n\r\n\x16\x03\x01"),
        "200-11": seed("HTTP/1.1 200 OK\r\nVia: 1.1 squid\r\n\r\n"),
        "fold": seed(ok + "X-A: 1\r\n  folded\r\n\r\n"),
        "small": seed(ok + "X: " + "y" * 80 + "\r\n\r\n", flags=0x01),
        "chunked": seed("HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    }


def urls_seeds():
    return {
        "normalise": "wss://API.example.com.:443/x\nAu wss://api.example.com/*\nDu wss://api.example.com/admin*",
        "port": "ws://example.com:8080//a/./b/../c?q=%7e%41\nAu ws://example.com:8080/*\nAc",
        "idna": "wss://bücher.example/ü?ä=1\nAu wss://xn--bcher-kva.example/*\nAc\nDu =12*",
        "ipv6": "ws://[2001:DB8::0:1]:80/\nAu ws://[2001:db8::1]/\nAc",
        "ipv4": "ws://127.0.0.1/\nAu ws://127.0.0.1*\nA* *\nDu ws://127.1/",
        "userinfo": "wss://user:pw@host.test/p\nAu wss://host.test/p\nAc",
        "escapes": "wss://h.test/a%2fb\nAu wss://h.test/%41*\nAc",
        "dots": "wss://h.test/a/..;/b\nAu =9\nAc\nDu =20*",
        "fullwidth": "wss://ｅｘａｍｐｌｅ。com/\nAu wss://example.com/*\nAc",
        "proxy": "wss://s.test/\nP http://user:p%40ss@proxy.test:3128\nN .test,10.0.0.0/8,[::1]:443\nAc",
        "proxy-socks": "ws://10.1.2.3:9000/\nP socks5h://[::1]:1080\nN 10.0.0.0/8\nN *",
        "prefix-host": "wss://api.example.com/\nAu wss://api.example.com*\nDu wss://api.example.com*",
        "trailing": "ws://example.com/a/\nAu ws://example.com:*\nDu ws://example.com/a/*",
    }


def options_seeds():
    return {
        "go": "1m30s\n2=s10s\n3=i1500\n8=i1048576",
        "frac": "1.5h\n+2=s300ms\n10=f2.5",
        "units": "10µs\n2=s5ns\n4=s1h2m3.004005006s",
        "mu": "10μs\n3=t\n5=i2",
        "neg": "-0\n2=s-1s\n0=dAuthorization:Bearer x|Host:h",
        "big": "2562047h47m16.854775807s\n2=s2562047h47m16.854775808s",
        "zero": "0\n2=i0\n6=i0\n7=i0",
        "bad": ".s\n2=s1\n1=lchat|chat\n9=b1",
        "pairs": "1.s\n0=pX-A:1|X-B:2\n1=lchat|superchat\n14=shttp://p:3128",
        "float": "0.000000001s\n2=f1e400\n3=fnan\n13=i101",
        "proxy": "1s\n14=ssocks5h://user:pw@[::1]:1080\n15=n\n+14=ssocks4://h",
        "digits": "00000000000000000000001ns\n2=s0000000000000000000000000000001s",
    }


def main() -> None:
    for name, seeds in (("frames", frames_seeds()), ("http", http_seeds()),
                        ("urls", urls_seeds()), ("options", options_seeds())):
        d = ROOT / name
        d.mkdir(parents=True, exist_ok=True)
        for old in d.iterdir():
            old.unlink()
        total = 0
        for key, value in seeds.items():
            data = value.encode("utf-8") if isinstance(value, str) else value
            (d / key).write_bytes(data)
            total += len(data)
        print(f"{name}: {len(seeds)} seeds, {total:,} bytes")


if __name__ == "__main__":
    os.chdir(ROOT.parent.parent)
    main()
