"""The sans-I/O client connection: bytes in -> messages, actions -> bytes out.

No sockets and no threads here: the front end (``client.py``) feeds what it reads to
``receive_data``, writes what ``data_to_send`` returns, and tells ``receive_eof``
when the stream ends. This layer answers pings, runs the closing handshake
(RFC 6455 §7) and fails the connection with the right close code.
"""

from __future__ import annotations

from collections import deque
from typing import List, Optional

from .codec import Close, FrameEncoder, FrameParser, Message, is_valid_close_code
from .constants import CLOSE_CODES
from .errors import ConnectError, Error, InvalidOption, ProtocolError

__all__ = ["Protocol", "OPEN", "CLOSING", "CLOSED", "check_close_args"]

OPEN = "OPEN"          # messages flow both ways
CLOSING = "CLOSING"    # a close frame was sent or received, not both yet
CLOSED = "CLOSED"      # both close frames exchanged, or the stream ended

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


class Protocol:
    """One WebSocket connection after the opening handshake, client side."""

    def __init__(self, *, read_limit: int = 0, deflate=None, compression_threshold: int = 128,
                 fragment_size: int = 0) -> None:
        if deflate is not None:
            self.parser = FrameParser(read_limit, True, deflate.server_no_context_takeover,
                                      deflate.server_max_window_bits)
            self.encoder = FrameEncoder(True, deflate.client_no_context_takeover,
                                        deflate.client_max_window_bits, compression_threshold,
                                        6, fragment_size)
        else:
            self.parser = FrameParser(read_limit)
            self.encoder = FrameEncoder(False, False, 15, compression_threshold, 6, fragment_size)
        self.state = OPEN
        self.close_sent: Optional[tuple] = None       # (code, reason) this side sent
        self.close_received: Optional[Close] = None   # the peer's close frame
        self.error: Optional[Error] = None            # what ended the connection abnormally
        self.pongs = 0
        # (opcode, payload or code, reason) to encode under the write lock. A deque: the
        # reader appends while a writer holding the lock may be draining it.
        self.pending: deque = deque()
        self._fail_close: Optional[tuple] = None   # the (code, reason) fail() queued

    # ------------------------------------------------------------------ incoming

    def receive_data(self, data) -> List[Message]:
        """Feed bytes read from the socket; return the data messages they complete."""
        parser = self.parser
        msgs = parser.feed(data)
        if parser.control or parser.error is not None:
            self._handle_events()
        return msgs

    def receive_direct(self, n: int) -> List[Message]:
        """``n`` bytes were read into ``parser.read_target()``; return the messages completed."""
        parser = self.parser
        msgs = parser.advance(n)
        if parser.error is not None:
            self._handle_events()
        return msgs

    def _handle_events(self) -> None:
        parser = self.parser
        for event in parser.take_control():
            if isinstance(event, Close):
                self.close_received = event
                # echo the peer's code (none if it sent none), RFC 6455 §5.5.1
                code = None if event.code == CLOSE_CODES.NO_STATUS else event.code
                self.pending.append((_OP_CLOSE, code, ""))
                self.state = CLOSED
            elif event.type == "ping":   # (Pong subclasses Ping: compare the type)
                self.pending.append((_OP_PONG, event.data, None))
            else:
                self.pongs += 1
        if parser.error is not None and self.error is None:
            self.fail(parser.error)

    def receive_eof(self) -> None:
        """The peer closed the TCP stream."""
        if self.close_received is None and self.error is None:
            self.error = ConnectError("connection closed without a close frame (1006)",
                                      close_code=CLOSE_CODES.ABNORMAL_CLOSURE)
        self.state = CLOSED

    # ------------------------------------------------------------------ outgoing
    # The encoder keeps state (mask pool, deflate context): every method below must
    # be called by one thread at a time; the client holds its write lock.

    def data_to_send(self) -> List[bytes]:
        """Encode the frames the protocol itself must write (pongs, close replies)."""
        out = []
        pending = self.pending
        while pending:
            opcode, arg, reason = pending.popleft()
            if self.close_sent is not None:
                pending.clear()   # nothing may follow our close frame
                break
            if opcode == _OP_PONG:
                out.append(self.encoder.encode_frame(_OP_PONG, arg))
            else:
                out.append(self.send_close(arg, reason))
        return out

    def send_message(self, data, opcode: Optional[int] = None) -> bytes:
        """The frames of a data message."""
        return self.encoder.encode_message(data, opcode)

    def send_ping(self, data: bytes = b"") -> bytes:
        return self.encoder.encode_frame(_OP_PING, data)

    def send_close(self, code: Optional[int] = 1000, reason: str = "") -> bytes:
        """Start (or answer) the closing handshake; b"" when a close frame was already sent."""
        if self.close_sent is not None:
            return b""
        self.close_sent = (code, reason)
        if self.state == OPEN:
            self.state = CLOSING
            if self.close_received is not None:
                # the reader took the peer's close frame (and set CLOSED) between the
                # check and the assignment above: the handshake is complete
                self.state = CLOSED
        return self.encoder.encode_close(code, reason)

    def fail(self, error: Error, code: Optional[int] = None, reason: str = "") -> None:
        """Fail the connection: queue a close frame with the error's code, remember why."""
        if self.error is None:
            self.error = error
        if code is None:
            code = error.close_code if isinstance(error, ProtocolError) else CLOSE_CODES.INTERNAL_ERROR
        if not reason:
            raw = str(error).encode("utf-8")
            reason = raw[:123].decode("utf-8", "ignore")
        if self._fail_close is None:
            self._fail_close = (code, reason)
        self.pending.append((_OP_CLOSE, code, reason))
        if self.state == OPEN:
            self.state = CLOSING

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
        # The close frame this side sent is the one fail() queued (not a user's close
        # that the peer never answered: that one is 1006).
        sent = self.close_sent
        return sent is not None and sent[0] is not None and sent == self._fail_close
