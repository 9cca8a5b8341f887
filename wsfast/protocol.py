"""The sans-I/O client connection: one object decides everything about one connection.

No sockets, threads or clocks here. A front end (the sync engine, later asyncio) only
moves bytes and keeps time:

* it writes :meth:`Protocol.data_to_send` (the upgrade request first, then every frame
  in the order it must go out: data, pings, pongs, close frames);
* it feeds what it reads to :meth:`~Protocol.receive_data` (or, while a large message
  arrives, reads into :meth:`~Protocol.read_target` and calls
  :meth:`~Protocol.receive_direct`), and tells :meth:`~Protocol.receive_eof` or
  :meth:`~Protocol.connection_lost`;
* it calls :meth:`~Protocol.close_timed_out` when ``close_timeout`` passed while
  :attr:`~Protocol.awaiting_close`, :meth:`~Protocol.fail` for the failures it
  times itself (read timeout), :meth:`~Protocol.abort` when a write was cut half way,
  and :meth:`~Protocol.drop` when :mod:`wsfast.keepalive` found the peer gone.

Phases (``state``): CONNECTING (the HTTP upgrade: the outcome is OPEN, or CLOSED with a
``handshake_error``, which for a 3xx carries ``redirect``), OPEN, CLOSING (our close
frame is sent, the peer's not yet received), CLOSED (nothing more will be read: the
closing handshake is complete, the peer's close was answered, the connection failed,
or the stream ended). Nothing is sent after our close frame; :meth:`send_message` and
:meth:`send_ping` raise :class:`~wsfast.errors.ConnectionClosed` unless OPEN.

Not thread-safe: a front end with several threads calls it under one lock.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from . import handshake
from .codec import Close, FrameEncoder, FrameParser, Message, is_valid_close_code
from .constants import BINARY, CLOSE_CODES, TEXT
from .errors import (
    ConnectError,
    ConnectionClosed,
    Error,
    HandshakeError,
    InvalidOption,
    ProtocolError,
    Timeout,
)
from .options import Options
from .policy import Target

__all__ = ["Protocol", "CONNECTING", "OPEN", "CLOSING", "CLOSED", "REDIRECT_STATUSES",
           "check_close_args", "check_send_args", "utf8"]

CONNECTING = "CONNECTING"  # the upgrade request is out, the response not complete
OPEN = "OPEN"              # messages flow both ways
CLOSING = "CLOSING"        # our close frame was sent, the peer's not received yet
CLOSED = "CLOSED"          # nothing more will be read

# Handshake statuses that name another URL to try (DESIGN §6 follows them).
REDIRECT_STATUSES = frozenset((301, 302, 303, 307, 308))
# How much of a refusal's body the error keeps.
_BODY_LIMIT = 4096

_OP_CLOSE = 0x8
_OP_PING = 0x9
_OP_PONG = 0xA


def check_close_args(code: int, reason: str) -> bytes:
    """Validate what ``close(code, reason)`` may send; return the UTF-8 reason.

    Raises InvalidOption for a code that may not be sent (RFC 6455 §7.4) or a
    reason over 123 bytes.
    """
    if isinstance(code, bool) or not isinstance(code, int) or not is_valid_close_code(code):
        raise InvalidOption(f"close code {code!r} may not be sent (1000-1003, 1007-1014, 3000-4999)")
    if not isinstance(reason, str):
        raise InvalidOption("close reason must be a str")
    try:
        raw = reason.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidOption("close reason is not valid Unicode") from None
    if len(raw) > 123:
        raise InvalidOption("close reason over 123 bytes")
    return raw


def check_ping_args(data: Any) -> bytes:
    """Validate what ``ping(data)`` may send; return it as bytes (a str as UTF-8).

    Raises InvalidOption for data that is neither bytes-like nor str, or over 125 bytes.
    """
    if isinstance(data, str):
        data = utf8(data)
    elif isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data)   # (the limit is in bytes: a memoryview's len() counts items)
    else:
        raise InvalidOption("ping data must be bytes or str")
    if len(data) > 125:
        raise InvalidOption("ping data over 125 bytes")
    return data


def check_send_args(data: Any, type: Optional[int]) -> tuple:
    """Validate ``send(data, type)``'s arguments (both front ends); return ``(data, opcode)``
    (opcode None: by the data's type). Raises InvalidOption."""
    if type is None:
        opcode = None
    elif (type == TEXT or type == BINARY) and not isinstance(type, bool):
        opcode = int(type)
    else:
        raise InvalidOption(f"type must be wsfast.TEXT (1) or wsfast.BINARY (2), not {type!r}")
    if isinstance(data, str):
        if opcode == BINARY:
            data = utf8(data)
    elif isinstance(data, (bytes, bytearray, memoryview)):
        if opcode == TEXT:
            try:
                bytes(data).decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidOption("send(bytes, TEXT) needs valid UTF-8") from None
    else:
        raise InvalidOption(f"send() takes str or bytes-like data, not {data.__class__.__name__}")
    return data, opcode


def utf8(text: str) -> bytes:
    """``text`` as UTF-8; raises InvalidOption for a lone surrogate."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidOption("text is not valid Unicode (lone surrogate)") from None


class Protocol:
    """One client connection, from the upgrade request to the end of the stream.

    ``target`` is the parsed URL (:func:`wsfast.policy.parse_url`), ``options`` the
    parsed options (:func:`wsfast.options.parse_options`); ``key`` fixes the
    Sec-WebSocket-Key (tests), else a random one is drawn.
    """

    def __init__(self, target: Target, options: Options, *, key: Optional[str] = None) -> None:
        self.url = target.url
        self.state = CONNECTING
        self._options = options
        self._key = key if key is not None else handshake.new_key()
        self._response_parser: Optional[handshake.ResponseParser] = handshake.ResponseParser(url=self.url)
        self._response: Optional[handshake.Response] = None
        self._body = bytearray()
        self.parser: Any = None    # the codec, once OPEN
        self.encoder: Any = None
        # handshake outcome
        self.subprotocol: Optional[str] = None
        self.extensions: Optional[str] = None
        self.response_headers: Dict[str, str] = {}
        self.handshake_error: Optional[HandshakeError] = None
        self.redirect: Optional[str] = None   # the Location of a 3xx refusal
        # closing
        self.close_sent: Optional[tuple] = None       # (code, reason) this side sent
        self.close_received: Optional[Close] = None   # the peer's close frame
        self.error: Optional[Error] = None            # what ended the connection abnormally
        self.eof = False                              # the stream ended (EOF or loss)
        self._fail_close: Optional[tuple] = None      # the (code, reason) fail() sent
        # keepalive and latency: ping payload -> the front end's token (a send time)
        self._pings: Dict[bytes, Any] = {}
        self._acked: List[Any] = []
        self.pongs = 0
        # counters (DESIGN §1 ``stats``): bytes as on the wire
        self.messages_in = 0
        self.bytes_in = 0
        self.messages_out = 0
        self.bytes_out = 0
        # the ordered output: frames (bytes) not yet taken by data_to_send()
        # (the request is not counted in bytes_out: that counts WebSocket frames)
        request = handshake.build_request(
            host_header=target.host_header, resource=target.resource, key=self._key,
            headers=options.headers, protocols=options.protocols,
            extensions=handshake.extension_offer(options.compression))
        self._out: List[bytes] = [request]
        self.output_size = len(request)

    # ------------------------------------------------------------------ output

    def _queue(self, frame: bytes) -> None:
        self._out.append(frame)
        self.output_size += len(frame)
        self.bytes_out += len(frame)

    def data_to_send(self) -> bytes:
        """Everything the connection must write now, in order (b"" when nothing)."""
        out = self._out
        if not out:
            return b""
        self._out = []
        self.output_size = 0
        return out[0] if len(out) == 1 else b"".join(out)

    # ------------------------------------------------------------------ incoming

    def receive_data(self, data) -> List[Message]:
        """Feed bytes read from the connection; return the data messages they complete.

        During CONNECTING the bytes are the HTTP response (frames that follow it in
        the same read are decoded too); after CLOSED they are ignored.
        """
        if self.state is not OPEN and self.state is not CLOSING:
            if self.state is CONNECTING:
                return self._receive_response(data)
            return []
        self.bytes_in += len(data)
        parser = self.parser
        msgs = parser.feed(data)
        if parser.control or parser.error is not None:
            self._handle_events()
        if msgs:
            self.messages_in += len(msgs)
        return msgs

    def read_target(self):
        """While a large single-frame message arrives: a writable view of the rest of
        its buffer to read into (then :meth:`receive_direct`); else None."""
        if self.state is OPEN or self.state is CLOSING:
            return self.parser.read_target()
        return None

    def receive_direct(self, n: int) -> List[Message]:
        """``n`` bytes were read into :meth:`read_target`; return the messages completed
        (none once the connection is CLOSED)."""
        if self.state is not OPEN and self.state is not CLOSING:
            return []
        self.bytes_in += n
        parser = self.parser
        msgs = parser.advance(n)
        if parser.error is not None:
            self._handle_events()
        if msgs:
            self.messages_in += len(msgs)
        return msgs

    def _handle_events(self) -> None:
        parser = self.parser
        for event in parser.take_control():
            if isinstance(event, Close):
                self.close_received = event
                if self.close_sent is None:
                    # echo the peer's code (none if it sent none), RFC 6455 §5.5.1
                    code = None if event.code == CLOSE_CODES.NO_STATUS else event.code
                    self._send_close_frame(code, "")
                self.state = CLOSED
                return   # the parser ignores everything after a close frame
            if event.type == "ping":   # (Pong subclasses Ping: compare the type)
                if self.close_sent is None:
                    self._queue(self.encoder.encode_frame(_OP_PONG, event.data))
            else:
                self.pongs += 1
                self._acknowledge(bytes(event.data))
        if parser.error is not None and self.error is None:
            self.fail(parser.error)

    def _acknowledge(self, data: bytes) -> None:
        # A pong answers the ping with its payload and every ping sent before it.
        pings = self._pings
        if data not in pings:
            return   # unsolicited (RFC 6455 §5.5.3): ignored
        while pings:
            sent, token = next(iter(pings.items()))
            del pings[sent]
            if sent == data:
                self._acked.append(token)
                return

    def take_pongs(self) -> List[Any]:
        """The tokens given to :meth:`send_ping` of the pings answered since last asked."""
        acked = self._acked
        if acked:
            self._acked = []
        return acked

    def receive_eof(self) -> None:
        """The peer ended the stream (TCP FIN)."""
        self._lost(None)

    def connection_lost(self, exc: BaseException) -> None:
        """Reading or writing the connection failed with ``exc``."""
        self._lost(exc)

    def _lost(self, exc: Optional[BaseException]) -> None:
        self.eof = True
        if self.state is CONNECTING:
            self._end_handshake(exc)
            return
        if self.close_received is None and self.error is None:
            if exc is None:
                self.error = ConnectError("connection closed without a close frame (1006)",
                                          url=self.url, close_code=CLOSE_CODES.ABNORMAL_CLOSURE)
            else:
                self.error = ConnectError(f"connection lost: {exc}", url=self.url, cause=exc,
                                          close_code=CLOSE_CODES.ABNORMAL_CLOSURE)
        self.state = CLOSED

    # ------------------------------------------------------------------ handshake

    def _receive_response(self, data) -> List[Message]:
        if self._response is not None:   # a refusal's body
            self._body += data
            if len(self._body) >= self._body_wanted():
                self.end_of_response()
            return []
        try:
            response = self._response_parser.feed(data)
        except HandshakeError as exc:
            self._refused(exc)
            return []
        if response is None:
            return []
        leftover = self._response_parser.leftover
        self._response_parser = None
        self._response = response
        if response.status != 101:
            self._body += leftover
            if len(self._body) >= self._body_wanted():
                self.end_of_response()
            return []
        try:
            subprotocol, extensions, deflate = handshake.check_response(
                response, key=self._key, protocols=self._options.protocols,
                compression=self._options.compression, url=self.url)
        except HandshakeError as exc:
            self._refused(exc)
            return []
        self._open(subprotocol, extensions, deflate, response)
        return self.receive_data(leftover) if leftover else []

    def _body_wanted(self) -> int:
        want = self._response.content_length
        return _BODY_LIMIT if want is None else min(want, _BODY_LIMIT)

    @property
    def handshake_complete(self) -> bool:
        """The server accepted the upgrade (the connection was OPEN, whatever it is now)."""
        return self.parser is not None

    @property
    def reading_refusal_body(self) -> bool:
        """CONNECTING, with a non-101 response whose body is still arriving (the front
        end bounds this with a short wait, then calls :meth:`end_of_response`)."""
        return self.state is CONNECTING and self._response is not None

    def end_of_response(self) -> None:
        """No more of a refusal's body will be waited for: settle the handshake error."""
        if self.reading_refusal_body:
            self._end_handshake(None)

    def _end_handshake(self, exc: Optional[BaseException]) -> None:
        response = self._response
        if response is None:
            if exc is None:
                err = ConnectError("the server closed the connection during the handshake", url=self.url)
            else:
                err = ConnectError(f"connection lost during the handshake: {exc}", url=self.url, cause=exc)
            self.error = err
            self.state = CLOSED
            return
        try:
            handshake.check_response(response, key=self._key, protocols=self._options.protocols,
                                     compression=self._options.compression, url=self.url,
                                     body=bytes(self._body[:_BODY_LIMIT]))
        except HandshakeError as refusal:
            location = response.get("Location")
            if response.status in REDIRECT_STATUSES and location:
                self.redirect = location
                refusal.details["location"] = location
            self._refused(refusal)

    def _refused(self, exc: HandshakeError) -> None:
        self.handshake_error = exc
        self.error = exc
        self.state = CLOSED

    def _open(self, subprotocol, extensions, deflate, response) -> None:
        opts = self._options
        if deflate is not None:
            self.parser = FrameParser(opts.read_limit, True, deflate.server_no_context_takeover,
                                      deflate.server_max_window_bits)
            self.encoder = FrameEncoder(True, deflate.client_no_context_takeover,
                                        deflate.client_max_window_bits, opts.compression_threshold, 6, 0)
        else:
            self.parser = FrameParser(opts.read_limit)
            self.encoder = FrameEncoder(False, False, 15, opts.compression_threshold, 6, 0)
        self.subprotocol = subprotocol
        self.extensions = extensions
        headers: Dict[str, str] = {}
        for name, value in response.headers:
            lname = name.lower()
            headers[lname] = f"{headers[lname]}, {value}" if lname in headers else value
        self.response_headers = headers
        self.state = OPEN

    # ------------------------------------------------------------------ outgoing

    def closed_error(self) -> ConnectionClosed:
        """The error for an action that needs the connection OPEN."""
        if self.state is CLOSED:
            code, reason = self.close_code, self.close_reason
            return ConnectionClosed(f"the connection is closed (code {code})", close_code=code,
                                    reason=reason)
        if self.state is CONNECTING:
            return ConnectionClosed("the connection is not open yet")
        return ConnectionClosed("the connection is closing")

    def send_message(self, data, opcode: Optional[int] = None) -> int:
        """Queue one data message (``str`` TEXT, bytes-like BINARY unless ``opcode``);
        return the size of its frame.

        Raises ConnectionClosed unless OPEN; UnicodeEncodeError for a lone surrogate.
        """
        if self.state is not OPEN:
            raise self.closed_error()
        frame = self.encoder.encode_message(data, opcode)
        self._out.append(frame)
        n = len(frame)
        self.output_size += n
        self.bytes_out += n
        self.messages_out += 1
        return n

    def send_ping(self, data: bytes = b"", token: Any = None) -> None:
        """Queue a ping; ``token`` comes back from :meth:`take_pongs` once it is answered.

        Raises ConnectionClosed unless OPEN.
        """
        if self.state is not OPEN:
            raise self.closed_error()
        data = bytes(data)
        self._pings.pop(data, None)   # the newest ping with this payload is the one answered
        self._pings[data] = token
        self._queue(self.encoder.encode_frame(_OP_PING, data))

    def send_close(self, code: Optional[int] = 1000, reason: str = "") -> None:
        """Start the closing handshake. Raises ConnectionClosed unless OPEN (a close was
        already sent or received, or the connection ended)."""
        if self.state is not OPEN:
            raise self.closed_error()
        self._send_close_frame(code, reason)
        self.state = CLOSING

    def _send_close_frame(self, code: Optional[int], reason: str) -> None:
        self.close_sent = (code, reason)
        self._queue(self.encoder.encode_close(code, reason))

    @property
    def awaiting_close(self) -> bool:
        """Our close frame is out and the peer's has not come: the front end times
        ``close_timeout`` and then calls :meth:`close_timed_out`."""
        return self.state is CLOSING

    def close_timed_out(self) -> None:
        """``close_timeout`` passed with no close frame from the peer: the connection is
        over (the front end drops it)."""
        if self.state is CLOSED:
            return
        if self.error is None and self.close_received is None:
            timeout = self._options.close_timeout
            self.error = Timeout(f"close timeout: no close frame from the server within "
                                 f"{timeout:g} s", url=self.url)
        self.state = CLOSED

    def fail(self, error: Error, code: Optional[int] = None, reason: str = "") -> None:
        """Fail the connection: send a close frame with the error's code (unless one was
        sent), remember why; CLOSED from here on."""
        if self.error is None:
            self.error = error
        if self.state is CLOSED or self.state is CONNECTING:
            self.state = CLOSED
            return
        if self.close_sent is None:
            if code is None:
                code = error.close_code if isinstance(error, ProtocolError) else CLOSE_CODES.INTERNAL_ERROR
            if not reason:
                raw = str(error).encode("utf-8")
                reason = raw[:123].decode("utf-8", "ignore")
            self._fail_close = (code, reason)
            self._send_close_frame(code, reason)
        self.state = CLOSED

    def drop(self, error: Error, code: int, reason: str) -> None:
        """The peer is gone (keepalive: no frame within ``ping_timeout`` of a ping): the
        connection is over with ``error``; a close frame with ``code`` and ``reason`` is
        queued as a last word, which the front end writes only if the socket takes it at
        once, then drops the connection. ``close_code`` is 1006: no close handshake
        happened."""
        if self.error is None:
            self.error = error
        if (self.state is OPEN or self.state is CLOSING) and self.close_sent is None:
            self._send_close_frame(code, reason)
        self.state = CLOSED

    def abort(self, error: Error) -> None:
        """The stream can no longer carry a frame (a write was cut half way): the
        connection is over, with ``error``, and nothing more is sent, not even a close
        frame (``close_code`` 1006)."""
        if self.error is None:
            self.error = error
        self._out = []
        self.output_size = 0
        self.state = CLOSED

    # ------------------------------------------------------------------ outcome

    @property
    def close_code(self) -> int:
        """The peer's close code if it sent a valid one; else the code this side failed with; else 1006."""
        if self.close_received is not None:
            return self.close_received.code
        if self._failed_by_us():
            return self.close_sent[0]
        return CLOSE_CODES.ABNORMAL_CLOSURE

    @property
    def close_reason(self) -> str:
        if self.close_received is not None:
            return self.close_received.reason
        if self._failed_by_us():
            return self.close_sent[1]
        return ""

    def _failed_by_us(self) -> bool:
        # The close frame this side sent is the one fail() sent (not a user's close
        # that the peer never answered: that one is 1006).
        sent = self.close_sent
        return sent is not None and sent[0] is not None and sent == self._fail_close
