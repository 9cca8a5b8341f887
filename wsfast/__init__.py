"""wsfast: a fast, conformant WebSocket client with Go-style channels.

The Lua ``websocket`` module's API in Python: ``connect``, ``send``/``ping``/``close``,
a receive channel, ``select`` and timers. See DESIGN.md and the README.
"""

from . import errors
from .channels import Channel, Selected, after, select
from .client import Client, connect
from .codec import COMPILED, Message
from .constants import (
    BINARY,
    CLOSE_CODES,
    COMPRESSION,
    TEXT,
    TYPE_BINARY,
    TYPE_CLOSE,
    TYPE_PING,
    TYPE_PONG,
    TYPE_TEXT,
)
from .errors import (
    ChannelClosed,
    ConnectError,
    ConnectionClosed,
    Error,
    HandshakeError,
    InvalidOption,
    PermissionDenied,
    ProtocolError,
    ProxyError,
    Timeout,
)
from .policy import Policy, allow, deny, policy_scope, set_policy
from .reconnect import Reconnecting, reconnecting

__version__ = "0.1.0"
"""The package version (PEP 440), the same as the distribution's."""

__all__ = [
    "connect", "reconnecting", "Reconnecting", "Client", "Message", "Channel", "Selected", "select", "after",
    "Policy", "allow", "deny", "set_policy", "policy_scope",
    "Error", "PermissionDenied", "InvalidOption", "Timeout", "ConnectError", "HandshakeError",
    "ProxyError", "ProtocolError", "ConnectionClosed", "ChannelClosed", "errors",
    "TEXT", "BINARY", "TYPE_TEXT", "TYPE_BINARY", "TYPE_PING", "TYPE_PONG", "TYPE_CLOSE",
    "COMPRESSION", "CLOSE_CODES", "COMPILED", "__version__",
]
