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
from .protocol import Protocol, check_close_args, check_send_args, utf8
from .proxy import select_proxy
from .transport import Cancel, dial

__all__ = ["Client", "connect", "connect_with"]


class Client:
    """A connected WebSocket client; create it with :func:`wsfast.connect`.

    ``send``, ``ping`` and ``close`` may be called from any thread. Received data
    messages arrive on :meth:`channel`.
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
        """The receive channel of this client (always the same one)."""
        return self._engine.channel

    @property
    def closed(self) -> bool:
        """True once the connection has ended (closing handshake done or connection lost)."""
        return self._engine.ended

    @property
    def close_code(self) -> Optional[int]:
        """The peer's close code; else the code this side failed with; else 1006. None while open."""
        if not self._engine.ended:
            return None
        return self._engine.outcome()[0]

    @property
    def close_reason(self) -> Optional[str]:
        """The reason that goes with :attr:`close_code`. None while open."""
        if not self._engine.ended:
            return None
        return self._engine.outcome()[1]

    @property
    def error(self) -> Optional[Error]:
        """The wsfast.Error that ended the connection, else None."""
        return self._engine.outcome()[2]

    @property
    def latency(self) -> Optional[float]:
        """Seconds of the last ping's round trip (ping sent to its pong received), None
        before the first pong."""
        return self._engine.latency()

    @property
    def stats(self) -> Dict[str, int]:
        """Counters: messages and bytes in and out (bytes as on the wire)."""
        return self._engine.stats()

    def send(self, data: Union[str, bytes, bytearray, memoryview], type: Optional[int] = None) -> bool:
        """Send one message: ``str`` as TEXT, bytes-like as BINARY, unless ``type`` says.

        Returns True once the frame is written or queued (the reader thread writes the
        queue). Raises InvalidOption (bad data or type), ConnectionClosed, Timeout
        (write_timeout), ConnectError (the socket failed).
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
        """Send a ping (does not wait for the pong). ``data`` at most 125 bytes.

        Raises InvalidOption, ConnectionClosed, ConnectError.
        """
        if isinstance(data, str):
            data = utf8(data)
        elif not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidOption("ping data must be bytes or str")
        if len(data) > 125:
            raise InvalidOption("ping data over 125 bytes")
        self._engine.ping(data)
        return True

    def close(self, code: int = CLOSE_CODES.NORMAL, reason: str = "") -> bool:
        """Close with ``code`` and ``reason``; wait at most ``close_timeout`` for the server.

        Raises InvalidOption (a code or reason that may not be sent), ConnectionClosed
        (the connection already ended, or close was called).
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
    """Open a WebSocket connection and return a :class:`Client`.

    ``options`` (a dict, the Lua spec's style) and keyword options merge; see
    DESIGN §1 and §6 for the names. Redirects are followed (``max_redirects``), each hop
    checked against the security policy before its DNS lookup. Raises PermissionDenied,
    InvalidOption, Timeout, ConnectError (ProxyError) or HandshakeError.
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
