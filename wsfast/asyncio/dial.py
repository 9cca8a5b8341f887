"""Dialling in the event loop: DNS with a bound, TCP to each address in turn, TLS.

The same rules as :mod:`wsfast.transport` (the sync dial), with the loop's
primitives: every step is bounded by the one ``deadline`` (``dial_timeout``, in the
loop's clock); an address that refuses or times out is skipped for the next, each
attempt getting an equal share of the time left (``transport.attempt_time``); TLS
verifies the target against the system trust store unless ``ssl`` gives a context,
with the URL's host as SNI and for the certificate check.
"""

from __future__ import annotations

import asyncio
import socket
import ssl as _ssl
import time
from typing import Any, Callable, List, Optional, Tuple

from ..errors import ConnectError, Error, InvalidOption, ProxyError, Timeout
from ..options import Options
from ..policy import Target
from ..proxy import ProxyURL, TunnelAnswer, connect_request
from ..transport import (
    Cancel,
    Peer,
    attempt_time,
    default_context,
    no_connection,
    proxy_peer,
    target_peer,
    tunnel,
)

__all__ = ["dial"]


def _left(deadline: Optional[float], target: Target, what: str) -> Optional[float]:
    if deadline is None:
        return None
    left = deadline - asyncio.get_running_loop().time()
    if left <= 0:
        raise Timeout(f"dial timeout during {what}", url=target.url)
    return left


async def _resolve(peer: Peer, deadline: Optional[float]) -> list:
    loop = asyncio.get_running_loop()
    try:
        return socket.getaddrinfo(peer.host, peer.port, type=socket.SOCK_STREAM,
                                  flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass
    name = f"{peer.label}{peer.host}"
    # (every bound is taken before its coroutine is made: a Timeout from _left must not
    # leave a coroutine that is never awaited)
    left = _left(deadline, peer.target, f"the DNS lookup of {name}")
    try:
        return await asyncio.wait_for(
            loop.getaddrinfo(peer.host, peer.port, type=socket.SOCK_STREAM), left)
    except asyncio.TimeoutError:
        raise Timeout(f"dial timeout during the DNS lookup of {name}", url=peer.target.url,
                      proxy=peer.proxy) from None
    except OSError as exc:
        raise ConnectError(f"DNS lookup of {name} failed: {exc}", url=peer.target.url,
                           proxy=peer.proxy, cause=exc) from exc


async def _connect_tcp(peer: Peer, addresses: list, deadline: Optional[float]) -> socket.socket:
    loop = asyncio.get_running_loop()
    failures: List[str] = []
    last: Optional[BaseException] = None
    for i, (family, type_, proto, _name, addr) in enumerate(addresses):
        attempt = attempt_time(_left(deadline, peer.target, "the TCP connect"), len(addresses) - i - 1)
        sock = socket.socket(family, type_, proto)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, addr), attempt)
        except asyncio.TimeoutError as exc:
            sock.close()
            failures.append(f"{addr[0]}: timed out")
            last = exc
            continue
        except OSError as exc:
            sock.close()
            failures.append(f"{addr[0]}: {exc.strerror or exc}")
            last = exc
            continue
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise no_connection(peer.where, peer.target.url, failures, last, proxy=peer.proxy) from last


async def _tunnel(target: Target, options: Options, deadline: Optional[float],
                  proxy: ProxyURL) -> socket.socket:
    """A tunnel through an http:// or SOCKS proxy: the sync code (wsfast.transport.tunnel)
    in a thread of the loop's executor, stopped through a Cancel if this task is."""
    loop = asyncio.get_running_loop()
    cancel = Cancel()
    mono = None if deadline is None else time.monotonic() + (deadline - loop.time())
    work = loop.run_in_executor(None, tunnel, target, options, mono, cancel, proxy)
    try:
        sock, first = await asyncio.shield(work)
    except asyncio.CancelledError:
        cancel.cancel()   # the thread's blocking calls fail at once; it closes its socket
        raise
    if first:
        sock.close()
        raise ProxyError("the proxy sent bytes of the target's stream before the client spoke",
                         url=target.url, proxy=proxy.display)
    sock.setblocking(False)
    return sock


class _ProxyAnswer(asyncio.Protocol):
    """Reads the proxy's answer to CONNECT over the TLS transport to the proxy; reading
    pauses once the answer is whole, until the WebSocket protocol takes the transport."""

    def __init__(self, answer: TunnelAnswer) -> None:
        self._answer = answer
        self.transport: Optional[asyncio.Transport] = None
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        try:
            first = self._answer.feed(data)
        except Error as exc:
            self.done.set_exception(exc)
            return
        if first is not None:
            self.transport.pause_reading()  # type: ignore[union-attr]
            self.done.set_result(first)

    def eof_received(self) -> None:
        if not self.done.done():
            self.done.set_exception(self._answer.eof())

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if not self.done.done():
            self.done.set_exception(self._answer.eof())


async def _https_tunnel(target: Target, options: Options, deadline: Optional[float],
                        proxy: ProxyURL, protocol_factory: Callable[[], asyncio.BaseProtocol]
                        ) -> Tuple[asyncio.Transport, Any]:
    """An ``https://`` proxy: TLS to the proxy, CONNECT inside it, then the target's TLS
    (for wss) inside that with ``loop.start_tls``: TLS in TLS, all in the loop."""
    loop = asyncio.get_running_loop()
    peer = proxy_peer(target, proxy)
    sock = await _connect_tcp(peer, await _resolve(peer, deadline), deadline)
    what = "the TLS handshake with the proxy"
    try:
        left = _left(deadline, target, what)
        transport, reader = await asyncio.wait_for(
            loop.create_connection(lambda: _ProxyAnswer(TunnelAnswer(target, proxy)), sock=sock,
                                   ssl=options.proxy_ssl or default_context(),
                                   server_hostname=proxy.server_hostname or proxy.host), left)
    except BaseException as exc:
        sock.close()
        raise _tls_error(exc, target, what, proxy.display) from None
    conn = None
    try:
        what = f"the CONNECT through the proxy {proxy.display}"
        transport.write(connect_request(target, proxy))
        try:
            first = await asyncio.wait_for(asyncio.shield(reader.done), _left(deadline, target, what))
        except asyncio.TimeoutError:
            raise Timeout(f"dial timeout waiting for the proxy {proxy.display} to answer CONNECT",
                          url=target.url, proxy=proxy.display) from None
        if first:
            raise ProxyError("the proxy sent bytes of the target's stream before the client spoke",
                             url=target.url, proxy=proxy.display)
        conn = protocol_factory()
        if not target.secure:
            transport.set_protocol(conn)
            conn.connection_made(transport)
            transport.resume_reading()
            return transport, conn
        what = "the TLS handshake"
        try:
            left = _left(deadline, target, what)
            inner = await asyncio.wait_for(
                loop.start_tls(transport, conn, options.ssl or default_context(),
                               server_hostname=target.server_hostname or target.host), left)
        except TypeError as exc:
            _forget(conn)
            if isinstance(exc.__context__, OSError):
                # CPython 3.11's TLS in TLS fails its error path with a TypeError (fixed in
                # 3.12); the TLS error it was reporting is the TypeError's context.
                raise _tls_error(exc.__context__, target, what, proxy.display) from None
            # Python 3.9 and 3.10: start_tls cannot run over a TLS transport
            raise InvalidOption("wss through an https:// proxy needs Python 3.11 or later in "
                                "wsfast.asyncio (the sync client does it on any version)",
                                option="proxy") from None
        except BaseException as exc:
            _forget(conn)
            raise _tls_error(exc, target, what, proxy.display) from None
        conn.connection_made(inner)
        return inner, conn
    except BaseException:
        transport.abort()
        raise


def _abandon(conn: Any) -> None:
    """Nobody waits for ``conn``'s handshake outcome any more: retrieve it when it comes,
    so that asyncio does not log it as never retrieved."""
    fut = getattr(conn, "handshake", None)
    if fut is not None:
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())


def _forget(conn: Any) -> None:
    """The connection's handshake outcome is not wanted once its TLS failed: retrieve it,
    so that asyncio does not log it as never retrieved."""
    fut = getattr(conn, "handshake", None)
    if fut is not None and fut.done() and not fut.cancelled():
        fut.exception()


def _tls_error(exc: BaseException, target: Target, what: str, proxy: Optional[str]) -> BaseException:
    """The wsfast error for a failed TLS handshake (other exceptions as they are)."""
    to_proxy = "proxy" in what
    if isinstance(exc, asyncio.TimeoutError):
        return Timeout(f"dial timeout during {what}", url=target.url, proxy=proxy)
    if isinstance(exc, _ssl.SSLCertVerificationError):
        of = " of the proxy" if to_proxy else ""
        return ConnectError(f"TLS certificate verification{of} failed: {exc.verify_message}",
                            url=target.url, proxy=proxy, cause=exc, retryable=False)
    if isinstance(exc, (OSError, _ssl.SSLError)):
        return ConnectError(f"{what} failed: {exc}", url=target.url, proxy=proxy, cause=exc)
    return exc


async def dial(target: Target, options: Options, deadline: Optional[float],
               protocol_factory: Callable[[], asyncio.BaseProtocol],
               proxy: Optional[ProxyURL] = None) -> Tuple[asyncio.Transport, Any]:
    """A transport to ``target`` (TLS for wss) running ``protocol_factory()``'s protocol,
    directly or through ``proxy`` (http://, https:// or SOCKS).

    Raises Timeout, ConnectError (not retryable for a certificate that fails
    verification), ProxyError, InvalidOption (a SOCKS proxy without python-socks; wss
    through an https:// proxy before Python 3.11).
    """
    loop = asyncio.get_running_loop()
    if proxy is not None and proxy.secure:
        return await _https_tunnel(target, options, deadline, proxy, protocol_factory)
    if proxy is None:
        peer = target_peer(target)
        sock = await _connect_tcp(peer, await _resolve(peer, deadline), deadline)
    else:
        sock = await _tunnel(target, options, deadline, proxy)
    tls: Any = None
    hostname = None
    if target.secure:
        tls = options.ssl or default_context()
        hostname = target.server_hostname or target.host
    what = "the TLS handshake" if tls else "the connection"
    made: list = []

    def make() -> asyncio.BaseProtocol:
        made.append(protocol_factory())
        return made[-1]

    try:
        left = _left(deadline, target, what)
        return await asyncio.wait_for(
            loop.create_connection(make, sock=sock, ssl=tls, server_hostname=hostname), left)
    except BaseException as exc:
        sock.close()
        for conn in made:
            # the timeout (or a cancel) came after the transport was made: closing it ends
            # the connection's handshake with an error that nobody waits for now
            _abandon(conn)
        raise _tls_error(exc, target, what, None if proxy is None else proxy.display) from None
