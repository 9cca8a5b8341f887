"""The public sync client: :func:`connect` and :class:`Client`.

``connect`` checks the options and the security policy, dials
(:mod:`wsfast.transport`), runs the upgrade through the sans-I/O
:class:`~wsfast.protocol.Protocol` and hands the open connection to the I/O engine
(:mod:`wsfast.engine`: the socket, the reader thread, writes). ``Client`` validates the
user's arguments and reports the connection's outcome; it does no I/O of its own.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Dict, Mapping, Optional, Union

from .channels import Channel
from .constants import CLOSE_CODES
from .engine import Engine, upgrade
from .errors import ConnectionClosed, Error, HandshakeError, InvalidOption
from .handshake import Redirects
from .options import Options, parse_options
from .policy import check_connect
from .protocol import Protocol, check_close_args, check_ping_args, check_send_args
from .proxy import select_proxy
from .transport import Cancel, dial

__all__ = ["Client", "connect", "connect_with"]


class Client:
    """A connected WebSocket client, returned by [`connect`][wsfast.connect].

    Not meant to be constructed directly. One reader thread per client reads the
    socket, answers pings at once (even while the consumer is slow) and puts data
    messages on the receive [`channel`][wsfast.Client.channel]. ``send``, ``ping`` and
    ``close`` may be called from any thread. ``with wsfast.connect(url) as client:``
    closes on exit (a ``ConnectionClosed`` from an already ended connection is
    swallowed). The attributes are read-only.

    Attributes:
        url (str): The normalised URL; after redirects, the final one.
        proxy (str | None): The proxy URL used, credentials removed, or None.
        subprotocol (str | None): The subprotocol the server chose, or None.
        extensions (str | None): The negotiated ``Sec-WebSocket-Extensions`` value, or None.
        response_headers (dict[str, str]): The handshake response headers: lower-cased
            names, repeated headers joined with ``", "``.
    """

    def __init__(self, engine: Engine, proto: Protocol, proxy: Optional[str] = None) -> None:
        self.url: str = proto.url
        self.proxy: Optional[str] = proxy   # the proxy URL used, credentials removed
        self.subprotocol: Optional[str] = proto.subprotocol
        self.extensions: Optional[str] = proto.extensions
        self.response_headers: Dict[str, str] = proto.response_headers
        self._engine = engine
        self._send = engine.send

    def channel(self) -> Channel:
        """The receive channel of this client (always the same [`Channel`][wsfast.Channel]).

        It carries only data messages ([`Message`][wsfast.Message]; control frames never
        appear) and is closed when the connection ends for any reason, after which
        ``receive()`` returns the buffered messages, then ``(None, False)``. Raises nothing.
        """
        return self._engine.channel

    @property
    def closed(self) -> bool:
        """True once the connection has ended (closing handshake done or connection lost)."""
        return self._engine.ended

    @property
    def close_code(self) -> Optional[int]:
        """The close code: None while open.

        Then the code in the peer's close frame (1005 when it carried none); else the code
        this client failed the connection with (1002, 1007, 1009, 1001 for a read
        timeout...); else 1006 (no close frame, e.g. the server never answered).
        """
        if not self._engine.ended:
            return None
        return self._engine.outcome()[0]

    @property
    def close_reason(self) -> Optional[str]:
        """The reason that goes with ``close_code`` (``""`` when none); None while open."""
        if not self._engine.ended:
            return None
        return self._engine.outcome()[1]

    @property
    def error(self) -> Optional[Error]:
        """The [`wsfast.Error`][wsfast.Error] that ended the connection abnormally, else None.

        An error that ended the connection while nobody was calling into the client (a
        read timeout, a protocol error, a reset) is raised nowhere: it is here.
        """
        return self._engine.outcome()[2]

    @property
    def latency(self) -> Optional[float]:
        """Seconds of the last ping's round trip (a keepalive ping or ``ping()``, to its pong).

        None before the first pong. A pong answers its ping and every ping sent before it.
        """
        return self._engine.latency()

    @property
    def stats(self) -> Dict[str, int]:
        """Counters ``messages_in``, ``bytes_in``, ``messages_out``, ``bytes_out``.

        Bytes as on the wire: frame headers included, the handshake not.
        """
        return self._engine.stats()

    def send(self, data: Union[str, bytes, bytearray, memoryview], type: Optional[int] = None) -> bool:
        """Send one message: ``str`` as TEXT, bytes-like as BINARY, unless ``type`` says.

        Frames of concurrent sends are never interleaved.

        Args:
            data: The message.
            type: ``wsfast.TEXT`` or ``wsfast.BINARY``: ``send(str, BINARY)`` sends the
                UTF-8 bytes, ``send(bytes, TEXT)`` requires valid UTF-8.

        Returns:
            True once the frame is written or queued (the reader thread writes the queue).

        Raises:
            InvalidOption: Bad data or type, invalid UTF-8, a lone surrogate.
            ConnectionClosed: The connection ended, or ``close()`` was called.
            Timeout: ``write_timeout`` expired (the connection stays usable if nothing
                was written; a frame cut half way drops it).
            ConnectError: The socket failed.
        """
        cls = data.__class__
        if type is None and (cls is str or cls is bytes):
            opcode = None
        else:
            data, opcode = check_send_args(data, type)
        try:
            self._send(data, opcode)
        except UnicodeEncodeError:
            raise InvalidOption("text is not valid Unicode (lone surrogate)") from None
        return True

    def ping(self, data: Union[bytes, str] = b"") -> bool:
        """Send a ping and return without waiting for the pong.

        Args:
            data: The payload, at most 125 bytes (a ``str`` is sent as UTF-8).

        Returns:
            True once the ping is written or queued.

        Raises:
            InvalidOption: ``data`` is not bytes or str, or is over 125 bytes.
            ConnectionClosed: The connection ended, or ``close()`` was called.
            ConnectError: The socket failed.
        """
        self._engine.ping(check_ping_args(data))
        return True

    def close(self, code: int = CLOSE_CODES.NORMAL, reason: str = "") -> bool:
        """Run the closing handshake, then drop the socket.

        Waits at most ``close_timeout`` for the server's close frame and TCP FIN: it never
        hangs and never raises for a silent server. Messages already in the channel stay
        there; messages arriving during the closing handshake are dropped.

        Args:
            code: A code that may be sent: 1000-1003, 1007-1014, 3000-4999.
            reason: At most 123 UTF-8 bytes.

        Returns:
            True once the connection is closed.

        Raises:
            InvalidOption: A code or reason that may not be sent.
            ConnectionClosed: The connection already ended, or ``close()`` was already
                called (a second ``close()`` raises, like the Lua spec's). It is raised
                once the end is complete, as above: after a server's close frame the
                client still waits, at most ``close_timeout``, for its TCP FIN, and so
                does this ``close()`` (and leaving a ``with`` block).
        """
        check_close_args(code, reason)
        self._engine.close(int(code), reason)
        return True

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.close()
        except ConnectionClosed:
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<wsfast.Client {self.url} {state}>"


# ---------------------------------------------------------------------- connecting

def connect(url: str, options: Optional[Mapping[str, Any]] = None, /, **kwargs: Any) -> Client:
    """Open a WebSocket connection (HTTP/1.1 upgrade) and return a connected [`Client`][wsfast.Client].

    The URL is parsed and normalised once; the security policy is checked against it
    before any DNS or TCP work, and again for every redirect hop before that hop is
    dialled. A duration is an int/float of milliseconds, a Go duration str (``"300ms"``,
    ``"1m30s"``) or a ``timedelta``; 0 means no timeout.

    ```python
    client = wsfast.connect("wss://api.example.com/ws", {"dial_timeout": "10s"})
    client = wsfast.connect("wss://api.example.com/ws", protocols=["graphql-ws"],
                            compression=wsfast.COMPRESSION.CONTEXT_TAKEOVER)
    ```

    Args:
        url: A ``ws://`` or ``wss://`` URL.
        options: Option names to values (the Lua spec's style).
        **kwargs: The same names as keywords; a name given both ways is an InvalidOption.

    Other Parameters:
        headers (dict | list): Extra handshake headers, a dict or ``(name, value)`` pairs:
            names are HTTP tokens, values Latin-1 without control characters. ``Host``
            (put the host in the URL, the one the policy checked) and the WebSocket
            headers (``Upgrade``, ``Connection``, ``Sec-WebSocket-*``: use ``protocols``
            and ``compression``) are refused.
        protocols (list[str]): Subprotocols to offer; the choice is ``client.subprotocol``.
        dial_timeout (duration): DNS + TCP + TLS + proxy + HTTP upgrade, all together and
            for the whole redirect chain. Default 30 s.
        read_timeout (duration): No data message for this long ends the connection:
            close 1001 "read timeout", ``client.error`` a Timeout. Pings alone do not
            reset it. Default none.
        write_timeout (duration): A ``send`` blocked this long raises Timeout. Default none.
        close_timeout (duration): How long ``close()`` waits for the server (> 0). Default 10 s.
        compression (int | COMPRESSION): permessage-deflate (RFC 7692): ``DISABLED`` (0,
            the default), ``CONTEXT_TAKEOVER`` (1) or ``NO_CONTEXT`` (2).
        compression_threshold (int): Messages of this many bytes or more are compressed;
            0 = all; at most 100 MiB. Default 128 (context takeover), 512 (no context).
        read_limit (int): Largest message accepted, after inflating; larger closes with
            1009. At most 128 MiB; 0 means the default, 16 MiB.
        channel_capacity (int): Bound of the receive channel, 1..10000. Default 256.
        ssl (ssl.SSLContext | None): TLS settings for ``wss://``. Default: the verified
            system trust store.
        ping_interval (duration): After this long with nothing received, send a keepalive
            ping; 0 disables keepalive. Default 20 s.
        ping_timeout (duration): Nothing received within this long after a keepalive ping:
            the connection is dead (Timeout, close code 1006); 0 = ping, never conclude.
            Default 20 s.
        max_redirects (int): Handshake redirects (301, 302, 303, 307, 308) followed,
            0..100; 0 = none. Default 10.
        proxy (str | bool | None): None (the default): from the environment (``wss_proxy``,
            ``https_proxy``, ``http_proxy``, ``all_proxy``, ``no_proxy``); False: no proxy;
            or an ``http://``, ``https://``, ``socks4://``, ``socks4a://``, ``socks5://``
            or ``socks5h://`` URL, with optional ``user:password@``.
        proxy_ssl (ssl.SSLContext | None): TLS settings for the connection to an
            ``https://`` proxy. Default: the verified system trust store.

    Returns:
        The connected client.

    Raises:
        PermissionDenied: The security policy denies ``websocket.connect`` or the URL.
        InvalidOption: A bad URL, an unknown option, a wrong type or out-of-range value.
        Timeout: ``dial_timeout`` expired.
        ConnectError: DNS failure, connection refused or reset, TLS failure (not
            retryable for certificate verification), the server closing during the
            handshake. ProxyError, a ConnectError, when the proxy refused or broke the
            tunnel (not retryable for 407 and 403).
        HandshakeError: A non-101 answer (``status``, ``headers``, ``body``; retryable for
            5xx, 408, 429), a wrong ``Sec-WebSocket-Accept``, a subprotocol or extension
            that was not offered, a malformed response; too many redirects, a redirect to
            another scheme or from ``wss`` to ``ws`` (not retryable).
    """
    return connect_with(url, parse_options(options, kwargs))


def connect_with(url: str, opts: Options, cancel: Optional[Cancel] = None) -> Client:
    """:func:`connect` with parsed options; ``cancel`` lets another thread stop the
    dial (the reconnect iterator's ``close()``). Raises as :func:`connect` does."""
    target = check_connect(url)          # the security policy, before any DNS or TCP work
    deadline = None if opts.dial_timeout is None else time.monotonic() + opts.dial_timeout
    redirects = Redirects(target, opts.headers, opts.max_redirects)
    while True:
        proxy = select_proxy(target, opts.proxy)      # (per hop: no_proxy may differ)
        sock = dial(target, opts, deadline, cancel, proxy)   # (one dial_timeout for the whole chain)
        hop = opts if not redirects.hops else replace(opts, headers=redirects.headers())
        proto = Protocol(target, hop)
        try:
            initial = upgrade(sock, proto, deadline, target)
            engine = Engine(sock, proto, opts, initial)
        except HandshakeError as refusal:
            sock.close()
            if proto.redirect is None:
                raise
            target = check_connect(redirects.follow(refusal))   # policy per hop, before its DNS
            redirects.arrived(target)
            continue
        except BaseException:
            sock.close()
            raise
        finally:
            if cancel is not None:
                cancel.forget(sock)
        return Client(engine, proto, proxy.display if proxy is not None else None)
