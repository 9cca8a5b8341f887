"""``wsfast.asyncio.reconnecting``: an async iterator of connected clients (DESIGN §6).

The decisions (retry or raise, how long to wait) are :class:`wsfast.backoff.Backoff`'s,
the same as the sync iterator's; this module only dials, waits and closes, in the
event loop.
"""

from __future__ import annotations

import asyncio
import random as _random
from typing import Any, Callable, List, Mapping, Optional

from ..backoff import Backoff, ReconnectOptions, split_options
from ..errors import ConnectionClosed, Error
from ..options import Options
from ..policy import parse_url
from .client import Client, connect_with

__all__ = ["Reconnecting", "reconnecting"]


def reconnecting(url: str, options: Optional[Mapping[str, Any]] = None, /,
                 **kwargs: Any) -> Reconnecting:
    """An async iterator of connected [`Client`][wsfast.asyncio.Client]s to ``url``.

    The same backoff as the sync [`wsfast.reconnecting`][wsfast.reconnecting]. Subscribe
    at the top of each loop body: every connection is a new session.

    ```python
    async with wsfast.asyncio.reconnecting(url) as clients:
        async for client in clients:
            await client.send(subscribe)
            async for msg in client.channel():
                handle(msg)
    ```

    Args:
        url: A ``ws://`` or ``wss://`` URL.
        options: [`wsfast.connect`][wsfast.connect]'s options plus ``backoff_min``
            (``"500ms"``), ``backoff_max`` (``"30s"``), ``backoff_factor`` (2) and
            ``max_attempts`` (None: no limit), as for [`wsfast.reconnecting`][wsfast.reconnecting].
        **kwargs: The same names as keywords.

    Returns:
        The async iterator (also an async context manager that closes it on exit).

    Raises:
        InvalidOption: At the call, for a bad URL or option.
        Error: Iterating raises at once an attempt's error that is not retryable, and
            the last error after ``max_attempts`` consecutive failed attempts, as the
            sync iterator does.
    """
    opts, reconnect = split_options(options, kwargs)
    parse_url(url)   # a bad URL is an InvalidOption now; the policy is checked per attempt
    return Reconnecting(url, opts, reconnect)


class Reconnecting:
    """What [`reconnecting`][wsfast.asyncio.reconnecting] returns; also an async context manager.

    Each ``__anext__`` first closes the client it returned last if the body did not,
    then dials (at once, or after the backoff delay) until an attempt connects. Attempts
    run in the iterating task's context, so the security policy in force there is
    checked on every attempt. ``close()`` (from any task of the loop) closes the
    current client, cancels a pending delay or attempt, and the loop ends. Leave the
    loop through ``async with`` (or call ``aclose()``) to have the current client
    closed: an async iterator left by ``break`` is not told. Iterating raises as
    [`reconnecting`][wsfast.asyncio.reconnecting] says; constructing it raises nothing.

    A connection's lifetime, for the 10-second rule, runs from when it was returned to
    the next ``__anext__``.

    Attributes:
        url (str): The URL as given.
        failures (list[Error]): The errors of the attempts retried before the current
            client (for logging).
    """

    def __init__(self, url: str, options: Options, reconnect: Optional[ReconnectOptions] = None, *,
                 random: Callable[[], float] = _random.random) -> None:
        self.url = url
        self.options = options
        self.backoff = Backoff(reconnect, random)
        self._stop: Optional[asyncio.Event] = None   # made in the loop, on first use
        self._client: Optional[Client] = None
        self._opened = 0.0
        self._attempt: Optional[asyncio.Future] = None
        self._closed = False
        self.failures: List[Error] = []   # the errors of the attempts retried before the client

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called or an error was raised."""
        return self._closed

    def __aiter__(self) -> Reconnecting:
        return self

    async def __anext__(self) -> Client:
        loop = asyncio.get_running_loop()
        if self._stop is None:
            self._stop = asyncio.Event()
        await self._retire()
        backoff = self.backoff
        failures: List[Error] = []
        while True:
            if self._closed:
                raise StopAsyncIteration
            delay = backoff.delay()
            if delay > 0:
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                    raise StopAsyncIteration   # close() during the delay
                except asyncio.TimeoutError:
                    pass
            attempt = self._attempt = asyncio.ensure_future(connect_with(self.url, self.options))
            try:
                client = await attempt
            except asyncio.CancelledError:
                if self._closed:
                    raise StopAsyncIteration from None
                raise
            except Error as err:
                if self._closed:
                    raise StopAsyncIteration from None
                if backoff.failed(err):
                    failures.append(err)
                    continue
                self._closed = True
                raise
            finally:
                self._attempt = None
            if self._closed:
                await _close_quietly(client)
                raise StopAsyncIteration
            self._client = client
            self.failures = failures
            self._opened = loop.time()
            backoff.connected()
            return client

    async def _retire(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            self.backoff.ended(self._opened, asyncio.get_running_loop().time())
            await _close_quietly(client)

    def close(self) -> None:
        """End the loop: cancel a pending delay or attempt, close the current client (in
        a task); the iterator then stops. Idempotent; raises nothing."""
        self._closed = True
        if self._stop is not None:
            self._stop.set()
        if self._attempt is not None:
            self._attempt.cancel()
        client, self._client = self._client, None
        if client is not None:
            asyncio.ensure_future(_close_quietly(client))

    async def aclose(self) -> None:
        """``close()``, and wait for the current client's closing handshake; raises nothing."""
        client, self._client = self._client, None
        self.close()
        if client is not None:
            await _close_quietly(client)

    async def __aenter__(self) -> Reconnecting:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


async def _close_quietly(client: Client) -> None:
    try:
        await client.close()
    except ConnectionClosed:
        pass
