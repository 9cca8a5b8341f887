"""The sync front end's I/O: one socket, one reader thread, writes from any thread.

The :class:`~wsfast.protocol.Protocol` decides everything; this module only moves
bytes between it and the socket, waits and wakes. In ten lines:

1. One lock, ``_lock``, guards the Protocol and the write queue: every call into the
   Protocol holds it, never across a wait.
2. Writes: a sender encodes through the Protocol and, when nothing is queued, writes
   at once (non-blocking); what the kernel does not take waits in the queue, which the
   reader thread writes when the socket is writable. Nothing ever waits for the
   consumer, so pongs, close frames and sends go out while it sleeps.
3. Reads: whoever holds ``_rlock`` reads the socket and feeds the Protocol: the reader
   thread, or a receiver that found the channel empty (it reads in its own thread, no
   hand-off). The reader thread keeps out of the way (and off ``_rlock``) for
   ``_LEASE`` after such a read. While a large frame arrives, the socket wakes whoever
   waits only once the rest of the frame is there (``_set_mark``).
4. Delivery never blocks: :meth:`Channel.offer` takes what fits; the rest waits in
   ``_held`` and the reader stops reading (TCP backpressure) until the channel
   resumes it. A receiver takes ``_held`` first, so order is kept.
5. The reader thread alone times the connection (read timeout, keepalive, close
   timeout, the wait for the server's FIN) and alone ends it: flush, end the channel,
   drop. While reading is paused for the consumer, the read and keepalive clocks stand.

After the handshake every call on the socket is non-blocking, and every wait has a
bound: a ``poll``, or (a receiver's wait on plain TCP on Linux) a read bounded by
``SO_RCVTIMEO`` (``_blocking_reads``).
"""

from __future__ import annotations

import mmap
import select
import socket
import ssl as _ssl
import struct
import sys
import threading
import time
from typing import Any, List, Optional

from .channels import Channel
from .constants import CLOSE_CODES
from .errors import ChannelClosed, ConnectError, ConnectionClosed, Error, Timeout
from .keepalive import DEAD, PING, Keepalive
from .options import Options
from .protocol import CLOSED, CLOSING, CONNECTING, OPEN, Protocol
from .transport import remaining

__all__ = ["Engine", "upgrade"]

_READ_BUFFER = 256 * 1024
# The read after a large message (one read straight into its bytes) asks only this
# much: if another large message follows, the parser sees its header and points the
# next read into it, so it is not first copied through the read buffer a whole
# _READ_BUFFER at a time. Speed only. Chosen by the large scenario (docs/performance.md).
_FIRST_READ = 4096
# Bytes encoded but not yet written above which a sender waits (bounded by
# write_timeout) for the queue to drain.
_WRITE_HIGH = 256 * 1024
# A send that follows the previous one within this many seconds, with no message
# received between them, joins the queue for the reader thread to write in one system
# call with the others, instead of making its own: a burst costs a few calls; an
# occasional send, and a reply to a message (a request/response loop however fast),
# goes out at once. Speed only: every value is correct. Chosen by the send/echo scenarios of
# `make bench-e2e` (docs/performance.md: 20 µs keeps echo's direct write and
# batches a burst of 104-byte sends into ~250 per call).
_COALESCE_GAP = 20e-6
# After a receiver read the socket itself the reader thread leaves it the socket this
# long (a consumer that keeps up comes back sooner, so the two never race for it); a
# receiver waits on a silent socket itself at most this long, then the reader thread
# takes the waiting back. Speed only: pings, close frames and backpressure are served
# within this bound whatever it is. Chosen by the ticks and echo scenarios
# (docs/performance.md).
_LEASE = 0.002
_WOULD_BLOCK = (BlockingIOError, InterruptedError, _ssl.SSLWantReadError, _ssl.SSLWantWriteError)
# SO_RCVLOWAT as a wake-up mark (Linux: poll reports a TCP socket readable, and the
# kernel wakes its waiter, only once this many bytes are queued).
_MARKS = sys.platform.startswith("linux") and hasattr(socket, "SO_RCVLOWAT")
# A receiver's wait as one bounded read (Linux, plain TCP): see Engine._blocking_reads.
_BLOCKING_READS = sys.platform.startswith("linux") and hasattr(socket, "MSG_DONTWAIT")
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
_TIMEVAL = struct.Struct("@ll")   # struct timeval (SO_RCVTIMEO)

_IN = select.POLLIN | select.POLLPRI if hasattr(select, "poll") else 1
_OUT = select.POLLOUT if hasattr(select, "poll") else 4


class _Poll:
    """``select.poll`` with seconds (``select.select`` where there is no poll)."""

    if hasattr(select, "poll"):
        def __init__(self) -> None:
            self._poll = select.poll()

        def register(self, fd: int, events: int) -> None:
            """Watch ``fd`` for ``events``; 0 stops watching it (poll would still
            report a hang-up, over and over, on a socket nobody reads)."""
            if events:
                self._poll.register(fd, events)
            else:
                try:
                    self._poll.unregister(fd)
                except KeyError:
                    pass

        def wait(self, timeout: Optional[float]) -> list:
            ms = -1 if timeout is None else max(0, int(timeout * 1000 + 0.999))
            return self._poll.poll(ms)
    else:  # pragma: no cover - Windows
        def __init__(self) -> None:
            self._fds: dict = {}

        def register(self, fd: int, events: int) -> None:
            self._fds[fd] = events

        def wait(self, timeout: Optional[float]) -> list:
            r = [fd for fd, ev in self._fds.items() if ev & _IN]
            w = [fd for fd, ev in self._fds.items() if ev & _OUT]
            rr, ww, _ = select.select(r, w, [], timeout)
            return [(fd, _IN) for fd in rr] + [(fd, _OUT) for fd in ww]


def upgrade(sock: socket.socket, proto: Protocol, deadline: Optional[float], target) -> list:
    """Run the opening handshake on a blocking ``sock``; return the messages that came
    with the 101 response. Raises the handshake's error: HandshakeError, ConnectError,
    Timeout (``deadline`` passed)."""
    try:
        sock.settimeout(remaining(deadline, target, "the HTTP upgrade"))
        sock.sendall(proto.data_to_send())
    except socket.timeout:
        raise Timeout("dial timeout sending the HTTP upgrade", url=target.url) from None
    except OSError as exc:
        proto.connection_lost(exc)
    msgs: list = []
    body_end = None
    while proto.state is CONNECTING:
        if proto.reading_refusal_body:
            # the body of a refusal is only for the error: best effort, briefly
            if body_end is None:
                body_end = time.monotonic() + 1.0
            left = body_end - time.monotonic()
            if deadline is not None:
                left = min(left, deadline - time.monotonic())
            if left <= 0:
                proto.end_of_response()
                break
            sock.settimeout(left)
        else:
            sock.settimeout(remaining(deadline, target, "the HTTP upgrade"))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            if proto.reading_refusal_body:
                proto.end_of_response()
                break
            raise Timeout("dial timeout waiting for the HTTP upgrade response", url=target.url) from None
        except OSError as exc:
            proto.connection_lost(exc)
            break
        if data:
            msgs += proto.receive_data(data)
        else:
            proto.receive_eof()
    if not proto.handshake_complete:
        raise proto.error
    return msgs


def _locked(call, lock):
    def locked(arg):
        with lock:
            return call(arg)
    return locked


class Engine:
    """The I/O of one open connection; the reader thread starts at once.

    ``initial``: messages that arrived with the handshake response.
    """

    def __init__(self, sock: socket.socket, proto: Protocol, options: Options, initial: list) -> None:
        self.url = proto.url
        self._sock = sock
        self._options = options
        # A receiver's wait for bytes is one read: on plain TCP (Linux) the socket is
        # left in blocking mode, every other call on it passes MSG_DONTWAIT (so nothing
        # but that read can block), and the read is bounded by SO_RCVTIMEO. A round
        # trip then costs the same system calls as a blocking client's, one read
        # instead of a poll and a read (docs/performance.md, "echo, a fifth look").
        # TLS keeps the poll: an SSLSocket retries a read that timed out, and its lock
        # must never be held across a wait.
        self._blocking_reads = _BLOCKING_READS and type(sock) is socket.socket
        self._rcvtimeo = 0.0            # SO_RCVTIMEO now (_rlock)
        # OpenSSL does not allow one SSL object to be used by two threads at once (even
        # SSL_get_error reads state another thread's SSL_write changes). The socket is
        # non-blocking, so each call is short: TLS calls take this lock around the call,
        # never around a wait.
        if self._blocking_reads:
            sock.settimeout(None)
            send, recv_into = sock.send, sock.recv_into
            self._send = lambda data: send(data, _DONTWAIT)
            self._recv_into = lambda buf: recv_into(buf, 0, _DONTWAIT)
            self._wait_into = recv_into   # the one call that may block (SO_RCVTIMEO)
        else:
            sock.setblocking(False)
            self._send = sock.send
            self._recv_into = sock.recv_into
            self._wait_into = sock.recv_into   # (unused: receivers wait in a poll)
        if isinstance(sock, _ssl.SSLSocket):
            tls = threading.Lock()
            self._send = _locked(sock.send, tls)
            self._recv_into = _locked(sock.recv_into, tls)

        # -- guarded by _lock: the Protocol (every call) and the write queue
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)   # senders waiting for the queue to drain
        self._proto = proto
        self._inflight: Any = None      # bytes taken from the Protocol, not all written yet
        self._flushing = False          # the reader thread owns writing (a queue exists)
        # bytes of frames written so far (pongs for pings that came with the 101 are not)
        self._written = proto.bytes_out - proto.output_size
        self._last_send = 0.0           # when the last send() was made (0: a message came since)
        self._user_closed = False       # close() was called: deliver only what fits
        self._close_deadline: Optional[float] = None   # set once by the reader thread
        self._latency: Optional[float] = None   # the last ping's round trip, seconds
        self._pongs = 0                 # proto.pongs when the answered pings were last taken
        # The reader thread leaves the socket to a receiver until then: set by a receiver
        # that read, looked at by the reader thread before it takes _rlock (were it under
        # _rlock, that look would hold _rlock just when the receiver comes back for it,
        # and the receiver would fall back to a hand-off: docs/performance.md, "large").
        self._lease_end = 0.0

        # -- guarded by _rlock: held by whoever reads the socket
        self._rlock = threading.Lock()
        # An anonymous mapping, not a bytearray: its pages become resident only when a
        # read reaches them, so an idle connection costs no buffer memory.
        self._rbuf = mmap.mmap(-1, _READ_BUFFER)
        self._rview = memoryview(self._rbuf)
        self._target = None             # the Protocol's read_target() after the last read
        self._after_direct = False      # the last read ended a message read into its bytes
        self._held: List[Any] = list(initial)   # decoded messages the channel had no room for
        self._last_data = time.monotonic()   # when data messages last arrived (read timeout)
        self._last_recv = self._last_data    # when bytes last arrived (keepalive)
        self._keepalive = Keepalive(options.ping_interval, options.ping_timeout)
        self._over = False              # the Protocol reached CLOSED (seen by a reader)
        self._channel_gone = False      # the user closed the receive channel
        self._consumer_poll: Optional[_Poll] = None
        # The last read came back short or would have blocked: the socket is most likely
        # empty, so a receiver waits for bytes before it reads instead of after a read
        # that fails (a round trip saves a system call and an exception). A guess, never
        # a decision: a wrong one costs one poll that returns at once. Plain sockets
        # only: a TLS socket may hold decrypted bytes no poll sees.
        self._drained = False
        self._short_is_dry = not isinstance(sock, _ssl.SSLSocket)
        # The socket's wake-up mark (SO_RCVLOWAT), set before each wait for bytes: while
        # a large frame is read straight into its message, the rest of that frame (no
        # byte below it can complete anything), else 1. Only where the kernel's bytes are
        # the frame's: a TCP socket with no TLS (nor a TLS tunnel, TunnelSocket) on it.
        self._marks = _MARKS and isinstance(sock, socket.socket) and not isinstance(sock, _ssl.SSLSocket)
        self._mark = 1

        # -- set once by the reader thread
        self._ended = threading.Event()

        self.channel = Channel(options.channel_capacity)
        self.channel.set_source(self)
        # a socket pair: anyone wakes the reader thread's poll (bytes queued, room in
        # the channel, the socket given back, close())
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        if proto.output_size:
            self._flushing = True   # pongs for pings that came with the 101: the reader writes them
        self._reader = threading.Thread(target=self._run, name=f"wsfast-reader {self.url}", daemon=True)
        self._reader.start()

    # ------------------------------------------------------------------ outcome

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def outcome(self) -> tuple:
        """(close_code, close_reason, error) of the Protocol."""
        with self._lock:
            p = self._proto
            return p.close_code, p.close_reason, p.error

    def latency(self) -> Optional[float]:
        """Seconds of the last ping -> pong round trip, None before the first."""
        with self._lock:
            return self._latency

    def stats(self) -> dict:
        with self._lock:
            p = self._proto
            return {"messages_in": p.messages_in, "bytes_in": p.bytes_in,
                    "messages_out": p.messages_out, "bytes_out": p.bytes_out}

    # ------------------------------------------------------------------ writing

    def _wake_reader(self) -> None:
        try:
            self._wake_w.send(b"w")
        except OSError:
            pass   # full of wake-ups already, or closing

    def send(self, data: Any, opcode: Optional[int]) -> None:
        """Queue or write one message. Raises ConnectionClosed, Timeout (write_timeout),
        ConnectError, UnicodeEncodeError (a lone surrogate)."""
        lock = self._lock
        lock.acquire()   # (not `with`: ~0.1 µs less per send, on every message)
        try:
            proto = self._proto
            deadline = None
            if proto.bytes_out - self._written >= _WRITE_HIGH:
                deadline = self._wait_room(None, None)   # nothing of ours is queued yet
            size = proto.send_message(data, opcode)
            if not self._flushing:   # (else the reader thread writes it, with the rest)
                now = time.monotonic()
                if now - self._last_send < _COALESCE_GAP:
                    # back-to-back sends: the reader thread writes them together
                    self._flushing = True
                    self._wake_reader()
                else:
                    self._write_locked()
                self._last_send = now
            if size >= _WRITE_HIGH and self._written < proto.bytes_out:
                # a message over the bound is waited for like a blocking write
                self._wait_room(proto.bytes_out, deadline)
        finally:
            lock.release()

    def ping(self, data: bytes) -> None:
        """Send a ping. Raises ConnectionClosed, ConnectError."""
        with self._lock:
            self._proto.send_ping(data, time.monotonic())
            if not self._flushing:
                self._write_locked()

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake and wait (bounded) until the reader thread ended
        the connection. Raises ConnectionClosed when it was closing or over already,
        after the same wait: nothing of the connection outlives any close()."""
        try:
            with self._lock:
                self._proto.send_close(code, reason)
                self._user_closed = True
                if not self._flushing:
                    try:
                        self._write_locked()
                    except Error:
                        pass   # the reader thread sees the broken socket and ends the connection
        except ConnectionClosed:
            # (e.g. the server closed first and has not ended TCP yet: with/__exit__)
            self._wait_end()
            raise
        self._wake_reader()   # it times close_timeout, then drops the connection
        self._wait_end()

    def _wait_end(self) -> None:
        """Wait (at most close_timeout + 0.5 s, then abort) until the connection ended
        and the reader thread is gone."""
        end = time.monotonic() + self._options.close_timeout + 0.5
        if not self._ended.wait(end - time.monotonic()):
            self._abort()     # a safety net: the reader thread ends it at close_timeout
            self._ended.wait(0.5)
        # The server's FIN too (RFC 6455 §7.1.1; the reader thread waits for it until the
        # closing handshake's close_timeout is over): once close() returns, the socket is
        # closed and the reader thread gone.
        reader = self._reader
        if reader is not threading.current_thread():
            reader.join(max(0.0, end - time.monotonic()))
            if reader.is_alive():
                self._abort()   # (a safety net, as above)
                reader.join(0.5)

    def _write_locked(self) -> None:
        """Write what the Protocol has to send, now (non-blocking); the rest goes to the
        reader thread. The caller holds ``_lock`` and nothing is queued."""
        proto = self._proto
        data = proto.data_to_send()
        if not data:
            return
        try:
            sent = self._send(data)
        except _WOULD_BLOCK:
            sent = 0
        except OSError as exc:
            proto.connection_lost(exc)
            self._room.notify_all()
            self._wake_reader()
            raise ConnectError(f"write failed: {exc}", url=self.url, cause=exc) from exc
        self._written += sent
        if sent < len(data):
            self._inflight = memoryview(data)[sent:]
            self._flushing = True
            self._wake_reader()

    def _wait_room(self, end: Optional[int], deadline: Optional[float]) -> Optional[float]:
        """Wait (``_lock`` held, released while waiting) until the queue is under its
        bound (``end`` None: nothing of this sender's is queued), or until this
        sender's frame, queued up to stream offset ``end``, is written. ``deadline``:
        the send's write_timeout deadline (None: start it now). Returns the deadline.
        Raises ConnectionClosed when the connection ends first, Timeout at the
        deadline: the connection stays usable when nothing of the frame was written,
        and is dropped when it was cut half way (the stream can no longer be framed)."""
        timeout = self._options.write_timeout
        if deadline is None and timeout is not None:
            deadline = time.monotonic() + timeout
        proto = self._proto
        while (self._written < end) if end is not None else (proto.bytes_out - self._written >= _WRITE_HIGH):
            if proto.state is CLOSED:
                raise proto.closed_error()
            left = None
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    if end is not None:
                        proto.abort(Timeout("write timeout: a message was left half written", url=self.url))
                        self._room.notify_all()
                        self._abort()
                    raise Timeout("write timeout", url=self.url)
            self._room.wait(left)
        return deadline

    def _flush(self, linger: bool = False) -> bool:
        """Reader thread: write the queue until the socket would block or it is empty;
        True when everything is out and writing is handed back to the senders.

        ``linger``: when the queue runs empty, wait ``_COALESCE_GAP`` once for more.
        If more came, write it and keep the writing (return False; the caller comes
        back once it has looked at the socket): a burst of sends goes out in a few
        large writes and its sender never wakes this thread. If none came, hand back.
        """
        lock = self._lock
        lingered = more = False
        while True:
            with lock:
                chunk = self._inflight
                if chunk is None:
                    chunk = self._proto.data_to_send()
                    if not chunk:
                        if lingered or not linger:
                            if more:
                                return False   # sends kept coming: keep the writing
                            self._flushing = False
                            self._room.notify_all()
                            return True
                        chunk = None
            if chunk is None:
                lingered = True
                time.sleep(_COALESCE_GAP)   # senders append meanwhile, without waking us
                continue
            more = lingered
            try:
                sent = self._send(chunk)   # outside the lock: senders keep queueing
            except _WOULD_BLOCK:
                sent = 0
            except OSError as exc:
                with lock:
                    self._proto.connection_lost(exc)
                    self._inflight = None
                    self._flushing = False
                    self._room.notify_all()
                return True
            with lock:
                self._written += sent
                if sent < len(chunk):
                    self._inflight = memoryview(chunk)[sent:]
                    self._room.notify_all()
                    return False
                self._inflight = None
                self._room.notify_all()

    def _abort(self) -> None:
        """Drop the TCP connection: every poll on the socket wakes up."""
        try:
            # the plain socket's shutdown: SSLSocket.shutdown would also drop its TLS
            # object under a writer that may be using it (a tunnel through a proxy
            # shuts down its outer socket, ``raw``)
            socket.socket.shutdown(getattr(self._sock, "raw", self._sock), socket.SHUT_RDWR)
        except OSError:
            pass

    # ------------------------------------------------------------------ reading

    def _read_once(self, lease: bool = False, wait: bool = False) -> Optional[list]:
        """Read the socket once and feed the Protocol; the caller holds ``_rlock``.
        ``lease``: the caller is a receiver; data read renews its lease. ``wait``: the
        read may block, as long as ``SO_RCVTIMEO`` (``_blocking_reads`` only).

        Returns the data messages (maybe none), or None when the read would block.
        """
        target = self._target
        if target is not None:
            buf = target
        elif self._after_direct:
            buf = self._rview[:_FIRST_READ]
        else:
            buf = self._rbuf
        try:
            n = self._wait_into(buf) if wait else self._recv_into(buf)
        except _WOULD_BLOCK:   # (the bounded wait timed out)
            self._drained = self._short_is_dry
            return None
        except OSError as exc:
            with self._lock:
                self._proto.connection_lost(exc)
                self._room.notify_all()
            self._over = True
            self._wake_reader()
            return []
        self._drained = self._short_is_dry and n < len(buf)
        lock = self._lock
        lock.acquire()   # (not `with`: ~0.1 µs less per read)
        try:
            proto = self._proto
            if n == 0:
                proto.receive_eof()
                msgs: list = []
            elif target is None:
                msgs = proto.receive_data(self._rview[:n])
            else:
                target.release()   # the parser may resize the buffer it pointed into
                msgs = proto.receive_direct(n)
            self._target = proto.read_target()
            self._after_direct = target is not None and self._target is None
            if proto.pongs != self._pongs:
                self._pongs = proto.pongs
                for sent_at in proto.take_pongs():
                    self._latency = time.monotonic() - sent_at
            if proto.output_size and not self._flushing:
                try:
                    self._write_locked()   # pongs (before the messages reach anyone), close replies
                except Error:
                    pass
            over = proto.state is CLOSED
            if over:
                self._room.notify_all()
            now = time.monotonic()
            data = bool(msgs) or target is not None   # (a large message arriving is data too)
            if msgs:
                self._last_send = 0.0   # the next send is a reply: it goes out at once
            if lease and data:
                self._lease_end = now + _LEASE
        finally:
            lock.release()
        self._last_recv = now
        if data:
            self._last_data = now
        if over:
            self._over = True
            self._wake_reader()   # it ends the connection
        return msgs

    def _set_mark(self) -> None:
        """Before a wait for bytes (``_rlock`` held): while a large frame is read into its
        message, have the socket reported readable only once the rest of that frame is
        queued, at most a quarter of its receive buffer; else at the first byte. A body
        then costs a wake-up or two instead of one per burst (and the sender, on this
        machine, the work of each wake-up: docs/performance.md, "large").

        The quarter keeps the mark from growing the buffer (a kernel before 2025 would
        also clamp the window to the mark), so there is always room to reach it. The
        mark only defers wake-ups: a read takes what is queued whatever the mark, and
        the reader thread reads before it judges a deadline (``_serve``)."""
        target = self._target
        want = len(target) if target is not None and self._marks else 1
        if want == self._mark:
            return
        sock = self._sock
        try:
            if want > self._mark:   # a new frame, or the buffer has grown since
                want = max(1, min(want, sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 4))
                if want == self._mark:
                    return
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, want)
        except OSError:   # a kernel that refuses it: wake at every byte, as before
            self._marks = False
            return
        self._mark = want

    def fetch(self, timeout: Optional[float]) -> bool:
        """Channel source: a receiver found the channel empty; read the socket in its
        thread until a message is whole, waiting at most ``timeout`` (None: ``_LEASE``,
        then the reader thread takes the waiting back)."""
        if not self._rlock.acquire(False):
            return False   # someone reads already: it delivers
        try:
            ch = self.channel
            if self._channel_gone:
                return False
            # (if the reader thread offered messages since the receiver looked, ours
            # are newer and go behind them: order holds either way)
            if self._held:
                self._offer_held(overflow=True)   # (restarts the read clock)
                if self._channel_gone:
                    return False
                self._lease(self._last_data + _LEASE)
                return True
            if self._over:
                return False
            now = time.monotonic()
            limit = None if timeout is None else now + timeout
            end = now + _LEASE if limit is None else min(limit, now + _LEASE)
            msgs: Optional[list] = []
            while True:
                wait = False
                if msgs is not None and not self._drained:
                    pass   # read at once
                elif self._blocking_reads and self._target is None:
                    # wait for bytes in the read itself, at most a lease (the lease only
                    # tunes speed: overshooting its end by less than a lease is harmless)
                    # or what is left of the receiver's timeout. With no time left, a
                    # read that does not wait: what is there already is still read.
                    left = _LEASE if limit is None else min(_LEASE, limit - time.monotonic())
                    if left > 0:
                        if left != self._rcvtimeo:
                            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                                                  _TIMEVAL.pack(0, max(1, int(left * 1e6))))
                            self._rcvtimeo = left
                        if self._mark != 1:
                            self._set_mark()   # (back to 1 after a large frame)
                        wait = True
                else:
                    # wait for bytes first (with no time left, poll(0): what is there
                    # already is still read). While a large frame arrives, the poll
                    # waits for the wake-up mark on plain TCP too: a bounded read there
                    # cost large 10-20% more client CPU (docs/performance.md, "echo, a
                    # fifth look").
                    waiter = self._consumer_poll
                    if waiter is None:
                        waiter = self._consumer_poll = _Poll()
                        waiter.register(self._sock.fileno(), _IN)
                    self._set_mark()
                    waiter.wait(max(0.0, end - time.monotonic()))
                msgs = self._read_once(lease=True, wait=wait)
                if msgs:
                    try:
                        ch.offer(msgs, overflow=True)
                    except ChannelClosed:
                        self._channel_gone = True
                        return False
                    return True
                if self._over:
                    return False
                now = time.monotonic()
                if msgs is not None:
                    if self._target is not None:
                        # part of a large message: go on reading it here while it flows
                        end = now + _LEASE if limit is None else min(limit, now + _LEASE)
                    if now < end:
                        continue   # (control frames alone never stretch the wait)
                    break
                if now >= end:
                    break
            self._lease(0.0)
            self._wake_reader()   # silence: the reader thread takes the waiting back
            return False
        finally:
            self._rlock.release()

    def _lease(self, end: float) -> None:
        with self._lock:
            self._lease_end = end

    def resume(self) -> None:
        """Channel source: room is back (or the channel was closed): wake the reader."""
        self._wake_reader()

    def _offer_held(self, overflow: bool = False) -> None:
        """Hand ``_held`` to the channel as far as it has room (``overflow``: all of it);
        ``_rlock`` held. A closed channel takes them all, to nobody."""
        try:
            i = self.channel.offer(self._held, overflow=overflow)
        except ChannelClosed:
            self._channel_gone = True
            i = len(self._held)
        if i:
            # rebind, never mutate: the channel may have kept the list (a hand-off)
            self._held = self._held[i:]
            if not self._held:
                # reading resumes: the time spent waiting for the consumer is not silence
                self._last_data = self._last_recv = time.monotonic()
                self._keepalive.resumed()

    def _deliver(self, msgs: list, dropping: bool) -> None:
        """Reader thread: hand ``msgs`` to the channel; ``_rlock`` held."""
        if self._channel_gone:
            return
        try:
            i = self.channel.offer(msgs)
        except ChannelClosed:
            self._channel_gone = True
            return
        if i < len(msgs) and not dropping:
            # no room: keep them and stop reading until the channel resumes us
            self._held = msgs[i:] if i else msgs
        # dropping (close() was called): a closing consumer must not hold up the handshake

    # ------------------------------------------------------------------ the reader thread

    def _run(self) -> None:
        try:
            dropped = self._serve()
            if not dropped:
                self._final_flush(self._close_deadline)
            self._end_channel()
            with self._lock:
                drain = not dropped and not self._proto.eof
            if drain:
                self._drain()
        except BaseException as exc:  # never let the reader die silently
            with self._lock:
                proto = self._proto
                if proto.error is None:
                    proto.connection_lost(exc)
        finally:
            self._abort()   # wakes a writer or receiver still polling this socket
            try:
                with self._rlock:   # a receiver's poll has seen the shutdown and let go
                    with self._lock:
                        self._sock.close()
            except OSError:
                pass
            self._wake_r.close()
            self._wake_w.close()
            self._end_channel()

    def _serve(self) -> bool:
        """Move bytes until the Protocol is CLOSED; True when the connection was
        dropped (close timeout, keepalive timeout) rather than closed."""
        proto = self._proto
        opts = self._options
        sock_fd = self._sock.fileno()
        wake_fd = self._wake_r.fileno()
        poller = _Poll()
        poller.register(wake_fd, _IN)
        interest = 0
        close_deadline = None
        read_timeout = opts.read_timeout
        keepalive = self._keepalive   # (guarded by _rlock, like the times it reads)
        read_first = False   # the last wait for bytes timed out
        while True:
            with self._lock:
                state = proto.state
                writing = self._flushing
                dropping = self._user_closed
                lease_end = self._lease_end
            if state is CLOSED:
                return False
            now = time.monotonic()
            # The deadlines first: a stream that never lets the socket run dry must not
            # postpone them.
            if state is CLOSING:
                if close_deadline is None:
                    close_deadline = self._close_deadline = now + opts.close_timeout
                elif now >= close_deadline:
                    with self._lock:
                        proto.close_timed_out()
                        self._room.notify_all()
                    self._abort()
                    return True
            wait = None if close_deadline is None else close_deadline - now
            want_read = False
            if now < lease_end:
                # a receiver read the socket a moment ago: leave it to it. (Its reads move
                # the deadlines below, which are judged when the lease is over.)
                wait = lease_end - now if wait is None else min(wait, lease_end - now)
            elif not self._rlock.acquire(False):
                # a receiver is reading or waiting on the socket: look again after a
                # lease, or when it wakes us giving the socket back
                wait = _LEASE if wait is None else min(wait, _LEASE)
            else:
                try:
                    if self._held:
                        self._offer_held()
                    paused = bool(self._held) and not dropping
                    if read_first and not paused:
                        # bytes below the wake-up mark are data too: read them before
                        # the deadlines are judged (the mark defers wake-ups, not them)
                        read_first = False
                        msgs = self._read_once()
                        if msgs:
                            self._deliver(msgs, dropping)
                    if read_timeout is not None and not paused and state is OPEN:
                        # (while paused for room the clock stands: the consumer is slow,
                        # not the server silent)
                        read_deadline = self._last_data + read_timeout
                        if now >= read_deadline:
                            self._fail(Timeout(f"read timeout: no message for {read_timeout:g} s",
                                               url=self.url), CLOSE_CODES.GOING_AWAY, "read timeout")
                            continue
                        wait = read_deadline - now if wait is None else min(wait, read_deadline - now)
                    if keepalive.interval is not None and not paused and state is OPEN:
                        action, at = keepalive.due(now, self._last_recv)
                        if action is DEAD:
                            self._peer_gone()
                            return True
                        if action is PING:
                            with self._lock:
                                if proto.state is not OPEN:
                                    continue   # close() came meanwhile: no ping after it
                                proto.send_ping(keepalive.ping_payload(), now)
                                if not self._flushing:
                                    try:
                                        self._write_locked()
                                    except Error:
                                        pass   # (the read below sees the broken socket)
                                writing = self._flushing
                            keepalive.ping_sent(now)
                            action, at = keepalive.due(now, self._last_recv)
                        if at is not None:
                            wait = at - now if wait is None else min(wait, at - now)
                    if paused:
                        pass   # the channel resumes us when it has room
                    else:
                        if self._held:
                            # close() was called: what came before it is still
                            # delivered (one read's worth); what comes after and
                            # does not fit is dropped
                            self._offer_held(overflow=True)
                        msgs = self._read_once()
                        if msgs is not None:
                            if msgs:
                                self._deliver(msgs, dropping)
                            if writing:
                                self._flush(True)
                            continue   # read until the socket would block
                        want_read = True
                        self._set_mark()
                finally:
                    self._rlock.release()
            want = (_IN if want_read else 0) | (_OUT if writing else 0)
            if want != interest:
                poller.register(sock_fd, want)
                interest = want
            events = poller.wait(wait)
            for fd, _ev in events:
                if fd == wake_fd:
                    try:
                        self._wake_r.recv(4096)
                    except OSError:
                        pass
            read_first = want_read and not events
            if writing:
                self._flush(True)

    def _peer_gone(self) -> None:
        """Keepalive: no frame within ping_timeout of a ping. The close frame goes out
        only if the socket takes it at once; then the connection is dropped."""
        timeout = self._options.ping_timeout
        with self._lock:
            self._proto.drop(Timeout(f"keepalive timeout: no frame within {timeout:g} s of a ping",
                                     url=self.url), CLOSE_CODES.INTERNAL_ERROR, "keepalive timeout")
            if not self._flushing:
                try:
                    self._write_locked()
                except Error:
                    pass
            self._room.notify_all()
        self._abort()

    def _fail(self, error: Error, code: int, reason: str) -> None:
        with self._lock:
            self._proto.fail(error, code, reason)
            self._room.notify_all()

    def _final_flush(self, deadline: Optional[float]) -> None:
        """Write the close frame (and what was queued before it), by ``deadline`` (that
        of the closing handshake, else ``close_timeout`` from now)."""
        if deadline is None:
            deadline = time.monotonic() + self._options.close_timeout
        poller = _Poll()
        poller.register(self._sock.fileno(), _OUT)
        with self._lock:
            if not self._flushing and self._proto.output_size:
                self._flushing = True
        while not self._flush():
            left = deadline - time.monotonic()
            if left <= 0:
                self._abort()
                return
            poller.wait(left)

    def _end_channel(self) -> None:
        """The connection is over: what is held goes into the channel (no more will come,
        so the bound no longer matters), then the channel ends."""
        if self._ended.is_set():
            return
        with self._rlock:   # a receiver's read in progress delivers first
            if self._held:
                self._offer_held(overflow=True)
            self._over = True   # no receiver reads from here on
            self._ended.set()
        self.channel.set_source(None)
        self.channel.close()
        with self._lock:
            self._room.notify_all()   # senders waiting for room get their error

    def _drain(self) -> None:
        """After the closing handshake: wait (bounded) for the server to end the TCP
        stream (RFC 6455 §7.1.1), discarding what it still sends; until the closing
        handshake's deadline when this side began it (one close_timeout for the close
        frame and the FIN), else close_timeout from now."""
        poller = _Poll()
        poller.register(self._sock.fileno(), _IN)
        deadline = self._close_deadline
        if deadline is None:
            deadline = time.monotonic() + self._options.close_timeout
        buf = bytearray(65536)
        with self._rlock:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return   # (checked every pass: a peer that keeps sending is cut off too)
                try:
                    n = self._recv_into(buf)
                except _WOULD_BLOCK:
                    poller.wait(left)
                    continue
                except OSError:
                    return
                if n == 0:
                    return
