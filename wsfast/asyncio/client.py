"""The public asyncio client: :func:`connect` and :class:`Client` (DESIGN §7).

The same options, errors, policy and attributes as the sync client, on the same
sans-I/O code: ``connect`` checks the options and the policy (in the task's context),
follows redirects (:class:`wsfast.handshake.Redirects`), dials
(:mod:`wsfast.asyncio.dial`) and runs the upgrade through the
:class:`~wsfast.protocol.Protocol`, in a :class:`~wsfast.asyncio.engine.Connection`.
``Client`` validates the user's arguments and reports the outcome.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, Dict, Generator, Mapping, Optional, Union

from ..constants import CLOSE_CODES
from ..errors import ConnectionClosed, Error, HandshakeError, InvalidOption, Timeout
from ..handshake import Redirects
from ..options import Options, parse_options
from ..policy import check_connect
from ..protocol import Protocol, check_close_args, check_ping_args, check_send_args
from ..proxy import select_proxy
from .channels import Channel
from .dial import dial
from .engine import Connection

__all__ = ["Client", "connect", "connect_with"]


class Client:
    """A connected asyncio WebSocket client, from [`connect`][wsfast.asyncio.connect].

    Not meant to be constructed directly. Use it from the event loop it was made in;
    no thread per connection. Received data messages arrive on
    [`channel`][wsfast.asyncio.Client.channel]. ``async with`` closes on exit (a
    ``ConnectionClosed`` from an already ended connection is swallowed). The attributes
    are those of the sync [`wsfast.Client`][wsfast.Client], read-only.

    Attributes:
        url (str): The normalised URL; after redirects, the final one.
        proxy (str | None): The proxy URL used, credentials removed, or None.
        subprotocol (str | None): The subprotocol the server chose, or None.
        extensions (str | None): The negotiated ``Sec-WebSocket-Extensions`` value, or None.
        response_headers (dict[str, str]): The handshake response headers: lower-cased
            names, repeated headers joined with ``", "``.
    """

    def __init__(self, conn: Connection, proxy: Optional[str] = None) -> None:
        proto = conn.proto
        self.url: str = proto.url
        self.proxy: Optional[str] = proxy
        self.subprotocol: Optional[str] = proto.subprotocol
        self.extensions: Optional[str] = proto.extensions
        self.response_headers: Dict[str, str] = proto.response_headers
        self._conn = conn
        self._proto = proto

    def channel(self) -> Channel:
        """The receive channel of this client (always the same [`Channel`][wsfast.asyncio.Channel]).

        It carries only data messages and is closed when the connection ends, after the
        buffered messages. A full channel pauses the transport's reading (TCP
        backpressure). Raises nothing.
        """
        return self._conn.channel

    @property
    def closed(self) -> bool:
        """True once the connection has ended."""
        return self._conn.ended.is_set()

    @property
    def close_code(self) -> Optional[int]:
        """The peer's close code; else the code this side failed with; else 1006. None while open."""
        return self._proto.close_code if self.closed else None

    @property
    def close_reason(self) -> Optional[str]:
        """The reason that goes with ``close_code`` (``""`` when none); None while open."""
        return self._proto.close_reason if self.closed else None

    @property
    def error(self) -> Optional[Error]:
        """The [`wsfast.Error`][wsfast.Error] that ended the connection abnormally, else None."""
        return self._proto.error

    @property
    def latency(self) -> Optional[float]:
        """Seconds of the last ping's round trip, None before the first pong."""
        return self._conn.latency

    @property
    def stats(self) -> Dict[str, int]:
        """Counters: messages and bytes in and out (bytes as on the wire)."""
        p = self._proto
        return {"messages_in": p.messages_in, "bytes_in": p.bytes_in,
                "messages_out": p.messages_out, "bytes_out": p.bytes_out}

    async def send(self, data: Union[str, bytes, bytearray, memoryview], type: Optional[int] = None) -> bool:
        """Send one message: ``str`` as TEXT, bytes-like as BINARY, unless ``type`` says.

        Args:
            data: The message.
            type: ``wsfast.TEXT`` or ``wsfast.BINARY``, as for the sync ``send``.

        Returns:
            True once the frame is queued for the transport (waiting, at most
                ``write_timeout``, while the transport's buffer is full).

        Raises:
            InvalidOption: Bad data or type, invalid UTF-8, a lone surrogate.
            ConnectionClosed: The connection ended, or ``close()`` was called.
            Timeout: ``write_timeout`` expired.
        """
        cls = data.__class__
        if type is None and (cls is str or cls is bytes):
            opcode = None
        else:
            data, opcode = check_send_args(data, type)
        try:
            await self._conn.send(data, opcode)
        except UnicodeEncodeError:
            raise InvalidOption("text is not valid Unicode (lone surrogate)") from None
        return True

    async def ping(self, data: Union[bytes, str] = b"") -> bool:
        """Send a ping and return without waiting for the pong.

        Args:
            data: The payload, at most 125 bytes (a ``str`` is sent as UTF-8).

        Returns:
            True once the ping is queued.

        Raises:
            InvalidOption: ``data`` is not bytes or str, or is over 125 bytes.
            ConnectionClosed: The connection ended, or ``close()`` was called.
        """
        self._conn.ping(check_ping_args(data))
        return True

    async def close(self, code: int = CLOSE_CODES.NORMAL, reason: str = "") -> bool:
        """Run the closing handshake; wait at most ``close_timeout`` for the server.

        Args:
            code: A code that may be sent: 1000-1003, 1007-1014, 3000-4999.
            reason: At most 123 UTF-8 bytes.

        Returns:
            True once the connection is closed.

        Raises:
            InvalidOption: A code or reason that may not be sent.
            ConnectionClosed: The connection already ended, or ``close()`` was already called.
                It is raised once the end is complete: after a server's close frame the
                client still waits, at most ``close_timeout``, for its TCP FIN, and so does
                this ``close()`` (and leaving an ``async with`` block), so that no transport
                outlives it.
        """
        check_close_args(code, reason)
        await self._conn.close(int(code), reason)
        return True

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self.close()
        except ConnectionClosed:
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<wsfast.asyncio.Client {self.url} {state}>"


class _Connecting:
    """What :func:`connect` returns: awaitable (the Client) and an async context manager
    (the Client, closed on exit)."""

    def __init__(self, url: str, opts: Options) -> None:
        self._url = url
        self._opts = opts
        self._client: Optional[Client] = None

    def __await__(self) -> Generator[Any, None, Client]:
        return connect_with(self._url, self._opts).__await__()

    async def __aenter__(self) -> Client:
        self._client = await connect_with(self._url, self._opts)
        return self._client

    async def __aexit__(self, *exc: Any) -> None:
        if self._client is not None:
            await self._client.__aexit__(*exc)


def connect(url: str, options: Optional[Mapping[str, Any]] = None, /, **kwargs: Any) -> _Connecting:
    """Open a WebSocket connection: ``client = await connect(url, ...)`` or
    ``async with connect(url, ...) as client``.

    The security policy in force is the one of the task that connects, checked before
    any DNS or TCP work and again for every redirect hop.

    Args:
        url: A ``ws://`` or ``wss://`` URL.
        options: The options of [`wsfast.connect`][wsfast.connect], with the same names,
            defaults and validation.
        **kwargs: The same names as keywords.

    Returns:
        An awaitable of the connected [`Client`][wsfast.asyncio.Client], also an async
            context manager that closes it on exit.

    Raises:
        InvalidOption: At the call, for bad options; when awaited, for a bad URL.
        PermissionDenied: When awaited: the security policy denies the connection.
        Timeout: When awaited: ``dial_timeout`` expired.
        ConnectError: When awaited: a transport failure (ProxyError for the proxy).
        HandshakeError: When awaited: the HTTP upgrade failed.
    """
    return _Connecting(url, parse_options(options, kwargs))


async def connect_with(url: str, opts: Options) -> Client:
    """:func:`connect` with parsed options. Raises as :func:`connect` does."""
    loop = asyncio.get_running_loop()
    target = check_connect(url)          # the policy in force in this task, before any DNS or TCP
    deadline = None if opts.dial_timeout is None else loop.time() + opts.dial_timeout
    redirects = Redirects(target, opts.headers, opts.max_redirects)
    while True:
        hop = opts if not redirects.hops else replace(opts, headers=redirects.headers())
        proto = Protocol(target, hop)
        proxy = select_proxy(target, opts.proxy)      # (per hop: no_proxy may differ)
        transport, conn = await dial(target, opts, deadline,
                                     lambda proto=proto: Connection(proto, opts),  # type: ignore[misc]
                                     proxy)
        try:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise asyncio.TimeoutError
            await asyncio.wait_for(asyncio.shield(conn.handshake), left)
        except HandshakeError as refusal:
            transport.abort()
            if proto.redirect is None:
                raise
            target = check_connect(redirects.follow(refusal))   # policy per hop, before its DNS
            redirects.arrived(target)
            continue
        except asyncio.TimeoutError:
            _abandon(transport, conn)
            raise Timeout("dial timeout waiting for the HTTP upgrade response", url=target.url) from None
        except BaseException:
            _abandon(transport, conn)
            raise
        return Client(conn, proxy.display if proxy is not None else None)


def _abandon(transport: asyncio.BaseTransport, conn: Connection) -> None:
    """End a connection whose upgrade nobody waits for any more (a timeout, a cancel):
    its handshake outcome, when it comes, is retrieved here, not logged as lost."""
    transport.abort()
    conn.handshake.add_done_callback(lambda f: f.cancelled() or f.exception())
