"""The sync client: a socket, one reader thread, and the receive channel.

The reader thread is the only one that reads the socket. It feeds the sans-I/O
protocol, answers pings at once, and hands the decoded messages to the bounded
receive channel in batches (one lock round per socket read); when the channel is
full it stops reading, so TCP backpressure reaches the server and nothing is lost.
Writes from any thread go through one lock, so frames never interleave.

The socket is non-blocking after the handshake: every wait is a ``poll`` with a
bound (read timeout, write timeout, close timeout), never a blocking call that a
silent peer could stretch forever.
"""

from __future__ import annotations

import select
import socket
import ssl as _ssl
import threading
import time
from typing import Any, Dict, Mapping, Optional, Union

from . import handshake
from .channels import Channel
from .constants import BINARY, CLOSE_CODES, TEXT
from .errors import (
    ChannelClosed,
    ConnectError,
    ConnectionClosed,
    Error,
    InvalidOption,
    Timeout,
)
from .options import Options, parse_options
from .policy import Target, check_connect
from .protocol import CLOSED, Protocol, check_close_args

__all__ = ["Client", "connect"]

_READ_BUFFER = 256 * 1024
_WOULD_BLOCK = (BlockingIOError, InterruptedError, _ssl.SSLWantReadError, _ssl.SSLWantWriteError)
_POLLIN = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR
_POLLOUT = select.POLLOUT | select.POLLHUP | select.POLLERR


class _ReadTimeout(Exception):
    pass


class Client:
    """A connected WebSocket client; create it with :func:`wsfast.connect`.

    ``send``, ``ping`` and ``close`` may be called from any thread. Received data
    messages arrive on :meth:`channel`.
    """

    def __init__(self, sock: socket.socket, target: Target, options: Options, protocol: Protocol, *,
                 subprotocol: Optional[str], extensions: Optional[str],
                 response_headers: Dict[str, str], leftover: bytes) -> None:
        self.url: str = target.url
        self.subprotocol: Optional[str] = subprotocol
        self.extensions: Optional[str] = extensions
        self.response_headers: Dict[str, str] = response_headers
        self._sock = sock
        # OpenSSL does not allow one SSL object to be used by two threads at once (even
        # SSL_get_error reads state another thread's SSL_write changes: a reader's "want
        # read" turns into a spurious EOF). The socket is non-blocking, so each call is
        # short: TLS reads and writes take this lock around the call, never around a wait.
        self._tls_lock: Optional[threading.Lock] = None
        self._send = sock.send
        self._recv_into = sock.recv_into
        if isinstance(sock, _ssl.SSLSocket):
            self._tls_lock = threading.Lock()
            self._send = _locked(sock.send, self._tls_lock)
            self._recv_into = _locked(sock.recv_into, self._tls_lock)
        self._options = options
        self._protocol = protocol
        self._channel = Channel(options.channel_capacity)
        self._wlock = threading.Lock()
        self._wpoll = select.poll()
        self._wpoll.register(sock.fileno(), _POLLOUT)
        self._state_lock = threading.Lock()
        self._close_called = False
        self._ended = threading.Event()   # the reader finished: connection over
        self._dropping = False            # close() was called: stop delivering messages
        self._messages_in = 0
        self._bytes_in = 0
        self._messages_out = 0
        self._bytes_out = 0
        self._leftover = leftover
        self._reader = threading.Thread(target=self._read_loop, name=f"wsfast-reader {self.url}",
                                        daemon=True)
        self._reader.start()

    # ------------------------------------------------------------------ public API

    def channel(self) -> Channel:
        """The receive channel of this client (always the same one)."""
        return self._channel

    @property
    def closed(self) -> bool:
        """True once the connection has ended (closing handshake done or connection lost)."""
        return self._ended.is_set()

    @property
    def close_code(self) -> Optional[int]:
        """The peer's close code; else the code this side failed with; else 1006. None while open."""
        if not self._ended.is_set():
            return None
        return self._protocol.close_code

    @property
    def close_reason(self) -> Optional[str]:
        if not self._ended.is_set():
            return None
        return self._protocol.close_reason

    @property
    def error(self) -> Optional[Error]:
        """The wsfast.Error that ended the connection, else None."""
        return self._protocol.error

    @property
    def stats(self) -> Dict[str, int]:
        """Counters: messages and bytes in and out (bytes as on the wire)."""
        return {"messages_in": self._messages_in, "bytes_in": self._bytes_in,
                "messages_out": self._messages_out, "bytes_out": self._bytes_out}

    def send(self, data: Union[str, bytes, bytearray, memoryview], type: Optional[int] = None) -> bool:
        """Send one message: ``str`` as TEXT, bytes-like as BINARY, unless ``type`` says.

        Raises InvalidOption (bad data or type), ConnectionClosed, Timeout (write_timeout).
        """
        if type is None:
            opcode = None
        elif type == TEXT or type == BINARY:
            if isinstance(type, bool):
                raise InvalidOption("type must be wsfast.TEXT or wsfast.BINARY")
            opcode = int(type)
        else:
            raise InvalidOption(f"type must be wsfast.TEXT (1) or wsfast.BINARY (2), not {type!r}")
        if isinstance(data, str):
            if opcode == BINARY:
                data = _utf8(data)
            elif not data.isascii():
                _utf8(data)   # lone surrogates cannot be sent
        elif isinstance(data, (bytes, bytearray, memoryview)):
            if opcode == TEXT:
                try:
                    bytes(data).decode("utf-8")
                except UnicodeDecodeError:
                    raise InvalidOption("send(bytes, TEXT) needs valid UTF-8") from None
        else:
            raise InvalidOption(f"send() takes str or bytes-like data, not {data.__class__.__name__}")
        with self._wlock:
            if self._protocol.close_sent is not None or self._ended.is_set():
                raise self._closed_error()
            frame = self._protocol.send_message(data, opcode)
            self._write_locked(frame)
            self._messages_out += 1
            if self._protocol.pending:
                self._flush_pending_locked()
        return True

    def ping(self, data: Union[bytes, str] = b"") -> bool:
        """Send a ping (does not wait for the pong). ``data`` at most 125 bytes."""
        if isinstance(data, str):
            data = _utf8(data)
        elif not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidOption("ping data must be bytes or str")
        if len(data) > 125:
            raise InvalidOption("ping data over 125 bytes")
        with self._wlock:
            if self._protocol.close_sent is not None or self._ended.is_set():
                raise self._closed_error()
            self._write_locked(self._protocol.send_ping(data))
            if self._protocol.pending:
                self._flush_pending_locked()
        return True

    def close(self, code: int = CLOSE_CODES.NORMAL, reason: str = "") -> bool:
        """Close with ``code`` and ``reason``; wait at most ``close_timeout`` for the server.

        Raises ConnectionClosed when the connection already ended or close was called.
        """
        check_close_args(code, reason)
        with self._state_lock:
            if self._close_called or self._ended.is_set():
                raise self._closed_error()
            self._close_called = True
        self._dropping = True
        self._channel._interrupt_senders()   # a full channel must not hold up the handshake
        timeout = self._options.close_timeout
        deadline = time.monotonic() + timeout
        proto = self._protocol
        # A send blocked on a peer that does not read holds the write lock: wait for it
        # only until the deadline, then drop the connection (which releases that send).
        if self._wlock.acquire(True, timeout):
            try:
                frame = proto.send_close(int(code), reason)
                if frame:
                    self._write_locked(frame, deadline)
            except Error:
                pass   # the reader sees the broken socket and ends the connection
            finally:
                self._wlock.release()
        if not self._ended.wait(max(0.0, deadline - time.monotonic())):
            if proto.error is None and proto.close_received is None:
                proto.error = Timeout(f"close timeout: no close frame from the server within "
                                      f"{timeout:g} s", url=self.url)
            self._abort()
            self._ended.wait(1.0)
        return True

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.close()
        except ConnectionClosed:
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<wsfast.Client {self.url} {state}>"

    # ------------------------------------------------------------------ writing

    def _closed_error(self) -> ConnectionClosed:
        proto = self._protocol
        code = proto.close_code if self._ended.is_set() else None
        reason = proto.close_reason if self._ended.is_set() else None
        return ConnectionClosed(f"the connection is closed (code {code})" if code
                                else "the connection is closing", close_code=code, reason=reason)

    def _write_locked(self, data: bytes, deadline: Optional[float] = None) -> None:
        """Write all of ``data``; the caller holds the write lock."""
        send = self._send
        n = len(data)
        try:
            sent = send(data)
        except _WOULD_BLOCK:
            sent = 0
        except OSError as exc:
            raise self._write_failed(exc)
        if sent == n:
            self._bytes_out += n
            return
        if deadline is None and self._options.write_timeout is not None:
            deadline = time.monotonic() + self._options.write_timeout
        view = memoryview(data)
        while sent < n:
            if deadline is None:
                wait = -1
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    if sent:   # half a frame is out: the stream cannot be used any more
                        self._abort()
                    raise Timeout("write timeout", url=self.url)
                wait = max(1, int(left * 1000))
            self._wpoll.poll(wait)
            if self._ended.is_set():
                raise self._closed_error()
            try:
                sent += send(view[sent:])
            except _WOULD_BLOCK:
                pass
            except OSError as exc:
                raise self._write_failed(exc)
        self._bytes_out += n

    def _write_failed(self, exc: OSError) -> Error:
        if self._ended.is_set():
            return self._closed_error()
        return ConnectError(f"write failed: {exc}", url=self.url, cause=exc)

    def _flush_locked(self) -> None:
        """Write the frames the protocol queued (pongs, close replies); the caller holds the lock."""
        for frame in self._protocol.data_to_send():
            self._write_locked(frame, time.monotonic() + self._options.close_timeout)

    def _flush_pending_locked(self) -> None:
        """A writer's turn to flush what the reader queued while the lock was taken."""
        try:
            self._flush_locked()
        except Error:
            pass   # the reader sees the broken socket and ends the connection

    def _try_flush(self) -> None:
        """Reader: flush the queued frames unless a writer holds the lock.

        A writer blocked on a peer that waits for us to read must not block the reader
        too (both ends would deadlock); that writer flushes the frames when its write
        is done, and the reader retries soon (see ``_receive_phase``).
        """
        if self._wlock.acquire(False):
            try:
                self._flush_locked()
            finally:
                self._wlock.release()

    def _flush_protocol(self) -> None:
        """Reader, at the end: write the close reply or failure close, within close_timeout."""
        if not self._wlock.acquire(True, self._options.close_timeout):
            self._abort()   # a writer is stuck on a peer that does not read
            return
        try:
            self._flush_locked()
        finally:
            self._wlock.release()

    def _abort(self) -> None:
        """Drop the TCP connection; the reader and any blocked writer wake up and finish."""
        try:
            # the plain socket's shutdown: SSLSocket.shutdown would also drop its TLS
            # object under a writer that may be using it
            socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
        except OSError:
            pass

    # ------------------------------------------------------------------ reading

    def _read_loop(self) -> None:
        proto = self._protocol
        try:
            self._receive_phase()
            if proto.pending:
                self._flush_protocol()
            # The closing handshake is over (or the connection failed): the channel
            # ends now; waiting for the server's FIN below must not hold up consumers.
            self._finish()
            if not (proto.state == CLOSED and proto.close_received is None):
                self._drain_phase()
        except Exception as exc:  # never let the reader die silently
            if proto.error is None:
                proto.error = exc if isinstance(exc, Error) else ConnectError(
                    f"reader failed: {exc!r}", url=self.url, cause=exc)
        finally:
            self._abort()   # wakes a writer still polling this socket before it is closed
            try:
                if self._tls_lock is not None:
                    with self._tls_lock:
                        self._sock.close()
                else:
                    self._sock.close()
            except OSError:
                pass
            self._finish()

    def _finish(self) -> None:
        self._ended.set()
        self._channel.close()

    def _receive_phase(self) -> None:
        """Read, decode and deliver until a close frame, an error or EOF."""
        sock = self._sock
        proto = self._protocol
        poller = select.poll()
        poller.register(sock.fileno(), _POLLIN)
        buf = bytearray(_READ_BUFFER)
        view = memoryview(buf)
        recv_into = self._recv_into
        receive_data = proto.receive_data
        read_timeout = self._options.read_timeout
        if self._leftover:
            msgs = receive_data(self._leftover)
            self._bytes_in += len(self._leftover)
            self._leftover = b""
            if msgs:
                self._messages_in += len(msgs)
                self._deliver(msgs)
        deadline = None if read_timeout is None else time.monotonic() + read_timeout
        while proto.state != CLOSED and proto.error is None:
            if proto.pending:
                self._try_flush()
            try:
                n = recv_into(buf)
            except _WOULD_BLOCK:
                if deadline is None:
                    wait = -1
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        proto.fail(Timeout(f"read timeout: no message for {read_timeout:g} s",
                                           url=self.url), CLOSE_CODES.GOING_AWAY, "read timeout")
                        return
                    wait = max(1, int(left * 1000))
                if proto.pending and not 0 <= wait <= 20:
                    wait = 20   # a writer held the lock: retry the flush soon
                poller.poll(wait)
                continue
            except OSError as exc:
                if proto.error is None:
                    proto.error = ConnectError(f"connection lost: {exc}", url=self.url, cause=exc,
                                               close_code=CLOSE_CODES.ABNORMAL_CLOSURE)
                proto.state = CLOSED
                return
            if n == 0:
                proto.receive_eof()
                return
            self._bytes_in += n
            msgs = receive_data(view[:n])
            if msgs:
                self._messages_in += len(msgs)
                if not self._dropping:
                    self._deliver(msgs)
                if deadline is not None:   # after delivery: a slow consumer is not a silent server
                    deadline = time.monotonic() + read_timeout

    def _deliver(self, msgs: list) -> None:
        ch = self._channel
        try:
            done = ch._send_batch(msgs)
            while done < len(msgs) and not self._dropping:
                done = ch._send_batch(msgs, done)
        except ChannelClosed:
            self._dropping = True   # the user closed the channel: keep the connection serviced

    def _drain_phase(self) -> None:
        """After the close frames: wait (bounded) for the server to end the TCP stream."""
        sock = self._sock
        proto = self._protocol
        poller = select.poll()
        poller.register(sock.fileno(), _POLLIN)
        deadline = time.monotonic() + self._options.close_timeout
        buf = bytearray(65536)
        while True:
            try:
                n = self._recv_into(buf)
            except _WOULD_BLOCK:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                poller.poll(max(1, int(left * 1000)))
                continue
            except OSError:
                return
            if n == 0:
                return
            self._bytes_in += n
            if proto.close_received is None and proto.error is None:
                # still waiting for the server's close frame after ours
                msgs = proto.receive_data(memoryview(buf)[:n])
                if msgs:
                    self._messages_in += len(msgs)
                    if not self._dropping:
                        self._deliver(msgs)
                if proto.pending:
                    self._flush_protocol()


def _locked(call, lock):
    def locked(arg):
        with lock:
            return call(arg)
    return locked


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidOption("text is not valid Unicode (lone surrogate)") from None


# ---------------------------------------------------------------------- connecting

def connect(url: str, options: Optional[Mapping[str, Any]] = None, /, **kwargs: Any) -> Client:
    """Open a WebSocket connection and return a :class:`Client`.

    ``options`` (a dict, the Lua spec's style) and keyword options merge; see
    DESIGN §1 for the names. Raises PermissionDenied, InvalidOption, Timeout,
    ConnectError or HandshakeError.
    """
    opts = parse_options(options, kwargs)
    target = check_connect(url)          # the security policy, before any DNS or TCP work
    deadline = None if opts.dial_timeout is None else time.monotonic() + opts.dial_timeout
    sock = _dial(target, opts, deadline)
    try:
        key = handshake.new_key()
        request = handshake.build_request(
            host_header=target.host_header, resource=target.resource, key=key,
            headers=opts.headers, protocols=opts.protocols,
            extensions=handshake.extension_offer(opts.compression))
        _sendall(sock, request, deadline, target)
        response, leftover = _read_response(sock, deadline, target)
        body = b""
        if response.status != 101:
            body = _read_body(sock, response, leftover, deadline)
        subprotocol, extensions, deflate = handshake.check_response(
            response, key=key, protocols=opts.protocols, compression=opts.compression,
            url=target.url, body=body)
        threshold = opts.compression_threshold
        protocol = Protocol(read_limit=opts.read_limit, deflate=deflate, compression_threshold=threshold)
        sock.setblocking(False)
        headers: Dict[str, str] = {}
        for name, value in response.headers:
            key_l = name.lower()
            headers[key_l] = f"{headers[key_l]}, {value}" if key_l in headers else value
        return Client(sock, target, opts, protocol, subprotocol=subprotocol, extensions=extensions,
                      response_headers=headers, leftover=leftover)
    except BaseException:
        sock.close()
        raise


def _remaining(deadline: Optional[float], target: Target, what: str) -> Optional[float]:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise Timeout(f"dial timeout during {what}", url=target.url)
    return left


def _resolve(target: Target, deadline: Optional[float]) -> list:
    """getaddrinfo with a bound: the lookup runs in a daemon thread we stop waiting for."""
    result: list = []

    def lookup() -> None:
        try:
            result.append(socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM))
        except BaseException as exc:  # handed to the waiting thread
            result.append(exc)

    try:
        # literal addresses resolve at once without a thread
        return socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM,
                                  flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass
    done = threading.Thread(target=lookup, name="wsfast-dns", daemon=True)
    done.start()
    done.join(_remaining(deadline, target, "DNS lookup"))
    if not result:
        raise Timeout(f"dial timeout during the DNS lookup of {target.host}", url=target.url)
    if isinstance(result[0], BaseException):
        exc = result[0]
        raise ConnectError(f"DNS lookup of {target.host} failed: {exc}", url=target.url,
                           cause=exc) from exc
    return result[0]


def _dial(target: Target, opts: Options, deadline: Optional[float]) -> socket.socket:
    last: Optional[BaseException] = None
    sock = None
    for family, type_, proto, _name, addr in _resolve(target, deadline):
        sock = socket.socket(family, type_, proto)
        try:
            sock.settimeout(_remaining(deadline, target, "TCP connect"))
            sock.connect(addr)
            break
        except socket.timeout:
            sock.close()
            raise Timeout(f"dial timeout connecting to {target.host}:{target.port}", url=target.url)
        except OSError as exc:
            sock.close()
            sock = None
            last = exc
    if sock is None:
        raise ConnectError(f"cannot connect to {target.host}:{target.port}: {last}", url=target.url,
                           cause=last) from last
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not target.secure:
        return sock
    context = opts.ssl if opts.ssl is not None else _default_context()
    try:
        sock.settimeout(_remaining(deadline, target, "TLS handshake"))
        return context.wrap_socket(sock, server_hostname=target.server_hostname or target.host)
    except socket.timeout:
        sock.close()
        raise Timeout("dial timeout during the TLS handshake", url=target.url)
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


_context: Optional[_ssl.SSLContext] = None


def _default_context() -> _ssl.SSLContext:
    global _context
    if _context is None:
        _context = _ssl.create_default_context()
    return _context


def _sendall(sock: socket.socket, data: bytes, deadline: Optional[float], target: Target) -> None:
    try:
        sock.settimeout(_remaining(deadline, target, "the HTTP upgrade"))
        sock.sendall(data)
    except socket.timeout:
        raise Timeout("dial timeout sending the HTTP upgrade", url=target.url)
    except OSError as exc:
        raise ConnectError(f"connection lost during the handshake: {exc}", url=target.url,
                           cause=exc) from exc


def _read_response(sock: socket.socket, deadline: Optional[float], target: Target):
    parser = handshake.ResponseParser()
    while True:
        try:
            sock.settimeout(_remaining(deadline, target, "the HTTP upgrade"))
            data = sock.recv(65536)
        except socket.timeout:
            raise Timeout("dial timeout waiting for the HTTP upgrade response", url=target.url)
        except OSError as exc:
            raise ConnectError(f"connection lost during the handshake: {exc}", url=target.url,
                               cause=exc) from exc
        if not data:
            raise ConnectError("the server closed the connection during the handshake", url=target.url)
        response = parser.feed(data)
        if response is not None:
            return response, parser.leftover


def _read_body(sock: socket.socket, response, leftover: bytes, deadline: Optional[float]) -> bytes:
    """Up to 4 KiB of a refusal's body, for the error; best effort within a short bound."""
    want = response.content_length
    want = 4096 if want is None else min(want, 4096)
    body = bytearray(leftover[:4096])
    end = time.monotonic() + 1.0
    if deadline is not None:
        end = min(end, deadline)
    while len(body) < want:
        left = end - time.monotonic()
        if left <= 0:
            break
        try:
            sock.settimeout(left)
            data = sock.recv(4096)
        except (OSError, socket.timeout):
            break
        if not data:
            break
        body += data
    return bytes(body[:want])

