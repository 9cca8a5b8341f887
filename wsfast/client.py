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

import mmap
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
from .protocol import CLOSED, OPEN, Protocol, check_close_args

__all__ = ["Client", "connect"]

_READ_BUFFER = 256 * 1024
# Outgoing bytes the kernel would not take wait in a per-connection buffer that the
# reader thread flushes when the socket is writable; a send finding more than this
# queued waits (bounded by write_timeout) until the queue drains below it.
_WRITE_HIGH = 256 * 1024
# A send that follows the previous one within this many seconds joins the queue
# instead of making its own system call: back-to-back sends are written in batches by
# the reader thread while an occasional send (a request, an echo) goes out at once.
_COALESCE_GAP = 20e-6
_LINGER = 50e-6
# After a consumer read the socket itself, the reader thread stays out of its way for
# this long (it then takes over: pings, close frames, backpressure).
_CONSUMER_GRACE = 0.002
# A consumer that finds both the channel and the socket empty waits for the socket
# itself (one wake-up per reply instead of two: the reader's, then the consumer's) for
# at most this long, then hands the waiting back to the reader thread.
_CONSUMER_POLL = 0.005
_WOULD_BLOCK = (BlockingIOError, InterruptedError, _ssl.SSLWantReadError, _ssl.SSLWantWriteError)


class _IOWait:
    """Wait for a socket to become readable and/or writable (poll, or select on Windows)."""

    if hasattr(select, "poll"):
        _IN = select.POLLIN | select.POLLPRI
        _OUT = select.POLLOUT

        def __init__(self, *socks: socket.socket, write: bool = False) -> None:
            self._poll = select.poll()
            self._fd = socks[0].fileno()
            self._write = write
            self._poll.register(self._fd, self._OUT if write else self._IN)
            for extra in socks[1:]:
                self._poll.register(extra.fileno(), self._IN)

        def want_write(self, on: bool) -> None:
            """Also wake when the first socket is writable (reader side)."""
            if on != self._write:
                self._write = on
                self._poll.modify(self._fd, self._IN | self._OUT if on else self._IN)

        def wait(self, timeout: Optional[float]) -> None:
            self._poll.poll(-1 if timeout is None else max(1, int(timeout * 1000 + 0.999)))
    else:  # pragma: no cover - Windows
        def __init__(self, *socks: socket.socket, write: bool = False) -> None:
            self._socks = socks
            self._write = write

        def want_write(self, on: bool) -> None:
            self._write = on

        def wait(self, timeout: Optional[float]) -> None:
            socks = self._socks
            reads = [] if self._write and len(socks) == 1 else list(socks)
            select.select(reads, [socks[0]] if self._write else [], [], timeout)


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
        self._wlock = threading.Lock()      # guards the encoder, _wbuf and the flags below
        self._room = threading.Condition(self._wlock)   # senders waiting for the queue to drain
        self._wbuf = bytearray()            # frames queued for the reader thread to write
        self._flushing = False              # the reader owns the writing (the queue is in use)
        self._in_deliver = False            # the reader waits for room in the channel
        self._last_write = 0.0              # when the last direct write finished
        self._open = True                   # no close frame sent and the connection not ended
        self._encode = protocol.encoder.encode_message
        self._backlog = 0                   # bytes queued or being written by the reader
        self._written = 0                   # bytes written to the socket so far
        # a socket pair: senders wake the reader's poll when bytes start to queue
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._state_lock = threading.Lock()
        self._close_called = False
        self._ended = threading.Event()   # the reader finished: connection over
        self._dropping = False            # close() was called: deliver only what fits
        self._channel_gone = False        # the user closed the receive channel
        self._rlock = threading.Lock()       # whoever reads the socket holds it
        # An anonymous mapping, not a bytearray: its pages become resident only when a
        # read reaches them, so an idle connection costs no buffer memory.
        self._rbuf = mmap.mmap(-1, _READ_BUFFER)
        self._rview = memoryview(self._rbuf)
        self._last_data = 0.0                # when data messages last arrived
        self._fetched = 0.0                  # when a consumer last read the socket itself
        self._contended = 0                  # consumer reads that found the reader busy
        self._polling = False                # a consumer waits for the socket itself
        self._consumer_wait: Optional[_IOWait] = None
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

        Returns True once the frame is written or queued (the reader thread writes the
        queue). Raises InvalidOption (bad data or type), ConnectionClosed, Timeout
        (write_timeout).
        """
        cls = data.__class__
        if type is None and (cls is str or cls is bytes):
            opcode = None
        else:
            data, opcode = _check_send(data, type)
        # Fast path: back-to-back sends append to the queue the reader is writing.
        with self._wlock:
            if self._flushing and self._open and self._backlog < _WRITE_HIGH:
                try:
                    frame = self._encode(data, opcode)
                except UnicodeEncodeError:
                    raise InvalidOption("text is not valid Unicode (lone surrogate)") from None
                self._wbuf += frame
                n = len(frame)
                self._backlog += n
                self._bytes_out += n
                self._messages_out += 1
                return True
        try:
            self._write(self._encode, data, opcode)
        except UnicodeEncodeError:
            raise InvalidOption("text is not valid Unicode (lone surrogate)") from None
        self._messages_out += 1
        return True

    def ping(self, data: Union[bytes, str] = b"") -> bool:
        """Send a ping (does not wait for the pong). ``data`` at most 125 bytes."""
        if isinstance(data, str):
            data = _utf8(data)
        elif not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidOption("ping data must be bytes or str")
        if len(data) > 125:
            raise InvalidOption("ping data over 125 bytes")
        self._write(self._protocol.send_ping, data)
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
        try:
            with self._wlock:
                self._open = False
                frame = proto.send_close(int(code), reason)
                if frame:
                    self._queue_locked(frame)
        except Error:
            pass   # the reader sees the broken socket and ends the connection
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

    def _write(self, encode, *args) -> None:
        """Encode a frame and write it, or queue it for the reader thread to write.

        The write lock is held only for non-blocking work (encoding, one ``send``
        call, appending to the queue), never across a wait, so the reader can always
        queue a pong. A sender finding the queue over its bound waits for room first,
        at most ``write_timeout``; then nothing of its message was sent. A frame that
        leaves the queue over the bound (a large message) is waited for until the
        queue drains below it, like a blocking write.
        """
        with self._wlock:
            if self._backlog >= _WRITE_HIGH:
                self._wait_room(None)
            if not self._open or self._protocol.close_sent is not None or self._ended.is_set():
                raise self._closed_error()
            self._queue_locked(encode(*args))
            if self._backlog >= _WRITE_HIGH:
                self._wait_room(self._written + self._backlog)

    def _wait_room(self, end: Optional[int]) -> None:
        """Wait (lock held, released while waiting) until the backlog is under its bound.

        ``end``: the stream offset just past this sender's own frame, when it is
        already queued; if the connection ends before that offset was written, the
        message did not go out and the sender gets the error.
        """
        timeout = self._options.write_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._backlog >= _WRITE_HIGH and (end is None or self._written < end):
            if self._ended.is_set() or self._protocol.error is not None:
                raise self._closed_error()
            left = None
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    if end is not None:   # our frame is half out: the stream cannot be trusted
                        self._protocol.fail(Timeout("write timeout", url=self.url))
                        self._abort()
                    raise Timeout("write timeout", url=self.url)
            self._room.wait(left)

    def _queue_locked(self, frame: bytes) -> None:
        """Write ``frame`` now, or append it to the queue; the caller holds the lock."""
        n = len(frame)
        self._bytes_out += n
        if not self._flushing:
            now = time.monotonic()
            if now - self._last_write > _COALESCE_GAP:
                try:
                    sent = self._send(frame)
                except _WOULD_BLOCK:
                    sent = 0
                except OSError as exc:
                    raise self._write_failed(exc)
                self._last_write = time.monotonic()
                self._written += sent
                if sent == n:
                    return
                frame = memoryview(frame)[sent:]
                n -= sent
            else:
                self._last_write = now
            self._flushing = True
            self._wbuf += frame
            self._backlog += n
            self._wake_reader()
        else:
            self._wbuf += frame
            self._backlog += n

    def _wake_reader(self) -> None:
        if self._in_deliver:
            self._channel._interrupt_senders()
        try:
            self._wake_w.send(b"w")
        except OSError:
            pass   # full of wake-ups already, or closing

    def _write_failed(self, exc: OSError) -> Error:
        if self._ended.is_set():
            return self._closed_error()
        return ConnectError(f"write failed: {exc}", url=self.url, cause=exc)

    def _flush(self, linger: bool = False) -> bool:
        """Reader: write the queue (and the protocol's pongs/close replies) until the
        socket would block; True when everything went out.

        ``linger``: after writing, wait a moment for more before handing writing back
        to the senders, so a burst of sends is written in a few large system calls
        rather than one per message (and one wake-up of this thread per message).
        """
        lock = self._wlock
        send = self._send
        chunk = None
        sent = 0
        while True:
            with lock:
                if chunk is not None:
                    self._backlog -= sent
                    self._written += sent
                    if sent < len(chunk):
                        del chunk[:sent]
                        chunk += self._wbuf
                        self._wbuf = chunk
                        self._room.notify_all()
                        return False
                proto = self._protocol
                if proto.pending:
                    for frame in proto.data_to_send():
                        self._bytes_out += len(frame)
                        self._backlog += len(frame)
                        self._wbuf += frame
                    if proto.close_sent is not None:
                        self._open = False   # our close frame is queued: no data after it
                chunk = self._wbuf
                if chunk:
                    self._flushing = True
                    self._wbuf = bytearray()   # senders append to a new queue while we write
                elif not linger:
                    self._flushing = False
                    self._room.notify_all()
                    return True
            if not chunk:
                linger = False
                chunk = None
                time.sleep(_LINGER)
                continue
            try:
                sent = send(chunk)          # outside the lock: senders keep queueing
            except _WOULD_BLOCK:
                sent = 0
            except OSError as exc:
                with lock:
                    self._room.notify_all()
                raise self._write_failed(exc)

    def _final_flush(self) -> None:
        """Reader, at the end: write the close reply or failure close and the queue, within close_timeout."""
        deadline = time.monotonic() + self._options.close_timeout
        waiter = _IOWait(self._sock, write=True)
        while True:
            try:
                if self._flush():
                    return
            except Error:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                self._abort()
                return
            waiter.wait(left)

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
            if proto.pending or self._flushing:
                self._final_flush()
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
            self._abort()   # wakes a writer or consumer still polling this socket
            try:
                with self._rlock:   # a consumer's poll has seen the shutdown and let go
                    if self._tls_lock is not None:
                        with self._tls_lock:
                            self._sock.close()
                    else:
                        self._sock.close()
            except OSError:
                pass
            self._wake_r.close()
            self._wake_w.close()
            self._finish()

    def _finish(self) -> None:
        self._open = False
        self._channel._fetch = None
        with self._rlock:   # a consumer's read in progress delivers before the channel ends
            pass
        self._ended.set()
        self._channel.close()
        with self._wlock:
            self._room.notify_all()   # senders waiting for room get their error

    def _read_once(self) -> Optional[list]:
        """Read the socket once and decode; the caller holds ``_rlock``.

        Returns the data messages (maybe none), or None when the read would block.
        EOF and socket errors end the protocol (``state`` CLOSED) and return [].
        """
        proto = self._protocol
        target = proto.parser.read_target()   # a large message is read in place
        try:
            n = self._recv_into(self._rbuf if target is None else target)
        except _WOULD_BLOCK:
            return None
        except OSError as exc:
            if proto.error is None:
                proto.error = ConnectError(f"connection lost: {exc}", url=self.url, cause=exc,
                                           close_code=CLOSE_CODES.ABNORMAL_CLOSURE)
            proto.state = CLOSED
            return []
        if n == 0:
            proto.receive_eof()
            return []
        self._bytes_in += n
        if target is None:
            msgs = proto.receive_data(self._rview[:n])
        else:
            target.release()
            msgs = proto.receive_direct(n)
        if msgs:
            self._messages_in += len(msgs)
            self._last_data = time.monotonic()
        return msgs

    def _consumer_fetch(self, timeout: Optional[float] = 0) -> bool:
        """A receiver found the channel empty: read the socket in its own thread.

        While a consumer keeps up with the stream it reads and decodes the socket
        itself (no hand-off to and from the reader thread); the reader thread steps
        back while that goes on and takes over within a few milliseconds when the
        consumer stops (pings, close frames and backpressure stay its job). When the
        socket has no whole message yet and the receiver may wait (``timeout`` not
        0), it waits for the socket itself, at most ``_CONSUMER_POLL``: a reply is
        then one wake-up away, not two, and a large message is read by one thread
        (handing its rest to the reader thread let that thread read ahead and fill
        the channel with megabytes of messages: 1 instead of 4 GB/s on 1 MiB ones).
        """
        if self._dropping or self._channel_gone:
            return False
        if not self._rlock.acquire(False):
            # The reader thread is busy reading for us: when that keeps happening (a
            # stream, not an occasional reply), ask it to step back.
            self._contended += 1
            if self._contended >= 3:
                self._fetched = time.monotonic()
            return False
        try:
            proto = self._protocol
            if proto.state == CLOSED or proto.error is not None:
                return False
            msgs = self._read_once()
            if msgs is None:
                self._contended = 0   # nothing pending: not a stream
            if not msgs and timeout != 0 and proto.state != CLOSED and proto.error is None:
                # nothing yet, or only part of a (large) message: go on reading here
                msgs = self._consumer_poll(timeout)
            if proto.pending:
                self._send_replies()
            if msgs:
                self._fetched = self._last_data
                try:
                    self._channel._send_batch(msgs, 0, False, False)
                except ChannelClosed:
                    self._channel_gone = True
                    msgs = None
            if proto.pending or proto.state == CLOSED or proto.error is not None:
                self._wake_reader()   # pongs to write, or the end to run
            return bool(msgs)
        finally:
            self._rlock.release()

    def _send_replies(self) -> None:
        """Write (or queue) the pongs a read produced before its messages reach anyone:
        a consumer that answers a message must not get its answer out ahead of the pong
        (the order Autobahn 5.6-5.8 check). Close replies stay with the reader thread,
        which runs them at the top of its loop (a consumer wakes it for them)."""
        proto = self._protocol
        if proto.state != OPEN or proto.error is not None:
            return
        try:
            with self._wlock:
                for frame in proto.data_to_send():
                    self._queue_locked(frame)
        except Error:
            self._wake_reader()   # it sees the broken socket and ends the connection

    def _consumer_poll(self, timeout: Optional[float]) -> Optional[list]:
        """Wait (holding ``_rlock``) for the socket and read until a message is whole;
        None or [] when none was within the time."""
        waiter = self._consumer_wait
        if waiter is None:
            waiter = self._consumer_wait = _IOWait(self._sock)
        proto = self._protocol
        now = time.monotonic()
        end = now + (_CONSUMER_POLL if timeout is None else min(timeout, _CONSUMER_POLL))
        msgs = None
        self._polling = True   # the reader thread stays out of the way meanwhile
        try:
            while not msgs and now < end and not self._channel._closed:
                waiter.wait(end - now)
                msgs = self._read_once()
                if proto.state == CLOSED or proto.error is not None:
                    break
                now = time.monotonic()
        finally:
            self._polling = False
        if not msgs:
            self._fetched = 0.0
            self._wake_reader()   # silence: the reader thread takes the waiting back
        return msgs

    def _receive_phase(self) -> None:
        """Read, decode and deliver until a close frame, an error or EOF."""
        proto = self._protocol
        waiter = _IOWait(self._sock, self._wake_r)
        wake_wait = _IOWait(self._wake_r)
        wake_recv = self._wake_r.recv
        rlock = self._rlock
        read_timeout = self._options.read_timeout

        def pause(on: _IOWait, timeout: Optional[float]) -> None:
            """Wait on ``on``, then drain the wake-ups that ended (or came during) it."""
            on.wait(timeout)
            try:
                wake_recv(4096)
            except OSError:
                pass

        if self._leftover:
            msgs = proto.receive_data(self._leftover)
            self._bytes_in += len(self._leftover)
            self._leftover = b""
            if msgs:
                self._messages_in += len(msgs)
                self._deliver(msgs)
        self._last_data = time.monotonic()
        self._channel._fetch = self._consumer_fetch
        while proto.state != CLOSED and proto.error is None:
            if self._flushing or proto.pending:
                waiter.want_write(not self._flush(True))
            if self._polling or (time.monotonic() - self._fetched < _CONSUMER_GRACE
                                 and not self._channel._recvq):
                # a consumer reads the socket itself (or asked to): stay out of its way
                # while it is busy; one that waits in the channel is served soon. A
                # sender that queues bytes (or a consumer that stops) wakes us at once.
                pause(wake_wait, _CONSUMER_GRACE / 2)
                continue
            with rlock:
                if proto.state == CLOSED or proto.error is not None:
                    break
                msgs = self._read_once()
                if proto.pending:
                    self._send_replies()
                if msgs:
                    self._deliver(msgs)   # under the lock: messages stay in order
                    # after delivery: a slow consumer is not a silent server
                    self._last_data = time.monotonic()
            if msgs is not None:
                continue
            wait = None
            if read_timeout is not None:
                wait = self._last_data + read_timeout - time.monotonic()
                if wait <= 0:
                    proto.fail(Timeout(f"read timeout: no message for {read_timeout:g} s",
                                       url=self.url), CLOSE_CODES.GOING_AWAY, "read timeout")
                    return
            pause(waiter, wait)

    def _deliver(self, msgs: list) -> None:
        ch = self._channel
        if self._channel_gone:
            return
        try:
            if self._dropping:
                # close() was called: keep what fits, never wait for the consumer
                ch._send_batch(msgs, 0, False)
                return
            self._in_deliver = True
            done = ch._send_batch(msgs)
            while done < len(msgs) and not self._dropping:
                # interrupted: a sender queued bytes while we waited for the consumer
                if self._flushing or self._protocol.pending:
                    self._flush()
                done = ch._send_batch(msgs, done)
        except ChannelClosed:
            self._channel_gone = True   # the user closed the channel: keep the connection serviced
        finally:
            self._in_deliver = False

    def _drain_phase(self) -> None:
        """After the close frames: wait (bounded) for the server to end the TCP stream."""
        proto = self._protocol
        waiter = _IOWait(self._sock)
        deadline = time.monotonic() + self._options.close_timeout
        buf = bytearray(65536)
        while True:
            try:
                n = self._recv_into(buf)
            except _WOULD_BLOCK:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                waiter.wait(left)
                continue
            except OSError:
                return
            if n == 0:
                return
            self._bytes_in += n
            if proto.close_received is None and proto.error is None:
                # still waiting for the server's close frame after ours
                msgs = proto.receive_data(memoryview(buf)[:n])
                self._messages_in += len(msgs)   # the channel has ended: counted, not delivered
                if proto.pending:
                    self._final_flush()


def _check_send(data: Any, type: Optional[int]) -> tuple:
    """Validate send()'s arguments beyond the common cases; return (data, opcode)."""
    if type is None:
        opcode = None
    elif (type == TEXT or type == BINARY) and not isinstance(type, bool):
        opcode = int(type)
    else:
        raise InvalidOption(f"type must be wsfast.TEXT (1) or wsfast.BINARY (2), not {type!r}")
    if isinstance(data, str):
        if opcode == BINARY:
            data = _utf8(data)
    elif isinstance(data, (bytes, bytearray, memoryview)):
        if opcode == TEXT:
            try:
                bytes(data).decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidOption("send(bytes, TEXT) needs valid UTF-8") from None
    else:
        raise InvalidOption(f"send() takes str or bytes-like data, not {data.__class__.__name__}")
    return data, opcode


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

