"""The asyncio front end's I/O: one connection as an ``asyncio.BufferedProtocol``.

The :class:`~wsfast.protocol.Protocol` decides everything, as for the sync engine;
this module only moves bytes between it and the transport, keeps time and wakes
waiters. Everything runs in the event loop's thread, so no lock is needed: every
field below is owned by the loop.

* Reads: the transport reads into our buffer; the Protocol turns the bytes into
  messages and queues the pongs and close replies, which are written at once, before
  the messages reach anyone.
* Delivery never blocks: :meth:`Channel.offer` takes what fits; the rest is held and
  the transport stops reading (TCP backpressure) until the channel resumes us.
* Writes: a send encodes through the Protocol; the frames of one pass of the loop go
  out in one ``transport.write`` (:meth:`_schedule_flush`). A sender waits only when
  the transport's buffer is above its high-water mark (``pause_writing``), at most
  ``write_timeout``.
* Time: one timer at a time (:meth:`_arm`) for the nearest of the keepalive, the read
  timeout and the close timeout. A read only notes the time; the timer, when it fires,
  looks at what happened since and re-arms. While reading is paused for the consumer,
  the read and keepalive clocks stand (DESIGN §6).
"""

from __future__ import annotations

import asyncio
import mmap
from typing import Any, List, Optional

from ..constants import CLOSE_CODES
from ..errors import ChannelClosed, ConnectionClosed, Timeout
from ..keepalive import DEAD, PING, Keepalive
from ..options import Options
from ..protocol import CLOSED, CLOSING, CONNECTING, OPEN, Protocol
from .channels import Channel

__all__ = ["Connection"]

_READ_BUFFER = 256 * 1024
# A message this large is waited for after it is queued, until the transport drains (the
# sync engine's _WRITE_HIGH): the memory a sender can fill stays bounded by its messages.
_LARGE = 256 * 1024
# How long the body of a refusal is waited for (the error keeps its first 4 KiB), as
# in the sync engine.
_REFUSAL_BODY_WAIT = 1.0


class Connection(asyncio.BufferedProtocol):
    """The I/O of one connection, from the upgrade request to the end of the stream.

    ``handshake`` is a future that ends with the handshake: None once open (the
    messages that came with the 101 response are in the channel), else the
    handshake's error.
    ``ended`` is set once the connection is over (the channel is closed then).
    """

    def __init__(self, proto: Protocol, options: Options) -> None:
        self._proto = proto
        self._options = options
        self._loop = asyncio.get_running_loop()
        self.url = proto.url
        self._transport: Optional[asyncio.Transport] = None
        # An anonymous mapping, not a bytearray (as in the sync engine): its pages become
        # resident only when a read reaches them, so an idle connection costs little.
        self._buf = mmap.mmap(-1, _READ_BUFFER)
        self._view = memoryview(self._buf)
        self.handshake: asyncio.Future = self._loop.create_future()
        self.ended = asyncio.Event()
        self._lost = asyncio.Event()      # connection_lost ran: the transport is closed
        self.channel = Channel(options.channel_capacity)
        self.channel.set_source(self)
        self._held: List[Any] = []        # messages the channel had no room for: from
        self._held_at = 0                 # _held[_held_at] on ([] once all are delivered)
        self._reading_paused = False
        self._user_closed = False         # close() was called: deliver only what fits
        self._writing_paused = False      # the transport's buffer is above its high-water mark
        self._room: Optional[asyncio.Future] = None   # senders waiting for resume_writing
        self._pass_flush = False          # a flush at the end of this pass of the loop is due
        now = self._loop.time()
        self._last_recv = now             # when bytes last arrived (keepalive)
        self._last_data = now             # when data messages last arrived (read timeout)
        self._keepalive = Keepalive(options.ping_interval, options.ping_timeout)
        self._timer: Optional[asyncio.TimerHandle] = None
        self._timer_at: Optional[float] = None
        self._close_deadline: Optional[float] = None
        self._body_deadline: Optional[float] = None
        self._latency: Optional[float] = None
        self._pongs = 0
        self._drop_later: Optional[asyncio.TimerHandle] = None   # the wait for the server's FIN

    # ------------------------------------------------------------------ outcome

    @property
    def proto(self) -> Protocol:
        return self._proto

    @property
    def latency(self) -> Optional[float]:
        return self._latency

    # ------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport   # type: ignore[assignment]
        self._write_now()             # the upgrade request

    def get_buffer(self, sizehint: int) -> Any:
        # Always our own buffer: reading straight into a large message's buffer
        # (Protocol.read_target, as the sync engine does) cannot work here, since uvloop
        # still holds the buffer it was given when buffer_updated runs, and the parser
        # must be free to resize it then.
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        proto = self._proto
        self._last_recv = now = self._loop.time()
        msgs = proto.receive_data(self._view[:nbytes])
        if msgs or proto.read_target() is not None:   # (a large message arriving is data too)
            self._last_data = now
        self._after_input(msgs)

    def eof_received(self) -> bool:
        self._proto.receive_eof()
        self._after_input([])
        return False   # the transport closes itself

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        proto = self._proto
        if proto.state is not CLOSED:
            if exc is None:
                proto.receive_eof()
            else:
                proto.connection_lost(exc)
        self._after_input([])
        self._finish()
        transport = self._transport
        if transport is not None and not transport.is_closing():
            # Before Python 3.11 an SSL transport whose connection was lost after its
            # handshake still counts as open (it warns "unclosed transport" when
            # collected); closing it now is all it needs (nothing is left to send).
            transport.close()
        self._lost.set()
        if self._drop_later is not None:
            self._drop_later.cancel()
        room, self._room = self._room, None
        if room is not None and not room.done():
            room.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        room, self._room = self._room, None
        if room is not None and not room.done():
            room.set_result(None)

    # ------------------------------------------------------------------ input

    def _after_input(self, msgs: List[Any]) -> None:
        proto = self._proto
        if proto.pongs != self._pongs:
            self._pongs = proto.pongs
            now = self._loop.time()
            for sent_at in proto.take_pongs():
                self._latency = now - sent_at
        if proto.output_size:
            self._write_now()   # pongs and close replies, before the messages reach anyone
        handshake = self.handshake
        if not handshake.done():
            self._handshake_input(msgs)
            return
        if msgs:
            self._deliver(msgs)
        if proto.state is CLOSED:
            self._finish()

    def _handshake_input(self, msgs: List[Any]) -> None:
        proto = self._proto
        if proto.handshake_complete:
            if msgs:
                self._deliver(msgs)   # the messages that came with the 101 response
            self.handshake.set_result(None)
            self._arm()
            if proto.state is CLOSED:
                self._finish()
            return
        if proto.state is CONNECTING:
            if proto.reading_refusal_body and self._body_deadline is None:
                self._body_deadline = self._loop.time() + _REFUSAL_BODY_WAIT
                self._arm()
            return
        self.handshake.set_exception(proto.error)
        self._finish()

    def _deliver(self, msgs: List[Any]) -> None:
        if self._held:
            self._held.extend(msgs)   # (only while closing: reading pauses otherwise)
            return
        try:
            i = self.channel.offer(msgs)
        except ChannelClosed:
            return   # the user closed the channel: nobody wants them
        if i < len(msgs):
            if self._user_closed:
                return   # a closing consumer must not hold up the closing handshake
            self._held = msgs
            self._held_at = i
            self._pause_reading()

    def _take_held(self) -> List[Any]:
        """What is held, now no longer held."""
        held, at = self._held, self._held_at
        self._held = []
        self._held_at = 0
        return held[at:] if at else held

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            try:
                self._transport.pause_reading()
            except (AttributeError, RuntimeError):
                pass

    # ------------------------------------------------------------------ channel source

    def fetch(self, timeout: Optional[float]) -> bool:
        """Channel source: nothing to produce on demand (the transport reads by itself)."""
        return False

    def resume(self) -> None:
        """Channel source: room is back: hand over what is held, then read again."""
        held = self._held
        if held:
            # offered from an index: the rest of a read is not copied at every resume
            try:
                i = self.channel.offer(held, self._held_at)
            except ChannelClosed:
                i = len(held)
            if i < len(held):
                self._held_at = i
                return
            self._held = []
            self._held_at = 0
        if self._reading_paused and self._proto.state is not CLOSED:
            self._reading_paused = False
            # reading resumes: the time spent waiting for the consumer is not silence
            self._last_recv = self._last_data = self._loop.time()
            self._keepalive.resumed()
            try:
                self._transport.resume_reading()   # type: ignore[union-attr]
            except (AttributeError, RuntimeError):
                pass
            self._arm()

    # ------------------------------------------------------------------ output

    def _write_now(self) -> None:
        data = self._proto.data_to_send()
        transport = self._transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)

    def _end_of_pass(self) -> None:
        self._pass_flush = False
        if self._proto.output_size:
            self._write_now()

    async def send(self, data: Any, opcode: Optional[int]) -> None:
        """Queue one message, first waiting while the transport's buffer is full; a
        message of ``_LARGE`` bytes or more is then waited for until the buffer drains,
        like a blocking write (the sync client's rule). Raises ConnectionClosed,
        Timeout (write_timeout, for the whole send), UnicodeEncodeError (a lone
        surrogate).

        A send that raises before its message is queued (a Timeout, a cancel) queued
        nothing: retrying it cannot send the message twice. A Timeout while a large
        message drains drops the connection (it was left half written); a cancel then
        leaves it to go out whole.

        The first send of a pass of the loop is written at once (a request/reply
        exchange waits for no loop step); the ones that follow it in the same pass
        are coalesced and go out in one write at the end of the pass (or at 64 KiB)."""
        deadline = None
        if self._writing_paused:
            deadline = self._deadline()
            await self._wait_room(deadline)    # nothing of this message is queued yet
        proto = self._proto
        start = proto.bytes_out
        proto.send_message(data, opcode)
        if not self._pass_flush:
            self._pass_flush = True
            self._loop.call_soon(self._end_of_pass)
            self._write_now()
        elif proto.output_size >= 65536:
            self._write_now()
        if self._writing_paused and proto.bytes_out - start >= _LARGE:
            self._write_now()
            try:
                await self._wait_room(self._deadline() if deadline is None else deadline)
            except Timeout:
                error = Timeout("write timeout: a message was left half written", url=self.url)
                proto.abort(error)
                self._abort()
                raise error from None

    def _deadline(self) -> Optional[float]:
        timeout = self._options.write_timeout
        return None if timeout is None else self._loop.time() + timeout

    async def _wait_room(self, deadline: Optional[float]) -> None:
        """Wait until the transport's buffer is under its low-water mark. Raises
        Timeout at ``deadline``, ConnectionClosed when the connection ends first."""
        while self._writing_paused and self._proto.state is not CLOSED:
            if self._room is None or self._room.done():
                self._room = self._loop.create_future()
            try:
                if deadline is None:
                    await asyncio.shield(self._room)
                else:
                    left = deadline - self._loop.time()
                    if left <= 0:
                        raise asyncio.TimeoutError
                    await asyncio.wait_for(asyncio.shield(self._room), left)
            except asyncio.TimeoutError:
                raise Timeout("write timeout", url=self.url) from None
        if self._proto.state is CLOSED:
            raise self._proto.closed_error()

    def ping(self, data: bytes) -> None:
        """Raises ConnectionClosed."""
        self._proto.send_ping(data, self._loop.time())
        self._write_now()

    async def close(self, code: int, reason: str) -> None:
        """Start the closing handshake and wait (at most close_timeout) for its end.
        Raises ConnectionClosed when the connection was closing or over already, after
        the same wait: nothing of the connection outlives any close()."""
        try:
            self._proto.send_close(code, reason)
        except ConnectionClosed:
            # (e.g. the server closed first and has not ended TCP yet: async with)
            await self._wait_end()
            raise
        self._user_closed = True
        self._write_now()
        if self._held:
            # what came before close() is delivered; reading goes on for the handshake
            held = self._take_held()
            try:
                self.channel.offer(held, overflow=True)
            except ChannelClosed:
                pass
            self.resume()
        self._arm()
        await self._wait_end()

    async def _wait_end(self) -> None:
        """Wait (at most close_timeout + 0.5 s for each, then abort) until the connection
        ended and its transport is gone."""
        wait = self._options.close_timeout + 0.5
        try:
            await asyncio.wait_for(self.ended.wait(), wait)
        except asyncio.TimeoutError:   # a safety net: the timer ends it at close_timeout
            self._abort()
        # then the end of TCP (the server closes first; _finish aborts after close_timeout),
        # as the sync engine waits for its reader: nothing of the connection outlives close()
        try:
            await asyncio.wait_for(self._lost.wait(), wait)
        except asyncio.TimeoutError:
            self._abort()

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # ------------------------------------------------------------------ time

    def _arm(self) -> None:
        """Set the timer for the nearest deadline (None: no timer)."""
        at = self._next_deadline()
        if at == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None:
            self._timer = self._loop.call_at(at, self._on_timer)

    def _next_deadline(self) -> Optional[float]:
        proto = self._proto
        state = proto.state
        if state is CLOSED:
            return None
        if state is CONNECTING:
            return self._body_deadline
        if state is CLOSING:
            if self._close_deadline is None:
                self._close_deadline = self._loop.time() + self._options.close_timeout
            return self._close_deadline
        if self._reading_paused:
            return None   # the clocks stand while the consumer is slow
        deadlines = []
        if self._options.read_timeout is not None:
            deadlines.append(self._last_data + self._options.read_timeout)
        _, at = self._keepalive.due(self._loop.time(), self._last_recv)
        if at is not None:
            deadlines.append(at)
        elif self._keepalive.interval is not None:
            deadlines.append(self._loop.time())   # due now
        return min(deadlines) if deadlines else None

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        proto = self._proto
        now = self._loop.time()
        state = proto.state
        if state is CONNECTING:
            if self._body_deadline is not None and now >= self._body_deadline:
                proto.end_of_response()
                self._after_input([])
                return
        elif state is CLOSING:
            if self._close_deadline is not None and now >= self._close_deadline:
                proto.close_timed_out()
                self._abort()
                self._finish()
                return
        elif state is OPEN and not self._reading_paused:
            timeout = self._options.read_timeout
            if timeout is not None and now >= self._last_data + timeout:
                proto.fail(Timeout(f"read timeout: no message for {timeout:g} s", url=self.url),
                           CLOSE_CODES.GOING_AWAY, "read timeout")
                self._write_now()
                self._finish()
                return
            action, _ = self._keepalive.due(now, self._last_recv)
            if action is DEAD:
                ping_timeout = self._options.ping_timeout
                proto.drop(Timeout(f"keepalive timeout: no frame within {ping_timeout:g} s of a ping",
                                   url=self.url), CLOSE_CODES.INTERNAL_ERROR, "keepalive timeout")
                self._write_now()   # the last word, if the transport takes it
                self._abort()
                self._finish()
                return
            if action is PING:
                proto.send_ping(self._keepalive.ping_payload(), now)
                self._write_now()
                self._keepalive.ping_sent(now)
        self._arm()

    # ------------------------------------------------------------------ the end

    def _finish(self) -> None:
        """The Protocol is CLOSED: end the channel (after what is held), and the
        transport once the peer closed TCP or close_timeout passed."""
        if self.ended.is_set():
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
        held = self._take_held()
        if held:
            try:
                self.channel.offer(held, overflow=True)
            except ChannelClosed:
                pass
        self.channel.set_source(None)
        self.channel.close()
        self.ended.set()
        if not self.handshake.done():
            self.handshake.set_exception(self._proto.error or ConnectionClosed("connection lost"))
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        proto = self._proto
        if proto.eof:
            transport.close()    # the peer ended TCP: nothing more to wait for
            return
        if proto.error is not None and proto.close_sent is None:
            transport.abort()    # dropped without a close frame (lost, keepalive, ...)
            return
        if isinstance(proto.error, Timeout):
            transport.close()    # a silent peer (read timeout): the close frame goes out,
            return               # and there is nothing unread that would reset it
        # the closing handshake is complete, or this side failed the connection with a
        # close frame on bad input (1002, 1007, 1009, ...) from a peer that may still be
        # sending: the server closes TCP first (RFC 6455 §7.1.1); wait for it, at most
        # close_timeout, reading and discarding what it still sends. (Closing at once
        # with unread bytes resets the connection, and the server can lose the close
        # frame: seen as 1006 instead of 1009.)
        if self._reading_paused:
            self._reading_paused = False
            try:
                transport.resume_reading()
            except (AttributeError, RuntimeError):
                pass
        self._drop_later = self._loop.call_later(self._options.close_timeout, transport.abort)

