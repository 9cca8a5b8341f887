"""Constants of the Lua ``websocket`` module: message types, compression modes, close codes."""

from __future__ import annotations

import enum

__all__ = [
    "TEXT", "BINARY", "TYPE_TEXT", "TYPE_BINARY", "TYPE_PING", "TYPE_PONG", "TYPE_CLOSE",
    "COMPRESSION", "CLOSE_CODES",
]

TEXT = 1
BINARY = 2

TYPE_TEXT = "text"
TYPE_BINARY = "binary"
TYPE_PING = "ping"
TYPE_PONG = "pong"
TYPE_CLOSE = "close"


class COMPRESSION(enum.IntEnum):
    """permessage-deflate modes (the ``compression`` option)."""

    DISABLED = 0
    CONTEXT_TAKEOVER = 1
    NO_CONTEXT = 2


class CLOSE_CODES(enum.IntEnum):
    """Close codes: the Lua spec's table plus RESERVED and TLS_HANDSHAKE."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    RESERVED = 1004
    NO_STATUS = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015
