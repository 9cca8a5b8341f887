"""The keepalive clock of one connection (DESIGN §6), sans-I/O: no sockets, no clock.

A front end tells it the times; it says what is due:

* ``ping_interval`` after the last bytes received, a keepalive ping is due (PING);
* ``ping_timeout`` after that ping with nothing received, the connection is dead (DEAD);
* with ``ping_timeout`` 0 (None here) it never concludes: it pings again every
  ``ping_interval`` while the silence lasts.

The clock measures the network, never the consumer. Any bytes read count as life (a
pong, a data frame, part of a large message: each shows the path works), so a busy
stream never needs a ping. While the front end does not read because the receive
channel is full, it does not ask (:meth:`due` is not called); when reading resumes it
calls :meth:`resumed`, which starts the interval afresh and forgets a ping that was
waiting: its answer may sit unread in the socket, so the time it waited proves nothing.
"""

from __future__ import annotations

from typing import Optional, Tuple

__all__ = ["Keepalive", "PING", "DEAD"]

PING = "ping"   # send a keepalive ping now, then call ping_sent()
DEAD = "dead"   # ping_timeout passed after a ping with nothing received


class Keepalive:
    """``interval`` and ``timeout`` in seconds (None: disabled / never conclude)."""

    __slots__ = ("interval", "timeout", "_ping_at", "_sent")

    def __init__(self, interval: Optional[float], timeout: Optional[float]) -> None:
        self.interval = interval
        self.timeout = timeout
        self._ping_at: Optional[float] = None   # when the unanswered keepalive ping went out
        self._sent = 0

    def due(self, now: float, last_received: float) -> Tuple[Optional[str], Optional[float]]:
        """``(action, when)``: the action due now (PING, DEAD or None) and the time at
        which to ask again (None: not before something changes)."""
        interval = self.interval
        if interval is None:
            return None, None
        ping_at = self._ping_at
        if ping_at is not None and last_received > ping_at:
            ping_at = self._ping_at = None   # something came after the ping: alive
        if ping_at is None:
            at = last_received + interval
            return (PING, None) if now >= at else (None, at)
        timeout = self.timeout
        at = ping_at + (interval if timeout is None else timeout)
        if now < at:
            return None, at
        return (PING, None) if timeout is None else (DEAD, None)

    def ping_payload(self) -> bytes:
        """The payload of the next keepalive ping: its own, so that its pong is told
        apart from those of the user's pings."""
        self._sent += 1
        return b"wsfast keepalive %d" % self._sent

    def ping_sent(self, now: float) -> None:
        """The keepalive ping asked for went out at ``now``."""
        self._ping_at = now

    def resumed(self) -> None:
        """Reading resumed after a pause for the consumer (the front end also counts
        the resumption as bytes received): a ping sent before the pause is forgotten."""
        self._ping_at = None
