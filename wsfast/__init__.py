"""wsfast: a fast, conformant WebSocket client with Go-style channels."""

from .codec import COMPILED, Message
from .constants import (
    BINARY, CLOSE_CODES, COMPRESSION, TEXT, TYPE_BINARY, TYPE_CLOSE, TYPE_PING, TYPE_PONG, TYPE_TEXT,
)
from .errors import (
    ChannelClosed, ConnectError, ConnectionClosed, Error, HandshakeError, InvalidOption,
    PermissionDenied, ProtocolError, Timeout,
)

__version__ = "0.1.0"
