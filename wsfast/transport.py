"""Dialling: DNS with a bound, TCP to each address in turn, proxies, TLS. Blocking, with deadlines.

The sync front end calls :func:`dial`; what it returns is a connected (and, for
``wss``, TLS-wrapped) blocking socket. Every step is bounded by the one ``deadline``
(``dial_timeout`` covers DNS, TCP, the proxy, TLS and the upgrade together, DESIGN §1, §6).
Which proxy, the CONNECT request and its answer are decided in :mod:`wsfast.proxy`.

Decisions:

* The DNS lookup runs in a daemon thread that we stop waiting for at the deadline
  (``getaddrinfo`` itself cannot be interrupted); literal addresses skip the thread.
* TCP tries the addresses in the resolver's order. An address that refuses or times
  out is skipped for the next one; each attempt gets an equal share of the time left
  (at least ``MIN_ATTEMPT`` when that much is left), as Go's ``net.Dialer`` does, so
  one black-holed address cannot eat the whole ``dial_timeout``. A proxy's name is
  resolved and its addresses tried by the same rules.
* TLS verifies the server against the system trust store unless ``ssl`` gives a
  context; SNI and the certificate check use the URL's host, through a proxy too
  (end-to-end TLS). An ``https://`` proxy is verified with ``proxy_ssl`` (default: the
  system trust store) against the proxy's host.
* TLS to the target inside TLS to the proxy runs in a :class:`TunnelSocket`
  (``ssl.SSLObject`` over memory BIOs: Python cannot wrap an ``SSLSocket`` in
  another), and so does a tunnel whose first bytes came in the read that ended the
  proxy's answer (they are handed on, never dropped).
* SOCKS goes through ``python-socks`` (the ``wsfast[socks]`` extra) over the TCP
  connection made here; ``socks4``/``socks5`` resolve the target here (bounded),
  ``socks4a``/``socks5h`` send the name to the proxy.
* Failures: ``Timeout`` when the deadline passes; ``ProxyError`` when a proxy that was
  reached refuses or breaks the tunnel; ``ConnectError`` (naming the proxy) when the
  proxy cannot be reached.
"""

from __future__ import annotations

import inspect
import socket
import ssl as _ssl
import threading
import time
import warnings
from typing import Any, List, NamedTuple, Optional, Union

from .errors import ConnectError, Error, InvalidOption, ProxyError, Timeout
from .options import Options
from .policy import Target
from .proxy import ProxyURL, TunnelAnswer, connect_request

__all__ = ["Cancel", "TunnelSocket", "dial", "remaining"]

# The least time one TCP attempt gets when more addresses are left to try (Go's
# net.Dialer uses 2 s too): enough for a connect across the world, short enough that
# a dead first address leaves time for the others.
MIN_ATTEMPT = 2.0
# Plaintext encrypted per TunnelSocket write (four TLS records): what is kept when the
# outer socket takes only part of it is at most this much ciphertext.
_CHUNK = 65536
_RECV = 65536
_RAW_WOULD_BLOCK = (BlockingIOError, InterruptedError, _ssl.SSLWantReadError,
                    _ssl.SSLWantWriteError)


class Cancel:
    """Lets another thread stop a dial in progress (the reconnect iterator's ``close()``).

    The dial :meth:`watch`es each socket it makes before it blocks on it;
    :meth:`cancel` shuts every watched socket down, which wakes a blocked ``connect``
    (Linux disconnects a socket in SYN_SENT on shutdown), TLS handshake or ``recv``
    with an error, and makes every later :meth:`watch` fail at once. A
    :class:`TunnelSocket` stands for its outer socket (``raw``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()   # guards _socks, _events and cancelled
        self._socks: set = set()
        self._events: set = set()
        self.cancelled = False

    def wake(self, event: threading.Event) -> bool:
        """Set ``event`` on :meth:`cancel` (a DNS lookup's wait) until :meth:`forget`;
        False (and ``event`` set) when already cancelled."""
        with self._lock:
            if not self.cancelled:
                self._events.add(event)
                return True
        event.set()
        return False

    def watch(self, sock: Any) -> None:
        """Watch ``sock`` until :meth:`forget`; raises ConnectError once cancelled."""
        sock = getattr(sock, "raw", sock)
        with self._lock:
            if not self.cancelled:
                self._socks.add(sock)
                return
        raise ConnectError("the dial was cancelled")

    def forget(self, sock: Any) -> None:
        sock = getattr(sock, "raw", sock)
        with self._lock:
            self._socks.discard(sock)
            self._events.discard(sock)

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            socks, self._socks = self._socks, set()
            events, self._events = self._events, set()
        for event in events:
            event.set()
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


class Peer(NamedTuple):
    """What a DNS lookup and a TCP connect aim at, and how their errors name it."""

    host: str
    port: int
    target: Target          # the WebSocket target (its url goes into every error)
    label: str              # "" or "the proxy "
    proxy: Optional[str]    # the proxy's display URL, for the errors' details

    @property
    def where(self) -> str:
        if ":" in self.host:
            return f"{self.label}[{self.host}]:{self.port}"
        return f"{self.label}{self.host}:{self.port}"


def target_peer(target: Target) -> Peer:
    return Peer(target.host, target.port, target, "", None)


def proxy_peer(target: Target, proxy: ProxyURL) -> Peer:
    return Peer(proxy.host, proxy.port, target, "the proxy ", proxy.display)


def resolve(target: Target, deadline: Optional[float], cancel: Optional[Cancel] = None) -> list:
    """``getaddrinfo`` for the target, bounded by ``deadline`` (``cancel`` ends the wait).

    Raises Timeout, or ConnectError when the lookup fails or was cancelled.
    """
    return _resolve(target_peer(target), deadline, cancel)


def _resolve(peer: Peer, deadline: Optional[float], cancel: Optional[Cancel] = None) -> list:
    try:
        # literal addresses resolve at once without a thread
        return socket.getaddrinfo(peer.host, peer.port, type=socket.SOCK_STREAM,
                                  flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass
    result: list = []
    done = threading.Event()   # set by the lookup, or by a cancel

    def lookup() -> None:
        try:
            result.append(socket.getaddrinfo(peer.host, peer.port, type=socket.SOCK_STREAM))
        except BaseException as exc:  # handed to the waiting thread
            result.append(exc)
        done.set()

    name = f"{peer.label}{peer.host}"
    thread = threading.Thread(target=lookup, name="wsfast-dns", daemon=True)
    thread.start()
    if cancel is not None:
        cancel.wake(done)
    try:
        done.wait(remaining(deadline, peer.target, f"the DNS lookup of {name}"))
    finally:
        if cancel is not None:
            cancel.forget(done)
    if cancel is not None and cancel.cancelled:
        raise ConnectError("the dial was cancelled", url=peer.target.url)
    if not result:
        raise Timeout(f"dial timeout during the DNS lookup of {name}", url=peer.target.url,
                      proxy=peer.proxy)
    if isinstance(result[0], BaseException):
        exc = result[0]
        raise ConnectError(f"DNS lookup of {name} failed: {exc}", url=peer.target.url,
                           proxy=peer.proxy, cause=exc) from exc
    return result[0]


def connect_tcp(target: Target, addresses: list, deadline: Optional[float],
                cancel: Optional[Cancel] = None) -> socket.socket:
    """A TCP connection to the first of ``addresses`` that answers.

    Raises Timeout when the deadline passes, else ConnectError naming the last failure.
    """
    return _connect_tcp(target_peer(target), addresses, deadline, cancel)


def _connect_tcp(peer: Peer, addresses: list, deadline: Optional[float],
                 cancel: Optional[Cancel]) -> socket.socket:
    failures: List[str] = []
    last: Optional[BaseException] = None
    url = peer.target.url
    for i, (family, type_, proto, _name, addr) in enumerate(addresses):
        left = remaining(deadline, peer.target, f"the TCP connect to {peer.where}")
        attempt = attempt_time(left, len(addresses) - i - 1)
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
                raise ConnectError("the dial was cancelled", url=url)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise no_connection(peer.where, url, failures, last, proxy=peer.proxy) from last


def attempt_time(left: Optional[float], others: int) -> Optional[float]:
    """The seconds one TCP attempt gets, ``left`` being the time left (None: no bound)
    and ``others`` the addresses still to try after it: an equal share, at least
    ``MIN_ATTEMPT`` (both front ends)."""
    if left is None or not others:
        return left
    return min(left, max(left / (others + 1), MIN_ATTEMPT))


def no_connection(where: str, url: str, failures: List[str], last: Optional[BaseException],
                  **details: Any) -> Error:
    """The error when no address of ``where`` answered (``failures``: one line each,
    "ADDRESS: timed out" for a timeout): Timeout when every attempt timed out, else
    ConnectError (both front ends)."""
    if failures and all(f.endswith(": timed out") for f in failures):
        return Timeout(f"dial timeout connecting to {where} ({'; '.join(failures)})", url=url,
                       **details)
    return ConnectError(f"cannot connect to {where}: {'; '.join(failures) or 'no address'}",
                        url=url, cause=last, **details)


_context: Optional[_ssl.SSLContext] = None


def default_context() -> _ssl.SSLContext:
    """The verified system trust store context, made once."""
    global _context
    if _context is None:
        _context = _ssl.create_default_context()
    return _context


def start_tls(sock: socket.socket, target: Target, context: Optional[_ssl.SSLContext],
              deadline: Optional[float], cancel: Optional[Cancel] = None) -> _ssl.SSLSocket:
    """The TLS handshake with the target over ``sock`` (closed on failure).

    Raises Timeout, or ConnectError (not retryable for a certificate that fails
    verification).
    """
    return _start_tls(sock, target.server_hostname or target.host, context, deadline, cancel,
                      target, False, None)


def _start_tls(sock: socket.socket, hostname: str, context: Optional[_ssl.SSLContext],
               deadline: Optional[float], cancel: Optional[Cancel], target: Target,
               to_proxy: bool, proxy: Optional[str]) -> _ssl.SSLSocket:
    """TLS over ``sock`` (closed on failure) with ``hostname``'s certificate, to the
    proxy or to the target. The SSLSocket is watched before its handshake."""
    if context is None:
        context = default_context()
    what = "the TLS handshake with the proxy" if to_proxy else "the TLS handshake"
    ssock: Optional[_ssl.SSLSocket] = None
    ok = False
    try:
        # (no handshake yet: the new socket is watched first, the old one is detached)
        ssock = context.wrap_socket(sock, server_hostname=hostname, do_handshake_on_connect=False)
        if cancel is not None:
            cancel.watch(ssock)
            cancel.forget(sock)
        ssock.settimeout(remaining(deadline, target, what))
        ssock.do_handshake()
        ok = True
        return ssock
    except socket.timeout:
        raise Timeout(f"dial timeout during {what}", url=target.url, proxy=proxy) from None
    except _ssl.SSLCertVerificationError as exc:
        of = " of the proxy" if to_proxy else ""
        raise ConnectError(f"TLS certificate verification{of} failed: {exc.verify_message}",
                           url=target.url, proxy=proxy, cause=exc, retryable=False) from exc
    except (OSError, _ssl.SSLError) as exc:
        raise ConnectError(f"{what} failed: {exc}", url=target.url, proxy=proxy,
                           cause=exc) from exc
    finally:
        if not ok:
            (ssock or sock).close()


# ------------------------------------------------------------------ TLS over a stream

class TunnelSocket:
    """A socket-like connection whose TLS runs in an ``ssl.SSLObject`` over ``raw``.

    ``raw`` is the outer socket (an ``SSLSocket`` to an ``https://`` proxy, or the TCP
    socket of a tunnel whose first bytes were read with the proxy's answer: they are
    given first). With ``tls`` None the connection is plaintext (``ws``) and only those
    first bytes are given before ``raw``'s. Thread-safe: one lock around every call,
    never around a wait once non-blocking.

    Non-blocking (after ``setblocking(False)``): ``recv_into`` raises
    ``ssl.SSLWantReadError`` or ``BlockingIOError`` when nothing is available, never
    blocks; ``send`` never strands ciphertext: when ``raw`` takes only part of the TLS
    records it made, it keeps the rest and reports the data's last byte as not sent, so
    the caller polls for writability and calls again with that byte first; the next
    call writes what was kept before anything new (raising ``ssl.SSLWantWriteError``
    while it cannot). A record the TLS layer writes while reading (a TLS 1.3 key update
    answer) that the socket cannot take at once leaves with the next write.
    """

    def __init__(self, raw: socket.socket, tls: Optional[_ssl.SSLObject] = None,
                 incoming: Optional[_ssl.MemoryBIO] = None,
                 outgoing: Optional[_ssl.MemoryBIO] = None, first: bytes = b"") -> None:
        self.raw = raw
        self._tls = tls
        self._incoming = incoming
        self._outgoing = outgoing
        self._first = bytearray(first if tls is None else b"")   # plaintext, given first
        if tls is not None and first and incoming is not None:
            incoming.write(first)
        self._out = b""         # ciphertext raw has not taken yet
        self._owed = False      # the caller's next send starts with a byte already encrypted
        self._lock = threading.Lock()
        self._timeout = raw.gettimeout()

    # -- the socket interface the handshake and the engine use

    def fileno(self) -> int:
        return self.raw.fileno()

    def gettimeout(self) -> Optional[float]:
        return self._timeout

    def settimeout(self, timeout: Optional[float]) -> None:
        self.raw.settimeout(timeout)
        self._timeout = timeout

    def setblocking(self, flag: bool) -> None:
        self.settimeout(None if flag else 0.0)

    def getpeername(self) -> Any:
        """The proxy's address (the outer connection's)."""
        return self.raw.getpeername()

    def getsockname(self) -> Any:
        return self.raw.getsockname()

    def setsockopt(self, *args: Any) -> None:
        self.raw.setsockopt(*args)

    def close(self) -> None:
        self.raw.close()

    def shutdown(self, how: int) -> None:
        """Shut the TCP connection down (no TLS close_notify)."""
        socket.socket.shutdown(self.raw, how)

    def pending(self) -> int:
        with self._lock:
            return self._tls.pending() if self._tls is not None else len(self._first)

    # -- what ssl.SSLSocket tells of its TLS

    @property
    def server_hostname(self) -> Optional[str]:
        return self._tls.server_hostname if self._tls is not None else None

    def getpeercert(self, binary_form: bool = False) -> Any:
        return self._tls.getpeercert(binary_form) if self._tls is not None else None

    def version(self) -> Optional[str]:
        return self._tls.version() if self._tls is not None else None

    def cipher(self) -> Any:
        return self._tls.cipher() if self._tls is not None else None

    def selected_alpn_protocol(self) -> Optional[str]:
        return self._tls.selected_alpn_protocol() if self._tls is not None else None

    # -- writing

    def _push(self, blocking: bool) -> bool:
        """Hand the kept ciphertext to ``raw``; True when all of it is out."""
        if blocking:
            if self._out:
                self.raw.sendall(self._out)
                self._out = b""
            return True
        while self._out:
            try:
                n = self.raw.send(self._out)
            except _RAW_WOULD_BLOCK:
                return False
            if not n:
                return False
            self._out = self._out[n:]
        return True

    def _take_output(self) -> None:
        assert self._outgoing is not None
        if self._outgoing.pending:
            self._out += self._outgoing.read()

    def send(self, data: Any, flags: int = 0) -> int:
        """Write ``data``; returns how much of it counts as sent (see the class)."""
        with self._lock:
            tls = self._tls
            if tls is None:
                return self.raw.send(data)
            blocking = self._timeout != 0.0
            if self._out and not self._push(blocking):
                raise _ssl.SSLWantWriteError(_ssl.SSL_ERROR_WANT_WRITE, "the tunnel is full")
            view = memoryview(data)
            if view.format != "B" or view.ndim != 1:
                view = view.cast("B")
            done = 0
            if self._owed:   # (its ciphertext was in what just went out)
                self._owed = False
                done = 1
            while done < len(view):
                n = tls.write(view[done:done + _CHUNK])
                self._take_output()
                if not self._push(blocking):
                    self._owed = True
                    return done + n - 1
                done += n
            return done

    def sendall(self, data: Any, flags: int = 0) -> None:
        """Write all of ``data`` (blocking mode)."""
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        while view:
            n = self.send(view)
            view = view[n:]

    # -- reading

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Read into ``buffer``; 0 at the end of the stream. Raises ssl.SSLWantReadError
        or BlockingIOError when non-blocking and nothing is available."""
        with self._lock:
            if self._first:
                view = memoryview(buffer).cast("B")
                n = min(len(self._first), nbytes or len(view))
                view[:n] = self._first[:n]
                del self._first[:n]
                return n
            tls = self._tls
            if tls is None:
                return self.raw.recv_into(buffer, nbytes)
            assert self._incoming is not None
            size = nbytes or len(buffer)
            blocking = self._timeout != 0.0
            while True:
                try:
                    n = tls.read(size, buffer)
                except _ssl.SSLWantReadError:
                    n = -1
                except (_ssl.SSLZeroReturnError, _ssl.SSLEOFError):
                    return 0   # close_notify, or a bare EOF (as SSLSocket's suppress_ragged_eofs)
                self._take_output()   # (what TLS answers while reading)
                if self._out:
                    self._push(blocking)
                if n >= 0:
                    return n
                data = self.raw.recv(_RECV)   # (raises the would-block of a non-blocking raw)
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        buf = bytearray(bufsize)
        n = self.recv_into(buf, bufsize)
        return bytes(buf[:n])


def _tunnel_tls(raw: socket.socket, first: bytes, target: Target,
                context: Optional[_ssl.SSLContext], deadline: Optional[float],
                proxy: ProxyURL) -> TunnelSocket:
    """TLS with the target inside the tunnel over ``raw`` (which is closed on failure).

    Raises Timeout, or ConnectError (not retryable for a certificate that fails
    verification)."""
    if context is None:
        context = default_context()
    what = "the TLS handshake with the target through the proxy"
    incoming, outgoing = _ssl.MemoryBIO(), _ssl.MemoryBIO()
    ok = False
    try:
        tls = context.wrap_bio(incoming, outgoing,
                               server_hostname=target.server_hostname or target.host)
        if first:
            incoming.write(first)
        while True:
            try:
                tls.do_handshake()
                break
            except _ssl.SSLWantReadError:
                pass
            if outgoing.pending:
                raw.settimeout(remaining(deadline, target, what))
                raw.sendall(outgoing.read())
            raw.settimeout(remaining(deadline, target, what))
            data = raw.recv(_RECV)
            if data:
                incoming.write(data)
            else:
                incoming.write_eof()
        if outgoing.pending:   # (the client's Finished)
            raw.settimeout(remaining(deadline, target, what))
            raw.sendall(outgoing.read())
        ok = True
    except socket.timeout:
        raise Timeout(f"dial timeout during {what}", url=target.url,
                      proxy=proxy.display) from None
    except _ssl.SSLCertVerificationError as exc:
        raise ConnectError(f"TLS certificate verification failed: {exc.verify_message}",
                           url=target.url, proxy=proxy.display, cause=exc,
                           retryable=False) from exc
    except (OSError, _ssl.SSLError) as exc:
        raise ConnectError(f"{what} failed: {exc}", url=target.url, proxy=proxy.display,
                           cause=exc) from exc
    finally:
        if not ok:
            raw.close()
    return TunnelSocket(raw, tls, incoming, outgoing)


# ------------------------------------------------------------------ proxies

def _http_tunnel(sock: socket.socket, target: Target, proxy: ProxyURL,
                 deadline: Optional[float]) -> bytes:
    """CONNECT through an HTTP(S) proxy; returns the bytes that came after its answer.
    Raises Timeout, or ProxyError (refused: ``status``; or broken)."""
    answer = TunnelAnswer(target, proxy)
    what = f"the CONNECT through the proxy {proxy.display}"
    try:
        sock.settimeout(remaining(deadline, target, what))
        sock.sendall(connect_request(target, proxy))
        while True:
            sock.settimeout(remaining(deadline, target, what))
            data = sock.recv(_RECV)
            if not data:
                raise answer.eof()
            first = answer.feed(data)
            if first is not None:
                return first
    except socket.timeout:
        raise Timeout(f"dial timeout waiting for the proxy {proxy.display} to answer CONNECT",
                      url=target.url, proxy=proxy.display) from None
    except OSError as exc:
        raise ProxyError(f"the proxy {proxy.display} broke the connection during CONNECT: "
                         f"{exc}", url=target.url, proxy=proxy.display, cause=exc) from exc


class _Bounded:
    """The proxy connection as python-socks sees it: every call bounded by the deadline."""

    def __init__(self, sock: socket.socket, deadline: Optional[float], target: Target) -> None:
        self.sock = sock
        self._deadline = deadline
        self._target = target

    def _arm(self) -> None:
        self.sock.settimeout(remaining(self._deadline, self._target, "the SOCKS handshake"))

    def sendall(self, data: bytes) -> None:
        self._arm()
        self.sock.sendall(data)

    def recv(self, n: int) -> bytes:
        self._arm()
        return self.sock.recv(n)

    def close(self) -> None:
        self.sock.close()


class _Given:
    """python-socks' ``forward``: the connection to the proxy, already made here."""

    def __init__(self, sock: _Bounded) -> None:
        self._sock = sock

    def connect(self, dest_host: str, dest_port: int, timeout: Any = None, **kw: Any) -> Any:
        return self._sock


def _socks_package() -> Any:
    """The python-socks module; InvalidOption naming the extra when it is missing."""
    try:
        import python_socks
        import python_socks.sync
    except ImportError:
        raise InvalidOption("a SOCKS proxy needs the python-socks package: "
                            "pip install wsfast[socks]", option="proxy") from None
    return python_socks


def _socks_destination(target: Target, proxy: ProxyURL, deadline: Optional[float]) -> str:
    """The address to ask the SOCKS proxy for: the name (4a, 5h) or a local lookup's."""
    if proxy.rdns:
        return target.host
    addresses = resolve(target, deadline)
    if proxy.scheme == "socks4":
        addresses = [a for a in addresses if a[0] == socket.AF_INET]
        if not addresses:
            raise ConnectError(f"{target.host} has no IPv4 address, which SOCKS4 needs "
                               f"(use socks4a:// or socks5://)", url=target.url,
                               proxy=proxy.display, retryable=False)
    return addresses[0][4][0]


def _socks_tunnel(sock: socket.socket, target: Target, proxy: ProxyURL, host: str,
                  deadline: Optional[float]) -> None:
    """The SOCKS handshake over ``sock`` (python-socks). Raises Timeout or ProxyError."""
    ps = _socks_package()
    kind = ps.ProxyType.SOCKS4 if proxy.scheme.startswith("socks4") else ps.ProxyType.SOCKS5
    Proxy = ps.sync.Proxy
    bounded = _Bounded(sock, deadline, target)
    left = remaining(deadline, target, "the SOCKS handshake")
    try:
        if "forward" in inspect.signature(Proxy.__init__).parameters:   # python-socks 3
            socks = Proxy(kind, proxy.host, proxy.port, proxy.username, proxy.password,
                          rdns=proxy.rdns, forward=_Given(bounded))
            socks.connect(host, target.port, timeout=left)
        else:   # python-socks 2: the connection is handed over as _socket
            socks = Proxy(kind, proxy.host, proxy.port, proxy.username, proxy.password,
                          rdns=proxy.rdns)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                socks.connect(host, target.port, timeout=left, _socket=bounded)
    except (Timeout, ps.ProxyTimeoutError, socket.timeout) as exc:
        if isinstance(exc, Timeout):
            raise
        raise Timeout(f"dial timeout during the SOCKS handshake with {proxy.display}",
                      url=target.url, proxy=proxy.display) from None
    except ps.ProxyError as exc:
        code = getattr(exc, "error_code", None)
        text = str(exc)
        # credentials refused, or "not allowed by ruleset": retrying cannot help
        final = code == 2 and kind == ps.ProxyType.SOCKS5 or "authentication" in text.lower()
        raise ProxyError(f"the SOCKS proxy {proxy.display} refused the tunnel to "
                         f"{host}:{target.port}: {text}", url=target.url, proxy=proxy.display,
                         socks_code=code, retryable=False if final else None,
                         cause=exc) from exc
    except Exception as exc:   # a reset, an EOF in the reply, a malformed reply
        raise ProxyError(f"the SOCKS proxy {proxy.display} broke the connection: "
                         f"{exc or type(exc).__name__}", url=target.url, proxy=proxy.display,
                         cause=exc) from exc


def dial(target: Target, options: Options, deadline: Optional[float],
         cancel: Optional[Cancel] = None, proxy: Optional[ProxyURL] = None) -> Any:
    """A connected socket to ``target`` (TLS for wss), blocking, ready for the upgrade.

    ``proxy``: what :func:`wsfast.proxy.select_proxy` chose (None: direct). The result
    is a ``socket.socket``, an ``ssl.SSLSocket`` or a :class:`TunnelSocket`.
    ``cancel`` watches every socket made, so another thread can stop the dial.
    Raises Timeout, ConnectError (the target or the proxy cannot be reached; TLS),
    ProxyError (the proxy refused or broke the tunnel), InvalidOption (a SOCKS proxy
    without python-socks).
    """
    if proxy is None:
        sock = connect_tcp(target, resolve(target, deadline, cancel), deadline, cancel)
        if target.secure:
            return start_tls(sock, target, options.ssl, deadline, cancel)
        return sock
    sock, first = _tunnel(target, options, deadline, cancel, proxy)
    conn: Union[socket.socket, TunnelSocket] = sock
    try:
        if target.secure:
            if proxy.secure or first:
                conn = _tunnel_tls(sock, first, target, options.ssl, deadline, proxy)
            else:
                conn = _start_tls(sock, target.server_hostname or target.host, options.ssl,
                                  deadline, cancel, target, False, proxy.display)
        elif first:
            conn = TunnelSocket(sock, first=first)
        return conn
    except Error as exc:
        conn.close()
        if cancel is not None and cancel.cancelled and not isinstance(exc, InvalidOption):
            raise ConnectError("the dial was cancelled", url=target.url,
                               proxy=proxy.display) from exc
        raise
    except BaseException:
        conn.close()
        raise


def tunnel(target: Target, options: Options, deadline: Optional[float],
           cancel: Optional[Cancel], proxy: ProxyURL) -> tuple:
    """A tunnel to ``target`` through an ``http://`` or SOCKS ``proxy``, blocking:
    ``(socket, first)``, a plain TCP socket to the proxy with the tunnel open and the
    bytes that came after the proxy's answer (they belong to the target's stream). For
    the asyncio front end, which runs it in a thread and does the target's TLS itself.
    Raises as :func:`dial` does; InvalidOption for an ``https://`` proxy (its tunnel
    runs inside TLS: :func:`dial` only)."""
    if proxy.secure:
        raise InvalidOption("an https:// proxy needs TLS inside TLS, which only the sync dial "
                            "does", option="proxy")
    return _tunnel(target, options, deadline, cancel, proxy)


def _tunnel(target: Target, options: Options, deadline: Optional[float],
            cancel: Optional[Cancel], proxy: ProxyURL) -> tuple:
    host = target.host
    if proxy.socks:
        _socks_package()   # (before any network work)
        host = _socks_destination(target, proxy, deadline)
    peer = proxy_peer(target, proxy)
    sock = _connect_tcp(peer, _resolve(peer, deadline, cancel), deadline, cancel)
    try:
        if proxy.socks:
            _socks_tunnel(sock, target, proxy, host, deadline)
            return sock, b""
        if proxy.secure:
            sock = _start_tls(sock, proxy.server_hostname or proxy.host, options.proxy_ssl,
                              deadline, cancel, target, True, proxy.display)
        return sock, _http_tunnel(sock, target, proxy, deadline)
    except Error as exc:
        sock.close()
        if cancel is not None and cancel.cancelled and not isinstance(exc, InvalidOption):
            raise ConnectError("the dial was cancelled", url=target.url,
                               proxy=proxy.display) from exc
        raise
    except BaseException:
        sock.close()
        raise
