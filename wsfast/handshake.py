"""The HTTP/1.1 upgrade (RFC 6455 §4) and permessage-deflate negotiation (RFC 7692), sans-I/O.

Bytes in, values out: :func:`build_request` makes the request bytes, :class:`ResponseParser`
turns the server's bytes into a :class:`Response`, :func:`check_response` validates it and
returns the negotiated subprotocol and deflate parameters. Nothing here touches a socket.

Decisions:

- Request header values are encoded as Latin-1, strictly (HTTP's historical charset, what
  browsers send); a name, value, host or resource that cannot be encoded, or that holds a
  control character (CR, LF, NUL...), raises :class:`~wsfast.errors.InvalidOption`.
- User headers follow one rule, :func:`user_header_problem`, which ``wsfast.options`` applies
  too (so a bad header fails before any connection). Refused with ``InvalidOption``: ``Host``
  (the request carries the URL's host, the one the security policy checked: another Host
  would have the server route the request to a host no policy checked) and the headers the
  handshake owns (Upgrade, Connection, every Sec-WebSocket-*: use the ``protocols`` and
  ``compression`` options).
- Response bytes are decoded as Latin-1 (lossless). A bare LF ends a line like CRLF does
  (RFC 9112 §2.2 allows it); a bare CR, an obs-fold continuation line, a control character
  in a value, a line without a colon or a name that is not a token is a malformed response.
- An empty ``Sec-WebSocket-Protocol`` or ``Sec-WebSocket-Extensions`` header counts as absent.
- Extension and parameter names are matched case-insensitively; subprotocols exactly.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from .constants import COMPRESSION
from .errors import HandshakeError, InvalidOption

__all__ = [
    "GUID",
    "USER_AGENT",
    "DeflateParams",
    "Response",
    "ResponseParser",
    "accept_value",
    "build_request",
    "check_response",
    "extension_offer",
    "new_key",
    "user_header_problem",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _user_agent() -> str:
    try:
        return "wsfast/" + version("wsfast")
    except PackageNotFoundError:  # not installed (running from a checkout): no version to tell
        return "wsfast"


USER_AGENT = _user_agent()

# The HTTP grammar both the request (here and in wsfast.options) and the response use; the
# only copy of each pattern, str and bytes side by side.
# RFC 9110 §5.6.2 token: 1*tchar (header names, subprotocols, extension names).
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
TOKEN_BYTES = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Control characters other than HTAB (CR, LF, NUL...): never valid in a header value or
# reason phrase.
CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
CTL_BYTES = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_STATUS_LINE = re.compile(rb"(HTTP/[0-9]\.[0-9]) ([0-9]{3})(?: (.*))?", re.DOTALL)
_OWS = re.compile(r"[ \t]*")
_QUOTED = re.compile(r'"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[^\x00-\x08\x0a-\x1f\x7f])*)"')
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_WINDOW_BITS = re.compile(r"[1-9][0-9]?")

# Request headers the handshake writes itself (with every name starting "sec-websocket-").
_OWNED_HEADERS = frozenset(("upgrade", "connection"))
_OWNED_PREFIX = "sec-websocket-"

_OFFERS = {
    COMPRESSION.DISABLED: None,
    # Two offers: a server that wants the client to reset its context picks the second.
    COMPRESSION.CONTEXT_TAKEOVER: (
        "permessage-deflate; client_max_window_bits, "
        "permessage-deflate; client_max_window_bits; client_no_context_takeover"
    ),
    COMPRESSION.NO_CONTEXT: (
        "permessage-deflate; client_no_context_takeover; server_no_context_takeover"
    ),
}


@dataclass(frozen=True)
class DeflateParams:
    """The negotiated permessage-deflate parameters (RFC 7692 §7).

    Window bits are 8..15 (15 when the server did not send the parameter). Note for the
    codec: zlib cannot deflate with an 8-bit window (``wbits=-8`` is rejected), so a
    ``client_max_window_bits`` of 8 cannot be honoured by compressing; sending messages
    uncompressed is always valid.
    """

    server_no_context_takeover: bool
    client_no_context_takeover: bool
    server_max_window_bits: int = 15
    client_max_window_bits: int = 15


@dataclass(frozen=True)
class Response:
    """The status line and headers of the server's handshake response.

    Header names are kept as received; values are stripped of surrounding whitespace.
    """

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]

    def get_all(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in order."""
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    def get(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive); several are joined with ", "."""
        values = self.get_all(name)
        return ", ".join(values) if values else None

    @property
    def content_length(self) -> int | None:
        """The body length announced by Content-Length, or None (absent, invalid, chunked)."""
        if self.get_all("Transfer-Encoding"):
            return None  # Transfer-Encoding overrides Content-Length (RFC 9112 §6.3)
        values = self.get_all("Content-Length")
        # A list of identical values ("12, 12") is allowed (RFC 9112 §6.3); anything else isn't.
        items = {item.strip() for value in values for item in value.split(",")}
        if len(items) != 1:
            return None
        (item,) = items
        if not item.isascii() or not item.isdigit() or len(item) > 18:
            return None
        return int(item)


def new_key() -> str:
    """A fresh Sec-WebSocket-Key: base64 of 16 random bytes."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_value(key: str) -> str:
    """The Sec-WebSocket-Accept value a server must answer to ``key``: base64(sha1(key + GUID))."""
    digest = hashlib.sha1((key + GUID).encode("latin-1")).digest()
    return base64.b64encode(digest).decode("ascii")


def _mode(compression: int) -> COMPRESSION:
    if isinstance(compression, bool) or not isinstance(compression, int):
        raise InvalidOption(f"compression must be 0, 1 or 2, not {compression!r}")
    try:
        return COMPRESSION(compression)
    except ValueError:
        raise InvalidOption(f"compression must be 0, 1 or 2, not {compression!r}") from None


def extension_offer(compression: int) -> str | None:
    """The Sec-WebSocket-Extensions offer for a ``COMPRESSION`` mode; None when DISABLED.

    Raises InvalidOption for an unknown mode.
    """
    return _OFFERS[_mode(compression)]


def _field_problem(what: str, text: object) -> str | None:
    # The value itself is never shown: it may be a credential (Authorization, Cookie).
    if not isinstance(text, str):
        return f"{what} must be a str, not {type(text).__name__}"
    if CTL.search(text):
        return f"{what} contains a control character (CR, LF, NUL...)"
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return f"{what} is not Latin-1 encodable"
    return None


def _check_field(what: str, text: object) -> str:
    problem = _field_problem(what, text)
    if problem is not None:
        raise InvalidOption(problem)
    assert isinstance(text, str)  # _field_problem checked it
    return text


def user_header_problem(name: object, value: object) -> str | None:
    """Why ``(name, value)`` cannot be a user header of the upgrade request, or None if it can.

    The one rule for user headers (``build_request`` and ``wsfast.options`` both apply it):
    the name must be an HTTP token other than ``Host`` and the names the handshake owns
    (Upgrade, Connection, Sec-WebSocket-*), case-insensitively; the value a Latin-1 str
    without control characters.
    """
    if not isinstance(name, str) or not TOKEN.fullmatch(name):
        return f"header name {name!r} is not an HTTP token"
    lname = name.lower()
    if lname == "host":
        return (f"header {name!r} cannot be set: the request carries the URL's host, the one "
                "the security policy checked, and another Host would have the server route it "
                "to a host no policy checked; put the host in the URL")
    if lname in _OWNED_HEADERS or lname.startswith(_OWNED_PREFIX):
        return (f"header {name!r} is set by the WebSocket handshake; "
                "use the protocols and compression options")
    return _field_problem(f"value of header {name!r}", value)


def build_request(
    *,
    host_header: str,
    resource: str,
    key: str,
    headers: Sequence[tuple[str, str]] = (),
    protocols: Sequence[str] = (),
    extensions: str | None = None,
    user_agent: str | None = USER_AGENT,
) -> bytes:
    """The bytes of the upgrade request (RFC 6455 §4.1).

    Order: request line, Host, Upgrade, Connection, Sec-WebSocket-Key, Sec-WebSocket-Version,
    Sec-WebSocket-Protocol (comma-joined, when ``protocols``), Sec-WebSocket-Extensions (when
    ``extensions``), User-Agent (unless ``user_agent`` is None or ``headers`` has one), then
    ``headers`` in order. Raises InvalidOption for a value that is not Latin-1 encodable or
    holds a control character, a resource not starting with "/", a subprotocol that is not a
    token, or a header :func:`user_header_problem` refuses (Host among them).
    """
    if not isinstance(resource, str) or not re.fullmatch(r"/[\x21-\x7e]*", resource):
        raise InvalidOption(f"invalid request resource: {resource!r}")
    user: list[tuple[str, str]] = []
    has_user_agent = False
    for pair in headers:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise InvalidOption(f"a header must be a (name, value) pair, not {pair!r}")
        name, value = pair
        problem = user_header_problem(name, value)
        if problem is not None:
            raise InvalidOption(problem)
        has_user_agent = has_user_agent or name.lower() == "user-agent"
        user.append((name, value))

    lines = [
        f"GET {resource} HTTP/1.1",
        f"Host: {_check_field('host', host_header)}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {_check_field('key', key)}",
        "Sec-WebSocket-Version: 13",
    ]
    if protocols:
        for protocol in protocols:
            if not isinstance(protocol, str) or not TOKEN.fullmatch(protocol):
                raise InvalidOption(f"invalid subprotocol: {protocol!r}")
        lines.append("Sec-WebSocket-Protocol: " + ", ".join(protocols))
    if extensions:
        lines.append(f"Sec-WebSocket-Extensions: {_check_field('extensions', extensions)}")
    if user_agent is not None and not has_user_agent:
        lines.append(f"User-Agent: {_check_field('user_agent', user_agent)}")
    lines += [f"{name}: {value}" for name, value in user]
    lines += ["", ""]
    return "\r\n".join(lines).encode("latin-1")


def _malformed(what: str, url: str | None) -> HandshakeError:
    return HandshakeError(f"malformed response: {what}", url=url)


class ResponseParser:
    """Incremental parser of the HTTP/1.1 101 response. feed() bytes as they arrive.

    Bytes may be split anywhere. The header block (status line to the empty line, included)
    may hold at most ``max_size`` bytes and ``max_headers`` header lines, else HandshakeError
    "response too large"; anything unparsable raises HandshakeError "malformed response"
    (as early as possible: a first byte that cannot begin "HTTP/" fails at once). Once an
    error was raised, every later feed() raises it again.
    """

    def __init__(self, max_size: int = 65536, *, max_headers: int = 256,
                 url: str | None = None) -> None:
        self._max_size = max_size
        self._max_headers = max_headers
        self._url = url
        self._buf = bytearray()
        self._scan = 0  # where the search for the next LF resumes
        self._line_start = 0  # where the line being received starts
        self._status: tuple[int, str] | None = None
        self._headers: list[tuple[str, str]] = []
        self._response: Response | None = None
        self._leftover = b""
        self._error: HandshakeError | None = None

    @property
    def response(self) -> Response | None:
        """The parsed response once complete, else None."""
        return self._response

    @property
    def leftover(self) -> bytes:
        """The bytes received after the header block (the first WebSocket frames), exactly."""
        return self._leftover

    def feed(self, data: bytes) -> Response | None:
        """Add received bytes; None while more are needed, then the Response.

        After completion, more data is appended to ``leftover`` and the Response returned
        again. Raises HandshakeError for a malformed or oversized response.
        """
        if self._error is not None:
            raise self._error
        if self._response is not None:
            if data:
                self._leftover += bytes(data)
            return self._response
        self._buf += data
        try:
            return self._parse()
        except HandshakeError as exc:
            self._error = exc
            raise

    def _parse(self) -> Response | None:
        buf = self._buf
        if self._status is None and not b"HTTP/".startswith(bytes(buf[:5])):
            raise _malformed(f"not an HTTP response: {bytes(buf[:16])!r}", self._url)
        while True:
            lf = buf.find(b"\n", self._scan)
            if lf < 0:
                self._scan = len(buf)
                if len(buf) >= self._max_size:  # the empty line can only end beyond the limit
                    raise self._too_large()
                return None
            end = lf + 1
            if end > self._max_size:
                raise self._too_large()
            line = bytes(buf[self._line_start:lf])
            self._scan = end
            self._line_start = end
            if line.endswith(b"\r"):
                line = line[:-1]
            if self._status is None:
                self._status = self._parse_status_line(line)
            elif line:
                if len(self._headers) >= self._max_headers:
                    raise self._too_large()
                self._headers.append(self._parse_header_line(line))
            else:
                status, reason = self._status
                self._response = Response(status, reason, tuple(self._headers))
                self._leftover = bytes(buf[end:])
                self._buf = bytearray()
                return self._response

    def _too_large(self) -> HandshakeError:
        return HandshakeError(
            f"response too large: more than {self._max_size} bytes or "
            f"{self._max_headers} headers", url=self._url)

    def _parse_status_line(self, line: bytes) -> tuple[int, str]:
        match = _STATUS_LINE.fullmatch(line)
        if match is None:
            raise _malformed(f"invalid status line {line[:80]!r}", self._url)
        version, code, reason = match.groups()
        if version != b"HTTP/1.1":
            raise _malformed(f"unsupported HTTP version {version.decode()!r}", self._url)
        status = int(code)
        if not 100 <= status <= 599:
            raise _malformed(f"invalid status code {status}", self._url)
        reason = reason or b""
        if CTL_BYTES.search(reason):
            raise _malformed(f"invalid reason phrase {reason[:80]!r}", self._url)
        return status, reason.decode("latin-1")

    def _parse_header_line(self, line: bytes) -> tuple[str, str]:
        if line[:1] in (b" ", b"\t"):
            raise _malformed(f"obsolete line folding {line[:80]!r}", self._url)
        name, colon, value = line.partition(b":")
        if not colon:
            raise _malformed(f"header line without a colon {line[:80]!r}", self._url)
        if not TOKEN_BYTES.fullmatch(name):
            raise _malformed(f"invalid header name {name[:80]!r}", self._url)
        value = value.strip(b" \t")
        if CTL_BYTES.search(value):
            raise _malformed(f"invalid header value {line[:80]!r}", self._url)
        return name.decode("ascii"), value.decode("latin-1")


def _parse_extensions(value: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Parse a Sec-WebSocket-Extensions value (RFC 6455 §9.1); ValueError says what's wrong.

    ``ext *( ";" param [ "=" (token | quoted-string) ] )`` separated by commas, optional
    whitespace around delimiters, empty list elements ignored (RFC 9110 §5.6.1). A quoted
    value must unescape to a token.
    """
    result: list[tuple[str, list[tuple[str, str | None]]]] = []
    end = len(value)
    pos = _OWS.match(value, 0).end()

    def token(pos: int, what: str) -> tuple[str, int]:
        match = TOKEN.match(value, pos)
        if match is None:
            raise ValueError(f"expected {what} at position {pos}")
        return match.group(), _OWS.match(value, match.end()).end()

    while pos < end:
        if value[pos] == ",":  # empty element
            pos = _OWS.match(value, pos + 1).end()
            continue
        name, pos = token(pos, "an extension name")
        params: list[tuple[str, str | None]] = []
        while pos < end and value[pos] == ";":
            pname, pos = token(_OWS.match(value, pos + 1).end(), "a parameter name")
            pvalue: str | None = None
            if pos < end and value[pos] == "=":
                pos = _OWS.match(value, pos + 1).end()
                quoted = _QUOTED.match(value, pos)
                if quoted is not None:
                    pvalue = _QUOTED_PAIR.sub(r"\1", quoted.group(1))
                    if not TOKEN.fullmatch(pvalue):
                        raise ValueError(f"quoted value of {pname} is not a token")
                    pos = _OWS.match(value, quoted.end()).end()
                else:
                    pvalue, pos = token(pos, f"a value for {pname}")
            params.append((pname, pvalue))
        result.append((name, params))
        if pos < end:
            if value[pos] != ",":
                raise ValueError(f"unexpected {value[pos]!r} at position {pos}")
            pos = _OWS.match(value, pos + 1).end()
    return result


def _negotiate(
    extensions: list[tuple[str, list[tuple[str, str | None]]]], mode: COMPRESSION,
) -> DeflateParams:
    """The DeflateParams the server's accepted extension gives; ValueError if it can't be."""
    if len(extensions) != 1:
        names = ", ".join(name for name, _ in extensions)
        raise ValueError(f"the server accepted {len(extensions)} extensions ({names}), "
                         "only one permessage-deflate was offered")
    name, params = extensions[0]
    if name.lower() != "permessage-deflate":
        raise ValueError(f"the server accepted extension {name!r}, which was not offered")
    flags = {"server_no_context_takeover": False, "client_no_context_takeover": False}
    bits = {"server_max_window_bits": 15, "client_max_window_bits": 15}
    seen = set()
    for pname, pvalue in params:
        key = pname.lower()
        if key in seen:
            raise ValueError(f"duplicate parameter {pname}")
        seen.add(key)
        if key in flags:
            if pvalue is not None:
                raise ValueError(f"parameter {pname} must not have a value")
            flags[key] = True
        elif key in bits:
            if key == "client_max_window_bits" and mode is COMPRESSION.NO_CONTEXT:
                raise ValueError("client_max_window_bits was not offered")
            if pvalue is None or not _WINDOW_BITS.fullmatch(pvalue) \
                    or not 8 <= int(pvalue) <= 15:
                raise ValueError(f"{pname} must be 8..15, not {pvalue!r}")
            bits[key] = int(pvalue)
        else:
            raise ValueError(f"unknown parameter {pname}")
    # RFC 7692 §7.1.1.1: a server accepting an offer with server_no_context_takeover
    # MUST include it in the response.
    if mode is COMPRESSION.NO_CONTEXT and not flags["server_no_context_takeover"]:
        raise ValueError("server_no_context_takeover was offered but is missing")
    return DeflateParams(
        server_no_context_takeover=flags["server_no_context_takeover"],
        # In NO_CONTEXT mode the client resets its context whatever the server answered.
        client_no_context_takeover=(flags["client_no_context_takeover"]
                                    or mode is COMPRESSION.NO_CONTEXT),
        server_max_window_bits=bits["server_max_window_bits"],
        client_max_window_bits=bits["client_max_window_bits"],
    )


def _list_items(value: str | None) -> list[str]:
    """The non-empty elements of a comma-separated header value, stripped."""
    if value is None:
        return []
    return [item.strip() for item in value.split(",") if item.strip()]


def check_response(
    response: Response,
    *,
    key: str,
    protocols: Sequence[str],
    compression: int,
    url: str,
    body: bytes = b"",
) -> tuple[str | None, str | None, DeflateParams | None]:
    """Validate the server's response to the request made with ``key``, ``protocols`` and
    ``extension_offer(compression)``.

    Returns ``(subprotocol, extensions_header_value, deflate_params)``; the last two are
    None when the server accepted no extension. Raises HandshakeError: for a status other
    than 101 (with ``status``, ``headers``, ``body[:4096]``; retryable for 5xx, 408, 429), a
    missing Upgrade/Connection token, a wrong Sec-WebSocket-Accept, a subprotocol or
    extension that was not offered, or invalid extension parameters.
    """
    mode = _mode(compression)
    status = response.status
    headers = list(response.headers)
    if status != 101:
        reason = response.reason.strip()
        raise HandshakeError(
            f"server rejected WebSocket upgrade: HTTP {status}" + (f" {reason}" if reason else ""),
            retryable=status >= 500 or status in (408, 429),
            status=status, headers=headers, body=bytes(body[:4096]), url=url)

    def fail(what: str) -> HandshakeError:
        return HandshakeError(f"invalid WebSocket handshake response: {what}",
                              retryable=False, status=status, headers=headers, url=url)

    upgrade = response.get("Upgrade")
    if "websocket" not in (item.lower() for item in _list_items(upgrade)):
        raise fail(f"Upgrade header is {upgrade!r}, expected 'websocket'")
    connection = response.get("Connection")
    if "upgrade" not in (item.lower() for item in _list_items(connection)):
        raise fail(f"Connection header is {connection!r}, expected 'Upgrade'")
    accepts = response.get_all("Sec-WebSocket-Accept")
    if accepts != [accept_value(key)]:
        raise fail(f"Sec-WebSocket-Accept is {response.get('Sec-WebSocket-Accept')!r}, "
                   f"expected {accept_value(key)!r}")

    chosen = _list_items(response.get("Sec-WebSocket-Protocol"))
    if len(chosen) > 1:
        raise fail(f"the server chose several subprotocols: {', '.join(chosen)}")
    subprotocol = chosen[0] if chosen else None
    if subprotocol is not None and subprotocol not in protocols:
        raise fail(f"the server chose subprotocol {subprotocol!r}, which was not offered")

    return (subprotocol,) + _check_extensions(response, mode, fail)


def _check_extensions(
    response: Response, mode: COMPRESSION, fail: Callable[[str], HandshakeError],
) -> tuple[str | None, DeflateParams | None]:
    raw = response.get("Sec-WebSocket-Extensions")
    value = raw.strip() if raw is not None else ""
    try:
        extensions = _parse_extensions(value)
    except ValueError as exc:
        raise fail(f"invalid Sec-WebSocket-Extensions {value!r}: {exc}") from None
    if not extensions:
        return None, None
    if mode is COMPRESSION.DISABLED:
        raise fail(f"the server accepted extensions {value!r}, but none was offered")
    try:
        return value, _negotiate(extensions, mode)
    except ValueError as exc:
        raise fail(f"Sec-WebSocket-Extensions {value!r}: {exc}") from None


# ---------------------------------------------------------------------- redirects (DESIGN §6)

# Request headers that carry credentials: sent on the first origin only.
CREDENTIAL_HEADERS = frozenset(("authorization", "cookie", "proxy-authorization"))
_SCHEME_OF = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}
_URI_REF = re.compile(r"(?:([A-Za-z][A-Za-z0-9+.\-]*):)?(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?",
                      re.DOTALL)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4."""
    out: list[str] = []
    while path:
        if path.startswith("../"):
            path = path[3:]
        elif path.startswith("./"):
            path = path[2:]
        elif path.startswith("/./"):
            path = path[2:]
        elif path == "/.":
            path = "/"
        elif path.startswith("/../"):
            path = path[3:]
            if out:
                out.pop()
        elif path == "/..":
            path = "/"
            if out:
                out.pop()
        elif path in (".", ".."):
            path = ""
        else:
            start = 1 if path.startswith("/") else 0
            end = path.find("/", start)
            if end < 0:
                end = len(path)
            out.append(path[:end])
            path = path[end:]
    return "".join(out)


def resolve_reference(base: str, ref: str) -> str:
    """``ref`` resolved against the absolute URI ``base`` (RFC 3986 §5.2, strict: a
    reference with a scheme is absolute). The fragment is dropped."""
    b_scheme, b_auth, b_path, b_query, _ = _URI_REF.fullmatch(base).groups()
    scheme, auth, path, query, _ = _URI_REF.fullmatch(ref).groups()
    if scheme is not None:
        path = _remove_dot_segments(path)
    else:
        scheme = b_scheme
        if auth is not None:
            path = _remove_dot_segments(path)
        else:
            auth = b_auth
            if path == "":
                path = b_path
                if query is None:
                    query = b_query
            else:
                if not path.startswith("/"):
                    # §5.2.3 merge
                    if b_auth is not None and b_path == "":
                        path = "/" + path
                    else:
                        path = b_path[:b_path.rfind("/") + 1] + path
                path = _remove_dot_segments(path)
    out = f"{scheme}:"
    if auth is not None:
        out += f"//{auth}"
    out += path
    if query is not None:
        out += f"?{query}"
    return out


def redirect_url(current: str, location: str) -> str:
    """The WebSocket URL a redirect's ``Location`` names: resolved against ``current``
    (RFC 3986), ``http``/``https`` mapped to ``ws``/``wss``.

    Raises HandshakeError (not retryable) for another scheme, or a Location that is not
    a URI reference (spaces, control characters).
    """
    location = location.strip()
    if not location or CTL.search(location) or " " in location:
        raise HandshakeError(f"redirect to a malformed Location {location!r}", url=current,
                             location=location)
    resolved = resolve_reference(current, location)
    scheme, _, rest = resolved.partition(":")
    mapped = _SCHEME_OF.get(scheme.lower())
    if mapped is None:
        raise HandshakeError(f"redirect to a {scheme!r} URL (only ws, wss, http, https are followed)",
                             url=current, location=location)
    return f"{mapped}:{rest}"


class Redirects:
    """The redirect decisions of one ``connect`` (DESIGN §6), sans-I/O.

    ``first`` is the parsed first URL (a :class:`wsfast.policy.Target`), ``headers`` the
    user's headers. :meth:`follow` says where a refusal leads, or raises; the caller
    parses and policy-checks that URL before it dials it, then :meth:`arrived` there.
    """

    def __init__(self, first, headers: Sequence[tuple[str, str]], max_redirects: int) -> None:
        self._origin = (first.scheme, first.host, first.port)
        self._current = first
        self._headers = tuple(headers)
        self._left = max_redirects
        self.hops = 0

    def follow(self, refusal: HandshakeError) -> str:
        """The URL to try after ``refusal`` (which carries a ``location``), or raise:
        HandshakeError (not retryable) for too many redirects or a bad Location."""
        location = refusal.details.get("location")
        if location is None:
            raise refusal
        if self._left <= 0:
            raise HandshakeError(
                f"too many redirects: HTTP {refusal.status} to {location!r} after "
                f"{self.hops} followed (max_redirects {self.hops})",
                url=self._current.url, status=refusal.status, location=location,
                cause=refusal) from refusal
        self._left -= 1
        self.hops += 1
        return redirect_url(self._current.url, location)

    def arrived(self, target) -> None:
        """The next hop, parsed and allowed by the policy: check the downgrade.

        Raises HandshakeError (not retryable) for wss -> ws.
        """
        if self._current.secure and not target.secure:
            raise HandshakeError(f"redirect from wss to ws refused ({target.url})",
                                 url=self._current.url, location=target.url)
        self._current = target

    def headers(self) -> tuple[tuple[str, str], ...]:
        """The user's headers for the current hop: the credential headers only on the
        first URL's origin (scheme, host and port)."""
        t = self._current
        if (t.scheme, t.host, t.port) == self._origin:
            return self._headers
        return tuple(h for h in self._headers if h[0].lower() not in CREDENTIAL_HEADERS)
