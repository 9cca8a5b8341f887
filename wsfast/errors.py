"""The error model: one hierarchy, every error with a kind and a retryable flag.

Kinds are the Lua runtime's error kinds (the string constants ``NOT_FOUND``,
``ALREADY_EXISTS``, ``INVALID``, ``PERMISSION_DENIED``, ``UNAVAILABLE``, ``INTERNAL``,
``CANCELED``, ``CONFLICT``, ``TIMEOUT``, ``RATE_LIMITED``, ``UNKNOWN``); subclasses make
them catchable the Python way (``except wsfast.Timeout``). An error that ended a
connection while nobody was calling into the client raises nowhere: the channel closes
and the error is on ``client.error``.
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

    Attributes:
        kind (str): One of the kind constants of this module (the Lua runtime's kinds).
        retryable (bool | None): True when the same call may succeed later, False when it
            will not, None when unknown.
        message (str): The message (also ``str(err)``).
        details (dict): Context: ``url``, ``cause`` (the underlying exception, also
            chained as ``__cause__``), ``status``, ``option``, ``action``, ``reason``...
        close_code (int | None): The WebSocket close code involved, or None.
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
    """The security policy denied ``websocket.connect`` or the URL; ``set_policy`` inside a scope.

    Kind ``PERMISSION_DENIED``; not retryable.
    """

    kind = PERMISSION_DENIED
    retryable = False


class InvalidOption(Error, ValueError):
    """A bad URL, option, argument, close code, message type or duration.

    Also a ``ValueError``. Kind ``INVALID``; not retryable.
    """

    kind = INVALID
    retryable = False


class Timeout(Error, TimeoutError):
    """A dial, read or write timeout expired; a ``Channel.receive`` or ``select`` timeout.

    Also a ``TimeoutError``. Kind ``TIMEOUT``; retryable.
    """

    kind = TIMEOUT
    retryable = True


class ConnectError(Error):
    """A transport failure at any time: DNS, refused, reset, EOF without a close frame, TLS.

    Kind ``INTERNAL``; retryable, except for certificate verification.
    """

    kind = INTERNAL
    retryable = True


class HandshakeError(Error):
    """The HTTP upgrade failed; ``status``, ``headers`` and ``body`` when the server answered.

    Kind ``INTERNAL``; retryable for 5xx, 429 and 408, else not (too many redirects, a
    redirect to another scheme, a bad ``Sec-WebSocket-Accept``...).
    """

    kind = INTERNAL
    retryable = False

    @property
    def status(self) -> Optional[int]:
        """The HTTP status of the server's answer, or None."""
        return self.details.get("status")

    @property
    def headers(self) -> Optional[list]:
        """The answer's headers as ``(name, value)`` pairs, or None."""
        return self.details.get("headers")

    @property
    def body(self) -> Optional[bytes]:
        """The first 4 KiB of the answer's body, or None."""
        return self.details.get("body")


class ProxyError(ConnectError):
    """A proxy refused or broke the tunnel; a [`ConnectError`][wsfast.ConnectError].

    Kind ``INTERNAL``; retryable, except for 407 and 403.
    """

    kind = INTERNAL
    retryable = True

    def __init__(self, message: str = "", *, status: Optional[int] = None,
                 retryable: Optional[bool] = None, **details: Any) -> None:
        if retryable is None and status in (403, 407):
            retryable = False
        super().__init__(message, retryable=retryable, status=status, **details)

    @property
    def status(self) -> Optional[int]:
        """An HTTP proxy's answer status, or None."""
        return self.details.get("status")


class ProtocolError(Error):
    """The server broke the protocol after the handshake; ``close_code`` says how (1002, 1007, 1009...).

    Found on ``client.error``. Kind ``INTERNAL``; retryable.
    """

    kind = INTERNAL
    retryable = True

    def __init__(self, message: str = "", close_code: int = 1002, **kw: Any) -> None:
        super().__init__(message, close_code=close_code, **kw)


class ConnectionClosed(Error):
    """``send``/``ping``/``close`` on an ended connection, or after ``close()``.

    Kind ``INTERNAL``; not retryable.
    """

    kind = INTERNAL
    retryable = False

    @property
    def reason(self) -> Optional[str]:
        """The close reason, or None."""
        return self.details.get("reason")


class ChannelClosed(Error):
    """``send`` (or ``offer``, a send case) on a closed channel. Kind ``INVALID``; not retryable."""

    kind = INVALID
    retryable = False


def is_(err: BaseException, kind: str) -> bool:
    """True when ``err`` is a wsfast [`Error`][wsfast.Error] of the given kind; raises nothing.

    The Lua ``errors.is`` (``is`` is a Python keyword).

    ```python
    try:
        client = wsfast.connect(url)
    except wsfast.Error as err:
        if wsfast.errors.is_(err, wsfast.errors.PERMISSION_DENIED):
            print("Access denied:", err.message)
        elif err.retryable:
            print("Temporary error:", err.message)
        raise
    ```
    """
    return isinstance(err, Error) and err.kind == kind
