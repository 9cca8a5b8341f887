"""The HTTP side: the handshake's response parser and checks, the proxy's CONNECT
answer, redirect Locations, and the Protocol through its handshake.

The input picks limits, a compression mode, subprotocols, cut points and the bytes.
Invariants: only ``HandshakeError`` (``ProxyError`` for the tunnel, ``InvalidOption``
for a redirect target's URL) comes out; feeding the bytes whole or cut gives the same
response or the same error; the bytes after the header block are handed back exactly.
"""

from __future__ import annotations

from wsfast import handshake, proxy
from wsfast.errors import Error, HandshakeError, InvalidOption, ProxyError
from wsfast.options import parse_options
from wsfast.policy import parse_url
from wsfast.protocol import Protocol

KEY = "dGhlIHNhbXBsZSBub25jZQ=="   # RFC 6455's example: accept s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
URL = "wss://example.com/chat"
TARGET = parse_url(URL)
PROXY = proxy.parse_proxy_url("http://user:pw@proxy.test:3128")
PROTOCOLS = ((), ("chat",), ("chat", "superchat"), ("graphql-ws",))
SIZES = (16, 64, 256, 65536)


class Finding(AssertionError):
    """An invariant does not hold."""


def _feed_all(parser, chunks):
    """(response fields, leftover) or ("error", class, message), and how many chunks it took."""
    result = None
    for chunk in chunks:
        try:
            result = parser.feed(chunk)
        except HandshakeError as exc:
            message = str(exc)
            if "not an HTTP response" in message:   # it shows the bytes received so far
                message = message.split(":", 2)[1]
            return ("error", type(exc).__name__, message)
    if result is None:
        return None
    return (result.status, result.reason, result.headers, parser.leftover)


def _tunnel(chunks):
    answer = proxy.TunnelAnswer(TARGET, PROXY)
    got = None
    for chunk in chunks:
        try:
            got = answer.feed(chunk)
        except ProxyError as exc:
            message = str(exc)
            if "not an HTTP response" in message:   # it shows the bytes received so far
                message = message.split(": not an HTTP response")[0]
            return ("error", message, exc.status)
        if got is not None:
            rest = b"".join(chunks)[sum(map(len, chunks[:chunks.index(chunk) + 1])):]
            return ("tunnel", got + rest)
    if not isinstance(answer.eof(), ProxyError):
        raise Finding("eof() is not a ProxyError")
    return None


def split_input(data: bytes):
    """The input's layout (fuzz/seeds.py writes seeds in it): 1 byte of flags, 1 byte of
    cut count (mod 7), 2 bytes per cut (big-endian, mod 301), then the bytes."""
    flags = data[0] if data else 0
    ncuts = data[1] % 7 if len(data) > 1 else 0
    cuts = [int.from_bytes(data[2 + 2 * i:4 + 2 * i], "big") % 301 for i in range(ncuts)]
    return flags, cuts, data[2 + 2 * ncuts:]


def one_input(data: bytes) -> None:
    flags, cuts, raw = split_input(data)
    max_size = SIZES[flags & 3]
    max_headers = (1, 4, 16, 256)[(flags >> 2) & 3]
    compression = ((flags >> 4) & 3) % 3
    protocols = PROTOCOLS[(flags >> 6) & 3]
    chunks, pos = [], 0
    for cut in cuts:
        chunks.append(raw[pos:pos + cut])
        pos += cut
    chunks.append(raw[pos:])

    # the response parser: whole and cut must agree
    whole = _feed_all(handshake.ResponseParser(max_size, max_headers=max_headers, url=URL), [raw])
    cut = _feed_all(handshake.ResponseParser(max_size, max_headers=max_headers, url=URL), chunks)
    if whole != cut:
        raise Finding(f"whole and cut disagree:\n  whole: {whole!r:.1000}\n  cut:   {cut!r:.1000}")
    if whole is not None and whole[0] != "error":
        status, reason, headers, leftover = whole
        if not raw.endswith(leftover):
            raise Finding("leftover is not the end of the input")
        response = handshake.Response(status, reason, headers)
        _ = response.content_length
        try:
            handshake.check_response(response, key=KEY, protocols=protocols,
                                     compression=compression, url=URL, body=leftover)
        except HandshakeError:
            pass
        location = response.get("Location")
        if location is not None:
            try:
                nxt = handshake.redirect_url(URL, location)
            except HandshakeError:
                nxt = None
            if nxt is not None:
                try:
                    parse_url(nxt)
                except InvalidOption:
                    pass

    # the proxy's answer to CONNECT: whole and cut agree, the tunnel's bytes exact
    t_whole = _tunnel([raw])
    t_cut = _tunnel(chunks)
    if t_whole != t_cut:
        raise Finding(f"CONNECT answer whole and cut disagree:\n  {t_whole!r:.1000}\n  {t_cut!r:.1000}")

    # the Protocol: handshake, then the frames after it, then the end of the stream
    options = parse_options({"compression": compression, "protocols": list(protocols),
                             "read_limit": 1 + max_size})
    proto = Protocol(TARGET, options, key=KEY)
    proto.data_to_send()
    try:
        for chunk in chunks:
            proto.receive_data(chunk)
            proto.data_to_send()
        proto.end_of_response()
        proto.receive_eof()
    except Error as exc:   # a typed error is an outcome, but the Protocol reports, not raises
        raise Finding(f"Protocol raised {exc!r} instead of recording it") from exc
    if proto.state != "CLOSED":
        raise Finding(f"after EOF the Protocol is {proto.state}")
    if proto.error is not None and not isinstance(proto.error, Error):
        raise Finding(f"Protocol.error is {proto.error!r}")
