"""The error model: one hierarchy, every error with a kind and a retryable flag.

Kinds are the Lua runtime's error kinds; subclasses make them catchable the Python
way (``except wsfast.Timeout``).
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = [
    "NOT_FOUND", "ALREADY_EXISTS", "INVALID", "PERMISSION_DENIED", "UNAVAILABLE",
    "INTERNAL", "CANCELED", "CONFLICT", "TIMEOUT", "RATE_LIMITED", "UNKNOWN",
    "Error", "PermissionDenied", "InvalidOption", "Timeout", "ConnectError",
    "HandshakeError", "ProxyError", "ProtocolError", "ConnectionClosed", "ChannelClosed", "is_",
]

NOT_FOUND = "NOT_FOUND"
ALREADY_EXISTS = "ALREADY_EXISTS"
INVALID = "INVALID"
PERMISSION_DENIED = "PERMISSION_DENIED"
UNAVAILABLE = "UNAVAILABLE"
INTERNAL = "INTERNAL"
CANCELED = "CANCELED"
CONFLICT = "CONFLICT"
TIMEOUT = "TIMEOUT"
RATE_LIMITED = "RATE_LIMITED"
UNKNOWN = "UNKNOWN"


class Error(Exception):
    """Base of every wsfast error.

    ``kind`` is one of the module's kind constants, ``retryable`` tells whether the
    same call may succeed later, ``details`` holds context (url, cause, status...).
    """

    kind: str = UNKNOWN
    retryable: Optional[bool] = None

    def __init__(
        self,
        message: str = "",
        *,
        kind: Optional[str] = None,
        retryable: Optional[bool] = None,
        close_code: Optional[int] = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        if kind is not None:
            self.kind = kind
        if retryable is not None:
            self.retryable = retryable
        self.close_code = close_code
        self.details: dict = {k: v for k, v in details.items() if v is not None}

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, kind={self.kind})"

    def __reduce__(self):  # keep details across pickling (multiprocessing, logging)
        return _rebuild, (type(self), self.message, self.kind, self.retryable,
                          self.close_code, self.details)


def _rebuild(cls, message, kind, retryable, close_code, details):
    err = cls.__new__(cls)
    Error.__init__(err, message, kind=kind, retryable=retryable, close_code=close_code, **details)
    return err


class PermissionDenied(Error):
    """The security policy denied ``websocket.connect`` or the URL."""

    kind = PERMISSION_DENIED
    retryable = False


class InvalidOption(Error, ValueError):
    """A bad URL, option or argument."""

    kind = INVALID
    retryable = False


class Timeout(Error, TimeoutError):
    """A dial, read, write or close timeout expired."""

    kind = TIMEOUT
    retryable = True


class ConnectError(Error):
    """A transport failure: DNS, refused, reset, EOF without a close frame, TLS."""

    kind = INTERNAL
    retryable = True


class HandshakeError(Error):
    """The HTTP upgrade failed; ``status``, ``headers`` and ``body`` when the server answered."""

    kind = INTERNAL
    retryable = False

    @property
    def status(self) -> Optional[int]:
        return self.details.get("status")

    @property
    def headers(self) -> Optional[list]:
        return self.details.get("headers")

    @property
    def body(self) -> Optional[bytes]:
        return self.details.get("body")


class ProxyError(ConnectError):
    """A proxy refused or broke the tunnel; ``status`` is an HTTP proxy's answer (not
    retryable for 407 and 403)."""

    kind = INTERNAL
    retryable = True

    def __init__(self, message: str = "", *, status: Optional[int] = None,
                 retryable: Optional[bool] = None, **details: Any) -> None:
        if retryable is None and status in (403, 407):
            retryable = False
        super().__init__(message, retryable=retryable, status=status, **details)

    @property
    def status(self) -> Optional[int]:
        return self.details.get("status")


class ProtocolError(Error):
    """The peer broke the WebSocket protocol; ``close_code`` says how (1002, 1007, 1009...)."""

    kind = INTERNAL
    retryable = True

    def __init__(self, message: str = "", close_code: int = 1002, **kw: Any) -> None:
        super().__init__(message, close_code=close_code, **kw)


class ConnectionClosed(Error):
    """send/ping/close on a connection that has ended."""

    kind = INTERNAL
    retryable = False

    @property
    def reason(self) -> Optional[str]:
        return self.details.get("reason")


class ChannelClosed(Error):
    """send on a closed Channel."""

    kind = INVALID
    retryable = False


def is_(err: BaseException, kind: str) -> bool:
    """True when ``err`` is a wsfast Error of the given kind."""
    return isinstance(err, Error) and err.kind == kind
