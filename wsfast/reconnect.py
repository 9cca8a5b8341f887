"""``wsfast.reconnecting``: an iterator of connected clients for the sync client (DESIGN §6).

The decisions (retry or raise, how long to wait) are :class:`wsfast.backoff.Backoff`'s;
this module only dials, waits and closes, in the iterating thread.
"""

from __future__ import annotations

import random as _random
import threading
import time
from typing import Any, Callable, List, Mapping, Optional

from .backoff import Backoff, ReconnectOptions, split_options
from .client import Client, connect_with
from .errors import ConnectionClosed, Error
from .options import Options
from .policy import parse_url
from .transport import Cancel

__all__ = ["Reconnecting", "reconnecting"]


def reconnecting(url: str, options: Optional[Mapping[str, Any]] = None, /,
                 **kwargs: Any) -> Reconnecting:
    """An iterator of connected [`Client`][wsfast.Client]s to ``url``, reconnecting with backoff.

    The loop body handles one connection's life; subscribe at the top of each body,
    since every connection is a new session:

    ```python
    for client in wsfast.reconnecting("wss://stream.example.com/prices"):
        client.send('{"action": "subscribe", "symbols": ["BTC-USD"]}')
        for msg in client.channel():      # ends when this connection ends
            handle(msg)
        # client.close_code / client.error tell why; the loop dials again
    ```

    See [`Reconnecting`][wsfast.Reconnecting] for closing and for how a connection's
    lifetime is timed.

    Args:
        url: A ``ws://`` or ``wss://`` URL.
        options: [`connect`][wsfast.connect]'s options, plus those below.
        **kwargs: The same names as keywords.

    Other Parameters:
        backoff_min (duration): The first delay after a failure. Default ``"500ms"``.
        backoff_max (duration): The longest delay. Default ``"30s"``.
        backoff_factor (float): Growth of the delay per failed attempt. Default 2.
        max_attempts (int | None): Consecutive failed attempts before the last error is
            raised. Default None: no limit.

    Returns:
        The iterator (also a context manager that closes it on exit).

    Raises:
        InvalidOption: At the call, for a bad URL or option.
        Error: Iterating raises at once the error of an attempt that is not retryable
            (PermissionDenied, InvalidOption, a 4xx HandshakeError, a certificate
            failure, too many redirects, a ProxyError 407/403), and the last error
            (ConnectError, Timeout, HandshakeError...) after ``max_attempts``
            consecutive failed attempts.
    """
    opts, reconnect = split_options(options, kwargs)
    parse_url(url)   # a bad URL is an InvalidOption now; the policy is checked per attempt
    return Reconnecting(url, opts, reconnect)


class Reconnecting:
    """The iterator [`reconnecting`][wsfast.reconnecting] returns; also a context manager.

    Each ``next()`` first closes the client it yielded last if the body did not (close
    1000), then dials (immediately, or after the backoff delay) until an attempt
    connects, and returns that client. Attempts run ``connect_with`` in the iterating
    thread, so the security policy in force there (including [`policy_scope`][wsfast.policy_scope])
    is checked on every attempt, before any DNS or TCP work.

    ``close()`` may be called from any thread: it closes the current client, wakes a
    pending delay, cancels an attempt in progress (its sockets are shut down, the wait
    for a DNS lookup ends) and the loop ends without yielding again (StopIteration). Leaving
    the loop by ``break`` or an exception closes the current client too, through
    ``close()`` when the iterator is dropped (or on ``with`` exit). After an error was
    raised, the iterator is closed.

    The lifetime of a connection, for the 10-second rule, runs from when the client was
    returned by ``next()`` to when ``next()`` is called again (the iterator cannot see
    the connection's own end): a body that holds a dead client for 10 s or more counts
    as a long-lived connection, so the next attempt is immediate.

    One thread iterates; ``random`` (the jitter source) and ``clock`` (for lifetimes)
    are there for tests. Constructing it raises nothing; use
    [`reconnecting`][wsfast.reconnecting], which checks the URL and options.

    Attributes:
        url (str): The URL as given.
        failures (list[Error]): The errors of the attempts that failed, and were retried,
            before the current client (for logging).
    """

    def __init__(self, url: str, options: Options, reconnect: Optional[ReconnectOptions] = None, *,
                 random: Callable[[], float] = _random.random,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.options = options
        self.backoff = Backoff(reconnect, random)
        self._clock = clock
        self._lock = threading.Lock()      # guards _client, _opened, _cancel with _stop
        self._stop = threading.Event()     # set by close(); wakes a pending delay
        self._client: Optional[Client] = None
        self._opened = 0.0
        self._cancel: Optional[Cancel] = None
        # the errors of the attempts that failed (and were retried) before the client
        # last returned: for logging ("connected after 3 attempts: ...")
        self.failures: List[Error] = []

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called or an error was raised."""
        return self._stop.is_set()

    def __iter__(self) -> Reconnecting:
        return self

    def __next__(self) -> Client:
        """The next connected client. Raises StopIteration once closed, else as
        [`reconnecting`][wsfast.reconnecting] says."""
        self._retire()
        backoff = self.backoff
        failures: List[Error] = []
        while True:
            delay = backoff.delay()
            if self._stop.wait(delay) if delay > 0 else self._stop.is_set():
                raise StopIteration
            cancel = Cancel()
            with self._lock:
                if self._stop.is_set():
                    raise StopIteration
                self._cancel = cancel
            try:
                client = connect_with(self.url, self.options, cancel)
            except Error as err:
                if self._stop.is_set():    # close() cancelled this attempt
                    raise StopIteration from None
                if backoff.failed(err):
                    failures.append(err)
                    continue
                self._stop.set()
                raise
            except BaseException:
                self._stop.set()
                raise
            finally:
                with self._lock:
                    self._cancel = None
            with self._lock:
                if not self._stop.is_set():
                    self._client = client
                    self.failures = failures
                    self._opened = self._clock()
                    backoff.connected()
                    return client
            _close_quietly(client)         # close() came just as the attempt succeeded
            raise StopIteration

    def _retire(self) -> None:
        """Close the client yielded last (if the body did not) and time its life."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            self.backoff.ended(self._opened, self._clock())
            _close_quietly(client)

    def close(self) -> None:
        """End the loop from any thread: close the current client, cancel a pending delay
        or attempt; the iterator then stops (StopIteration). Idempotent; raises nothing."""
        with self._lock:
            self._stop.set()
            client, self._client = self._client, None
            cancel = self._cancel
        if cancel is not None:
            cancel.cancel()
        if client is not None:
            _close_quietly(client)

    def __enter__(self) -> Reconnecting:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_lock", None) is not None:
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self._stop.is_set() else "open"
        return f"<wsfast.Reconnecting {self.url} {state}>"


def _close_quietly(client: Client) -> None:
    try:
        client.close()
    except ConnectionClosed:
        pass
