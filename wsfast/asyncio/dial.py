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

from ..errors import ConnectError, ProxyError, Timeout
from ..options import Options
from ..policy import Target
from ..proxy import ProxyURL
from ..transport import Cancel, attempt_time, default_context, no_connection, tunnel

__all__ = ["dial"]


def _left(deadline: Optional[float], target: Target, what: str) -> Optional[float]:
    if deadline is None:
        return None
    left = deadline - asyncio.get_running_loop().time()
    if left <= 0:
        raise Timeout(f"dial timeout during {what}", url=target.url)
    return left


async def _resolve(target: Target, deadline: Optional[float]) -> list:
    loop = asyncio.get_running_loop()
    try:
        return socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM,
                                  flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass
    try:
        return await asyncio.wait_for(
            loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM),
            _left(deadline, target, "the DNS lookup"))
    except asyncio.TimeoutError:
        raise Timeout(f"dial timeout during the DNS lookup of {target.host}", url=target.url) from None
    except OSError as exc:
        raise ConnectError(f"DNS lookup of {target.host} failed: {exc}", url=target.url,
                           cause=exc) from exc


async def _connect_tcp(target: Target, addresses: list, deadline: Optional[float]) -> socket.socket:
    loop = asyncio.get_running_loop()
    failures: List[str] = []
    last: Optional[BaseException] = None
    for i, (family, type_, proto, _name, addr) in enumerate(addresses):
        attempt = attempt_time(_left(deadline, target, "the TCP connect"), len(addresses) - i - 1)
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
    raise no_connection(f"{target.host}:{target.port}", target.url, failures, last) from last


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


async def dial(target: Target, options: Options, deadline: Optional[float],
               protocol_factory: Callable[[], asyncio.BaseProtocol],
               proxy: Optional[ProxyURL] = None) -> Tuple[asyncio.Transport, Any]:
    """A transport to ``target`` (TLS for wss) running ``protocol_factory()``'s protocol,
    directly or through ``proxy`` (http:// or SOCKS; an https:// proxy is an
    InvalidOption here).

    Raises Timeout, ConnectError (not retryable for a certificate that fails
    verification), ProxyError, InvalidOption.
    """
    loop = asyncio.get_running_loop()
    if proxy is None:
        sock = await _connect_tcp(target, await _resolve(target, deadline), deadline)
    else:
        sock = await _tunnel(target, options, deadline, proxy)
    tls: Any = None
    hostname = None
    if target.secure:
        tls = options.ssl or default_context()
        hostname = target.server_hostname or target.host
    try:
        return await asyncio.wait_for(
            loop.create_connection(protocol_factory, sock=sock, ssl=tls, server_hostname=hostname),
            _left(deadline, target, "the TLS handshake" if tls else "the connection"))
    except asyncio.TimeoutError:
        sock.close()
        raise Timeout("dial timeout during the TLS handshake", url=target.url) from None
    except _ssl.SSLCertVerificationError as exc:
        sock.close()
        raise ConnectError(f"TLS certificate verification failed: {exc.verify_message}",
                           url=target.url, cause=exc, retryable=False) from exc
    except (OSError, _ssl.SSLError) as exc:
        sock.close()
        raise ConnectError(f"TLS handshake failed: {exc}", url=target.url, cause=exc) from exc
    except BaseException:
        sock.close()
        raise
