"""Dialling: DNS with a bound, TCP to each address in turn, TLS. Blocking, with deadlines.

The sync front end calls :func:`dial`; what it returns is a connected (and, for
``wss``, TLS-wrapped) blocking socket. Every step is bounded by the one ``deadline``
(``dial_timeout`` covers DNS, TCP, TLS and the upgrade together, DESIGN §1).

Decisions:

* The DNS lookup runs in a daemon thread that we stop waiting for at the deadline
  (``getaddrinfo`` itself cannot be interrupted); literal addresses skip the thread.
* TCP tries the addresses in the resolver's order. An address that refuses or times
  out is skipped for the next one; each attempt gets an equal share of the time left
  (at least ``_MIN_ATTEMPT`` when that much is left), as Go's ``net.Dialer`` does, so
  one black-holed address cannot eat the whole ``dial_timeout``.
* TLS verifies the server against the system trust store unless ``ssl`` gives a
  context; SNI and the certificate check use the URL's host.
"""

from __future__ import annotations

import socket
import ssl as _ssl
import threading
import time
from typing import List, Optional

from .errors import ConnectError, Timeout
from .options import Options
from .policy import Target

__all__ = ["Cancel", "dial", "remaining"]

# The least time one TCP attempt gets when more addresses are left to try (Go's
# net.Dialer uses 2 s too): enough for a connect across the world, short enough that
# a dead first address leaves time for the others.
_MIN_ATTEMPT = 2.0


class Cancel:
    """Lets another thread stop a dial in progress (the reconnect iterator's ``close()``).

    The dial :meth:`watch`es each socket it makes before it blocks on it;
    :meth:`cancel` shuts every watched socket down, which wakes a blocked ``connect``
    (Linux disconnects a socket in SYN_SENT on shutdown), TLS handshake or ``recv``
    with an error, and makes every later :meth:`watch` fail at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()   # guards _socks and cancelled
        self._socks: set = set()
        self.cancelled = False

    def watch(self, sock: socket.socket) -> None:
        """Watch ``sock`` until :meth:`forget`; raises ConnectError once cancelled."""
        with self._lock:
            if not self.cancelled:
                self._socks.add(sock)
                return
        raise ConnectError("the dial was cancelled")

    def forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.discard(sock)

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            socks, self._socks = self._socks, set()
        for sock in socks:
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass


def remaining(deadline: Optional[float], target: Target, what: str) -> Optional[float]:
    """Seconds left before ``deadline`` (None: no deadline); raises Timeout once passed."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise Timeout(f"dial timeout during {what}", url=target.url)
    return left


def resolve(target: Target, deadline: Optional[float]) -> list:
    """``getaddrinfo`` for the target, bounded by ``deadline``.

    Raises Timeout, or ConnectError when the lookup fails.
    """
    try:
        # literal addresses resolve at once without a thread
        return socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM,
                                  flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass
    result: list = []

    def lookup() -> None:
        try:
            result.append(socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM))
        except BaseException as exc:  # handed to the waiting thread
            result.append(exc)

    thread = threading.Thread(target=lookup, name="wsfast-dns", daemon=True)
    thread.start()
    thread.join(remaining(deadline, target, "the DNS lookup"))
    if not result:
        raise Timeout(f"dial timeout during the DNS lookup of {target.host}", url=target.url)
    if isinstance(result[0], BaseException):
        exc = result[0]
        raise ConnectError(f"DNS lookup of {target.host} failed: {exc}", url=target.url,
                           cause=exc) from exc
    return result[0]


def connect_tcp(target: Target, addresses: list, deadline: Optional[float],
                cancel: Optional[Cancel] = None) -> socket.socket:
    """A TCP connection to the first of ``addresses`` that answers.

    Raises Timeout when the deadline passes, else ConnectError naming the last failure.
    """
    failures: List[str] = []
    last: Optional[BaseException] = None
    for i, (family, type_, proto, _name, addr) in enumerate(addresses):
        left = remaining(deadline, target, "the TCP connect")
        attempt = left
        if left is not None:
            others = len(addresses) - i - 1
            if others:
                attempt = min(left, max(left / (others + 1), _MIN_ATTEMPT))
        sock = socket.socket(family, type_, proto)
        try:
            if cancel is not None:
                cancel.watch(sock)
            sock.settimeout(attempt)
            sock.connect(addr)
        except socket.timeout as exc:
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
        finally:
            if cancel is not None and cancel.cancelled:
                sock.close()
                raise ConnectError("the dial was cancelled", url=target.url)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    where = f"{target.host}:{target.port}"
    if failures and all(f.endswith(": timed out") for f in failures):
        raise Timeout(f"dial timeout connecting to {where} ({'; '.join(failures)})", url=target.url)
    raise ConnectError(f"cannot connect to {where}: {'; '.join(failures) or 'no address'}",
                       url=target.url, cause=last) from last


_context: Optional[_ssl.SSLContext] = None


def default_context() -> _ssl.SSLContext:
    """The verified system trust store context, made once."""
    global _context
    if _context is None:
        _context = _ssl.create_default_context()
    return _context


def start_tls(sock: socket.socket, target: Target, context: Optional[_ssl.SSLContext],
              deadline: Optional[float]) -> _ssl.SSLSocket:
    """The TLS handshake with the target over ``sock`` (closed on failure).

    Raises Timeout, or ConnectError (not retryable for a certificate that fails
    verification).
    """
    if context is None:
        context = default_context()
    try:
        sock.settimeout(remaining(deadline, target, "the TLS handshake"))
        return context.wrap_socket(sock, server_hostname=target.server_hostname or target.host)
    except socket.timeout:
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


def dial(target: Target, options: Options, deadline: Optional[float],
         cancel: Optional[Cancel] = None) -> socket.socket:
    """A connected socket to ``target`` (TLS for wss), blocking, ready for the upgrade.

    ``cancel`` watches every socket made, so another thread can stop the dial.
    Raises Timeout or ConnectError.
    """
    sock = connect_tcp(target, resolve(target, deadline), deadline, cancel)
    if target.secure:
        return start_tls(sock, target, options.ssl, deadline)
    return sock
